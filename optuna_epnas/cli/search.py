"""``epnas search``: its options (the space and search options ``epnas compare`` shares), and the command."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from optuna_epnas.cli.args import (
    HelpFormatter, add_data_arguments, add_device_argument, load_data, non_negative_float, non_negative_int,
    positive_float, positive_int, quiet_optuna,
)
from optuna_epnas.data.device import available_datasets
from optuna_epnas.sampler.selection import ACQUISITIONS, SCORES
from optuna_epnas.sampler.schedule import fit_to_budget
from optuna_epnas.search import PRUNERS
from optuna_epnas.settings import ESTIMATORS, GPU_TRAINING, PROGRESSIVE, SAMPLER_NAMES, SUPERNET, SearchSettings
from optuna_epnas.spaces import MACRO_OPS, MICRO_OPS, MacroSpace, MicroSpace, SearchSpace
from optuna_epnas.costs.values import check_objectives


# -- the search space ----------------------------------------------------------------------------------
def op_list(text: str) -> tuple[str, ...]:
    ops = tuple(o.strip() for o in text.split(",") if o.strip())
    unknown = [o for o in ops if o not in MICRO_OPS]
    if not ops or unknown:
        raise argparse.ArgumentTypeError(f"unknown operation(s) {unknown or [text]}; choose from {','.join(MICRO_OPS)}")
    return ops


def objective_list(text: str) -> tuple[str, ...]:
    try:
        return check_objectives(o.strip() for o in text.split(",") if o.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use accuracy, accuracy,params or accuracy,macs") from None


def add_space_arguments(group: argparse._ActionsContainer) -> None:
    """The search-space options of ``epnas search`` and ``epnas compare``."""
    group.add_argument("--space", choices=("macro", "micro"), default="macro",
                       help="macro: a chain of layers with skips; micro: a cell of blocks, stacked")
    group.add_argument("--layers", type=positive_int, default=12, help="macro: layers of a complete architecture")
    group.add_argument("--blocks", type=positive_int, default=5, help="micro: blocks of a complete cell")
    group.add_argument("--cells", type=positive_int, default=2, help="micro: normal cells between reductions (N)")
    group.add_argument("--ops", type=op_list, default=None,
                       help=f"comma-separated subset of the operations (default: all; macro {','.join(MACRO_OPS)}; "
                            "micro adds identity)")


def make_space(args: argparse.Namespace) -> SearchSpace:
    if args.space == "micro":
        return MicroSpace(num_blocks=args.blocks, cells=args.cells, ops=args.ops or MICRO_OPS)
    return MacroSpace(num_layers=args.layers, ops=args.ops or MACRO_OPS)


# -- the sampler and supernet training ---------------------------------------------------------------------
def add_search_arguments(group: argparse._ActionsContainer) -> None:
    """The sampler and supernet-training options of ``epnas search`` and ``epnas compare``: each one
    left out takes the default EPNAS's value, and a named variant (``epnas-paper``, ``pnas``, the
    ablations) fixes its own mechanisms over what is given."""
    d = SearchSettings()
    group.add_argument("--k", type=positive_int, default=None, help=f"architectures kept per level (default {d.k})")
    group.add_argument("--iterations", type=positive_int, default=None,
                       help=f"progressions from level 1 to full depth (default {d.iterations})")
    group.add_argument("--tau-start", type=positive_float, default=None,
                       help=f"EPNAS temperature, first iteration (default {d.temperature[0]}; paper 10)")
    group.add_argument("--tau-end", type=positive_float, default=None,
                       help=f"EPNAS temperature, last iteration (default {d.temperature[1]}; paper 1)")
    group.add_argument("--score", choices=SCORES, default=None,
                       help=f"raw: the paper's p ∝ s^(1/τ); z: p ∝ exp(z/τ) over z-scored candidates (default {d.score})")
    group.add_argument("--acquisition", choices=tuple(ACQUISITIONS), default=None,
                       help=f"mean prediction, mean + β·std (ucb) or expected improvement (ei) of the surrogate "
                            f"ensemble (default {d.acquisition})")
    group.add_argument("--beta", type=non_negative_float, default=None, help=f"UCB's β (default {d.beta})")
    group.add_argument("--ensemble", type=positive_int, default=None,
                       help=f"LSTM surrogates per level (default {d.ensemble}; the paper's EPNAS: 1; PNAS: 5)")
    group.add_argument("--parent-weight", type=non_negative_float, default=None,
                       help="adds this × the parent's z-scored measured accuracy to each child's log-weight "
                            f"(default {d.parent_weight:g}; 0: the surrogate alone)")
    group.add_argument("--diverse", action=argparse.BooleanOptionalAction, default=None,
                       help="draw the K children from distinct (parent, new op) groups first "
                            f"(default {'on' if d.diverse else 'off'})")
    group.add_argument("--rescore", action=argparse.BooleanOptionalAction, default=None,
                       help="re-evaluate the measured architectures on the current supernet weights before each "
                            f"level's surrogate fit (default {'on' if d.rescore else 'off'})")
    group.add_argument("--reuse", action=argparse.BooleanOptionalAction, default=None,
                       help="a network measured before keeps its recorded value instead of a new query (for a "
                            f"deterministic objective; default {'on' if d.reuse else 'off'}: a supernet re-measures)")
    group.add_argument("--estimator", choices=ESTIMATORS, default=None,
                       help="how a trial scores its architecture: supernet trains its path on the shared weights; "
                            "a zero-cost proxy scores the untrained network, no supernet (jacob_cov ranked best on "
                            "the Fashion-MNIST proxy, worse than the supernet on digits: "
                            f"studies/results/ranking-benchmark*) (default {d.estimator})")
    group.add_argument("--warmup-epochs", type=non_negative_int, default=None,
                       help=f"epochs of uniformly sampled full-depth paths before level 1 (default {d.warmup_epochs})")
    group.add_argument("--epochs", type=positive_int, default=None,
                       help=f"supernet training epochs per trial (default {d.epochs})")
    group.add_argument("--channels", type=positive_int, default=None, help=f"supernet width (default {d.channels})")
    group.add_argument("--batch-size", type=positive_int, default=None,
                       help=f"supernet SGD batch size (default {d.batch_size})")
    group.add_argument("--lr", type=positive_float, default=None, help=f"supernet SGD learning rate (default {d.lr})")
    group.add_argument("--max-params", type=positive_int, default=None, metavar="N",
                       help="never sample a network with more parameters, counted at the search's --channels "
                            "(progressive samplers; TPE and random see it as an Optuna constraint). Macro space")
    group.add_argument("--max-macs", type=positive_int, default=None, metavar="N",
                       help="likewise for forward multiply-adds per image")
    group.add_argument("--max-latency-ms", type=positive_float, default=None, metavar="MS",
                       help="likewise for the forward latency of one image on the search's device, estimated from "
                            "a table of the network's parts measured once (cached in ~/.cache/optuna_epnas)")
    group.add_argument("--objectives", type=objective_list, default=None, metavar="LIST",
                       help="accuracy (default), or accuracy,params / accuracy,macs / accuracy,latency: a "
                            "two-objective search (accuracy maximised, the cost minimised); the summary lists the "
                            "Pareto front")


def settings_from_args(args: argparse.Namespace, device: Any = None) -> dict[str, Any]:
    """The search settings given on the command line (None: not given); on a CUDA ``device`` the batch
    size and learning rate not given are :data:`~optuna_epnas.settings.GPU_TRAINING`'s."""
    import torch

    tau = (args.tau_start, args.tau_end)
    if (tau[0] is None) != (tau[1] is None):
        default = SearchSettings().temperature
        tau = (tau[0] or default[0], tau[1] or default[1])
    return {"k": args.k, "iterations": args.iterations, "temperature": None if tau[0] is None else tau,
            "ensemble": args.ensemble, "score": args.score, "acquisition": args.acquisition, "beta": args.beta,
            "rescore": args.rescore, "warmup_epochs": args.warmup_epochs, "epochs": args.epochs,
            "channels": args.channels, "batch_size": args.batch_size, "lr": args.lr,
            "parent_weight": args.parent_weight, "diverse": args.diverse,
            "max_params": getattr(args, "max_params", None), "max_macs": getattr(args, "max_macs", None),
            "objectives": getattr(args, "objectives", None), "max_latency_ms": getattr(args, "max_latency_ms", None),
            "reuse": getattr(args, "reuse", None), "estimator": getattr(args, "estimator", None),
            **({name: value for name, value in GPU_TRAINING.items() if getattr(args, name) is None}
               if device is not None and torch.device(device).type == "cuda" else {})}


# -- `epnas search` --------------------------------------------------------------------------------------
def add_search_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``search`` to the subparsers object of the ``epnas`` parser; returns the subparser."""
    s = commands.add_parser(
        "search", help="run (or resume) an architecture search",
        description="Run an architecture search; re-running the same command resumes it.",
        formatter_class=HelpFormatter,
    )
    add_space_arguments(s)
    add_data_arguments(s, available_datasets())
    s.add_argument("--sampler", choices=SAMPLER_NAMES, default="epnas",
                   help="epnas: the default EPNAS (z-scored UCB of a 5-LSTM ensemble sampled under annealed τ, "
                        "re-scoring, warm-up); epnas-paper: the paper's settings; pnas: top-K; tpe/random: "
                        "baselines on the same space; epnas-no-*: ablations")
    s.add_argument("--storage", default="sqlite:///epnas.db",
                   help="Optuna storage URL (sqlite:///..., postgresql://..., or journal:PATH for a journal file)")
    s.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="where the supernet checkpoint goes (default: beside a SQLite file; needed for server "
                        "storages such as PostgreSQL); a resume finds it where the study recorded it")
    s.add_argument("--checkpoint-every", type=non_negative_float, default=SUPERNET.checkpoint_every, metavar="SECONDS",
                   help="seconds between supernet checkpoints (also written when the search ends; 0: after every "
                        "trial). A kill loses at most that much training, which the next run replays "
                        f"(default {SUPERNET.checkpoint_every:g})")
    s.add_argument("--heartbeat", type=positive_float, default=None, metavar="SECONDS",
                   help="Optuna's RDB heartbeat: a worker lost on another machine has its trial failed after "
                        "about 4 beats and its slot run again (default: off)")
    s.add_argument("--takeover", action="store_true",
                   help="resume a study whose supernet another machine's process is recorded as training (it is gone)")
    s.add_argument("--study-name", default=None, help="default: <space>-<dataset>-<sampler>")
    s.add_argument("--n-trials", type=positive_int, default=None,
                   help="trial budget: tpe/random run this many trials; EPNAS/PNAS fit K (unless --k is given) and "
                        "iterations (at most --iterations) to it and end on complete architectures within it "
                        "(default: the trials of the EPNAS schedule)"),
    add_search_arguments(s)
    s.add_argument("--report-epochs", action="store_true",
                   help="evaluate after every supernet epoch and report it (learning curves in the dashboard; "
                        "one more validation pass per epoch)")
    s.add_argument("--pruner", choices=tuple(PRUNERS), default="none",
                   help="Optuna pruner over the per-epoch reports (needs --report-epochs); a pruned trial counts "
                        "as measured at its last report (default: none, see docs/tutorial.md)")
    s.add_argument("--seed", type=int, default=0)
    add_device_argument(s)
    s.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    return s


class _OneLineFailures(logging.Filter):
    """Optuna logs a failed trial with its traceback; a diverging architecture's says all in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], FloatingPointError):
            record.exc_info, record.exc_text = None, None
        return True


def search_command(args: argparse.Namespace) -> int:
    """``epnas search``: see :func:`add_search_parser` for the options (under ``torchrun``: rank 0 runs the
    study, the other ranks train their shards of its trials)."""
    import optuna

    from optuna_epnas.supernet import distributed
    from optuna_epnas.search import make_objective
    from optuna_epnas.settings import resolve_settings

    quiet_optuna(log=True)
    for handler in optuna.logging.get_logger("optuna").handlers:  # a handler's filter sees propagated records
        handler.addFilter(_OneLineFailures())

    args.device = distributed.init_from_env(args.device)  # under torchrun: this rank's device
    rank, ranks = distributed.rank_and_size()
    space = make_space(args)
    data = load_data(args, args.dataset, args.seed)
    study_name = args.study_name or f"{args.space}-{args.dataset}-{args.sampler}"
    settings = resolve_settings(args.sampler, settings_from_args(args, data.device))
    if args.sampler in PROGRESSIVE and args.n_trials is not None:  # K and iterations fitted to the budget
        k, iterations = fit_to_budget(space, args.n_trials, args.k, settings.iterations, settings.reuse)
        settings = dataclasses.replace(settings, k=k, iterations=iterations, n_trials=args.n_trials)
    if rank > 0:  # a helper rank: trains its shard of what rank 0 says, until rank 0 is done
        distributed.serve(make_objective(space, data, settings, args.seed))
        distributed.shutdown()
        return 0
    try:
        return _search(args, space, data, study_name, settings, ranks)
    finally:
        distributed.stop()
        distributed.shutdown()


def _search(args: argparse.Namespace, space: SearchSpace, data: Any, study_name: str, settings: SearchSettings,
            ranks: int) -> int:
    from optuna_epnas.cli.progress import Progress, dashboard_recorder, print_summary, start_line
    from optuna_epnas.search import open_search
    from optuna_epnas.storage.storages import public_url

    run = open_search(  # a checkpoint or study made with other settings fails here, before any trial
        space, data, args.sampler, args.storage, study_name, settings=settings, seed=args.seed,
        budget=None if args.sampler in PROGRESSIVE else args.n_trials,
        checkpoint=_checkpoint_dir(args.checkpoint_dir), heartbeat=args.heartbeat, takeover=args.takeover,
        checkpoint_every=args.checkpoint_every,
        report_epochs=args.report_epochs, pruner=PRUNERS[args.pruner](),
    )
    url = public_url(args.storage)
    print(start_line(run, args.sampler, data, args.dataset, study_name, url, settings, ranks), flush=True)
    before = len(run.study.get_trials(deepcopy=False))  # this run's trials are numbered from here
    run.run([Progress(run.study, space, run.budget, run.sampler if run.progressive else None, quiet=args.quiet)],
            recorder=dashboard_recorder(run.budget))
    print_summary(run.study, space, url, run.checkpoint, trials_before=before)
    return 0


def _checkpoint_dir(path: str | None) -> Path | None:
    if path is None:
        return None
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot use --checkpoint-dir {path}: {err}") from None
    if not os.access(folder, os.W_OK):  # said now, not after the data is loaded and the study made
        raise ValueError(f"cannot use --checkpoint-dir {path}: it is not writable (its permissions, or a read-only "
                         "file system)")
    return folder
