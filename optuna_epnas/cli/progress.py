"""What ``epnas search`` and ``epnas compare`` print: a line per finished trial, the start line, the summary
of a finished search; and the dashboard notes they write where the analysis extra is installed (its
libraries imported only here, when a search runs)."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from optuna_epnas.analysis import EXTRA_MODULES, INSTALL_EXTRA
from optuna_epnas.costs.values import COST_NAMES, accuracy_of, full_size, is_full_size
from optuna_epnas.data.device import DeviceData
from optuna_epnas.sampler.pareto import full_depth_front
from optuna_epnas.search import FINISHED, Search
from optuna_epnas.settings import SearchSettings
from optuna_epnas.spaces import SearchSpace
from optuna_epnas.storage._storage import study_attrs
from optuna_epnas.storage.keys import OBJECTIVE_ATTR


#: Said once per process when the dashboard notes cannot be written.
NOTES_OFF = "optuna-dashboard notes are off ({missing} is not installed): " + INSTALL_EXTRA + " to record them"
_notes_off_said = False


def dashboard_recorder(planned: int) -> Any:
    """A :class:`~optuna_epnas.analysis.dashboard.DashboardRecorder`, or None (said once) where the
    analysis extra (optuna-dashboard, graphviz) is not installed: the search runs without notes."""
    global _notes_off_said
    try:
        from optuna_epnas.analysis.dashboard import DashboardRecorder
    except ImportError as err:
        if err.name not in EXTRA_MODULES:
            raise
        if not _notes_off_said:
            print(NOTES_OFF.format(missing=err.name), flush=True)
            _notes_off_said = True
        return None
    return DashboardRecorder(planned_trials=planned)


# -- progress lines ----------------------------------------------------------------------------------
def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


class Progress:
    """One line per finished trial: where the schedule is, the result, the best so far."""

    def __init__(self, study, space, budget, sampler, quiet) -> None:
        self.space, self.budget, self.sampler, self.quiet = space, budget, sampler, quiet
        self.label = "score" if "estimator" in study_attrs(study).get(OBJECTIVE_ATTR, {}) else "acc"
        self.started = time.perf_counter()
        self.best_full: float | None = None
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            self._update(t)
        self.finished = _finished(study)  # counted from here on, not re-read per trial

    def _update(self, trial) -> None:
        if is_full_size(trial, self.space.max_level):  # any scale: an estimator's scores may be negative
            value = accuracy_of(trial)
            self.best_full = value if self.best_full is None else max(self.best_full, value)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._update(trial)
        self.finished += trial.state in FINISHED
        if self.quiet:
            return
        a = trial.user_attrs
        where = (f"iter {a['iteration']}/{self.sampler.iterations} level {a['level']}/{self.space.max_level} "
                 f"τ={a['temperature']:.3g}" if "iteration" in a else f"level {a.get('level', '?')}")
        value = "failed" if accuracy_of(trial) is None else f"{self.label} {accuracy_of(trial):.4f}" + (
            f" {trial.values[1]:,.0f}" if len(trial.values) > 1 else "") + (
            f" (pruned after epoch {trial.last_step + 1})" if trial.state == TrialState.PRUNED else "")
        best = "-" if self.best_full is None else f"{self.best_full:.4f}"
        print(
            f"[{self.finished:>4}/{self.budget}] trial {trial.number:>4} {where:<32} {value}  "
            f"best full-depth {best}  ({time.perf_counter() - self.started:.0f}s)",
            flush=True,
        )


# -- what `epnas search` says before and after ---------------------------------------------------------
def start_line(run: Search, sampler: str, data: DeviceData, dataset: str, study_name: str, storage_url: str,
               settings: SearchSettings, ranks: int = 1) -> str:
    """What is searched, on what, with which limits, and how far the study already is."""
    # First: a progressive sampler refuses a study searched with other settings here, before "resuming" is said.
    left = not run.is_done()
    space, done = run.space, run.finished
    limits = {k: v for k, v in (("parameters", settings.max_params), ("multiply-adds", settings.max_macs),
                                ("ms of estimated latency", settings.max_latency_ms)) if v}
    return (
        f"epnas search: {sampler} on {space!r} ({space.cardinality():.3g} architectures), "
        f"{dataset} on {data.device}" + (f" × {ranks} ranks" if ranks > 1 else "")
        + f" ({len(data.train_x)} train / {len(data.val_x)} val images)"
        + "".join(f"\nat most {v:,} {name} (a network of --channels {settings.channels})" for name, v in limits.items())
        + f"\nstudy {study_name!r} in {storage_url}: {'at most ' if limits and run.progressive else ''}"
        f"{run.budget} trials planned, {done} already done"
        + ((", resuming" if left else ", nothing left to run") if done else "")
    )


def _train_command(study: optuna.Study, storage: str) -> str:
    """``epnas train`` of ``study``, quoted for a shell (a URL's ``?timeout=60``, a name with spaces)."""
    return shlex.join(["epnas", "train", "--study", study.study_name, "--storage", storage])


def print_summary(study: optuna.Study, space: SearchSpace, storage: str, checkpoint: Path | None,
                  trials_before: int = 0) -> None:
    """The finished search: its best full-depth architecture (or Pareto front) and what to run next.
    ``trials_before``: the trials the study had before this run (the failures of this run are numbered
    from it: only their errors were printed above)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    full = full_size(complete, space.max_level)
    print(f"\n{len(complete)} trials complete, {len(full)} of them at full depth ({space.max_level} {space.units}).")
    failed = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))]
    earlier = [n for n in failed if n < trials_before]  # their errors went to the output of the runs that had them
    now = len(failed) - len(earlier)
    said = [f"{now} trial(s) failed in this run: their errors are above"] if now else []
    if earlier:
        listed = ", ".join(map(str, earlier[:10])) + (", ..." if len(earlier) > 10 else "")
        said.append(f"{len(earlier)} trial(s) failed in earlier runs (trial numbers {listed}): their errors are in "
                    "those runs' output")
    if said:
        print("; ".join(said) + " (a trial whose process died is run again; an architecture whose training "
              "failed is retried once, then given up)")
    if full and len(study.directions) > 1:
        _print_front(study, space, storage)
    elif full:
        best = max(full, key=lambda t: t.value)
        print(f"best architecture (trial {best.number}): {best.user_attrs['arch']}")
        estimator = study_attrs(study).get(OBJECTIVE_ATTR, {}).get("estimator")
        if estimator:
            print(f"  {estimator['proxy']} score (untrained network, {best.user_attrs.get('level')} {space.units}): "
                  f"{best.value:.4f}")
        else:
            print(f"  validation accuracy (supernet weights, {best.user_attrs.get('level')} {space.units}): {best.value:.4f}")
        print(f"  parameters (stand-alone): {best.user_attrs.get('params')}")
        print("  note: " + ("a zero-cost estimate for ranking" if estimator else "a weight-sharing estimate for ranking")
              + ", not the accuracy of the network trained alone")
        print(f"train it from scratch with: {_train_command(study, storage)}")
    print(f"study stored in {storage} as {study.study_name!r}" + (f"; supernet in {checkpoint}" if checkpoint else ""))
    print(f"look at it with: {shlex.join(['epnas', 'dashboard', '--storage', storage])}")


def _print_front(study: optuna.Study, space: SearchSpace, storage: str) -> None:
    spec = study_attrs(study).get(OBJECTIVE_ATTR, {})
    cost = COST_NAMES[spec.get("objectives", ["accuracy", "params"])[1]]
    front = full_depth_front(study, space.max_level)
    print(f"Pareto front of the full-depth networks ({len(front)}; validation accuracy on supernet weights, "
          f"{cost} of the stand-alone network at the search's width), cheapest first:")
    for t in front:
        print(f"  trial {t.number:>4}  accuracy {t.values[0]:.4f}  {t.values[1]:>14,.0f} {cost}  {t.user_attrs['arch']}")
    print("  note: weight-sharing estimates for ranking, not the accuracies of the networks trained alone")
    print(f"train one from scratch with: {_train_command(study, storage)} --trial N")
