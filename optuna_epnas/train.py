"""Final training: the found architecture as a stand-alone network, trained from scratch.

A search ranks architectures by the accuracy of a supernet path after a few epochs of shared
training. What a found architecture is worth is the test accuracy of its own network trained alone
for a full schedule, best compared with a plain CNN of the same size trained the same way. That is
what ``epnas train`` measures (``train_command``), with :func:`best_architecture`,
:func:`train_final` and :func:`baseline_cnn` as the pieces.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import torch
import torch.nn.functional as F
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from optuna_epnas import distributed
from optuna_epnas.argtypes import add_data_arguments, load_data, positive_float, positive_int
from optuna_epnas.checkpoint import safe_name
from optuna_epnas.data import DeviceData, available_datasets, make_generator
from optuna_epnas.draw import draw_arch
from optuna_epnas.export import ModelSpec
from optuna_epnas.objective import OBJECTIVE_ATTR
from optuna_epnas.spaces import MacroSpace, MicroSpace, SearchSpace, space_from_spec
from optuna_epnas.sampler.pareto import full_depth_front
from optuna_epnas.values import accuracy_of
from optuna_epnas.storages import open_storage, public_url

RESULT_FORMAT = "optuna_epnas.train/1"
#: Final-training widths that train on a CPU in minutes on digits (the paper: macro 200-512, micro 96-128).
DEFAULT_CHANNELS = {"macro": 64, "micro": 32}


# -- which architecture ----------------------------------------------------------------------------
def best_architecture(study: optuna.Study, number: int | None = None) -> tuple[SearchSpace, Any, FrozenTrial]:
    """The best full-size architecture of a search, by its measured (supernet validation) value, or
    trial ``number``'s (a Pareto-front member of a two-objective search: it has no single best).

    Only COMPLETE trials whose ``level`` is the space's ``max_level`` count: a progressive search
    also measures shallower architectures, whose values are not comparable and which are not what
    the search set out to find. Returns ``(space, arch, trial)``.
    """
    # Optuna 5 has no public getter for study system attributes; objective.py writes it the same way.
    spec = study._storage.get_study_system_attrs(study._study_id).get(OBJECTIVE_ATTR)
    if not isinstance(spec, dict) or "space" not in spec:
        raise ValueError(
            f"study {study.study_name!r} has no {OBJECTIVE_ATTR!r} attribute: it was not made by an optuna_epnas "
            "search (SupernetObjective / `epnas search`); pass the architecture with --arch KEY instead")
    space = space_from_spec(spec["space"])
    trials = study.get_trials(deepcopy=False)
    if number is not None:
        chosen = next((t for t in trials if t.number == number), None)
        if chosen is None or chosen.state != TrialState.COMPLETE or "arch" not in chosen.user_attrs:
            raise ValueError(f"study {study.study_name!r} has no complete trial {number} with an architecture "
                             f"(it has {len(trials)} trials, numbered 0-{len(trials) - 1})")
        return space, space.parse(chosen.user_attrs["arch"]), chosen
    if study._is_multi_objective():
        front = [t.number for t in full_depth_front(study, space.max_level)]
        raise ValueError(f"study {study.study_name!r} has {len(study.directions)} objectives, so no single best: "
                         f"pick a member of its full-depth Pareto front with --trial N (trials {front})")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    full = [t for t in complete if t.user_attrs.get("level") == space.max_level and "arch" in t.user_attrs]
    if not full:
        levels = sorted({t.user_attrs.get("level") for t in complete}, key=lambda v: (v is None, v))
        counts = ", ".join(
            f"{sum(t.user_attrs.get('level') == v for t in complete)} at level {v}" for v in levels) or "none"
        raise ValueError(
            f"study {study.study_name!r} has no complete full-size trial (level {space.max_level}): it has "
            f"{len(trials)} trials, {len(complete)} complete ({counts}); let the search finish (re-run the "
            "same `epnas search` command to resume it)")
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    best = pick(full, key=accuracy_of)
    return space, space.parse(best.user_attrs["arch"]), best


# -- training ------------------------------------------------------------------------------------
@dataclass
class EpochRecord:
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float  # on augmented batches, with the weights as they were during the epoch
    val_accuracy: float
    lr: float  # learning rate at the end of the epoch (0 after the last one)
    seconds: float


@dataclass
class TrainResult:
    history: list[EpochRecord]
    test_accuracy: float
    val_accuracy: float  # of the final weights
    params: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def evaluate(
    model: nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, batch_size: int = 1000,
    amp: bool | None = None, channels_last: bool | None = None,
) -> float:
    """Accuracy of ``model`` (in eval mode: BN running statistics) on ``x_all``/``y_all``."""
    cuda = x_all.device.type == "cuda"
    amp = cuda if amp is None else amp
    channels_last = cuda if channels_last is None else channels_last
    model.eval()
    correct = 0
    for i in range(0, len(x_all), batch_size):
        with torch.autocast(x_all.device.type, torch.bfloat16, enabled=amp):
            logits = model(_layout(x_all[i:i + batch_size], channels_last))
        correct += int((logits.argmax(1) == y_all[i:i + batch_size]).sum())
    return correct / len(x_all)


def train_final(
    model: nn.Module, data: DeviceData, epochs: int, lr: float = 0.05, batch_size: int = 128,
    momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0,
    progress: Callable[[EpochRecord], None] | None = None, amp: bool | None = None,
    channels_last: bool | None = None,
) -> TrainResult:
    """Train ``model`` on ``data``'s train split; report validation per epoch and test at the end.

    SGD with Nesterov momentum, the learning rate decayed by a cosine to 0 over all steps, the data
    set's augmentation. ``seed`` fixes the data order and augmentation (initialise the model
    seeded yourself): on the CPU two runs give the same numbers. bf16 autocast and channels_last
    default to on for CUDA only. The model is moved to the data's device and trained in place.
    The test split is evaluated once, at the end; nothing here chooses anything by it.
    Under ``torchrun`` each rank trains its shard of every batch (PyTorch's DDP: gradients averaged,
    BN running statistics from rank 0); every rank ends with the same weights and numbers.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    device = data.device
    cuda = device.type == "cuda"
    amp = cuda if amp is None else amp
    channels_last = cuda if channels_last is None else channels_last
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0,
                                weight_decay=weight_decay)
    rank, size = distributed.rank_and_size()
    trained = model if size == 1 else torch.nn.parallel.DistributedDataParallel(model)
    steps = epochs * math.ceil(len(data.train_x) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=0.0)
    generator = make_generator(device, seed)
    history: list[EpochRecord] = []
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        # Sums stay on the device: one synchronisation per epoch, not per step.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for x, y in data.train_batches(batch_size, generator):
            if size > 1:  # this rank's shard (the same batches on every rank); a batch too small for
                if len(y) < size:  # every rank to get an image is skipped by all of them
                    schedule.step()
                    continue
                x, y = x[rank::size], y[rank::size]
            with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                logits = trained(_layout(x, channels_last))
                loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach().float() * len(y)
            correct += (logits.argmax(1) == y).sum()
        if size > 1:
            torch.distributed.all_reduce(loss_sum)
            torch.distributed.all_reduce(correct)
        n = len(data.train_x)
        train_loss = loss_sum.item() / n
        if not math.isfinite(train_loss):
            raise RuntimeError(f"training diverged in epoch {epoch} (loss {train_loss}); try a smaller --lr")
        record = EpochRecord(
            epoch=epoch, epochs=epochs, train_loss=train_loss, train_accuracy=correct.item() / n,
            val_accuracy=evaluate(model, data.images("val"), data.val_y, amp=amp, channels_last=channels_last),
            lr=schedule.get_last_lr()[0], seconds=round(time.perf_counter() - epoch_started, 3),
        )
        history.append(record)
        if progress is not None:
            progress(record)
    if size > 1:
        for buffer in model.buffers():  # BN running statistics: rank 0's, as DDP's next forward would take
            torch.distributed.broadcast(buffer, 0)
        distributed.check_identical(model, optimizer)  # DDP keeps them so; a bug would not pass silently
    test_accuracy = evaluate(model, data.images("test"), data.test_y, amp=amp, channels_last=channels_last)
    return TrainResult(
        history=history, test_accuracy=test_accuracy, val_accuracy=history[-1].val_accuracy,
        params=sum(p.numel() for p in model.parameters()), seconds=round(time.perf_counter() - started, 3),
    )


# -- the plain baseline ----------------------------------------------------------------------------
class PlainCNN(nn.Sequential):
    """Three stages of ``depth`` conv3x3-BN-ReLU layers at a constant ``width``, max-pooled by 2
    between stages, then global average pooling and a linear classifier.

    Constant width as in the macro network, so "same size" means same width and depth budget, not
    a different shape; the searched network's ops and skips are what differs.
    """

    def __init__(self, num_classes: int, in_channels: int, width: int, depth: int = 2) -> None:
        layers: list[nn.Module] = []
        c_in = in_channels
        for stage in range(3):
            if stage:  # ceil_mode: odd sizes halve without dropping a row (28 -> 14 -> 7, 7 -> 4)
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            for _ in range(depth):
                layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                c_in = width
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
        self.width, self.depth = width, depth


def _plain_params(num_classes: int, in_channels: int, width: int, depth: int) -> int:
    with torch.device("meta"):  # counted without allocating
        return sum(p.numel() for p in PlainCNN(num_classes, in_channels, width, depth).parameters())


def baseline_cnn(num_classes: int, in_channels: int, target_params: int, depth: int = 2) -> PlainCNN:
    """A :class:`PlainCNN` whose width makes its parameter count closest to ``target_params``.

    The count is a quadratic in the width, so three counts give it exactly and the width is its
    root, rounded to the nearer integer. Rounding errs by at most about 1/width relative: within
    10% once the width is 10 or more (about 5k parameters and up with the default depth).
    """
    if isinstance(target_params, bool) or not isinstance(target_params, (int, np.integer)) or target_params < 1:
        raise ValueError(f"target_params must be a positive integer, got {target_params!r}")
    widths = np.array([1.0, 2.0, 3.0])
    a, b, c = np.polyfit(widths, [_plain_params(num_classes, in_channels, int(w), depth) for w in widths], 2)
    root = (-b + math.sqrt(b * b - 4 * a * (c - target_params))) / (2 * a)
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    width = min(candidates, key=lambda w: abs(_plain_params(num_classes, in_channels, w, depth) - target_params))
    return PlainCNN(num_classes, in_channels, width, depth)


# -- the `epnas train` command -----------------------------------------------------------------------
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except ``None``: those options say in their help what they default to."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def add_train_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``train`` to the subparsers object of the ``epnas`` parser; returns the subparser."""
    t = commands.add_parser(
        "train", help="train a found architecture from scratch and measure its test accuracy",
        description="Train the best full-size architecture of a search (--study), or a given one (--arch), "
                    "as a stand-alone network from scratch; report its test accuracy, optionally next to a "
                    "plain CNN of the same size (--baseline).",
        formatter_class=_HelpFormatter,
    )
    source = t.add_argument_group("which architecture (exactly one of --study / --arch)")
    source.add_argument("--study", default=None, metavar="NAME",
                        help="a search study: train its best full-size architecture")
    source.add_argument("--storage", default="sqlite:///epnas.db", help="Optuna storage URL of --study")
    source.add_argument("--trial", type=int, default=None, metavar="N",
                        help="with --study: this trial's architecture (a Pareto-front member) instead of the best")
    source.add_argument("--arch", default=None, metavar="KEY", help="an architecture key, e.g. 'conv3x3 | sep5x5[0]'")
    source.add_argument("--space", choices=("macro", "micro"), default=None,
                        help="the space of an --arch key (default: macro; a --study brings its own)")
    source.add_argument("--layers", type=positive_int, default=12,
                        help="macro --arch: layers of the space (it sets where the resolution halves)")
    source.add_argument("--blocks", type=positive_int, default=5, help="micro --arch: blocks of a cell")
    add_data_arguments(t, available_datasets(), dataset_default=None, from_search=True,
                       dataset_help="data set (default: the one the study searched on, else digits)")
    t.add_argument("--epochs", type=positive_int, default=30, help="training epochs, from scratch")
    t.add_argument("--channels", type=positive_int, default=None,
                   help=f"network width (default: {DEFAULT_CHANNELS['macro']} macro, {DEFAULT_CHANNELS['micro']} "
                        "micro: minutes on a CPU on digits; the paper trained 200-512 macro, 96-128 micro)")
    t.add_argument("--cells", type=positive_int, default=3,
                   help="micro: normal cells per stage (the paper's final training: 3; search: 2)")
    t.add_argument("--batch-size", type=positive_int, default=128, help="SGD batch size")
    t.add_argument("--lr", type=positive_float, default=0.05, help="initial learning rate, cosine-decayed to 0")
    t.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay")
    t.add_argument("--seed", type=int, default=0, help="initialisation, data order, augmentation, val split")
    t.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    t.add_argument("--out", default=None,
                   help="folder for model.pt, arch.json, result.json (default: epnas-train/<study name or 'arch'>)")
    t.add_argument("--baseline", action="store_true",
                   help="also train a plain CNN of the same parameter count with the same schedule, data and seed")
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    return t


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """Build a network from ``seed`` without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def load_search_study(name: str, storage: str) -> optuna.Study:
    opened = open_storage(storage, must_exist=True)  # load_study would create an empty database
    try:
        return optuna.load_study(study_name=name, storage=opened)
    except KeyError:
        names = optuna.get_all_study_names(opened)
        raise ValueError(f"no study {name!r} in {public_url(storage)}; studies there: "
                         + (", ".join(repr(n) for n in names) or "none")) from None


def resolve_source(args: argparse.Namespace) -> tuple[SearchSpace, Any, dict[str, Any], dict[str, Any]]:
    """(space, arch, source description for result.json, the study's objective spec or {})."""
    if (args.study is None) == (args.arch is None):
        raise ValueError("give exactly one of --study NAME (train the best architecture of a search) "
                         "or --arch KEY (train a given architecture)")
    if getattr(args, "trial", None) is not None and args.study is None:
        raise ValueError("--trial picks a trial of a --study")
    if args.study is not None:
        if args.space is not None:
            raise ValueError("--space/--layers/--blocks describe an --arch key; a --study brings its own space")
        study = load_search_study(args.study, args.storage)
        space, arch, trial = best_architecture(study, args.trial)
        spec = study._storage.get_study_system_attrs(study._study_id)[OBJECTIVE_ATTR]
        source = {"study": study.study_name, "storage": public_url(args.storage), "trial": trial.number,
                  "supernet_val_accuracy": accuracy_of(trial), "search_channels": spec.get("channels"),
                  "search_dataset": spec.get("dataset")}
        return space, arch, source, spec
    space: SearchSpace = (MicroSpace(num_blocks=args.blocks) if args.space == "micro"
                          else MacroSpace(num_layers=args.layers))
    arch = space.parse(args.arch)
    if space.level(arch) == 0:
        raise ValueError("--arch is empty: give at least one layer or block")
    if isinstance(space, MacroSpace) and arch.level != space.max_level:
        # A shorter key in a deeper space builds a different network (fewer reductions): say so.
        raise ValueError(f"the --arch key has {arch.level} layers but the space has {space.max_level}: pass "
                         f"--layers {arch.level} (the depth of the search; it sets where the resolution halves)")
    return space, arch, {"arch": space.key(arch)}, {}


def _epoch_line(prefix: str) -> Callable[[EpochRecord], None]:
    def show(r: EpochRecord) -> None:
        print(f"{prefix}epoch {r.epoch:>3}/{r.epochs}  loss {r.train_loss:.4f}  train acc {r.train_accuracy:.4f}  "
              f"val acc {r.val_accuracy:.4f}  lr {r.lr:.5f}  {r.seconds:.1f}s", flush=True)

    return show


def _replace_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """Write via a temporary file, so a killed run leaves the previous file whole."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_run(out: str | os.PathLike, model: nn.Module, spec: ModelSpec, result: dict[str, Any]) -> Path:
    """Write ``model.pt`` (a CPU state_dict), ``arch.json`` and ``result.json`` into ``out``.

    Only these three files are replaced; anything else in ``out`` is left alone.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}  # loadable without the GPU
    _replace_atomically(out / "model.pt", lambda p: torch.save(state, p))
    _replace_atomically(out / "arch.json", spec.save)
    _replace_atomically(out / "result.json", lambda p: p.write_text(json.dumps(result, indent=2) + "\n"))
    return out


def draw_beside(out: Path, spec: ModelSpec) -> Path:
    """``arch.svg`` next to the model; the DOT source ``arch.gv`` where Graphviz's ``dot`` is not installed."""
    try:
        return draw_arch(spec, out / "arch.svg")
    except RuntimeError:
        return draw_arch(spec, out / "arch.gv")


def train_command(args: argparse.Namespace) -> int:
    """``epnas train``: see :func:`add_train_parser` for the options (under ``torchrun``: data-parallel
    over the ranks; rank 0 prints and writes)."""
    args.device = distributed.init_from_env(args.device)
    try:
        if distributed.rank_and_size()[0] > 0:
            import contextlib

            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                return _train_command(args, write=False)
        return _train_command(args)
    finally:
        distributed.shutdown()


def _train_command(args: argparse.Namespace, write: bool = True) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    space, arch, source, search_spec = resolve_source(args)
    kind = "micro" if isinstance(space, MicroSpace) else "macro"
    channels = args.channels or DEFAULT_CHANNELS[kind]
    name = args.study if args.study is not None else "arch"
    out = Path(args.out) if args.out else Path("epnas-train") / safe_name(name)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")

    dataset = args.dataset or search_spec.get("dataset") or "digits"
    data = load_data(args, dataset, args.seed, search=search_spec)
    spec = ModelSpec(space=space.spec(), arch=space.key(arch), num_classes=data.num_classes,
                     in_channels=data.in_channels, channels=channels, cells=args.cells if kind == "micro" else None)
    model = _seeded(args.seed, spec.build)
    params = sum(p.numel() for p in model.parameters())
    cuda = data.device.type == "cuda"
    settings = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "momentum": 0.9,
                "weight_decay": args.weight_decay, "seed": args.seed, "channels": channels, "cells": spec.cells,
                "dataset": dataset, "max_train": args.max_train, "image_size": data.image_size,
                "device": str(data.device),
                "amp_bf16": cuda, "channels_last": cuda}
    fit = dict(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, weight_decay=args.weight_decay,
               seed=args.seed)

    if "study" in source:
        print(f"epnas train: best full-size architecture of study {source['study']!r} "
              f"({source['storage']}), trial {source['trial']}:")
    else:
        print(f"epnas train: architecture given with --arch ({kind} space):")
    print(f"  {spec.arch}")
    if "study" in source:
        print(f"  supernet validation accuracy in the search: {source['supernet_val_accuracy']:.4f} "
              f"(a weight-sharing estimate for ranking, {source['search_channels']} channels, "
              f"{source['search_dataset']}; not this network's accuracy)")
    shape = (f"{space.max_level} layers" if kind == "macro"
             else f"{space.level(arch)} blocks, {spec.cells} cells per stage")
    print(f"  stand-alone network: {kind}, {shape}, {channels} channels, {params:,} parameters")
    print(f"training from scratch: {args.epochs} epochs on {dataset} ({len(data.train_x)} train / "
          f"{len(data.val_x)} val / {len(data.test_x)} test images) on {data.device}"
          + (f" × {distributed.rank_and_size()[1]} ranks" if distributed.rank_and_size()[1] > 1 else "")
          + (" (bf16 autocast, channels_last)" if cuda else ""), flush=True)

    result = train_final(model, data, progress=None if args.quiet else _epoch_line("  "), **fit)
    baseline: dict[str, Any] | None = None
    if args.baseline:
        plain = _seeded(args.seed, lambda: baseline_cnn(data.num_classes, data.in_channels, params))
        print(f"baseline: plain CNN, width {plain.width}, {sum(p.numel() for p in plain.parameters()):,} "
              "parameters, same schedule, data and seed", flush=True)
        base = train_final(plain, data, progress=None if args.quiet else _epoch_line("  baseline "), **fit)
        baseline = {"model": "PlainCNN", "width": plain.width, "depth": plain.depth, **base.to_dict()}

    record = {
        "format": RESULT_FORMAT, "arch": spec.arch, "space": space.spec(), "source": source,
        "test_accuracy": result.test_accuracy, "val_accuracy": result.val_accuracy, "params": result.params,
        "epochs": args.epochs, "seconds": result.seconds, "history": result.to_dict()["history"],
        "settings": settings, "normalisation": {"mean": list(data.mean), "std": list(data.std)},
        "baseline": baseline,
    }
    if not write:  # a rank other than 0: rank 0 saves the same weights
        return 0
    save_run(out, model, spec, record)
    picture = draw_beside(out, spec)

    print(f"\ntest accuracy of the stand-alone network trained from scratch: {result.test_accuracy:.4f} "
          f"({result.params:,} parameters, final val {result.val_accuracy:.4f}, {result.seconds:.1f}s)")
    if baseline is not None:
        print(f"test accuracy of the plain CNN baseline:                        {baseline['test_accuracy']:.4f} "
              f"({baseline['params']:,} parameters, final val {baseline['val_accuracy']:.4f}, "
              f"{baseline['seconds']:.1f}s)")
    print(f"saved model.pt, arch.json, result.json, {picture.name} (the architecture drawn) in {out}")
    print("reload with: from optuna_epnas.export import build_model; "
          f"model = build_model({str(out / 'arch.json')!r}); "
          f"model.load_state_dict(torch.load({str(out / 'model.pt')!r}, weights_only=True))")
    return 0
