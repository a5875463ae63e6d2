"""The macro search space (ENAS/EPNAS): a chain of L layers, each one op plus optional skip inputs.

Layer l (1-based) reads layer l-1's output (the stem's for l=1) through its op and may add the
outputs of any subset of {stem, layer 1, ..., layer l-2} as skip inputs; source 0 is the stem.
So there are len(ops)^L * 2^(L(L-1)/2) architectures of L layers (L=12: ~1.6e29).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution

from optuna_epnas._checks import check_positive_int
from optuna_epnas.spaces.base import SearchSpace, check_ops
from optuna_epnas.spaces.registry import register_space

#: The paper's six operations, in a fixed order (the order of the Optuna choices and token slots).
MACRO_OPS: tuple[str, ...] = ("conv3x3", "conv5x5", "sep3x3", "sep5x5", "max3x3", "avg3x3")

_LAYER_RE = re.compile(r"^([A-Za-z0-9_]+)(?:\[(\d+(?:,\d+)*)\])?$")


@dataclass(frozen=True)
class MacroArch:
    """An architecture of the macro space: one op and a sorted tuple of skip sources per layer."""

    ops: tuple[str, ...]
    skips: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if len(self.ops) != len(self.skips):
            raise ValueError(f"MacroArch needs one skip tuple per op, got {len(self.ops)} ops and {len(self.skips)}")
        for layer, sources in enumerate(self.skips, start=1):
            if tuple(sorted(set(sources))) != tuple(sources) or any(not 0 <= s <= layer - 2 for s in sources):
                raise ValueError(
                    f"layer {layer} may only skip from sorted, distinct sources in 0..{layer - 2}, got {sources}"
                )

    @property
    def level(self) -> int:
        return len(self.ops)

    @property
    def key(self) -> str:
        """e.g. ``conv3x3 | sep5x5[0] | max3x3[0,1]``: layer ops in order, skip sources in brackets."""
        return " | ".join(op + (f"[{','.join(map(str, s))}]" if s else "") for op, s in zip(self.ops, self.skips))

    def __str__(self) -> str:
        return self.key


@register_space
class MacroSpace(SearchSpace[MacroArch]):
    """Layers of the macro space; see the module docstring for the skip rule.

    Args:
        num_layers: L, the depth of a complete architecture (paper: 12).
        ops: operation names, a subset of :data:`MACRO_OPS` (default: all six).
    """

    name = "macro"
    spec_fields = ("num_layers", "ops")
    units = "layers"
    final_channels = 64
    arch_type = MacroArch

    def __init__(self, num_layers: int = 12, ops: Sequence[str] = MACRO_OPS) -> None:
        check_positive_int("num_layers", num_layers)
        self.num_layers = num_layers
        self.ops = check_ops(ops, MACRO_OPS)
        self.max_level = num_layers
        # token = one-hot op ++ multi-hot skip sources (stem + layers 1..L-2; L slots keeps it simple)
        self.token_dim = len(self.ops) + num_layers
        self._op_index = {o: i for i, o in enumerate(self.ops)}

    def __repr__(self) -> str:
        return f"MacroSpace(num_layers={self.num_layers}, ops={list(self.ops)})"

    @classmethod
    def smallest_holding(cls, arch: MacroArch) -> "MacroSpace":
        return cls(num_layers=max(arch.level, 1))

    def reduction_layers(self) -> tuple[int, ...]:
        """Layers after which the resolution halves: about 1/3 and 2/3 of the depth (as in ENAS)."""
        points = {round(self.num_layers / 3), round(2 * self.num_layers / 3)}
        return tuple(sorted(p for p in points if 1 <= p < self.num_layers))

    # -- architectures -------------------------------------------------------------------------
    def root(self) -> MacroArch:
        return MacroArch((), ())

    def level(self, arch: MacroArch) -> int:
        return arch.level

    def key(self, arch: MacroArch) -> str:
        return arch.key

    def parse(self, key: str) -> MacroArch:
        key = key.strip()
        if not key:
            return self.root()
        ops, skips = [], []
        for part in key.split("|"):
            m = _LAYER_RE.match(part.strip())
            if not m:
                raise ValueError(f"malformed layer {part.strip()!r} in architecture key {key!r}")
            ops.append(m.group(1))
            skips.append(tuple(int(s) for s in m.group(2).split(",")) if m.group(2) else ())
        arch = MacroArch(tuple(ops), tuple(skips))
        self.validate(arch)
        return arch

    def validate(self, arch: MacroArch) -> None:
        if not isinstance(arch, MacroArch):
            raise TypeError(f"{type(arch).__name__} is not an architecture of {self!r}")
        if arch.level > self.num_layers:
            raise ValueError(f"architecture has {arch.level} layers but the space has {self.num_layers}")
        unknown = sorted(set(arch.ops) - set(self.ops))
        if unknown:
            raise ValueError(f"architecture uses op(s) {unknown} that are not in this space's ops {list(self.ops)}")

    def num_children(self, arch: MacroArch) -> int:
        if arch.level >= self.num_layers:
            return 0
        return len(self.ops) << arch.level  # op choices x subsets of the `level` possible skip sources

    def child(self, arch: MacroArch, index: int) -> MacroArch:
        n = self.num_children(arch)
        if not 0 <= index < n:
            raise IndexError(f"child index {index} out of range for {n} children")
        op, mask = divmod(index, 1 << arch.level)
        sources = tuple(j for j in range(arch.level) if mask >> j & 1)
        return MacroArch(arch.ops + (self.ops[op],), arch.skips + (sources,))

    def child_groups(self, arch: MacroArch) -> np.ndarray:
        """The new layer's op: the 2^level skip patterns of one op are one group."""
        return np.arange(self.num_children(arch)) >> arch.level

    def child_cost_classes(self, arch: MacroArch) -> np.ndarray:
        """The new layer's op, and whether it has skips (a merge BN): which sources it skips from
        changes no weight and no multiply-add (skips are pooled and added)."""
        index = np.arange(self.num_children(arch))
        return 2 * (index >> arch.level) + ((index & ((1 << arch.level) - 1)) != 0)

    def size_terms(self, arch: MacroArch) -> list[tuple[MacroArch, MacroArch | None]]:
        """Pairs (with, without) whose size differences sum to ``arch``'s size (parameters and MACs), each
        pair a canonical prefix with and without one layer of ``arch``'s op and skip class: a layer costs
        the same after any layers before it (:meth:`child_cost_classes`), so counting a few hundred
        canonical networks once sizes every architecture, instead of building each one."""
        first = self.ops[0]
        terms: list[tuple[MacroArch, MacroArch | None]] = []
        for j, (op, sources) in enumerate(zip(arch.ops, arch.skips)):
            before = MacroArch((first,) * j, ((),) * j)
            with_layer = MacroArch(before.ops + (op,), before.skips + (((0,) if sources else ()),))
            terms.append((with_layer, before if j else None))
        return terms

    def child_tokens(self, arch: MacroArch) -> np.ndarray:
        n_masks = 1 << arch.level
        out = np.zeros((self.num_children(arch), self.token_dim), dtype=np.float32)
        if not len(out):
            return out
        rows = np.arange(len(out))
        out[rows, rows // n_masks] = 1.0
        bits = (rows[:, None] % n_masks >> np.arange(arch.level)) & 1
        out[:, len(self.ops) : len(self.ops) + arch.level] = bits
        return out

    def tokens(self, arch: MacroArch) -> np.ndarray:
        out = np.zeros((arch.level, self.token_dim), dtype=np.float32)
        for layer, (op, sources) in enumerate(zip(arch.ops, arch.skips)):
            out[layer, self._op_index[op]] = 1.0
            out[layer, [len(self.ops) + s for s in sources]] = 1.0
        return out

    def cardinality(self, level: int | None = None) -> int:
        level = self.num_layers if level is None else level
        if not 0 <= level <= self.num_layers:
            raise ValueError(f"level must be in 0..{self.num_layers}, got {level}")
        return len(self.ops) ** level * 2 ** (level * (level - 1) // 2)

    # -- Optuna parameters ---------------------------------------------------------------------
    def unit_param(self, unit: int) -> str:
        return f"layer_{unit:02d}.op"

    @staticmethod
    def _skip_param(layer: int, source: int) -> str:
        return f"layer_{layer:02d}.skip_{source:02d}"

    def distributions(self, level: int | None = None) -> dict[str, BaseDistribution]:
        level = self.num_layers if level is None else level
        out: dict[str, BaseDistribution] = {}
        for layer in range(1, level + 1):
            out[self.unit_param(layer)] = CategoricalDistribution(self.ops)
            for source in range(layer - 1):
                out[self._skip_param(layer, source)] = CategoricalDistribution((False, True))
        return out

    def to_params(self, arch: MacroArch) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for layer, (op, sources) in enumerate(zip(arch.ops, arch.skips), start=1):
            params[self.unit_param(layer)] = op
            for source in range(layer - 1):
                params[self._skip_param(layer, source)] = source in sources
        return params

    def from_params(self, params: dict[str, Any]) -> MacroArch:
        ops, skips = [], []
        layer = 1
        while layer <= self.num_layers and self.unit_param(layer) in params:
            ops.append(params[self.unit_param(layer)])
            skips.append(tuple(s for s in range(layer - 1) if params.get(self._skip_param(layer, s), False)))
            layer += 1
        arch = MacroArch(tuple(ops), tuple(skips))
        self.validate(arch)
        return arch
