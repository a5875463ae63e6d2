"""The search set-up shared by ``epnas search`` and ``epnas compare``: the search space from the command
line, the sampler, the study with its supernet objective (:func:`open_search`), and the per-trial progress lines."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_epnas.argtypes import positive_float, positive_int
from optuna_epnas.dashboard import DashboardRecorder
from optuna_epnas.data import DeviceData
from optuna_epnas.objective import SupernetObjective, checkpoint_path_for
from optuna_epnas.sampler import EPNASSampler
from optuna_epnas.schedule import planned_trials
from optuna_epnas.spaces import MACRO_OPS, MICRO_OPS, MacroSpace, MicroSpace, SearchSpace

SAMPLER_NAMES = ("epnas", "pnas", "tpe", "random")
PROGRESSIVE = ("epnas", "pnas")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# -- the search space, from the command line ---------------------------------------------------------
def op_list(text: str) -> tuple[str, ...]:
    ops = tuple(o.strip() for o in text.split(",") if o.strip())
    unknown = [o for o in ops if o not in MICRO_OPS]
    if not ops or unknown:
        raise argparse.ArgumentTypeError(f"unknown operation(s) {unknown or [text]}; choose from {','.join(MICRO_OPS)}")
    return ops


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


def add_search_arguments(group: argparse._ActionsContainer) -> None:
    """The sampler and supernet-training options of ``epnas search`` and ``epnas compare``."""
    group.add_argument("--k", type=positive_int, default=25, help="architectures kept per level")
    group.add_argument("--iterations", type=positive_int, default=3, help="progressions from level 1 to full depth")
    group.add_argument("--tau-start", type=positive_float, default=10.0, help="EPNAS temperature, first iteration")
    group.add_argument("--tau-end", type=positive_float, default=1.0, help="EPNAS temperature, last iteration")
    group.add_argument("--ensemble", type=positive_int, default=1,
                       help="LSTM surrogates averaged per level (1: the paper's EPNAS; PNAS used 5)")
    group.add_argument("--epochs", type=positive_int, default=3, help="supernet training epochs per trial")
    group.add_argument("--channels", type=positive_int, default=24, help="supernet width")
    group.add_argument("--batch-size", type=positive_int, default=128, help="supernet SGD batch size")
    group.add_argument("--lr", type=positive_float, default=0.05, help="supernet SGD learning rate")


def make_space(args: argparse.Namespace) -> SearchSpace:
    if args.space == "micro":
        return MicroSpace(num_blocks=args.blocks, cells=args.cells, ops=args.ops or MICRO_OPS)
    return MacroSpace(num_layers=args.layers, ops=args.ops or MACRO_OPS)


# -- a search, set up as `epnas search` sets it up -----------------------------------------------------
def make_sampler(name: str, space: SearchSpace, *, k: int, iterations: int, temperature: tuple[float, float],
                 ensemble: int, seed: int) -> optuna.samplers.BaseSampler:
    """EPNAS/PNAS (the progressive sampler in either selection mode), TPE or random, seeded."""
    if name in PROGRESSIVE:
        return EPNASSampler(space, k=k, iterations=iterations, selection=name, temperature=temperature, seed=seed,
                            surrogate_ensemble=ensemble)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLER_NAMES)}")


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE and PRUNED trials in trial order: what a trial budget counts (failed ones are retried)."""
    return sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)


@dataclass
class Search:
    """A study, its sampler and its supernet objective, ready to run or resume.

    ``budget_is_exact``: stop at exactly ``budget`` finished trials, whatever the sampler (a
    progressive sampler stops mid-schedule or goes on into further iterations). Otherwise a
    progressive sampler runs its schedule to the end (``budget`` is then its planned trials).
    """

    study: optuna.Study
    sampler: optuna.samplers.BaseSampler
    objective: SupernetObjective
    space: SearchSpace
    budget: int
    budget_is_exact: bool
    checkpoint: Path | None

    @property
    def progressive(self) -> bool:
        return isinstance(self.sampler, EPNASSampler)

    @property
    def finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED))

    def is_done(self) -> bool:
        if self.progressive and not self.budget_is_exact:
            assert isinstance(self.sampler, EPNASSampler)
            return self.sampler.is_finished(self.study)
        return self.finished >= self.budget

    def run(self, callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = ()) -> None:
        """Run what is left (nothing when done), with the dashboard notes ``epnas search`` writes."""
        recorder = DashboardRecorder(planned_trials=self.budget)  # trial notes + drawings, a study note
        if not self.is_done():
            self.study.optimize(self.objective, callbacks=[*callbacks, recorder, self._stop_rule()])
        recorder.write_study_note(self.study)  # final numbers, also when nothing was left to run

    def _stop_rule(self) -> Callable[[optuna.Study, FrozenTrial], None]:
        if self.progressive and not self.budget_is_exact:
            def stop_when_finished(study: optuna.Study, trial: FrozenTrial) -> None:
                if self.is_done():
                    study.stop()

            return stop_when_finished
        return optuna.study.MaxTrialsCallback(self.budget, states=FINISHED)


def open_search(
    space: SearchSpace, data: DeviceData, sampler: str, storage: str | optuna.storages.BaseStorage, study_name: str,
    *, k: int = 25, iterations: int = 3, temperature: tuple[float, float] = (10.0, 1.0), ensemble: int = 1,
    seed: int = 0, epochs: int = 3, channels: int = 24, batch_size: int = 128, lr: float = 0.05,
    budget: int | None = None,
) -> Search:
    """Create or load the study and attach its supernet (``epnas search`` and ``epnas compare``).

    ``budget=None``: a progressive sampler runs its schedule, TPE/random get as many trials as the
    schedule plans; an int: every sampler gets exactly that many finished trials. A checkpoint or
    study made with other settings fails here, before any trial.
    """
    made = make_sampler(sampler, space, k=k, iterations=iterations, temperature=temperature, ensemble=ensemble,
                        seed=seed)
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", sampler=made,
                                load_if_exists=True)
    objective = SupernetObjective(space, data, epochs=epochs, channels=channels, batch_size=batch_size, lr=lr,
                                  seed=seed)
    objective.attach(study)
    return Search(study=study, sampler=made, objective=objective, space=space,
                  budget=budget or planned_trials(space, k, iterations), budget_is_exact=budget is not None,
                  checkpoint=checkpoint_path_for(storage, study_name))


# -- progress lines ----------------------------------------------------------------------------------
def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


class Progress:
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
