"""The first levels of a paper-size EPNAS macro search, timed, and the whole search's device-minutes projected.

Paper-size search: ``MacroSpace(num_layers=12)``, a ``SupernetTrainer`` (what ``SupernetObjective`` trains
with) with C=24 and 3 epochs per trial on CIFAR-10-shaped data (3x32x32, 10 classes, 45,000 train / 5,000
validation images), the schedule K=25, 3 iterations. It trains, with the trainer's own ``train`` and
``evaluate``:

  level 1      every one-layer architecture (6), as the search does;
  level 2..    ``--trials-per-level`` sampled architectures of that depth (a random child of a
               trained architecture of the level before), up to ``--levels``;
  probes       ``--probe-trials`` random architectures at each of ``--probe-depths`` (default 4, 12).

Each trial's training and evaluation are timed separately (``torch.cuda.synchronize()`` on CUDA at
trial boundaries only). The median per depth, scaled per image to the full split sizes
(``--project-train-images``/``--project-val-images``; so a CPU can run a subsample with
``--train-images``), is interpolated linearly in depth, and the projection is

    sum over levels l = 1..12 of  (trials at level l, from optuna_epnas.sampler.schedule)  x  time(l layers).

It counts training and evaluation on the device only: not the sampler's surrogate (CPU), not the
per-trial checkpoint write, not a warm-up (printed separately: ``epnas search`` trains one epoch of
warm-up by default, the paper none).

Also printed: images/s per depth; the ratio against a plain ``nn.Module`` of the same 12-layer path
(``PlainNet`` of bench_supernet.py, trained over the same batches, epochs interleaved); the bytes one
training step must move at least (tensors saved for the backward written once and read once, the
input batch, the path's float32 weights, gradients and momentum) and, with a bandwidth (the device's
nominal one on CUDA, ``--bandwidth-gbs`` anywhere), the time floor they imply against the measured
step; on CUDA, the host synchronisations seen during one trial (``torch.cuda.set_sync_debug_mode``)
and the peak device memory.

Data: CIFAR-10 under ``--data-root`` if it is there, else synthetic uint8 tensors of the same shape
(random pixels and labels: the accuracies mean nothing, the times do). By default the training split
stays on the device as uint8 pixels, normalised per batch (``load_dataset(uint8=("train",))``; the
objective reads the validation split as float32, so that one stays float32).

GPU settings: batch 256 on CUDA (128 on the CPU), lr scaled linearly from the objective's 0.05 at 128,
bf16 autocast and channels_last on CUDA (as the objective does). ``--cuda-graphs`` (CUDA only)
captures each trial's training step -- forward, backward, clipping, SGD -- in one CUDA graph per
architecture and replays it for every full batch, after checking that it trains as the eager step
does. ``--compile`` compiles every op module of the supernet in place (``nn.Module.compile``: the
same state dict), untimed compilation first, checked against eager. Neither has been measured on a
GPU in this repository; on the CPU ``--cuda-graphs`` is skipped.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/gpu_search.py --device cpu --train-images 2000 --val-images 500
    python benchmarks/gpu_search.py --data-root ./data                      # on a GPU: the full split
    python benchmarks/gpu_search.py --data-root ./data --cuda-graphs
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import platform
import statistics
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from anywhere without installing
sys.path.insert(0, str(HERE))  # _common, bench_supernet

from optuna_epnas import MacroSpace, SupernetTrainer  # noqa: E402
from optuna_epnas.data.device import DatasetNotFoundError, DeviceData, load_dataset, make_generator  # noqa: E402
from optuna_epnas.sampler.schedule import planned_trials, stage_sizes  # noqa: E402
from optuna_epnas.settings import SUPERNET  # noqa: E402
from _common import report_load  # noqa: E402
from bench_supernet import PlainNet, Runner, cpu_name, n_params  # noqa: E402

CPU_BATCH, CPU_LR = SUPERNET.batch_size, SUPERNET.lr  # SupernetTrainer's defaults, sized for a CPU
MB = 1e6


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
def make_data(args, device: torch.device) -> tuple[DeviceData, str]:
    """CIFAR-10 from --data-root, else synthetic uint8 tensors of its shape; --val-images kept."""
    uint8 = ("train",) if args.storage == "uint8-train" else ()
    max_train = args.train_images if args.train_images < 45000 else None
    try:
        data = load_dataset("cifar10", root=args.data_root, device=device, seed=args.seed,
                            max_train=max_train, uint8=uint8)
        source = f"CIFAR-10 from {Path(args.data_root).resolve()}"
    except DatasetNotFoundError:
        rng = np.random.default_rng(args.seed)
        def images(n: int) -> np.ndarray:
            return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        n_test = min(args.val_images, 1000)  # not used by the search
        data = DeviceData.from_pixels(
            "cifar10-synthetic", images(args.train_images), rng.integers(0, 10, args.train_images),
            images(args.val_images), rng.integers(0, 10, args.val_images), images(n_test),
            rng.integers(0, 10, n_test), num_classes=10, crop_padding=4, flip=True, device=device, uint8=uint8)
        source = (f"synthetic CIFAR-10-shaped uint8 tensors (no cifar-10-batches-py under "
                  f"{Path(args.data_root).resolve()}; random labels: accuracies are chance)")
    if len(data.val_y) > args.val_images:  # the first ones (CIFAR-10's files are in random order)
        data = dataclasses.replace(data, val_x=data.val_x[:args.val_images].clone(),
                                   val_y=data.val_y[:args.val_images].clone())
    return data, source


def storage_line(data: DeviceData) -> str:
    stored = data.storage_bytes()
    as_float = {s: getattr(data, f"{s}_x").numel() * 4 for s in stored}
    parts = [f"{s} {getattr(data, f'{s}_x').dtype}".replace("torch.", "") + f" {stored[s] / MB:,.1f} MB"
             for s in stored]
    per_image = data.train_x[0].numel()
    return (f"images on the device: {' | '.join(parts)} = {sum(stored.values()) / MB:,.1f} MB "
            f"(all float32: {sum(as_float.values()) / MB:,.1f} MB; {per_image * data.train_x.element_size():,} "
            f"bytes per training image, float32 {per_image * 4:,})")


# --------------------------------------------------------------------------------------------------
# architectures of the first levels, and the probes
# --------------------------------------------------------------------------------------------------
def random_path(space: MacroSpace, depth: int, rng: np.random.Generator):
    arch = space.root()
    for _ in range(depth):
        arch = space.child(arch, int(rng.integers(space.num_children(arch))))
    return arch


def plan_trials(space: MacroSpace, args) -> list[tuple[str, object]]:
    """(label, arch) in the order they train: levels 1..--levels, then the probes."""
    rng = np.random.default_rng([args.seed, 1])
    plan: list[tuple[str, object]] = [("level 1", a) for a in space.initial()]
    previous = [a for _, a in plan]
    for level in range(2, args.levels + 1):
        archs = []
        for _ in range(args.trials_per_level):
            parent = previous[int(rng.integers(len(previous)))]
            archs.append(space.child(parent, int(rng.integers(space.num_children(parent)))))
        plan += [(f"level {level}", a) for a in archs]
        previous = archs
    for depth in args.probe_depths:
        if depth > args.levels:
            plan += [(f"probe {depth}", random_path(space, depth, rng)) for _ in range(args.probe_trials)]
    return plan


# --------------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_trial(obj: SupernetTrainer, trainer, arch, step: int) -> tuple[float, float, float]:
    """(train seconds, evaluation seconds, validation accuracy) of one trial."""
    dev = obj.data.device
    sync(dev)
    t0 = time.perf_counter()
    trainer(arch, step)
    sync(dev)
    t1 = time.perf_counter()
    acc = obj.evaluate(arch)
    sync(dev)
    return t1 - t0, time.perf_counter() - t1, acc


def interpolate(depths: list[int], values: list[float], at: int) -> float:
    """Linear in depth through the measured points; beyond them, the nearest two points' line."""
    if len(depths) == 1:
        return values[0] * at / depths[0]  # one point: proportional to depth
    i = int(np.searchsorted(depths, at))
    i = min(max(i, 1), len(depths) - 1)
    d0, d1, v0, v1 = depths[i - 1], depths[i], values[i - 1], values[i]
    return v0 + (v1 - v0) * (at - d0) / (d1 - d0)


def count_syncs(device: torch.device, fn) -> int:
    """Host synchronisations torch reports while ``fn()`` runs (CUDA only)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


# --------------------------------------------------------------------------------------------------
# bytes a training step must move
# --------------------------------------------------------------------------------------------------
def step_bytes(obj: SupernetTrainer, arch, x: torch.Tensor, y: torch.Tensor) -> dict[str, int]:
    """Lower bound of the memory traffic of one training step on batch (x, y) of the path ``arch``."""
    net = obj.net
    weights = {p.untyped_storage().data_ptr() for p in net.parameters()}  # counted below, once
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in weights:
            storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast(obj.data.device.type, torch.bfloat16, enabled=obj.amp):
            loss = F.cross_entropy(net(obj._layout(x), arch), y)
    del loss  # no backward: the graph is dropped, nothing trained
    path = n_params(net.path_parameters(arch))
    saved = sum(storages.values())
    # saved tensors: written in the forward, read in the backward; float32 weights read (forward),
    # gradients written (backward), then clip + Nesterov SGD read weight, gradient, momentum and
    # write weight, momentum: 7 float32 passes over the path's parameters
    return {"saved": saved, "input": x.numel() * x.element_size(), "params": path,
            "total": 2 * saved + x.numel() * x.element_size() + 7 * 4 * path}


def nominal_bandwidth(device: torch.device) -> float | None:
    """Bytes/s from the device's memory clock and bus width (double data rate), or None."""
    if device.type != "cuda":
        return None
    p = torch.cuda.get_device_properties(device)
    clock_khz, bus_bits = getattr(p, "memory_clock_rate", 0), getattr(p, "memory_bus_width", 0)
    if not clock_khz or not bus_bits:
        return None
    return 2 * clock_khz * 1e3 * bus_bits / 8


# --------------------------------------------------------------------------------------------------
# --cuda-graphs: one captured training step per architecture
# --------------------------------------------------------------------------------------------------
def snapshot(obj: SupernetTrainer) -> dict:
    return copy.deepcopy(obj.get_state())


def rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """||a - b|| / ||a|| over all the tensors together (one tensor's own scale can be ~0: a BN shift
    followed by another BN has no gradient but rounding)."""
    num = sum(float((x.detach().double() - y.detach().double()).square().sum()) for x, y in zip(a, b, strict=True))
    den = sum(float(x.detach().double().square().sum()) for x in a)
    return math.sqrt(num) / max(math.sqrt(den), 1e-30)


def weights(state: dict) -> list[torch.Tensor]:
    return [v for v in state["model"].values() if v.is_floating_point()]


def check_captured(obj: SupernetTrainer, arch, step: int = 12345) -> str:
    """Eager twice (the device's own run-to-run noise) and captured once (``SupernetTrainer.cuda_graphs``),
    from one state, one trial of ``arch`` each on the same batches. What the captured run ends with must
    differ from the eager run by a small part of what the training changed (at most 1%, or 4x eager's own
    run-to-run difference)."""
    start, was = snapshot(obj), obj.cuda_graphs
    runs = []
    for graphs in (False, False, True):
        obj.set_state(copy.deepcopy(start))
        obj.cuda_graphs = graphs
        obj.train(arch, step)
        runs.append(snapshot(obj))
    obj.cuda_graphs = was
    obj.set_state(start)
    w0, eager, again, captured = (weights(s) for s in (start, *runs))
    change = [e - w for e, w in zip(eager, w0)]
    noise = rel_diff(change, [a - w for a, w in zip(again, w0)])
    diff = rel_diff(change, [c - w for c, w in zip(captured, w0)])
    if diff > max(4 * noise, 1e-2):
        raise SystemExit(f"--cuda-graphs: the captured step trains differently from the eager one: after a trial "
                         f"the weights differ by {diff:.2e} of the training's change (eager vs eager "
                         f"{noise:.2e}): not timing it")
    return (f"--cuda-graphs check: captured vs eager after a trial: weights differ by {diff:.2e} of the "
            f"training's change (eager vs eager {noise:.2e})")


# --------------------------------------------------------------------------------------------------
# --compile: every op module compiled in place
# --------------------------------------------------------------------------------------------------
def op_modules(net) -> list[tuple[str, torch.nn.Module, int]]:
    """(name, module, 0-based stage) of every module the supernet's forward calls on a path."""
    out = [("stem", net.stem, 0)]
    stage = 0
    for i, layer in enumerate(net.layers):
        if str(i) in net.reductions:
            out.append((f"reductions.{i}", net.reductions[str(i)], stage))
            stage += 1
        out += [(f"layers.{i}.ops.{n}", m, stage) for n, m in layer.ops.items()]
        if layer.merge_bn is not None:
            out.append((f"layers.{i}.merge_bn", layer.merge_bn, stage))
    return out


def compile_supernet(obj: SupernetTrainer, arch, sizes: list[int], eval_sizes: list[int]) -> str:
    """Compile each op module; run every (module, batch size) once untimed, in training and in eval
    mode, so that the trials do not pay the compilation; check a full path against eager."""
    import torch._dynamo

    net, data = obj.net, obj.data
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 256))
    x, y = next(data.train_batches(obj.batch_size, make_generator(data.device, 0)))
    with torch.autocast(data.device.type, torch.bfloat16, enabled=obj.amp):
        ref = net(obj._layout(x), arch).float()
        ref_loss = F.cross_entropy(ref, y)
    ref_grads = torch.autograd.grad(ref_loss, net.path_parameters(arch))
    modules = op_modules(net)
    for _, m, _ in modules:
        m.compile()
    started = time.perf_counter()
    c, hw = net.channels, data.image_size
    for name, m, stage in modules:
        size = math.ceil(hw / 2 ** stage)  # the module's input resolution (a strided 3x3 conv: ceil)
        channels = data.in_channels if name == "stem" else c
        for train, batch_sizes in ((True, sizes), (False, eval_sizes)):
            m.train(train)
            for n in batch_sizes:
                inp = obj._layout(torch.randn(n, channels, size, size, device=data.device, requires_grad=train))
                with torch.set_grad_enabled(train), torch.autocast(data.device.type, torch.bfloat16, enabled=obj.amp):
                    out = m(inp)
                if train:
                    out.float().sum().backward()
    net.zero_grad(set_to_none=True)
    net.train()
    sync(data.device)
    seconds = time.perf_counter() - started
    with torch.autocast(data.device.type, torch.bfloat16, enabled=obj.amp):
        got = net(obj._layout(x), arch).float()
        loss = F.cross_entropy(got, y)
    grads = torch.autograd.grad(loss, net.path_parameters(arch))
    tol = 5e-2 if obj.amp else 1e-3
    logit_diff, grad_diff = rel_diff([ref], [got]), rel_diff(list(ref_grads), list(grads))
    if logit_diff > tol or grad_diff > tol:
        raise SystemExit(f"--compile: the compiled path differs from eager (logits {logit_diff:.2e}, gradients "
                         f"{grad_diff:.2e}, tolerance {tol:.0e}): not timing it")
    return (f"compiled {len(modules)} op modules; untimed compilation {seconds:.1f} s; vs eager on one batch: "
            f"relative difference (L2) logits {logit_diff:.2e}, gradients {grad_diff:.2e}")


# --------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="cpu, cuda or cuda:N")
    ap.add_argument("--data-root", default="./data", help="where cifar-10-batches-py is looked for")
    ap.add_argument("--train-images", type=int, default=45000, help="training images used (a CPU: fewer)")
    ap.add_argument("--val-images", type=int, default=5000, help="validation images each trial evaluates")
    ap.add_argument("--project-train-images", type=int, default=45000,
                    help="training split of the projected search (times scale per image)")
    ap.add_argument("--project-val-images", type=int, default=5000, help="validation split of the projected search")
    ap.add_argument("--storage", choices=("uint8-train", "float32"), default="uint8-train",
                    help="uint8-train: training images as uint8 pixels on the device, normalised per batch")
    ap.add_argument("--layers", type=int, default=12, help="L of MacroSpace(num_layers=L)")
    ap.add_argument("--channels", type=int, default=24, help="C, the supernet width")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per trial")
    ap.add_argument("--k", type=int, default=25, help="K of the projected schedule")
    ap.add_argument("--iterations", type=int, default=3, help="iterations of the projected schedule")
    ap.add_argument("--levels", type=int, default=2, help="levels of the search actually trained")
    ap.add_argument("--trials-per-level", type=int, default=4, help="sampled architectures per level >= 2")
    ap.add_argument("--probe-depths", default="4,12",
                    help="comma-separated depths (beyond --levels) trained with random architectures")
    ap.add_argument("--probe-trials", type=int, default=1, help="random architectures per probe depth")
    ap.add_argument("--batch-size", type=int, default=None, help=f"default: 256 on CUDA, {CPU_BATCH} on the CPU")
    ap.add_argument("--lr", type=float, default=None,
                    help=f"default: {CPU_LR} x batch / {CPU_BATCH} (the objective's CPU setting, scaled linearly)")
    ap.add_argument("--eval-batch-size", type=int, default=1000)
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                    help="bf16 autocast (default: on CUDA only, as the objective)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="channels_last (default: on CUDA only, as the objective)")
    ap.add_argument("--compare-reps", type=int, default=3,
                    help="interleaved epochs of the 12-layer path: supernet vs plain nn.Module (0: skip)")
    ap.add_argument("--bandwidth-gbs", type=float, default=None,
                    help="memory bandwidth for the floor, GB/s (default: the CUDA device's nominal one; "
                         "on the CPU no floor without it)")
    ap.add_argument("--cuda-graphs", action="store_true", help="capture each trial's training step (CUDA only)")
    ap.add_argument("--compile", action="store_true", help="torch.compile every op module of the supernet")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.device = torch.device(args.device)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")
    cuda = args.device.type == "cuda"
    args.batch_size = args.batch_size or (256 if cuda else CPU_BATCH)
    args.lr = args.lr if args.lr is not None else CPU_LR * args.batch_size / CPU_BATCH
    args.amp = cuda if args.amp is None else args.amp
    args.channels_last = cuda if args.channels_last is None else args.channels_last
    args.probe_depths = sorted({int(d) for d in args.probe_depths.split(",") if d.strip()})
    if any(not 1 <= d <= args.layers for d in args.probe_depths):
        ap.error(f"--probe-depths must be in 1..{args.layers}")
    if not 1 <= args.levels <= args.layers:
        ap.error(f"--levels must be in 1..{args.layers}")
    if args.compile and args.cuda_graphs:
        ap.error("--compile and --cuda-graphs: choose one")
    for name in ("train_images", "val_images", "project_train_images", "project_val_images", "trials_per_level",
                 "probe_trials", "epochs"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    cuda = dev.type == "cuda"
    kind = "GPU" if cuda else "CPU"
    load0 = os.getloadavg()[0]
    dev_name = torch.cuda.get_device_name(dev) if cuda else cpu_name()
    print(f"torch {torch.__version__} | python {platform.python_version()} | device {dev} ({dev_name}) | "
          f"threads {torch.get_num_threads()} (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')})")

    data, source = make_data(args, dev)
    space = MacroSpace(num_layers=args.layers)
    print(f"data: {source}; {len(data.train_y):,} train / {len(data.val_y):,} val images")
    print(storage_line(data))
    print(f"supernet: {space!r}, reductions after layers {space.reduction_layers()}, C={args.channels} | "
          f"{args.epochs} epochs per trial | batch {args.batch_size}, lr {args.lr:g} | amp(bf16) {args.amp} | "
          f"channels_last {args.channels_last} | eval batch {args.eval_batch_size}")

    def supernet(epochs: int) -> SupernetTrainer:
        obj = SupernetTrainer(space, data, epochs=epochs, channels=args.channels, batch_size=args.batch_size,
                              lr=args.lr, seed=args.seed, amp=args.amp, channels_last=args.channels_last,
                              eval_batch_size=args.eval_batch_size)
        obj.cuda_graphs = False  # eager, as the plain module it is compared with; --cuda-graphs turns the trials' on
        obj.start()
        return obj

    obj = supernet(args.epochs)
    print(f"supernet parameters: {n_params(obj.net.parameters()):,}")
    plan = plan_trials(space, args)
    deepest = max(plan, key=lambda p: p[1].level)[1]

    trainer = obj.train
    mode = "eager"
    if args.cuda_graphs:
        if not cuda:
            print("--cuda-graphs: skipped (needs CUDA; this run is on the CPU): the trials train eagerly")
        else:
            print(check_captured(obj, deepest))
            obj.cuda_graphs, mode = True, "CUDA graph per architecture (SupernetTrainer.cuda_graphs)"
    if args.compile:
        partial = len(data.train_y) % args.batch_size
        rest = len(data.val_y) % args.eval_batch_size
        sizes = sorted({args.batch_size, partial or max(1, args.batch_size // 2)})
        eval_sizes = sorted({min(args.eval_batch_size, len(data.val_y)), rest or max(1, args.eval_batch_size // 2)})
        print(compile_supernet(obj, deepest, sizes, eval_sizes))
        mode = "torch.compile per op module"
    if args.compile and not cuda:
        print("note: --compile on the CPU: these are CPU numbers; what it does on a GPU is not measured here")

    # -- host synchronisations (CUDA): one untimed trial on a throwaway supernet --------------------------
    if cuda:
        probe = supernet(1)
        arch = plan[0][1]
        probe.train(arch, step=0)  # lazy initialisation outside the count
        sync(dev)
        n_train = count_syncs(dev, lambda: probe.train(arch, step=1))
        n_eval = count_syncs(dev, lambda: probe.evaluate(arch))
        print(f"host synchronisations (torch.cuda.set_sync_debug_mode): training 1 epoch {n_train} "
              f"(the objective's once-per-epoch finite check is 1); evaluating {len(data.val_y):,} images "
              f"{n_eval} (SupernetTrainer.evaluate takes int() per eval batch)")
        del probe

    # -- the trials ---------------------------------------------------------------------------------------
    print(f"\n{len(plan)} trials ({mode} training; times include the data pipeline):")
    rows = []
    for step, (label, arch) in enumerate(plan):
        train_s, eval_s, acc = timed_trial(obj, trainer, arch, step)
        rows.append((arch.level, train_s, eval_s))
        key = arch.key if len(arch.key) <= 70 else arch.key[:67] + "..."
        print(f"  {label:<9} depth {arch.level:>2}: train {train_s:8.2f} s "
              f"({args.epochs * len(data.train_y) / train_s:8,.0f} img/s) | eval {eval_s:6.2f} s | "
              f"val acc {acc:.3f} | {key}", flush=True)

    depths = sorted({d for d, _, _ in rows})
    scale_train = args.project_train_images / len(data.train_y)
    scale_val = args.project_val_images / len(data.val_y)
    med_train = {d: statistics.median(t for dd, t, _ in rows if dd == d) for d in depths}
    med_eval = {d: statistics.median(e for dd, _, e in rows if dd == d) for d in depths}
    full = {d: med_train[d] * scale_train + med_eval[d] * scale_val for d in depths}
    print(f"\nper depth (median over its trials; 'at full size' scales per image to "
          f"{args.project_train_images:,} train / {args.project_val_images:,} val images):")
    print(f"  {'depth':>5} {'trials':>6} {'train s':>9} {'train img/s':>12} {'eval s':>8} {'eval img/s':>11} "
          f"{'s/trial at full size':>21}")
    for d in depths:
        n = sum(1 for dd, _, _ in rows if dd == d)
        print(f"  {d:>5} {n:>6} {med_train[d]:>9.2f} {args.epochs * len(data.train_y) / med_train[d]:>12,.0f} "
              f"{med_eval[d]:>8.2f} {len(data.val_y) / med_eval[d]:>11,.0f} {full[d]:>21.1f}")

    # -- projection -------------------------------------------------------------------------------------
    sizes = stage_sizes(space, args.k)
    total_trials = planned_trials(space, args.k, args.iterations)
    per_level = [(level, args.iterations * n, interpolate(depths, [full[d] for d in depths], level))
                 for level, n in enumerate(sizes, start=1)]
    projected_s = sum(n * t for _, n, t in per_level)
    print(f"\nprojection, schedule K={args.k}, L={args.layers}, {args.iterations} iterations = {total_trials} trials "
          f"(per iteration {sizes}); seconds per trial interpolated linearly in depth from depths {depths}:")
    print("  " + " | ".join(f"L{level}: {n} x {t:,.1f} s" for level, n, t in per_level))
    warm = interpolate(depths, [med_train[d] * scale_train for d in depths], args.layers) / args.epochs
    print(f"PROJECTED paper-size search on {dev} ({dev_name}): {projected_s / 60:,.1f} {kind}-minutes "
          f"({projected_s / 3600:,.2f} {kind}-hours) of training + evaluation, "
          f"{args.project_train_images:,} train / {args.project_val_images:,} val images, batch {args.batch_size}, "
          f"{mode}{'' if cuda else ' -- a CPU measurement, not a GPU one'}")
    print(f"  + epnas search's default 1 warm-up epoch at depth {args.layers}: {warm / 60:,.1f} {kind}-minutes "
          f"(the paper's setting has none); not counted: the sampler's surrogate, checkpoint writes")

    result = {"device": str(dev), "kind": kind, "projected_minutes": projected_s / 60, "trials": total_trials,
              "per_depth_seconds": full, "mode": mode}

    # -- against a plain nn.Module of the same 12-layer path ---------------------------------------------
    path = deepest
    if args.compare_reps > 0:
        cmp_obj = supernet(1)
        plain = PlainNet(path, space.reduction_layers(), data.num_classes, data.in_channels, args.channels)
        fmt = torch.channels_last if args.channels_last else torch.contiguous_format
        plain = plain.to(dev, memory_format=fmt)
        plain.copy_from_supernet(cmp_obj.net, path)
        x, y = next(data.train_batches(args.batch_size, make_generator(dev, 0)))
        with torch.no_grad(), torch.autocast(dev.type, torch.bfloat16, enabled=args.amp):
            diff = float((plain(cmp_obj._layout(x)).float() - cmp_obj.net(cmp_obj._layout(x), path).float()).abs().max())
        runner = Runner("plain", plain, plain.parameters(), None,
                        types.SimpleNamespace(lr=args.lr, amp=args.amp, grad_clip=5.0), dev)
        gen = make_generator(dev, args.seed + 7)

        def plain_epoch() -> None:
            for bx, by in data.train_batches(args.batch_size, gen):
                runner.step(cmp_obj._layout(bx), by)

        times = {"supernet": [], "plain": []}
        for rep in range(args.compare_reps):
            for name, fn in (("supernet", lambda: cmp_obj.train(path, step=rep)), ("plain", plain_epoch)):
                sync(dev)
                t0 = time.perf_counter()
                fn()
                sync(dev)
                times[name].append(time.perf_counter() - t0)
        s, p = statistics.median(times["supernet"]), statistics.median(times["plain"])
        paired = statistics.median(a / b for a, b in zip(times["supernet"], times["plain"]))
        print(f"\nsupernet path vs plain nn.Module (bench_supernet.PlainNet) of the depth-{path.level} path, "
              f"{args.compare_reps} interleaved epochs each (eager, same batches pipeline; logits max |diff| "
              f"{diff:.1e}):")
        print(f"  supernet {len(data.train_y) / s:,.0f} img/s | plain {len(data.train_y) / p:,.0f} img/s | "
              f"ratio supernet time / plain time = {s / p:.3f} (median of per-epoch ratios {paired:.3f})")
        result["supernet_over_plain"] = s / p
        del cmp_obj, plain, runner

    # -- the memory-bandwidth floor ------------------------------------------------------------------------
    bandwidth = args.bandwidth_gbs * 1e9 if args.bandwidth_gbs else nominal_bandwidth(dev)
    x, y = next(data.train_batches(args.batch_size, make_generator(dev, 0)))
    print(f"\nmemory traffic of one training step (batch {args.batch_size}; lower bound: saved tensors written "
          "once and read once, the input, 7 float32 passes over the path's weights/gradients/momentum; "
          "activation gradients and kernel launches not counted):")
    for d in depths:  # the median over the depth's trained architectures
        measured = [step_bytes(obj, a, x, y) for _, a in plan if a.level == d]
        b = {k: statistics.median(m[k] for m in measured) for k in ("total", "saved", "params")}
        step_s = med_train[d] / (args.epochs * math.ceil(len(data.train_y) / args.batch_size))
        line = (f"  depth {d:>2}: {b['total'] / MB:,.1f} MB (saved {b['saved'] / MB:,.1f} MB, path "
                f"{b['params']:,.0f} parameters; medians of {len(measured)}) | measured {1000 * step_s:,.2f} ms/step")
        if bandwidth:
            floor = b["total"] / bandwidth
            line += f" | floor {1000 * floor:,.3f} ms -> measured / floor = {step_s / floor:,.1f}x"
        print(line)
    if bandwidth:
        origin = "--bandwidth-gbs" if args.bandwidth_gbs else "the device's memory clock x bus width (nominal)"
        print(f"  bandwidth {bandwidth / 1e9:,.0f} GB/s from {origin}; measured ms/step includes the data pipeline")
    else:
        print("  floor not computed: no bandwidth on the CPU (give --bandwidth-gbs to estimate one)")
    if cuda:
        print(f"peak device memory: {torch.cuda.max_memory_allocated(dev) / MB:,.0f} MB")
    report_load(load0)
    return result


if __name__ == "__main__":
    main()
