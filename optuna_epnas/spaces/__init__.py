"""Search spaces: architecture types, their Optuna parameters, tokens and expansions."""

from optuna_epnas.spaces.base import SearchSpace
from optuna_epnas.spaces.macro import MACRO_OPS, MacroArch, MacroSpace
from optuna_epnas.spaces.micro import MICRO_OPS, MicroArch, MicroSpace

__all__ = [
    "MACRO_OPS", "MICRO_OPS", "MacroArch", "MacroSpace", "MicroArch", "MicroSpace", "SearchSpace", "space_from_spec",
]


def space_from_spec(spec: dict) -> SearchSpace:
    """Rebuild a space from :meth:`SearchSpace.spec` (used when resuming and when loading models)."""
    kind = spec.get("space") if isinstance(spec, dict) else None
    try:
        if kind == "macro":
            return MacroSpace(num_layers=spec["num_layers"], ops=spec["ops"])
        if kind == "micro":
            return MicroSpace(num_blocks=spec["num_blocks"], ops=spec["ops"], cells=spec["cells"])
    except KeyError as err:
        raise ValueError(f"search space spec {spec} lacks {err.args[0]!r}") from None
    raise ValueError(f"unknown search space {kind!r} in spec {spec}; known: 'macro', 'micro'")
