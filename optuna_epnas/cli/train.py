"""``epnas train``: its options, and the command (:func:`optuna_epnas.standalone.retrain.retrain` does the work)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from optuna_epnas.cli.args import (
    HelpFormatter, add_data_arguments, add_device_argument, load_data, positive_float, positive_int, quiet_optuna,
)
from optuna_epnas.data.device import available_datasets
from optuna_epnas.settings import FINAL, FinalSettings
from optuna_epnas.spaces import MacroSpace, MicroSpace


def add_source_arguments(group: argparse._ActionsContainer) -> None:
    """Which architecture: a search ``--study`` (its best, or ``--trial``), or an ``--arch`` key."""
    group.add_argument("--study", default=None, metavar="NAME",
                       help="a search study: train its best full-size architecture")
    group.add_argument("--storage", default="sqlite:///epnas.db", help="Optuna storage URL of --study")
    group.add_argument("--trial", type=int, default=None, metavar="N",
                       help="with --study: this trial's architecture (a Pareto-front member) instead of the best")
    group.add_argument("--arch", default=None, metavar="KEY", help="an architecture key, e.g. 'conv3x3 | sep5x5[0]'")
    group.add_argument("--space", choices=("macro", "micro"), default=None,
                       help="the space of an --arch key (default: macro; a --study brings its own)")
    group.add_argument("--layers", type=positive_int, default=12,
                       help="macro --arch: layers of the space (it sets where the resolution halves)")
    group.add_argument("--blocks", type=positive_int, default=5, help="micro --arch: blocks of a cell")


def add_train_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``train`` to the subparsers object of the ``epnas`` parser; returns the subparser."""
    t = commands.add_parser(
        "train", help="train a found architecture from scratch and measure its test accuracy",
        description="Train the best full-size architecture of a search (--study), or a given one (--arch), "
                    "as a stand-alone network from scratch; report its test accuracy, optionally next to a "
                    "plain CNN of the same size (--baseline).",
        formatter_class=HelpFormatter,
    )
    add_source_arguments(t.add_argument_group("which architecture (exactly one of --study / --arch)"))
    add_data_arguments(t, available_datasets(), dataset_default=None, from_search=True,
                       dataset_help="data set (default: the one the study searched on, else digits)")
    t.add_argument("--epochs", type=positive_int, default=FINAL.epochs, help="training epochs, from scratch")
    t.add_argument("--channels", type=positive_int, default=None,
                   help=f"network width (default: {MacroSpace.final_channels} macro, {MicroSpace.final_channels} "
                        "micro: minutes on a CPU on digits; the paper trained 200-512 macro, 96-128 micro)")
    t.add_argument("--cells", type=positive_int, default=FINAL.cells,
                   help="micro: normal cells per stage (the paper's final training: 3; search: 2)")
    t.add_argument("--batch-size", type=positive_int, default=FINAL.batch_size, help="SGD batch size")
    t.add_argument("--lr", type=positive_float, default=FINAL.lr, help="initial learning rate, cosine-decayed to 0")
    t.add_argument("--weight-decay", type=float, default=FINAL.weight_decay, help="SGD weight decay")
    t.add_argument("--seed", type=int, default=0, help="initialisation, data order, augmentation, val split")
    add_device_argument(t)
    t.add_argument("--out", default=None,
                   help="folder for model.pt, arch.json, result.json (default: epnas-train/<study name or 'arch'>)")
    t.add_argument("--baseline", action="store_true",
                   help="also train a plain CNN of the same parameter count with the same schedule, data and seed")
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    t.add_argument("--onnx", action="store_true",
                   help="also write model.onnx (input: normalised images, any batch size), checked by onnxruntime "
                        "where installed; needs pip install 'optuna_epnas[onnx]'")
    return t


def source_of(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """:func:`~optuna_epnas.standalone.retrain.resolve_source` of the options of :func:`add_source_arguments`."""
    from optuna_epnas.standalone.retrain import resolve_source

    return resolve_source(study=args.study, storage=args.storage, trial=getattr(args, "trial", None),
                          arch=args.arch, space=args.space, layers=args.layers, blocks=args.blocks)


def train_command(args: argparse.Namespace) -> int:
    """``epnas train``: see :func:`add_train_parser` for the options (under ``torchrun``: data-parallel
    over the ranks; rank 0 prints and writes)."""
    from optuna_epnas.supernet import distributed

    args.device = distributed.init_from_env(args.device)
    try:
        if distributed.rank_and_size()[0] > 0:
            import contextlib

            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                return _train(args, write=False)
        return _train(args)
    finally:
        distributed.shutdown()


def _train(args: argparse.Namespace, write: bool = True) -> int:
    from optuna_epnas.supernet.checkpoint import safe_name
    from optuna_epnas.standalone.retrain import retrain

    quiet_optuna()
    space, arch, source, search_spec = source_of(args)
    name = args.study if args.study is not None else "arch"
    out = Path(args.out) if args.out else Path("epnas-train") / safe_name(name)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    dataset = args.dataset or search_spec.get("dataset") or "digits"
    data = load_data(args, dataset, args.seed, search=search_spec)
    final = FinalSettings(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                          weight_decay=args.weight_decay, cells=args.cells)
    return retrain(space, arch, source, data, dataset, out, final, channels=args.channels, seed=args.seed,
                   max_train=args.max_train, baseline=args.baseline, quiet=args.quiet, write=write,
                   onnx=args.onnx)
