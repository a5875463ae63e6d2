"""The micro network: one class builds both the shared-weight supernet and a stand-alone network.

Cells are stacked as N normal, reduction, N normal, reduction, N normal (as PNAS/NASNet); a reduction
cell doubles the channels and applies stride 2 to the ops that read the cell's inputs. Every cell
position has its own weights, one module per (block, input, op) -- ``cells.<c>.blocks.<b-1>.ops.<input>_<op>``
-- so two architectures share a weight exactly where they apply the same op to the same input in the
same block of the same cell. The supernet (``arch=None``) holds all of them, a stand-alone network only
its cell's; both run the same ``forward``.

The cell output concatenates the unconsumed blocks and projects them back to the cell's width with a
1x1 convolution. That convolution is kept as one C x C slice per block and the slices of the
concatenated blocks are joined at run time: one convolution either way, and its weights are shared
per block however many blocks a sampled cell concatenates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optuna_epnas.nn.ops import ReLUConvBN, batch_norm, check_buildable, make_op, stem
from optuna_epnas._checks import check_positive_int
from optuna_epnas.spaces.micro import MicroArch, MicroSpace, input_name


def _branch_name(index: int, op: str) -> str:
    return f"{input_name(index)}_{op}"


class MicroBlock(nn.Module):
    def __init__(self, branches, channels: int, reduction: bool, norm) -> None:
        super().__init__()
        self.ops = nn.ModuleDict({
            _branch_name(i, op): make_op(op, channels, 2 if reduction and i < 2 else 1, norm) for i, op in branches
        })


class MicroCell(nn.Module):
    """One cell position: input 1x1 convolutions, the blocks' candidate ops, the output projection."""

    def __init__(
        self, c_prev2: int, c_prev: int, channels: int, reduction: bool, reduction_prev: bool,
        blocks, inputs_read, outputs, norm,
    ) -> None:
        super().__init__()
        # The cell before the previous one is at twice the resolution after a reduction cell.
        self.pre_prev = ReLUConvBN(c_prev, channels, 1, 1, norm) if 0 in inputs_read else None
        self.pre_prev2 = ReLUConvBN(c_prev2, channels, 1, 2 if reduction_prev else 1, norm) if 1 in inputs_read else None
        self.blocks = nn.ModuleList(MicroBlock(b, channels, reduction, norm) for b in blocks)
        self.project = nn.ModuleDict({f"b{b}": nn.Conv2d(channels, channels, 1, bias=False) for b in outputs})
        self.out_bn = norm(channels)

    def forward(self, s_prev2: torch.Tensor, s_prev: torch.Tensor, arch: MicroArch) -> torch.Tensor:
        states: list[torch.Tensor | None] = [None, None]
        read = {i for in1, _, in2, _ in arch.blocks for i in (in1, in2)}
        if 0 in read:
            states[0] = self.pre_prev(s_prev)
        if 1 in read:
            states[1] = self.pre_prev2(s_prev2)
        for block, (in1, op1, in2, op2) in zip(self.blocks, arch.blocks):
            states.append(block.ops[_branch_name(in1, op1)](states[in1]) + block.ops[_branch_name(in2, op2)](states[in2]))
        outputs = arch.outputs()
        h = torch.cat([states[b + 1] for b in outputs], dim=1)
        weight = torch.cat([self.project[f"b{b}"].weight for b in outputs], dim=1)
        return self.out_bn(F.conv2d(F.relu(h), weight))

    def path_modules(self, arch: MicroArch) -> list[nn.Module]:
        read = {i for in1, _, in2, _ in arch.blocks for i in (in1, in2)}
        modules: list[nn.Module] = [self.out_bn] + [self.project[f"b{b}"] for b in arch.outputs()]
        modules += [m for i, m in ((0, self.pre_prev), (1, self.pre_prev2)) if i in read]
        for block, (in1, op1, in2, op2) in zip(self.blocks, arch.blocks):
            modules += [block.ops[_branch_name(in1, op1)], block.ops[_branch_name(in2, op2)]]
        return modules


def live_cells(arch: MicroArch, num_cells: int) -> set[int]:
    """Cell positions whose output reaches the classifier.

    A cell that never reads ``prev`` makes the network skip every other cell (cell c then feeds only
    cell c+2): those cells are not computed, not trained, and not built in a stand-alone network.
    """
    read = {i for in1, _, in2, _ in arch.blocks for i in (in1, in2)}
    steps = [s for s, i in ((1, 0), (2, 1)) if i in read]
    live, frontier = set(), [num_cells - 1]
    while frontier:
        position = frontier.pop()
        if position >= 0 and position not in live:
            live.add(position)
            frontier += [position - s for s in steps]
    return live


class MicroNet(nn.Module):
    """Stem conv -> (N normal cells, reduction cell) x 2 -> N normal cells -> global pool -> linear.

    Args:
        space: the micro search space (blocks, op set, N).
        num_classes, in_channels: of the data set.
        channels: width of the first cells (doubled by each reduction cell; paper search setting: 24).
        arch: ``None`` builds the supernet; a cell builds its stand-alone network.
        cells: N, normal cells per stage (default: ``space.cells``; final training uses more, e.g. 3).
    """

    def __init__(
        self, space: MicroSpace, num_classes: int, in_channels: int = 3, channels: int = 24,
        arch: MicroArch | None = None, cells: int | None = None,
    ) -> None:
        super().__init__()
        check_buildable(space, arch)
        cells = space.cells if cells is None else cells
        check_positive_int("cells", cells)
        self.space, self.arch, self.channels, self.cells_per_stage = space, arch, channels, cells
        self.num_classes, self.in_channels = num_classes, in_channels
        norm = batch_norm(track_running_stats=arch is not None)
        if arch is None:  # every block with every (input, op) branch, every block projected
            blocks = [[(i, op) for i in range(b + 1) for op in space.ops] for b in range(1, space.num_blocks + 1)]
            inputs_read, outputs = {0, 1}, range(1, space.num_blocks + 1)
        else:
            blocks = [sorted({(in1, op1), (in2, op2)}) for in1, op1, in2, op2 in arch.blocks]
            inputs_read = {i for in1, _, in2, _ in arch.blocks for i in (in1, in2)}
            outputs = arch.outputs()
        self.stem = stem(in_channels, channels, norm)
        self.num_cells = 3 * cells + 2
        live = range(self.num_cells) if arch is None else live_cells(arch, self.num_cells)
        self.cells = nn.ModuleDict()  # keyed by position: a stand-alone net leaves out cells nothing reads
        c_prev2 = c_prev = c_cell = channels
        reduction_prev = False
        for position in range(self.num_cells):
            reduction = position in (cells, 2 * cells + 1)
            c_cell = c_cell * 2 if reduction else c_cell
            if position in live:
                self.cells[str(position)] = MicroCell(
                    c_prev2, c_prev, c_cell, reduction, reduction_prev, blocks, inputs_read, outputs, norm)
            c_prev2, c_prev, reduction_prev = c_prev, c_cell, reduction
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor, arch: MicroArch | None = None) -> torch.Tensor:
        arch = arch if arch is not None else self.arch
        if arch is None:
            raise ValueError("the supernet needs an architecture: call net(x, arch)")
        live = live_cells(arch, self.num_cells)
        s_prev2 = s_prev = self.stem(x)
        for position in range(self.num_cells):
            out = self.cells[str(position)](s_prev2, s_prev, arch) if position in live else None
            s_prev2, s_prev = s_prev, out
        return self.classifier(F.adaptive_avg_pool2d(F.relu(s_prev), 1).flatten(1))

    def path_parameters(self, arch: MicroArch) -> list[nn.Parameter]:
        """The parameters that ``arch`` uses in this network (those that training it changes)."""
        modules: list[nn.Module] = [self.stem, self.classifier]
        for position in live_cells(arch, self.num_cells):
            modules += self.cells[str(position)].path_modules(arch)
        unique = {id(p): p for m in modules for p in m.parameters()}  # both branches may be one module
        return list(unique.values())
