"""The one way a report, a note or a table prints a number that may be missing."""

from __future__ import annotations

import math
from typing import Any

MISSING = "–"


def fmt(value: Any, spec: str = "") -> str:
    """``format(value, spec)``, or an en dash for a value that is missing (None) or undefined (NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return format(value, spec)
