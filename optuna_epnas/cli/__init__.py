"""The ``epnas`` command: ``epnas search`` runs a resumable architecture search and summarises it;
``epnas train`` trains the architecture it found from scratch and reports its test accuracy."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Sequence

import optuna
from optuna.trial import TrialState

from optuna_epnas.argtypes import add_data_arguments, load_data, non_negative_float, positive_float, positive_int
from optuna_epnas.analysis.compare import add_compare_parser, compare_command
from optuna_epnas.analysis.dashboard import add_dashboard_parser, dashboard_command
from optuna_epnas.data import available_datasets
from optuna_epnas.draw import draw_arch
from optuna_epnas.export import ModelSpec
from optuna_epnas.objective import OBJECTIVE_ATTR
from optuna_epnas.analysis.ranking import add_ranking_parser, ranking_command
from optuna_epnas import distributed
from optuna_epnas.search import (
    PROGRESSIVE, PRUNERS, SAMPLER_NAMES, Progress, add_search_arguments, add_space_arguments, make_objective,
    make_space,
    open_search, resolve_settings, settings_from_args,
)
from optuna_epnas.spaces import MacroSpace, space_from_spec
from optuna_epnas.sampler.pareto import full_depth_front
from optuna_epnas.storages import public_url
from optuna_epnas.values import COST_NAMES
from optuna_epnas.train import _HelpFormatter, add_train_parser, load_search_study, resolve_source, train_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="epnas", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    s = commands.add_parser(
        "search", help="run (or resume) an architecture search",
        description="Run an architecture search; re-running the same command resumes it.",
        formatter_class=_HelpFormatter,
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
    s.add_argument("--checkpoint-every", type=non_negative_float, default=60.0, metavar="SECONDS",
                   help="seconds between supernet checkpoints (also written when the search ends; 0: after every "
                        "trial). A kill loses at most that much training, which the next run replays (default 60)")
    s.add_argument("--heartbeat", type=positive_float, default=None, metavar="SECONDS",
                   help="Optuna's RDB heartbeat: a worker lost on another machine has its trial failed after "
                        "about 4 beats and its slot run again (default: off)")
    s.add_argument("--takeover", action="store_true",
                   help="resume a study whose supernet another machine's process is recorded as training (it is gone)")
    s.add_argument("--study-name", default=None, help="default: <space>-<dataset>-<sampler>")
    s.add_argument("--n-trials", type=positive_int, default=None,
                   help="trial budget of tpe/random (default: the trials of the EPNAS schedule)")
    add_search_arguments(s)
    s.add_argument("--report-epochs", action="store_true",
                   help="evaluate after every supernet epoch and report it (learning curves in the dashboard; "
                        "one more validation pass per epoch)")
    s.add_argument("--pruner", choices=tuple(PRUNERS), default="none",
                   help="Optuna pruner over the per-epoch reports (needs --report-epochs); a pruned trial counts "
                        "as measured at its last report (default: none, see README)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    s.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    add_train_parser(commands)
    add_dashboard_parser(commands)
    add_ranking_parser(commands)
    add_compare_parser(commands)

    d = commands.add_parser(
        "draw", help="draw an architecture (SVG, PNG, PDF, or Graphviz source)",
        description="Draw the best full-size architecture of a search, one of its trials, a trained model's "
                    "arch.json, or an architecture key.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d.add_argument("what", nargs="?", default=None, metavar="ARCH_JSON", help="an arch.json written by epnas train")
    d.add_argument("--study", default=None, metavar="NAME", help="a search study (default: its best full-size trial)")
    d.add_argument("--storage", default="sqlite:///epnas.db", help="Optuna storage URL of --study")
    d.add_argument("--trial", type=int, default=None, help="with --study: draw this trial's architecture instead")
    d.add_argument("--arch", default=None, metavar="KEY", help="an architecture key")
    d.add_argument("--space", choices=("macro", "micro"), default=None, help="the space of an --arch key (default: macro)")
    d.add_argument("--layers", type=positive_int, default=12, help="macro --arch: layers of the space")
    d.add_argument("--blocks", type=positive_int, default=5, help="micro --arch: blocks of a cell")
    d.add_argument("--out", default="arch.svg", help="picture to write: .svg, .png, .pdf (Graphviz), .gv/.dot (source)")
    return parser


def _version() -> str:
    from optuna_epnas import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "search":
            return search(args)
        if args.command == "train":
            return train_command(args)
        if args.command == "draw":
            return draw_command(args)
        if args.command == "dashboard":
            return dashboard_command(args)
        if args.command == "ranking":
            return ranking_command(args)
        if args.command == "compare":
            return compare_command(args)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        print(f"epnas: error: {err}", file=sys.stderr)
        return 2
    return 0


class _OneLineFailures(logging.Filter):
    """Optuna logs a failed trial with its traceback; a diverging architecture's says all in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], FloatingPointError):
            record.exc_info, record.exc_text = None, None
        return True


def search(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in optuna.logging.get_logger("optuna").handlers:  # a handler's filter sees propagated records
        handler.addFilter(_OneLineFailures())
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    args.device = distributed.init_from_env(args.device)  # under torchrun: this rank's device
    rank, ranks = distributed.rank_and_size()
    space = make_space(args)
    data = load_data(args, args.dataset, args.seed)
    study_name = args.study_name or f"{args.space}-{args.dataset}-{args.sampler}"
    settings = resolve_settings(args.sampler, settings_from_args(args, data.device))
    if rank > 0:  # a helper rank: trains its shard of what rank 0 says, until rank 0 is done
        distributed.serve(make_objective(space, data, settings, args.seed))
        distributed.shutdown()
        return 0
    try:
        return _search(args, space, data, study_name, settings, ranks)
    finally:
        distributed.stop()
        distributed.shutdown()


def _search(args: argparse.Namespace, space, data, study_name: str, settings, ranks: int) -> int:
    run = open_search(  # a checkpoint or study made with other settings fails here, before any trial
        space, data, args.sampler, args.storage, study_name, settings=settings, seed=args.seed,
        budget=None if args.sampler in PROGRESSIVE else args.n_trials,
        checkpoint=_checkpoint_dir(args.checkpoint_dir), heartbeat=args.heartbeat, takeover=args.takeover,
        checkpoint_every=args.checkpoint_every,
        report_epochs=args.report_epochs, pruner=PRUNERS[args.pruner](),
    )
    done = run.finished
    limits = {k: v for k, v in (("parameters", settings.max_params), ("multiply-adds", settings.max_macs),
                                ("ms of estimated latency", settings.max_latency_ms)) if v}
    print(
        f"epnas search: {args.sampler} on {space!r} ({space.cardinality():.3g} architectures), "
        f"{args.dataset} on {data.device}" + (f" × {ranks} ranks" if ranks > 1 else "")
        + f" ({len(data.train_x)} train / {len(data.val_x)} val images)"
        + "".join(f"\nat most {v:,} {name} (a network of --channels {settings.channels})" for name, v in limits.items())
        + f"\nstudy {study_name!r} in {public_url(args.storage)}: {'at most ' if limits and run.progressive else ''}"
        f"{run.budget} trials planned, {done} already done"
        + (", resuming" if 0 < done < run.budget else ""),
        flush=True,
    )
    run.run([Progress(run.study, space, run.budget, run.sampler if run.progressive else None, quiet=args.quiet)])
    _summary(run.study, space, public_url(args.storage), run.checkpoint)
    return 0


def _checkpoint_dir(path: str | None) -> Path | None:
    if path is None:
        return None
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot use --checkpoint-dir {path}: {err}") from None
    return folder


def _summary(study: optuna.Study, space, storage: str, checkpoint) -> None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    full = [t for t in complete if t.user_attrs.get("level") == space.max_level]
    unit = "layers" if isinstance(space, MacroSpace) else "blocks"
    print(f"\n{len(complete)} trials complete, {len(full)} of them at full depth ({space.max_level} {unit}).")
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    if failed:
        print(f"{len(failed)} trial(s) failed: their errors are above (a trial whose process died is run again; "
              "an architecture whose training failed is retried once, then given up)")
    if full and study._is_multi_objective():
        _front_summary(study, space, storage, unit)
    elif full:
        best = max(full, key=lambda t: t.value)
        print(f"best architecture (trial {best.number}): {best.user_attrs['arch']}")
        print(f"  validation accuracy (supernet weights, {best.user_attrs.get('level')} {unit}): {best.value:.4f}")
        print(f"  parameters (stand-alone): {best.user_attrs.get('params')}")
        print("  note: a weight-sharing estimate for ranking, not the accuracy of the network trained alone")
        print(f"train it from scratch with: epnas train --study {study.study_name} --storage {storage}")
    print(f"study stored in {storage} as {study.study_name!r}" + (f"; supernet in {checkpoint}" if checkpoint else ""))
    print(f"look at it with: epnas dashboard --storage {storage}")


def _front_summary(study: optuna.Study, space, storage: str, unit: str) -> None:
    spec = study._storage.get_study_system_attrs(study._study_id).get(OBJECTIVE_ATTR, {})
    cost = COST_NAMES[spec.get("objectives", ["accuracy", "params"])[1]]
    front = full_depth_front(study, space.max_level)
    print(f"Pareto front of the full-depth networks ({len(front)}; validation accuracy on supernet weights, "
          f"{cost} of the stand-alone network at the search's width), cheapest first:")
    for t in front:
        print(f"  trial {t.number:>4}  accuracy {t.values[0]:.4f}  {t.values[1]:>14,.0f} {cost}  {t.user_attrs['arch']}")
    print("  note: weight-sharing estimates for ranking, not the accuracies of the networks trained alone")
    print(f"train one from scratch with: epnas train --study {study.study_name} --storage {storage} --trial N")


def draw_command(args: argparse.Namespace) -> int:
    if args.what is not None:
        if args.study is not None or args.arch is not None:
            raise ValueError("give one of ARCH_JSON, --study or --arch")
        target: object = ModelSpec.load(args.what)
        space = None
    elif args.study is not None and args.trial is not None:
        if args.arch is not None:
            raise ValueError("give one of ARCH_JSON, --study or --arch")
        study = load_search_study(args.study, args.storage)
        spec = study._storage.get_study_system_attrs(study._study_id).get(OBJECTIVE_ATTR)
        if spec is None:
            raise ValueError(f"study {args.study!r} was not made by an optuna_epnas search (no {OBJECTIVE_ATTR!r})")
        trials = [t for t in study.get_trials(deepcopy=False) if t.number == args.trial and "arch" in t.user_attrs]
        if not trials:
            raise ValueError(f"study {args.study!r} has no trial {args.trial} with an architecture")
        space = space_from_spec(spec["space"])
        target = space.parse(trials[0].user_attrs["arch"])
    else:
        args.trial = None
        space, target, _, _ = resolve_source(args)
    path = draw_arch(target, args.out, space=space)
    print(f"drew {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
