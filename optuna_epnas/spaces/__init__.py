"""Search spaces: architecture types, their Optuna parameters, tokens and expansions; the registry of kinds."""

from optuna_epnas.spaces.base import SearchSpace, check_ops
from optuna_epnas.spaces.macro import MACRO_OPS, MacroArch, MacroSpace
from optuna_epnas.spaces.micro import MICRO_OPS, MicroArch, MicroSpace
from optuna_epnas.spaces.nb201 import NB201_OPS, NB201Arch, NB201Space
from optuna_epnas.spaces.registry import register_space, space_class, space_names

__all__ = [
    "MACRO_OPS", "MICRO_OPS", "NB201_OPS", "MacroArch", "MacroSpace", "MicroArch", "MicroSpace", "NB201Arch",
    "NB201Space", "SearchSpace", "check_ops",
    "register_space", "space_class", "space_from_spec", "space_names",
]

#: Rebuild a space from :meth:`SearchSpace.spec` (kept name of :meth:`SearchSpace.from_spec`).
space_from_spec = SearchSpace.from_spec
