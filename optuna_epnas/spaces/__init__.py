"""Search spaces: architecture types, their Optuna parameters, tokens and expansions."""

from optuna_epnas.spaces.base import SearchSpace
from optuna_epnas.spaces.macro import MACRO_OPS, MacroArch, MacroSpace

__all__ = ["MACRO_OPS", "MacroArch", "MacroSpace", "SearchSpace", "space_from_spec"]


def space_from_spec(spec: dict) -> SearchSpace:
    """Rebuild a space from :meth:`SearchSpace.spec` (used when resuming and when loading models)."""
    kind = spec.get("space")
    if kind == "macro":
        return MacroSpace(num_layers=spec["num_layers"], ops=spec["ops"])
    raise ValueError(f"unknown search space {kind!r} in spec {spec}")
