"""Supernet training throughput vs a plain module for the same architecture path.

Measures training images/s (forward + backward + SGD step) of one fixed, seeded, full-depth
MacroSpace architecture run three ways, side by side in one process:

  (a) supernet    the shared-weight ``MacroNet(space, ...)`` called as ``net(x, arch)``, the optimizer
                  over ALL supernet parameters and ``zero_grad(set_to_none=True)`` (as
                  ``optuna_epnas/objective.py`` trains it);
  (b) plain       a hand-written ``nn.Module`` (below, independent of the package's modules) holding
                  only that path's parameters and computing the same function;
  (c) standalone  the package's stand-alone build ``MacroNet(..., arch=arch)`` (BN tracks running
                  statistics there, as a stand-alone network does), for reference.

Before timing it checks that (a)'s path (``net.path_parameters(arch)``), (b) and (c) have the same
parameter count and that, given (a)'s weights, (b) and (c) compute the same logits as (a).
Repetitions are interleaved (a, b, c, a, b, c, ...) and the median images/s of each is reported with
the ratio plain / supernet (target: <= 1.2). Nothing here asserts on timings: it is a benchmark.

Data are synthetic, device-resident random tensors shaped like the chosen data set.

    PYTHONPATH=. python benchmarks/bench_supernet.py                        # CPU defaults
    PYTHONPATH=. python benchmarks/bench_supernet.py --dataset cifar10 --batch-size 256
    PYTHONPATH=. python benchmarks/bench_supernet.py --device cuda --amp --channels-last --dataset cifar10
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from optuna_epnas.nn import MacroNet  # noqa: E402
from optuna_epnas.spaces.macro import MacroArch, MacroSpace  # noqa: E402
from _common import report_load  # benchmarks/ is on sys.path when a script here runs

#: (in_channels, image size, classes) of each supported data set; only the shape matters here.
SHAPES = {"digits": (1, 8, 10), "fashion-mnist": (1, 28, 10), "cifar10": (3, 32, 10)}


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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(SHAPES), default="fashion-mnist")
    ap.add_argument("--layers", type=int, default=12, help="L of MacroSpace(num_layers=L)")
    ap.add_argument("--channels", type=int, default=24, help="C, the supernet width")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--arch-seed", type=int, default=0, help="seed of the random full-depth architecture")
    ap.add_argument("--arch", default=None, help="an architecture key instead of a random one")
    ap.add_argument("--skip-prob", type=float, default=0.25, help="chance of each allowed skip in the random arch")
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
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")
    in_ch, size, num_classes = SHAPES[args.dataset]
    space = MacroSpace(num_layers=args.layers)
    arch = space.parse(args.arch) if args.arch else random_arch(space, args.arch_seed, args.skip_prob)
    if arch.level != space.num_layers:
        print(f"note: architecture has {arch.level} of {space.num_layers} layers")

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    load0 = os.getloadavg()[0]
    print(f"torch {torch.__version__} | python {platform.python_version()} | device {device} ({dev_name}) | "
          f"threads {torch.get_num_threads()} (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}) | "
          f"amp(bf16) {args.amp} | channels_last {args.channels_last}")
    print(f"data: synthetic {args.dataset}-shaped {in_ch}x{size}x{size}, {num_classes} classes, "
          f"batch {args.batch_size} | space: MacroSpace({args.layers}) reductions after {space.reduction_layers()} "
          f"| C={args.channels}")
    origin = "given" if args.arch else f"seed {args.arch_seed}"
    print(f"arch ({origin}, {sum(map(len, arch.skips))} skips): {arch.key}")

    torch.manual_seed(args.seed)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    supernet = MacroNet(space, num_classes, in_ch, args.channels).to(device, memory_format=fmt)
    plain = PlainNet(arch, space.reduction_layers(), num_classes, in_ch, args.channels).to(device, memory_format=fmt)
    standalone = MacroNet(space, num_classes, in_ch, args.channels, arch=arch).to(device, memory_format=fmt)

    # -- same path, same parameters, same function ------------------------------------------------
    counts = {"supernet path": n_params(supernet.path_parameters(arch)), "plain": n_params(plain.parameters()),
              "standalone": n_params(standalone.parameters())}
    print(f"parameters: supernet total {n_params(supernet.parameters()):,} | "
          + " | ".join(f"{k} {v:,}" for k, v in counts.items()))
    if len(set(counts.values())) != 1:
        raise SystemExit(f"parameter counts differ: {counts}: the plain module does not mirror the path")
    plain.copy_from_supernet(supernet, arch)
    sd = supernet.state_dict()
    standalone.load_state_dict({k: sd.get(k, v) for k, v in standalone.state_dict().items()})  # same names
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
        Runner("(c) MacroNet(arch=arch)", standalone, standalone.parameters(), None, args, device),
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
    ratio = med[runners[1].name] / a
    paired = statistics.median(b / s for b, s in zip(runners[1].rates, runners[0].rates))
    best = max(runners[1].rates) / max(runners[0].rates)
    verdict = "within target" if ratio <= 1.2 else "ABOVE target"
    print(f"\nratio plain/supernet = {ratio:.3f} (of medians; target <= 1.2: {verdict})")
    print(f"  cross-checks: {paired:.3f} median of per-repetition ratios, {best:.3f} best-vs-best")
    if max(ratio, paired, best) / min(ratio, paired, best) > 1.1:
        print("  the estimates disagree by > 10%: timing noise (stalls); rerun with more --reps on a quieter machine")
    print(f"ratio standalone/supernet = {med[runners[2].name] / a:.3f}")
    report_load(load0)


if __name__ == "__main__":
    main()
