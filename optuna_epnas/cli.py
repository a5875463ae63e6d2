"""The ``epnas`` command: ``epnas search`` runs a resumable architecture search and summarises it."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from typing import Sequence

import optuna
from optuna.trial import TrialState

from optuna_epnas.data import available_datasets, load_dataset
from optuna_epnas.objective import SupernetObjective, checkpoint_path_for
from optuna_epnas.sampler import EPNASSampler
from optuna_epnas.schedule import planned_trials
from optuna_epnas.spaces import MacroSpace

SAMPLERS = ("epnas", "pnas", "tpe", "random")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="epnas", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    s = commands.add_parser(
        "search", help="run (or resume) an architecture search",
        description="Run an architecture search; re-running the same command resumes it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    s.add_argument("--space", choices=("macro",), default="macro", help="search space")
    s.add_argument("--dataset", choices=available_datasets(), default="digits")
    s.add_argument("--data-root", default=None, help="folder holding the data set files (fashion-mnist, cifar10)")
    s.add_argument("--max-train", type=_positive_int, default=None, help="use at most this many training images")
    s.add_argument("--sampler", choices=SAMPLERS, default="epnas",
                   help="epnas: sampling with annealed τ; pnas: top-K; tpe/random: baselines on the same space")
    s.add_argument("--storage", default="sqlite:///epnas.db", help="Optuna storage URL")
    s.add_argument("--study-name", default=None, help="default: <space>-<dataset>-<sampler>")
    s.add_argument("--k", type=_positive_int, default=25, help="architectures kept per level")
    s.add_argument("--iterations", type=_positive_int, default=3, help="progressions from level 1 to full depth")
    s.add_argument("--tau-start", type=_positive_float, default=10.0, help="temperature of the first iteration")
    s.add_argument("--tau-end", type=_positive_float, default=1.0, help="temperature of the last iteration")
    s.add_argument("--ensemble", type=_positive_int, default=1,
                   help="LSTM surrogates averaged per level (1: the paper's EPNAS; PNAS used 5)")
    s.add_argument("--n-trials", type=_positive_int, default=None,
                   help="trial budget of tpe/random (default: the trials of the EPNAS schedule)")
    s.add_argument("--epochs", type=_positive_int, default=3, help="training epochs per sampled architecture")
    s.add_argument("--layers", type=_positive_int, default=12, help="layers of a complete macro architecture")
    s.add_argument("--channels", type=_positive_int, default=24, help="supernet width")
    s.add_argument("--batch-size", type=_positive_int, default=128)
    s.add_argument("--lr", type=_positive_float, default=0.05)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    s.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    return parser


def _version() -> str:
    from optuna_epnas import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "search":
            return search(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"epnas: error: {err}", file=sys.stderr)
        return 2
    return 0


def search(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    space = MacroSpace(num_layers=args.layers)
    device = None if args.device == "auto" else args.device
    data = load_dataset(args.dataset, root=args.data_root, device=device, seed=args.seed, max_train=args.max_train)
    study_name = args.study_name or f"{args.space}-{args.dataset}-{args.sampler}"
    progressive = args.sampler in ("epnas", "pnas")
    budget = planned_trials(space, args.k, args.iterations)
    if progressive:
        sampler: optuna.samplers.BaseSampler = EPNASSampler(
            space, k=args.k, iterations=args.iterations, selection=args.sampler,
            temperature=(args.tau_start, args.tau_end), seed=args.seed, surrogate_ensemble=args.ensemble,
        )
    else:
        budget = args.n_trials or budget
        sampler = (optuna.samplers.TPESampler(seed=args.seed) if args.sampler == "tpe"
                   else optuna.samplers.RandomSampler(seed=args.seed))
    study = optuna.create_study(
        storage=args.storage, study_name=study_name, direction="maximize", sampler=sampler, load_if_exists=True,
    )
    checkpoint = checkpoint_path_for(args.storage, study_name)
    objective = SupernetObjective(
        space, data, epochs=args.epochs, channels=args.channels, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed,
    )
    objective.attach(study)  # a checkpoint made with other settings fails here, before any trial
    done = _finished(study)
    print(
        f"epnas search: {args.sampler} on {space!r} ({space.cardinality():.3g} architectures), "
        f"{args.dataset} on {data.device} ({len(data.train_x)} train / {len(data.val_x)} val images)\n"
        f"study {study_name!r} in {args.storage}: {budget} trials planned, {done} already done"
        + (", resuming" if 0 < done < budget else ""),
        flush=True,
    )
    progress = _Progress(study, space, budget, sampler if progressive else None, quiet=args.quiet)
    if progressive:
        assert isinstance(sampler, EPNASSampler)
        if not sampler.is_finished(study):
            study.optimize(objective, callbacks=[progress, _stop_when_finished(sampler)])
    elif done < budget:
        study.optimize(objective, callbacks=[
            progress, optuna.study.MaxTrialsCallback(budget, states=(TrialState.COMPLETE, TrialState.PRUNED))])
    _summary(study, space, args.storage, checkpoint)
    return 0


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _stop_when_finished(sampler: EPNASSampler):
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if sampler.is_finished(study):
            study.stop()

    return callback


class _Progress:
    """One line per finished trial: where the schedule is, the result, the best so far."""

    def __init__(self, study, space, budget, sampler, quiet) -> None:
        self.space, self.budget, self.sampler, self.quiet = space, budget, sampler, quiet
        self.started = time.perf_counter()
        self.best_full: float | None = None
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            self._update(t)

    def _update(self, trial) -> None:
        if trial.user_attrs.get("level") == self.space.max_level and trial.value is not None:
            self.best_full = max(self.best_full or 0.0, trial.value)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._update(trial)
        if self.quiet:
            return
        a = trial.user_attrs
        where = (f"iter {a['iteration']}/{self.sampler.iterations} level {a['level']}/{self.space.max_level} "
                 f"τ={a['temperature']:.3g}" if "iteration" in a else f"level {a.get('level', '?')}")
        value = "failed" if trial.value is None else f"acc {trial.value:.4f}"
        best = "-" if self.best_full is None else f"{self.best_full:.4f}"
        print(
            f"[{_finished(study):>4}/{self.budget}] trial {trial.number:>4} {where:<32} {value}  "
            f"best full-depth {best}  ({time.perf_counter() - self.started:.0f}s)",
            flush=True,
        )


def _summary(study: optuna.Study, space, storage: str, checkpoint) -> None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    full = [t for t in complete if t.user_attrs.get("level") == space.max_level]
    print(f"\n{len(complete)} trials complete, {len(full)} of them at full depth ({space.max_level} layers).")
    if full:
        best = max(full, key=lambda t: t.value)
        print(f"best architecture (trial {best.number}): {best.user_attrs['arch']}")
        print(f"  validation accuracy (supernet weights, {best.user_attrs.get('level')} layers): {best.value:.4f}")
        print(f"  parameters (stand-alone): {best.user_attrs.get('params')}")
        print("  note: a weight-sharing estimate for ranking, not the accuracy of the network trained alone")
    print(f"study stored in {storage} as {study.study_name!r}" + (f"; supernet in {checkpoint}" if checkpoint else ""))
    print(f"look at it with: optuna-dashboard {storage}")


if __name__ == "__main__":
    sys.exit(main())
