"""The micro (cell) search space (PNAS/EPNAS): a cell of B blocks, stacked into a network.

Block b (1-based) applies two ops to two inputs and sums them. An input is the previous cell's output
(``prev``), the output of the cell before it (``prev2``) or an earlier block of this cell (``b1`` ...
``b{b-1}``): input index 0, 1 and 1 + j for block j. The two branches of a block are unordered (swapping
them is the same architecture), so a block is one unordered pair of (input, op) *branch choices*; with
n_b = (b + 1) * len(ops) choices block b has n_b (n_b + 1) / 2 distinct values, and a cell of B blocks
has prod_b n_b (n_b + 1) / 2 (B=5, 7 ops: 5.60e12). Cells that differ only in the numbering of their
blocks are counted apart, as in PNAS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution

from optuna_epnas._checks import check_positive_int
from optuna_epnas.spaces.base import SearchSpace, check_ops
from optuna_epnas.spaces.macro import MACRO_OPS
from optuna_epnas.spaces.registry import register_space

#: The macro ops plus identity, in a fixed order (the order of the Optuna choices and token slots).
MICRO_OPS: tuple[str, ...] = MACRO_OPS + ("identity",)

#: (input, op, input, op): one block, branches in canonical order.
Block = tuple[int, str, int, str]

_BRANCH_RE = re.compile(r"^([A-Za-z0-9_]+)\((prev2|prev|b\d+)\)$")


def input_name(index: int) -> str:
    """``prev`` (0), ``prev2`` (1), ``b1``, ``b2``, ... (blocks of this cell)."""
    return ("prev", "prev2")[index] if index < 2 else f"b{index - 1}"


def input_index(name: str) -> int:
    if name in ("prev", "prev2"):
        return ("prev", "prev2").index(name)
    if re.fullmatch(r"b[1-9]\d*", name):
        return int(name[1:]) + 1
    raise ValueError(f"unknown block input {name!r}; use prev, prev2, b1, b2, ...")


@dataclass(frozen=True)
class MicroArch:
    """A cell of the micro space: one ``(in1, op1, in2, op2)`` per block.

    The two branches of each block are put in canonical order (by input, then op name) on
    construction, so a block and its mirror image are equal, hash equally and have one key.
    """

    blocks: tuple[Block, ...]

    def __post_init__(self) -> None:
        canonical = []
        for b, block in enumerate(self.blocks, start=1):
            if len(block) != 4:
                raise ValueError(f"block {b} must be (in1, op1, in2, op2), got {block!r}")
            in1, op1, in2, op2 = block
            for i in (in1, in2):
                if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i <= b:
                    raise ValueError(
                        f"block {b} may read inputs 0..{b} (prev, prev2, earlier blocks), got {i!r}")
            for op in (op1, op2):
                if not isinstance(op, str):
                    raise ValueError(f"block {b}: ops are names such as 'sep3x3', got {op!r}")
            first, second = sorted([(int(in1), op1), (int(in2), op2)])
            canonical.append(first + second)
        object.__setattr__(self, "blocks", tuple(canonical))

    @property
    def level(self) -> int:
        return len(self.blocks)

    @property
    def key(self) -> str:
        """e.g. ``sep3x3(prev) + identity(prev2) | max3x3(prev) + conv3x3(b1)``."""
        return " | ".join(
            f"{op1}({input_name(in1)}) + {op2}({input_name(in2)})" for in1, op1, in2, op2 in self.blocks)

    def outputs(self) -> tuple[int, ...]:
        """Blocks (1-based) that no other block reads: the cell concatenates these."""
        read = {i - 1 for in1, _, in2, _ in self.blocks for i in (in1, in2) if i >= 2}
        return tuple(b for b in range(1, self.level + 1) if b not in read)

    def __str__(self) -> str:
        return self.key


@register_space
class MicroSpace(SearchSpace[MicroArch]):
    """Cells of the micro space; see the module docstring.

    Args:
        num_blocks: B, blocks of a complete cell (paper: 5).
        ops: operation names, a subset of :data:`MICRO_OPS` (default: all seven).
        cells: N, normal cells between two reduction cells in the network (paper search setting: 2).
            It shapes the network, not the set of cells: the same cell is used for every position.
    """

    name = "micro"
    spec_fields = ("num_blocks", "ops", "cells")
    units = "blocks"
    network_options = ("cells",)
    final_channels = 32
    arch_type = MicroArch

    def __init__(self, num_blocks: int = 5, ops: Sequence[str] = MICRO_OPS, cells: int = 2) -> None:
        check_positive_int("num_blocks", num_blocks)
        check_positive_int("cells", cells)
        ops = check_ops(ops, MICRO_OPS)
        self.num_blocks, self.ops, self.cells = num_blocks, ops, cells
        self.max_level = num_blocks
        self._op_index = {o: i for i, o in enumerate(ops)}
        n_inputs = num_blocks + 1
        # token of a block = counts over joint (input, op) choices ++ counts over inputs ++ counts over ops:
        # invariant to swapping the branches, and the marginals let the LSTM share what it learns about
        # an op across inputs (and vice versa).
        self.token_dim = n_inputs * len(ops) + n_inputs + len(ops)
        self._pairs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __repr__(self) -> str:
        return f"MicroSpace(num_blocks={self.num_blocks}, ops={list(self.ops)}, cells={self.cells})"

    def describe(self) -> str:
        return f"{super().describe()}, {self.cells} normal cell{'s' * (self.cells != 1)} per stage"

    @classmethod
    def smallest_holding(cls, arch: MicroArch) -> "MicroSpace":
        return cls(num_blocks=max(arch.level, 1))

    # -- architectures -------------------------------------------------------------------------
    def root(self) -> MicroArch:
        return MicroArch(())

    def level(self, arch: MicroArch) -> int:
        return arch.level

    def key(self, arch: MicroArch) -> str:
        return arch.key

    def parse(self, key: str) -> MicroArch:
        key = key.strip()
        if not key:
            return self.root()
        blocks = []
        for part in key.split("|"):
            branches = [b.strip() for b in part.split("+")]
            matches = [_BRANCH_RE.match(b) for b in branches]
            if len(branches) != 2 or not all(matches):
                raise ValueError(
                    f"malformed block {part.strip()!r} in architecture key {key!r}; "
                    "expected e.g. 'sep3x3(prev) + identity(b1)'")
            (op1, in1), (op2, in2) = (m.groups() for m in matches)  # type: ignore[union-attr]
            blocks.append((input_index(in1), op1, input_index(in2), op2))
        arch = MicroArch(tuple(blocks))
        self.validate(arch)
        return arch

    def validate(self, arch: MicroArch) -> None:
        if not isinstance(arch, MicroArch):
            raise TypeError(f"{type(arch).__name__} is not an architecture of {self!r}")
        if arch.level > self.num_blocks:
            raise ValueError(f"architecture has {arch.level} blocks but the space has {self.num_blocks}")
        used = {op for _, op1, _, op2 in arch.blocks for op in (op1, op2)}
        unknown = sorted(used - set(self.ops))
        if unknown:
            raise ValueError(f"architecture uses op(s) {unknown} that are not in this space's ops {list(self.ops)}")

    def _choices(self, block: int) -> int:
        """Branch choices (input, op) of block ``block`` (1-based)."""
        return (block + 1) * len(self.ops)

    def _pair_table(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Child index -> (first, second) branch choice, first <= second (one row per unordered pair)."""
        if block not in self._pairs:
            self._pairs[block] = np.triu_indices(self._choices(block))
        return self._pairs[block]

    def num_children(self, arch: MicroArch) -> int:
        if arch.level >= self.num_blocks:
            return 0
        n = self._choices(arch.level + 1)
        return n * (n + 1) // 2

    def child(self, arch: MicroArch, index: int) -> MicroArch:
        n = self.num_children(arch)
        if not 0 <= index < n:
            raise IndexError(f"child index {index} out of range for {n} children")
        first, second = (int(t[index]) for t in self._pair_table(arch.level + 1))
        (in1, op1), (in2, op2) = divmod(first, len(self.ops)), divmod(second, len(self.ops))
        return MicroArch(arch.blocks + ((in1, self.ops[op1], in2, self.ops[op2]),))

    def _block_tokens(self, inputs: np.ndarray, ops: np.ndarray) -> np.ndarray:
        """Tokens of blocks given (rows, 2) arrays of branch input and op indices."""
        rows = np.arange(len(inputs))
        n_in = self.num_blocks + 1
        out = np.zeros((len(inputs), self.token_dim), dtype=np.float32)
        for branch in range(2):
            i, o = inputs[:, branch], ops[:, branch]
            np.add.at(out, (rows, i * len(self.ops) + o), 1.0)
            np.add.at(out, (rows, n_in * len(self.ops) + i), 1.0)
            np.add.at(out, (rows, n_in * len(self.ops) + n_in + o), 1.0)
        return out

    def child_tokens(self, arch: MicroArch) -> np.ndarray:
        if arch.level >= self.num_blocks:
            return np.zeros((0, self.token_dim), dtype=np.float32)
        first, second = self._pair_table(arch.level + 1)
        choices = np.stack([first, second], axis=1)
        return self._block_tokens(choices // len(self.ops), choices % len(self.ops))

    def tokens(self, arch: MicroArch) -> np.ndarray:
        inputs = np.array([[b[0], b[2]] for b in arch.blocks], dtype=np.int64).reshape(-1, 2)
        ops = np.array([[self._op_index[b[1]], self._op_index[b[3]]] for b in arch.blocks],
                       dtype=np.int64).reshape(-1, 2)
        return self._block_tokens(inputs, ops)

    def cardinality(self, level: int | None = None) -> int:
        level = self.num_blocks if level is None else level
        if not 0 <= level <= self.num_blocks:
            raise ValueError(f"level must be in 0..{self.num_blocks}, got {level}")
        total = 1
        for block in range(1, level + 1):
            n = self._choices(block)
            total *= n * (n + 1) // 2
        return total

    # -- Optuna parameters ---------------------------------------------------------------------
    def unit_param(self, unit: int) -> str:
        return f"cell.block_{unit}.op1"

    def distributions(self, level: int | None = None) -> dict[str, BaseDistribution]:
        level = self.num_blocks if level is None else level
        out: dict[str, BaseDistribution] = {}
        for block in range(1, level + 1):
            inputs = tuple(input_name(i) for i in range(block + 1))
            for branch in (1, 2):
                out[f"cell.block_{block}.in{branch}"] = CategoricalDistribution(inputs)
                out[f"cell.block_{block}.op{branch}"] = CategoricalDistribution(self.ops)
        return out

    def to_params(self, arch: MicroArch) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for block, (in1, op1, in2, op2) in enumerate(arch.blocks, start=1):
            params.update({
                f"cell.block_{block}.in1": input_name(in1), f"cell.block_{block}.op1": op1,
                f"cell.block_{block}.in2": input_name(in2), f"cell.block_{block}.op2": op2,
            })
        return params

    def from_params(self, params: dict[str, Any]) -> MicroArch:
        blocks = []
        block = 1
        while block <= self.num_blocks and self.unit_param(block) in params:
            p = f"cell.block_{block}."
            try:
                blocks.append((input_index(params[p + "in1"]), params[p + "op1"],
                               input_index(params[p + "in2"]), params[p + "op2"]))
            except KeyError as err:
                raise ValueError(f"params describe block {block} without {err.args[0]!r}") from None
            block += 1
        arch = MicroArch(tuple(blocks))
        self.validate(arch)
        return arch
