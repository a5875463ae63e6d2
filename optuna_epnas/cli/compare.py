"""``epnas compare``: its options, and the command (:func:`optuna_epnas.analysis.compare.compare` runs it)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from optuna_epnas._checks import check_positive_int
from optuna_epnas.cli.args import (
    HelpFormatter, accuracy, add_data_arguments, add_device_argument, load_data, non_negative_int, positive_int,
    quiet_optuna,
)
from optuna_epnas.cli.search import add_search_arguments, add_space_arguments, make_space, settings_from_args
from optuna_epnas.data.device import available_datasets
from optuna_epnas.settings import BASELINES, FINAL, PROGRESSIVE, SAMPLER_NAMES, resolve_settings
from optuna_epnas.spaces import MacroSpace, MicroSpace


def sampler_list(text: str) -> tuple[str, ...]:
    """``epnas,random`` -> ('epnas', 'random'): known names, each once, in the order given."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in SAMPLER_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown sampler(s) {unknown or [text]}; choose from {','.join(SAMPLER_NAMES)}")
    return names


#: The options that make a comparison, in the parser's order: `results.md` rebuilds the command from them.
SETTING_OPTIONS = (
    "space", "layers", "blocks", "cells", "ops", "dataset", "data_root", "max_train", "image_size", "samplers",
    "seeds", "budget_kind", "budget", "k", "iterations", "tau_start", "tau_end", "score", "acquisition", "beta",
    "ensemble", "parent_weight", "diverse", "rescore", "warmup_epochs", "epochs", "channels", "batch_size", "lr",
    "top", "final_epochs", "final_channels", "final_cells", "final_seeds", "target", "ranking_n", "out", "device",
)


def add_compare_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``compare`` to the subparsers object of the ``epnas`` parser; returns the subparser."""
    c = commands.add_parser(
        "compare", help="EPNAS vs PNAS vs TPE vs random search: same space, objective and budget, over seeds",
        description="Run every sampler on the same space, objective settings and trial budget, each seed with its "
                    "own fresh supernet; train each run's top architectures stand-alone; write results.md, "
                    "results.json and plots into --out. Re-running the same command resumes it.",
        formatter_class=HelpFormatter,
    )
    add_space_arguments(c.add_argument_group("search space (as epnas search)"))
    data = c.add_argument_group("data")
    add_data_arguments(data, available_datasets())
    runs = c.add_argument_group("runs")
    runs.add_argument("--samplers", type=sampler_list, default=BASELINES,
                      help=f"comma-separated, of {','.join(SAMPLER_NAMES)} (default: {','.join(BASELINES)})")
    runs.add_argument("--seeds", type=positive_int, default=3, help="runs per sampler, seeds 0..N-1")
    runs.add_argument("--budget-kind", choices=("trials", "compute"), default="trials",
                      help="trials: every sampler gets --budget finished trials; compute: EPNAS/PNAS variants run "
                           "their schedule, TPE and random run until they have spent what the first of them in "
                           "--samplers spent with the same seed (multiply-adds, optuna_epnas.costs.cost), and each run is "
                           "also judged at --budget trials")
    runs.add_argument("--budget", type=positive_int, default=None,
                      help="finished trials per run, every sampler (default: the trials the EPNAS schedule plans)")
    add_search_arguments(c.add_argument_group("search (as epnas search)"))
    final = c.add_argument_group("stand-alone training (train_final's schedule, as epnas train's defaults)")
    final.add_argument("--top", type=positive_int, default=3,
                       help="distinct full-size architectures per run, best supernet accuracy first")
    final.add_argument("--final-epochs", type=positive_int, default=FINAL.epochs, help="epochs from scratch")
    final.add_argument("--final-channels", type=positive_int, default=None,
                       help=f"width (default: {MacroSpace.final_channels} macro, {MicroSpace.final_channels} micro)")
    final.add_argument("--final-cells", type=positive_int, default=FINAL.cells,
                       help="micro: normal cells per stage")
    final.add_argument("--final-seeds", type=positive_int, default=2,
                       help="training seeds of each run's chosen network; its test error is their mean")
    report = c.add_argument_group("report")
    report.add_argument("--target", type=accuracy, default=None,
                        help="supernet accuracy for 'trials to reach' (default: the median over all runs of the "
                             "final best full-size supernet accuracy)")
    report.add_argument("--ranking-n", type=non_negative_int, default=20,
                        help="pooled full-size architectures trained stand-alone for the ranking report (0: skip)")
    report.add_argument("--out", default="epnas-compare", help="folder of studies.db, results.md, results.json, plots")
    add_device_argument(c)
    c.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    c.add_argument("--workers", type=positive_int, default=1,
                   help="runs at once, each in its own process with its own study and supernet on the one storage "
                        "(same results as 1; each takes its share of the CPU cores)")
    return c


def command_line(args: argparse.Namespace) -> str:
    """The ``epnas compare`` command with every setting spelled out."""
    parts = ["epnas", "compare"]
    for name in SETTING_OPTIONS:
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):  # --rescore / --no-rescore
            parts.append(flag if value else f"--no-{flag[2:]}")
            continue
        if isinstance(value, (tuple, list)):
            value = ",".join(value)
        parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def _check(args: argparse.Namespace) -> None:
    """What argparse checks, again, for a Namespace made in Python."""
    if not args.samplers or any(s not in SAMPLER_NAMES for s in args.samplers):
        raise ValueError(f"--samplers must name some of {','.join(SAMPLER_NAMES)}, got {args.samplers!r}")
    for name in ("seeds", "top", "final_epochs", "final_seeds", *(("workers",) if hasattr(args, "workers") else ())):
        check_positive_int(f"--{name.replace('_', '-')}", getattr(args, name))
    if args.budget_kind not in ("trials", "compute"):
        raise ValueError(f"--budget-kind must be trials or compute, got {args.budget_kind!r}")
    if args.budget_kind == "compute" and not any(x in PROGRESSIVE for x in args.samplers):
        raise ValueError("--budget-kind compute gives TPE and random search what an EPNAS/PNAS schedule spends: "
                         f"name one of {','.join(PROGRESSIVE)} in --samplers")
    resolve_settings("epnas", settings_from_args(args))  # bad values in a Namespace made in Python
    if len(getattr(args, "objectives", None) or ("accuracy",)) > 1:
        raise ValueError("epnas compare judges one objective (the chosen network's test error); for accuracy and "
                         "a cost at equal compute, run python studies/pareto_compare.py")
    if args.budget is not None and args.budget < 1:
        raise ValueError(f"--budget must be a positive integer, got {args.budget!r}")
    if args.ranking_n < 0:
        raise ValueError(f"--ranking-n must be 0 or more, got {args.ranking_n!r}")
    if args.target is not None and not 0.0 < args.target <= 1.0:
        raise ValueError(f"--target must be an accuracy in (0, 1], got {args.target!r}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")


def make_plan(args: argparse.Namespace, space: Any = None, data: Any = None) -> Any:
    """The :class:`~optuna_epnas.analysis.compare.Plan` of the options (``space``, ``data``: made from them
    when not given; a ``--workers`` process makes its own)."""
    from optuna_epnas.analysis.compare import DATA_SEED, make_plan as plan_of

    space = make_space(args) if space is None else space
    data = load_data(args, args.dataset, DATA_SEED) if data is None else data
    return plan_of(space, data, args.out, settings_from_args(args), budget=args.budget, budget_kind=args.budget_kind,
                   top=args.top, final_epochs=args.final_epochs, final_channels=args.final_channels,
                   final_cells=args.final_cells, final_seeds=args.final_seeds, max_train=args.max_train,
                   quiet=args.quiet)


def compare_command(args: argparse.Namespace) -> int:
    """``epnas compare``: see :func:`add_compare_parser` for the options."""
    import functools

    from optuna_epnas.analysis.compare import compare

    _check(args)
    quiet_optuna(log=True)
    workers = getattr(args, "workers", 1)
    compare(make_plan(args), args.samplers, args.seeds, command=command_line(args),
            options={k: getattr(args, k) for k in SETTING_OPTIONS}, target=args.target, ranking_n=args.ranking_n,
            workers=workers, worker_plan=functools.partial(make_plan, args) if workers > 1 else None)
    return 0
