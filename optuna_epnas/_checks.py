"""The integer checks of settings given in Python (argparse has its own types: cli/args.py)."""

from __future__ import annotations

import numbers
from typing import Any


def check_int(name: str, value: Any, low: int = 1, optional: bool = False) -> None:
    """``value`` is an integer (a NumPy one too, not a bool) of at least ``low`` -- or None when
    ``optional`` -- else one ValueError naming the setting."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        want = {1: "a positive integer", 0: "0 or a positive integer"}.get(low, f"an integer >= {low}")
        raise ValueError(f"{name} must be {want}{' or None' if optional else ''}, got {value!r}")


def check_positive_int(name: str, value: Any, optional: bool = False) -> None:
    check_int(name, value, 1, optional)
