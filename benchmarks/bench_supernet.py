"""Supernet training throughput vs a plain module for the same architecture path.

Measures training images/s (forward + backward + SGD step) of one fixed, seeded, complete
architecture run three ways, side by side in one process:

  (a) supernet    the shared-weight supernet (``MacroNet(space, ...)`` / ``MicroNet(space, ...)``)
                  called as ``net(x, arch)``, the optimizer over ALL supernet parameters and
                  ``zero_grad(set_to_none=True)`` (as ``optuna_epnas/supernet/trainer.py`` trains it);
  (b) plain       a hand-written ``nn.Module`` (below, independent of the package's modules) holding
                  only that path's parameters and computing the same function;
  (c) standalone  the package's stand-alone build ``MacroNet(..., arch=arch)`` /
                  ``MicroNet(..., arch=arch)`` (BN tracks running statistics there, as a stand-alone
                  network does), for reference.

``--space macro`` (default): a full-depth architecture of ``MacroSpace(--layers)``; the headline
ratio is plain / supernet. ``--space micro``: a complete cell of ``MicroSpace(--blocks, cells=--cells)``
stacked into 3 * cells + 2 cell positions; the headline ratio is standalone / supernet, because (a)
and (c) run the very same ``MicroNet.forward`` and differ only in what weight sharing adds (ModuleDicts
holding every (input, op) branch, the optimizer and ``clip_grad_norm_`` over every supernet
parameter); plain / supernet is printed too and also catches overhead that the package's forward
code has in both (a) and (c) (per-step weight concatenation of the cell projection, Python set
bookkeeping).

Before timing it checks that (a)'s path (``net.path_parameters(arch)``), (b) and (c) have the same
parameter count and that, given (a)'s weights, (b) and (c) compute the same logits as (a) in train
mode. Repetitions are interleaved (a, b, c, a, b, c, ...) and the median images/s of each is
reported with the ratios to the supernet (target: <= 1.2). Nothing here asserts on timings: it is a
benchmark.

Afterwards it prints what the search's per-trial checkpoint costs (``SupernetObjective.save`` writes
the supernet's weights and the SGD state after every trial): the supernet's parameter count, the
size implied by float32 weights + one momentum buffer per parameter (the steady state once every
branch has been trained), and the median time of ``torch.save`` of such a state to a temporary
file, next to the time of one training epoch of the supernet path (median ms/step of (a) x the
steps of one epoch over the data set's training split) and of a trial's training (``--epochs``).

Data are synthetic, device-resident random tensors shaped like the chosen data set.

    PYTHONPATH=. python benchmarks/bench_supernet.py                        # CPU defaults (macro)
    PYTHONPATH=. python benchmarks/bench_supernet.py --dataset cifar10 --batch-size 256
    PYTHONPATH=. python benchmarks/bench_supernet.py --device cuda --amp --channels-last --dataset cifar10
    PYTHONPATH=. python benchmarks/bench_supernet.py --space micro --dataset digits --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from optuna_epnas.nn import MacroNet, MicroNet  # noqa: E402
from optuna_epnas.spaces.macro import MacroArch, MacroSpace  # noqa: E402
from optuna_epnas.spaces.micro import MicroArch, MicroSpace, input_name  # noqa: E402
from _common import report_load  # benchmarks/ is on sys.path when a script here runs

#: (in_channels, image size, classes) of each supported data set; only the shape matters here.
SHAPES = {"digits": (1, 8, 10), "fashion-mnist": (1, 28, 10), "cifar10": (3, 32, 10)}
#: Training images per epoch with load_dataset's defaults (val_fraction 0.1; digits: 20% test held out first).
TRAIN_SIZES = {"digits": 1294, "fashion-mnist": 54000, "cifar10": 45000}


# --------------------------------------------------------------------------------------------------
# (b) the plain, hand-written network of one architecture
# --------------------------------------------------------------------------------------------------
def _bn(c: int, track: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, track_running_stats=track)


class PlainOp(nn.Module):
    """One layer op: ReLU->conv->BN, ReLU->depthwise->pointwise->BN, or a 3x3 pool (stride 1)."""

    def __init__(self, name: str, c: int, track: bool) -> None:
        super().__init__()
        self.name = name
        if name in ("conv3x3", "conv5x5"):
            k = int(name[-1])
            self.conv = nn.Conv2d(c, c, k, 1, k // 2, bias=False)
            self.bn = _bn(c, track)
        elif name in ("sep3x3", "sep5x5"):
            k = int(name[-1])
            self.dw = nn.Conv2d(c, c, k, 1, k // 2, groups=c, bias=False)
            self.pw = nn.Conv2d(c, c, 1, bias=False)
            self.bn = _bn(c, track)
        elif name not in ("max3x3", "avg3x3"):
            raise ValueError(f"unknown op {name!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.name
        if n == "max3x3":
            return F.max_pool2d(x, 3, 1, 1)
        if n == "avg3x3":
            return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        if n[:4] == "conv":
            return self.bn(self.conv(F.relu(x)))
        return self.bn(self.pw(self.dw(F.relu(x))))


class PlainReduction(nn.Module):
    """ReLU -> strided 3x3 conv -> BN: halves the resolution between stages."""

    def __init__(self, c: int, track: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 1, bias=False)
        self.bn = _bn(c, track)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(F.relu(x)))


class PlainNet(nn.Module):
    """The network of ONE macro architecture, written out by hand (mirrors MacroNet.forward).

    stem conv3x3 -> BN; per layer: [reduction if after a reduction layer] -> op -> (+ skip inputs
    avg-pooled (ceil_mode) down to the current resolution) -> merge BN (only when skips) ->
    ReLU -> global average pool -> linear. The plan (which reduction, which skips, how many
    pools each) is resolved once here, so ``forward`` does no look-ups.
    """

    def __init__(self, arch: MacroArch, reduction_layers, num_classes: int, in_ch: int, c: int,
                 track: bool = False) -> None:
        super().__init__()
        self.stem_conv = nn.Conv2d(in_ch, c, 3, 1, 1, bias=False)
        self.stem_bn = _bn(c, track)
        self.ops = nn.ModuleList(PlainOp(op, c, track) for op in arch.ops)
        self.merge_bns = nn.ModuleList(_bn(c, track) for s in arch.skips if s)
        reductions = [p for p in reduction_layers if p < arch.level]
        self.reductions = nn.ModuleList(PlainReduction(c, track) for _ in reductions)
        self.classifier = nn.Linear(c, num_classes)
        # plan[i] = (reduce_before: index or -1, [(source, times to halve)], merge_bn index or -1)
        stage, stages, plan, merge = 0, [0], [], 0
        for i, sources in enumerate(arch.skips):
            red = -1
            if i in reductions:  # a reduction after (1-based) layer i feeds layer i+1
                red, stage = reductions.index(i), stage + 1
            skips = [(s, stage - stages[s]) for s in sources]
            plan.append((red, skips, merge if sources else -1))
            merge += bool(sources)
            stages.append(stage)
        self.plan = plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem_bn(self.stem_conv(x))
        outputs = [h]
        for op, (red, skips, m) in zip(self.ops, self.plan):
            if red >= 0:
                h = self.reductions[red](h)
            out = op(h)
            if skips:
                for s, times in skips:
                    y = outputs[s]
                    for _ in range(times):
                        y = F.avg_pool2d(y, 2, ceil_mode=True)
                    out = out + y
                out = self.merge_bns[m](out)
            outputs.append(out)
            h = out
        return self.classifier(F.adaptive_avg_pool2d(F.relu(h), 1).flatten(1))

    @torch.no_grad()
    def copy_from_supernet(self, net: MacroNet, arch: MacroArch) -> None:
        """Load the supernet's path weights (for the equivalence check)."""
        def cp(dst: nn.Module, src: nn.Module) -> None:
            for pd, ps in zip(dst.parameters(), src.parameters(), strict=True):
                pd.copy_(ps)

        cp(self.stem_conv, net.stem[0])
        cp(self.stem_bn, net.stem[1])
        for i, (op, sources) in enumerate(zip(arch.ops, arch.skips)):
            cp(self.ops[i], net.layers[i].ops[op])
        merges = [net.layers[i].merge_bn for i, s in enumerate(arch.skips) if s]
        for dst, src in zip(self.merge_bns, merges, strict=True):
            cp(dst, src)
        keys = [str(p) for p in net.space.reduction_layers() if p < arch.level]
        for dst, key in zip(self.reductions, keys, strict=True):
            cp(dst, net.reductions[key])
        cp(self.classifier, net.classifier)


# --------------------------------------------------------------------------------------------------
# (b) the plain, hand-written network of one micro cell
# --------------------------------------------------------------------------------------------------
def _rcb(c_in: int, c_out: int, k: int, stride: int, track: bool) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), _bn(c_out, track))


def plain_micro_op(name: str, c: int, stride: int, track: bool) -> nn.Module:
    """One branch op; ops reading the cell's inputs in a reduction cell have stride 2."""
    k = int(name[-1]) if name[-1].isdigit() else 1
    if name in ("conv3x3", "conv5x5"):
        return _rcb(c, c, k, stride, track)
    if name in ("sep3x3", "sep5x5"):
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False),
                             nn.Conv2d(c, c, 1, bias=False), _bn(c, track))
    if name == "max3x3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "avg3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if name == "identity":  # a strided identity still has to halve the resolution: strided 1x1 conv
        return nn.Identity() if stride == 1 else _rcb(c, c, 1, stride, track)
    raise ValueError(f"unknown op {name!r}")


class PlainMicroCell(nn.Module):
    """The cell of ONE micro architecture at one position (mirrors MicroCell.forward).

    prev / prev2 -> ReLU-1x1conv-BN (prev2 strided after a reduction cell) -> per block
    op(in1) + op(in2) -> concatenate the blocks nothing reads -> ReLU -> one 1x1 conv -> BN.
    A block whose two branches are the same (input, op) applies one module twice."""

    def __init__(self, arch: MicroArch, c_prev2: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool, track: bool) -> None:
        super().__init__()
        read = {i for in1, _, in2, _ in arch.blocks for i in (in1, in2)}
        self.pre_prev = _rcb(c_prev, c, 1, 1, track) if 0 in read else None
        self.pre_prev2 = _rcb(c_prev2, c, 1, 2 if reduction_prev else 1, track) if 1 in read else None
        ops = []
        for in1, op1, in2, op2 in arch.blocks:
            first = plain_micro_op(op1, c, 2 if reduction and in1 < 2 else 1, track)
            same = (in1, op1) == (in2, op2)
            ops += [first, first if same else plain_micro_op(op2, c, 2 if reduction and in2 < 2 else 1, track)]
        self.ops = nn.ModuleList(ops)  # parameters() counts a module listed twice once
        self.inputs = [(in1, in2) for in1, _, in2, _ in arch.blocks]
        self.concat = [b + 1 for b in arch.outputs()]  # indices into the states list
        self.project = nn.Conv2d(len(self.concat) * c, c, 1, bias=False)
        self.bn = _bn(c, track)

    def forward(self, s_prev2, s_prev):
        states = [self.pre_prev(s_prev) if self.pre_prev is not None else None,
                  self.pre_prev2(s_prev2) if self.pre_prev2 is not None else None]
        for b, (in1, in2) in enumerate(self.inputs):
            states.append(self.ops[2 * b](states[in1]) + self.ops[2 * b + 1](states[in2]))
        return self.bn(self.project(F.relu(torch.cat([states[j] for j in self.concat], dim=1))))


class PlainMicroNet(nn.Module):
    """Stem -> the cells that reach the classifier (N normal, reduction, N normal, reduction,
    N normal; a reduction cell doubles the width) -> ReLU -> global average pool -> linear.

    When no block reads ``prev``, cell p reads only cell p - 2, so half the positions feed nothing:
    they are left out here (and in MicroNet). The live positions are resolved once, here."""

    def __init__(self, arch: MicroArch, cells: int, num_classes: int, in_ch: int, c: int,
                 track: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_ch, c, 3, 1, 1, bias=False), _bn(c, track))
        read = {i for in1, _, in2, _ in arch.blocks for i in (in1, in2)}
        steps = [s for s, i in ((1, 0), (2, 1)) if i in read]
        n, live, todo = 3 * cells + 2, set(), [3 * cells + 1]
        while todo:
            p = todo.pop()
            if p >= 0 and p not in live:
                live.add(p)
                todo += [p - s for s in steps]
        self.positions, self.cells = sorted(live), nn.ModuleList()
        c_prev2 = c_prev = width = c
        reduction_prev = False
        for p in range(n):
            reduction = p in (cells, 2 * cells + 1)
            width *= 2 if reduction else 1
            if p in live:
                self.cells.append(PlainMicroCell(arch, c_prev2, c_prev, width, reduction, reduction_prev, track))
            c_prev2, c_prev, reduction_prev = c_prev, width, reduction
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        out = {-2: h, -1: h}
        for p, cell in zip(self.positions, self.cells):
            out[p] = cell(out.get(p - 2), out.get(p - 1))
        return self.classifier(F.adaptive_avg_pool2d(F.relu(out[self.positions[-1]]), 1).flatten(1))

    @torch.no_grad()
    def copy_from_supernet(self, net: MicroNet, arch: MicroArch) -> None:
        """Load the supernet's path weights (for the equivalence check)."""
        def cp(dst: nn.Module, src: nn.Module) -> None:
            for pd, ps in zip(dst.parameters(), src.parameters(), strict=True):
                pd.copy_(ps)

        cp(self.stem, net.stem)
        cp(self.classifier, net.classifier)
        for p, cell in zip(self.positions, self.cells):
            src = net.cells[str(p)]
            for dst, s in ((cell.pre_prev, src.pre_prev), (cell.pre_prev2, src.pre_prev2)):
                if dst is not None:
                    cp(dst, s)
            for b, (in1, op1, in2, op2) in enumerate(arch.blocks):
                cp(cell.ops[2 * b], src.blocks[b].ops[f"{input_name(in1)}_{op1}"])
                cp(cell.ops[2 * b + 1], src.blocks[b].ops[f"{input_name(in2)}_{op2}"])
            cell.project.weight.copy_(torch.cat([src.project[f"b{b - 1}"].weight for b in cell.concat], dim=1))
            cp(cell.bn, src.out_bn)


# --------------------------------------------------------------------------------------------------
def random_arch(space: MacroSpace, seed: int, skip_prob: float) -> MacroArch:
    """A full-depth architecture: uniform ops, each allowed skip source kept with ``skip_prob``.

    Always has at least one skip that crosses a reduction (so the avg-pool path is exercised)."""
    rng = np.random.default_rng(seed)
    ops = tuple(space.ops[int(rng.integers(len(space.ops)))] for _ in range(space.num_layers))
    skips = [tuple(s for s in range(layer - 1) if rng.random() < skip_prob)
             for layer in range(1, space.num_layers + 1)]
    if space.num_layers >= 3 and not any(skips[space.num_layers - 1]):
        skips[space.num_layers - 1] = (0,)  # the stem into the last layer: crosses every reduction
    return MacroArch(ops, tuple(skips))


def random_micro_arch(space: MicroSpace, seed: int) -> MicroArch:
    """A complete cell: from the root, a uniformly drawn child at every level (``space.child``)."""
    rng = np.random.default_rng(seed)
    arch = space.root()
    while space.num_children(arch):
        arch = space.child(arch, int(rng.integers(space.num_children(arch))))
    return arch


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]}, {len(names)} logical CPUs"
    except (OSError, IndexError):
        return platform.processor() or "cpu"


def n_params(params) -> int:
    return sum(p.numel() for p in params)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """One model + its optimizer + its training step on a pool of device-resident batches."""

    def __init__(self, name: str, model: nn.Module, params, arch: MacroArch | None, args, device) -> None:
        self.name, self.model, self.arch, self.args, self.device = name, model, arch, args, device
        self.opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, nesterov=True, weight_decay=3e-4)
        self.clip_params = list(model.parameters())
        self.rates: list[float] = []

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.args.amp):
            logits = self.model(x, self.arch) if self.arch is not None else self.model(x)
            loss = F.cross_entropy(logits, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.args.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.clip_params, self.args.grad_clip)
        self.opt.step()

    def run(self, batches, steps: int) -> float:
        sync(self.device)
        t0 = time.perf_counter()
        for s in range(steps):
            x, y = batches[s % len(batches)]
            self.step(x, y)
        sync(self.device)
        return steps * batches[0][0].shape[0] / (time.perf_counter() - t0)


def build_macro(args, in_ch: int, num_classes: int):
    space = MacroSpace(num_layers=args.layers)
    arch = space.parse(args.arch) if args.arch else random_arch(space, args.arch_seed, args.skip_prob)
    if arch.level != space.num_layers:
        print(f"note: architecture has {arch.level} of {space.num_layers} layers")
    desc = f"MacroSpace({args.layers}) reductions after {space.reduction_layers()}"
    origin = "given" if args.arch else f"seed {args.arch_seed}"
    info = f"arch ({origin}, {sum(map(len, arch.skips))} skips): {arch.key}"
    torch.manual_seed(args.seed)
    supernet = MacroNet(space, num_classes, in_ch, args.channels)
    plain = PlainNet(arch, space.reduction_layers(), num_classes, in_ch, args.channels)
    standalone = MacroNet(space, num_classes, in_ch, args.channels, arch=arch)
    return arch, desc, info, supernet, plain, standalone, "(c) MacroNet(arch=arch)"


def build_micro(args, in_ch: int, num_classes: int):
    space = MicroSpace(num_blocks=args.blocks, cells=args.cells)
    arch = space.parse(args.arch) if args.arch else random_micro_arch(space, args.arch_seed)
    if arch.level != space.num_blocks:
        print(f"note: architecture has {arch.level} of {space.num_blocks} blocks")
    n_cells = 3 * args.cells + 2
    desc = (f"MicroSpace(num_blocks={args.blocks}, cells={args.cells}, {len(space.ops)} ops): {n_cells} cell "
            f"positions, reduction cells at {[args.cells, 2 * args.cells + 1]}")
    torch.manual_seed(args.seed)
    supernet = MicroNet(space, num_classes, in_ch, args.channels)
    plain = PlainMicroNet(arch, args.cells, num_classes, in_ch, args.channels)
    standalone = MicroNet(space, num_classes, in_ch, args.channels, arch=arch)
    origin = "given" if args.arch else f"seed {args.arch_seed}"
    info = (f"arch ({origin}; concatenates blocks {list(arch.outputs())}; live cells {plain.positions} "
            f"of {n_cells}): {arch.key}")
    return arch, desc, info, supernet, plain, standalone, "(c) MicroNet(arch=arch)"


def pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x >= 0.01 else f"{100 * x:.2g}%"


def checkpoint_cost(supernet: nn.Module, args, ms_per_step: float) -> None:
    """Size and ``torch.save`` time of the search's per-trial checkpoint, next to a trial's training."""
    n = n_params(supernet.parameters())
    opt = torch.optim.SGD(supernet.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=3e-4)
    for p in supernet.parameters():  # steady state: every branch trained at least once has a buffer
        opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
    state = {"format": 1, "model": supernet.state_dict(), "optimizer": opt.state_dict()}
    implied = 2 * 4 * n
    print(f"\ncheckpoint: supernet {n:,} parameters -> weights + SGD momentum in float32 = "
          f"{implied / 2**20:,.1f} MiB (SupernetObjective.save writes it after every trial)")
    if args.save_reps <= 0:
        return
    times, size = [], 0
    with tempfile.TemporaryDirectory(dir=args.checkpoint_dir) as tmp:
        path = Path(tmp) / "supernet.pt"
        for _ in range(args.save_reps):
            t0 = time.perf_counter()
            torch.save(state, path)
            times.append(time.perf_counter() - t0)
            size = path.stat().st_size
            path.unlink()
    save_s = statistics.median(times)
    n_train = args.train_size or TRAIN_SIZES[args.dataset]
    epoch_steps = math.ceil(n_train / args.batch_size)
    epoch_s = epoch_steps * ms_per_step / 1000
    trial_s = args.epochs * epoch_s
    print(f"  torch.save to {Path(tempfile.gettempdir() if args.checkpoint_dir is None else args.checkpoint_dir)}"
          f": {size / 2**20:,.1f} MiB file, median {1000 * save_s:,.0f} ms of {args.save_reps} "
          f"(min {1000 * min(times):,.0f}, max {1000 * max(times):,.0f}; page cache, no fsync)")
    print(f"  one epoch of {args.dataset} ({n_train:,} training images / batch {args.batch_size} = {epoch_steps} "
          f"steps x {ms_per_step:,.1f} ms/step of (a)) = {epoch_s:,.2f} s -> the save is "
          f"{pct(save_s / epoch_s)} of an epoch, {pct(save_s / (trial_s + save_s))} of a "
          f"{args.epochs}-epoch trial (training + save; evaluation not counted)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--space", choices=("macro", "micro"), default="macro", help="which search space's supernet")
    ap.add_argument("--dataset", choices=sorted(SHAPES), default="fashion-mnist")
    ap.add_argument("--layers", type=int, default=12, help="macro: L of MacroSpace(num_layers=L)")
    ap.add_argument("--blocks", type=int, default=5, help="micro: B of MicroSpace(num_blocks=B)")
    ap.add_argument("--cells", type=int, default=2, help="micro: N of MicroSpace(cells=N), normal cells per stage")
    ap.add_argument("--channels", type=int, default=24, help="C, the supernet width")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--arch-seed", type=int, default=0, help="seed of the random complete architecture")
    ap.add_argument("--arch", default=None, help="an architecture key instead of a random one")
    ap.add_argument("--skip-prob", type=float, default=0.25, help="macro: chance of each allowed skip, random arch")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per model before timing")
    ap.add_argument("--steps", type=int, default=6, help="training steps per timed repetition")
    ap.add_argument("--reps", type=int, default=7, help="interleaved timed repetitions per model")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--grad-clip", type=float, default=5.0, help="clip_grad_norm_ like the objective; 0: off")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (or cuda:N)")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast")
    ap.add_argument("--channels-last", action="store_true", help="channels_last models and inputs")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0, help="weights and data seed")
    ap.add_argument("--save-reps", type=int, default=3, help="timed torch.save calls of the checkpoint; 0: skip")
    ap.add_argument("--checkpoint-dir", default=None, help="where the timed checkpoint goes (default: temp dir)")
    ap.add_argument("--train-size", type=int, default=None,
                    help="training images per epoch for the checkpoint comparison (default: the data set's split)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per trial for the checkpoint comparison")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")
    in_ch, size, num_classes = SHAPES[args.dataset]
    build = build_macro if args.space == "macro" else build_micro
    arch, space_desc, arch_info, supernet, plain, standalone, standalone_name = build(args, in_ch, num_classes)

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    load0 = os.getloadavg()[0]
    print(f"torch {torch.__version__} | python {platform.python_version()} | device {device} ({dev_name}) | "
          f"threads {torch.get_num_threads()} (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}) | "
          f"amp(bf16) {args.amp} | channels_last {args.channels_last}")
    print(f"data: synthetic {args.dataset}-shaped {in_ch}x{size}x{size}, {num_classes} classes, "
          f"batch {args.batch_size} | space: {space_desc} | C={args.channels}")
    print(arch_info)

    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    supernet, plain, standalone = (m.to(device, memory_format=fmt) for m in (supernet, plain, standalone))

    # -- same path, same parameters, same function ------------------------------------------------
    counts = {"supernet path": n_params(supernet.path_parameters(arch)), "plain": n_params(plain.parameters()),
              "standalone": n_params(standalone.parameters())}
    print(f"parameters: supernet total {n_params(supernet.parameters()):,} | "
          + " | ".join(f"{k} {v:,}" for k, v in counts.items()))
    if len(set(counts.values())) != 1:
        raise SystemExit(f"parameter counts differ: {counts}: the plain module does not mirror the path")
    plain.copy_from_supernet(supernet, arch)
    sd = supernet.state_dict()
    missing = [k for k, _ in standalone.named_parameters() if k not in sd]
    if missing:
        raise SystemExit(f"stand-alone parameters with no supernet weight of the same name: {missing[:5]}")
    # same names; the stand-alone's BN running statistics (absent from the supernet) keep their init
    standalone.load_state_dict({k: sd.get(k, v) for k, v in standalone.state_dict().items()})
    gen = torch.Generator(device="cpu").manual_seed(args.seed)

    def batch():
        x = torch.randn(args.batch_size, in_ch, size, size, generator=gen).to(device)
        y = torch.randint(num_classes, (args.batch_size,), generator=gen).to(device)
        return x.contiguous(memory_format=fmt), y

    batches = [batch() for _ in range(4)]
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=args.amp):
        for m in (supernet, plain, standalone):
            m.train()  # batch statistics everywhere: (a), (b), (c) compute the same function
        ref = supernet(batches[0][0], arch).float()
        diff_b = (plain(batches[0][0]).float() - ref).abs().max().item()
        diff_c = (standalone(batches[0][0]).float() - ref).abs().max().item()
    print(f"same function (train-mode logits, max |diff| vs supernet): plain {diff_b:.2e} | standalone {diff_c:.2e}")

    runners = [
        Runner("(a) supernet net(x, arch)", supernet, supernet.parameters(), arch, args, device),
        Runner("(b) plain hand-written", plain, plain.parameters(), None, args, device),
        Runner(standalone_name, standalone, standalone.parameters(), None, args, device),
    ]
    for r in runners:
        r.run(batches, args.warmup)
    started = time.perf_counter()
    for rep in range(args.reps):
        for r in runners:
            r.rates.append(r.run(batches, args.steps))
    elapsed = time.perf_counter() - started

    med = {r.name: statistics.median(r.rates) for r in runners}
    a = med[runners[0].name]
    print(f"\n{args.reps} interleaved repetitions x {args.steps} steps x batch {args.batch_size} "
          f"(after {args.warmup} warm-up steps each); {elapsed:.1f} s timed")
    print(f"{'model':<28} {'median img/s':>13} {'min':>10} {'max':>10} {'ms/step':>9} {'vs supernet':>12}")
    for r in runners:
        m = med[r.name]
        print(f"{r.name:<28} {m:>13,.0f} {min(r.rates):>10,.0f} {max(r.rates):>10,.0f} "
              f"{1000 * args.batch_size / m:>9.1f} {m / a:>11.3f}x")
    # headline: plain/supernet for macro; standalone/supernet for micro (same forward code as the supernet)
    head, other = (runners[1], runners[2]) if args.space == "macro" else (runners[2], runners[1])
    head_label, other_label = (("plain", "standalone") if args.space == "macro" else ("standalone", "plain"))
    ratio = med[head.name] / a
    paired = statistics.median(b / s for b, s in zip(head.rates, runners[0].rates))
    best = max(head.rates) / max(runners[0].rates)
    verdict = "within target" if ratio <= 1.2 else "ABOVE target"
    print(f"\nratio {head_label}/supernet = {ratio:.3f} (of medians; target <= 1.2: {verdict})")
    print(f"  cross-checks: {paired:.3f} median of per-repetition ratios, {best:.3f} best-vs-best")
    if max(ratio, paired, best) / min(ratio, paired, best) > 1.1:
        print("  the estimates disagree by > 10%: timing noise (stalls); rerun with more --reps on a quieter machine")
    if args.space == "macro":
        print(f"ratio {other_label}/supernet = {med[other.name] / a:.3f}")
    else:
        paired_o = statistics.median(b / s for b, s in zip(other.rates, runners[0].rates))
        print(f"ratio {other_label}/supernet = {med[other.name] / a:.3f} (per-repetition median {paired_o:.3f})")
    checkpoint_cost(supernet, args, 1000 * args.batch_size / a)
    report_load(load0)


if __name__ == "__main__":
    main()
