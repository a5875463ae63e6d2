"""The search set-up shared by ``epnas search`` and ``epnas compare``: the sampler, the study with its
supernet objective (:func:`open_search`), the per-trial progress lines, and what ``epnas search`` says
before and after a search."""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_epnas.storage._storage import set_study_attr, study_attrs
from optuna_epnas.analysis import EXTRA_MODULES, INSTALL_EXTRA
from optuna_epnas.costs.cost import NetworkSize, total_cost
from optuna_epnas.data.device import DeviceData
from optuna_epnas.costs.latency import LatencyTable, latency_table
from optuna_epnas.supernet.objective import SupernetObjective
from optuna_epnas.sampler.epnas import EPNASSampler
from optuna_epnas.sampler.planning import Rescorer
from optuna_epnas.sampler.pareto import full_depth_front
from optuna_epnas.sampler.schedule import planned_trials
from optuna_epnas.settings import PROGRESSIVE, SAMPLER_NAMES, SUPERNET, SearchSettings, resolve_settings
from optuna_epnas.spaces import SearchSpace
from optuna_epnas.storage.keys import FAULT_ATTR, OBJECTIVE_ATTR, OWNER_ATTR, SAMPLER_ATTR
from optuna_epnas.storage.storages import open_storage
from optuna_epnas.costs.values import COST_NAMES, accuracy_of, full_size, is_full_size

_logger = logging.getLogger(__name__)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: ``epnas search --pruner``: over the per-epoch reports of ``--report-epochs`` (none: Optuna's
#: default MedianPruner would prune as soon as trials report).
PRUNERS: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
    "none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
    "successive-halving": optuna.pruners.SuccessiveHalvingPruner,
}


# -- a search, set up as `epnas search` sets it up -----------------------------------------------------
def make_sampler(name: str, space: SearchSpace, settings: SearchSettings, seed: int,
                 rescore: Rescorer | None = None, network: NetworkSize | None = None,
                 latency: LatencyTable | None = None, device: Any = None) -> optuna.samplers.BaseSampler:
    """The named sampler, seeded: a progressive variant (EPNAS or PNAS selection), TPE or random.
    ``network``, ``latency``: what the settings' limits and cost objective are counted in (the objective's);
    ``device``: where a progressive sampler's surrogates run (the search's)."""
    if name in PROGRESSIVE:
        if settings.rescore and rescore is None:
            raise ValueError("these settings re-score architectures on the supernet: pass its rescore callable")
        return EPNASSampler(space, k=settings.k, iterations=settings.iterations,
                            selection="pnas" if name == "pnas" else "epnas", temperature=settings.temperature,
                            seed=seed, surrogate_ensemble=settings.ensemble, score=settings.score,
                            acquisition=settings.acquisition, beta=settings.beta,
                            rescore=rescore if settings.rescore else None,
                            parent_weight=settings.parent_weight, diverse=settings.diverse,
                            max_params=settings.max_params, max_macs=settings.max_macs, network=network,
                            n_trials=settings.n_trials, reuse=settings.reuse,
                            objectives=settings.objectives, max_latency_ms=settings.max_latency_ms, latency=latency,
                            surrogate_device=None if device is None else str(device))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":  # generations of 10: at the ~50 trials of a proxy budget the default 50 would never evolve
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
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
    ``cost_budget`` (MACs, :mod:`optuna_epnas.costs.cost`), for a sampler without a schedule: run until the
    search has spent that much compute (the trial that crosses it is the last); ``budget`` is then
    only a safety cap on trials.
    """

    study: optuna.Study
    sampler: optuna.samplers.BaseSampler
    objective: SupernetObjective
    space: SearchSpace
    budget: int
    budget_is_exact: bool
    checkpoint: Path | None
    cost_budget: float | None = None

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
        if self.cost_budget is not None:
            return total_cost(self.study) >= self.cost_budget or self.finished >= self.budget
        return self.finished >= self.budget

    def run(self, callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = ()) -> None:
        """Run what is left (nothing when done), with the dashboard notes ``epnas search`` writes
        (when optuna-dashboard is installed)."""
        recorder = _recorder(self.budget)  # trial notes + drawings, a study note
        notes = [] if recorder is None else [recorder]
        try:
            if not self.is_done():
                # a diverging architecture fails its trial (retried, then given up); the search goes on
                self.study.optimize(self.objective, callbacks=[*callbacks, *notes, self._stop_rule()],
                                    catch=(FloatingPointError,))
        except BaseException as err:
            self._settle_running_trials()
            original = _unmasked(err)
            if original is not err:
                raise original from None
            raise
        finally:
            self.objective.detach(self.study)  # another process may resume it now
            if recorder is not None:
                recorder.close()  # the drawings still being made
        if recorder is not None:
            recorder.write_study_note(self.study, final=True)  # final numbers, also when nothing was left to run

    def _settle_running_trials(self) -> None:
        """After an interrupt or error outside the objective (while a level is planned, or as Optuna
        records a result), this process's trial may be left RUNNING: complete it if the objective had
        finished it (its training is in the weights), otherwise fail it as a fault, so that its slot runs
        again -- now, rather than when a resume finds its process gone."""
        from optuna_epnas.storage._storage import set_trial_attr
        from optuna_epnas.supernet.checkpoint import tell_trained
        from optuna_epnas.storage.owner import process_mark

        objective = self.objective
        try:
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.system_attrs.get(OWNER_ATTR) != process_mark():
                    continue
                if t.number in objective.trained:
                    tell_trained(self.study, t.number, objective.values[t.number], t.number in objective.pruned)
                else:
                    set_trial_attr(self.study, t, FAULT_ATTR, "interrupted")
                    self.study.tell(t.number, state=TrialState.FAIL)
        except Exception as err:  # the storage may be what failed: a resume settles them instead
            _logger.warning("could not settle this process's running trials: %s", err)

    def _stop_rule(self) -> Callable[[optuna.Study, FrozenTrial], None]:
        if (self.progressive and not self.budget_is_exact) or self.cost_budget is not None:
            def stop_when_done(study: optuna.Study, trial: FrozenTrial) -> None:
                if self.is_done():
                    study.stop()

            return stop_when_done
        return optuna.study.MaxTrialsCallback(self.budget, states=FINISHED)


def _unmasked(err: BaseException) -> BaseException:
    """What really happened when Optuna's ``_run_trial`` masks an interrupt or error raised while it
    records a result (an UnboundLocalError or its "Should not reach" assertion, from its own ``finally``)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if (err.__context__ is not None and tb is not None and tb.tb_frame.f_code.co_name == "_run_trial"
            and "optuna" in tb.tb_frame.f_code.co_filename):
        return err.__context__
    return err


#: Said once per process when the dashboard notes cannot be written.
NOTES_OFF = "optuna-dashboard notes are off ({missing} is not installed): " + INSTALL_EXTRA + " to record them"
_notes_off_said = False


def _recorder(planned: int) -> Any:
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


def make_objective(space: SearchSpace, data: DeviceData, settings: SearchSettings, seed: int,
                   **kwargs: Any) -> SupernetObjective:
    """The supernet objective a search with ``settings`` and ``seed`` trains (not yet attached to a study);
    ``kwargs``: where its checkpoint goes (``checkpoint``, ``takeover``)."""
    estimator = None
    if settings.estimator != "supernet":
        from optuna_epnas.estimators import ZeroCost

        estimator = ZeroCost(settings.estimator)
    return SupernetObjective(space, data, epochs=settings.epochs, channels=settings.channels,
                             batch_size=settings.batch_size, lr=settings.lr, seed=seed, estimator=estimator,
                             warmup_epochs=0 if estimator else settings.warmup_epochs, max_params=settings.max_params,
                             max_macs=settings.max_macs, objectives=settings.objectives,
                             max_latency_ms=settings.max_latency_ms, latency=latency_for(space, data, settings),
                             **kwargs)


def latency_for(space: SearchSpace, data: DeviceData, settings: SearchSettings) -> LatencyTable | None:
    """The device's latency table when the settings limit or minimise latency (measured once, cached)."""
    if settings.max_latency_ms is None and "latency" not in settings.objectives:
        return None
    return latency_table(space, NetworkSize.of(data, settings.channels), data.device)




def _record_sampler(study: optuna.Study, sampler: str) -> None:
    stored = study_attrs(study).get(SAMPLER_ATTR)
    if stored is None:
        set_study_attr(study, SAMPLER_ATTR, sampler)
    elif stored != sampler:
        raise ValueError(f"study {study.study_name!r} was searched with --sampler {stored}, not {sampler}: its "
                         f"values would mix two searches. Resume it with --sampler {stored}, or use a new study name")


def open_search(
    space: SearchSpace, data: DeviceData, sampler: str, storage: str | optuna.storages.BaseStorage, study_name: str,
    *, settings: SearchSettings | None = None, seed: int = 0, budget: int | None = None,
    cost_budget: float | None = None, checkpoint: str | Path | None = None, heartbeat: float | None = None,
    takeover: bool = False, report_epochs: bool = False, pruner: optuna.pruners.BasePruner | None = None,
    checkpoint_every: float = SUPERNET.checkpoint_every,
) -> Search:
    """Create or load the study and attach its supernet (``epnas search`` and ``epnas compare``).

    ``settings``: the named sampler's (:func:`resolve_settings`; default: its defaults).
    ``budget=None``: a progressive sampler runs its schedule, TPE/random get as many trials as the
    schedule plans; an int: every sampler gets exactly that many finished trials. ``cost_budget``
    (MACs; TPE/random only): run until that much compute is spent, ``budget`` capping the trials.
    ``checkpoint``: where the supernet goes (a file or a directory; default beside a SQLite or journal
    file, or where the study recorded it); ``heartbeat``: seconds between Optuna's RDB heartbeats, so
    that a worker lost on another machine has its trial failed and its slot run again;
    ``takeover``, ``report_epochs``, ``checkpoint_every``: see :class:`~optuna_epnas.SupernetObjective`; ``pruner``: the
    study's (default: none -- not Optuna's MedianPruner).
    A checkpoint or study made with other settings, or another sampler, fails here, before any trial.
    """
    settings = settings or resolve_settings(sampler)
    if not isinstance(pruner, (optuna.pruners.NopPruner, type(None))) and not report_epochs:
        raise ValueError("a pruner stops trials by their per-epoch reports: add --report-epochs (report_epochs=True)")
    objective = make_objective(space, data, settings, seed, checkpoint=checkpoint, takeover=takeover,
                               report_epochs=report_epochs, checkpoint_every=checkpoint_every)
    made = make_sampler(sampler, space, settings, seed, rescore=objective.rescore, network=objective.network_size,
                        latency=objective.latency, device=data.device)
    if cost_budget is not None and isinstance(made, EPNASSampler):
        raise ValueError("a progressive sampler runs its schedule: a compute budget is for TPE and random search")
    opened = open_storage(storage, heartbeat) if isinstance(storage, str) else storage
    directions = ["maximize"] + ["minimize"] * (len(settings.objectives) - 1)
    study = optuna.create_study(storage=opened, study_name=study_name, directions=directions, sampler=made,
                                pruner=pruner or optuna.pruners.NopPruner(), load_if_exists=True)
    if [d.name.lower() for d in study.directions] != directions:
        raise ValueError(f"study {study_name!r} has {len(study.directions)} objective(s) "
                         f"({', '.join(d.name.lower() for d in study.directions)}), not the --objectives given "
                         f"({', '.join(settings.objectives)}): resume it with its own, or use a new study name")
    _record_sampler(study, sampler)
    objective.attach(study)  # before the sampler runs: completes a trial a kill left unrecorded
    return Search(study=study, sampler=made, objective=objective, space=space,
                  budget=budget or settings.n_trials or planned_trials(space, settings.k, settings.iterations,
                                                                        settings.reuse),
                  budget_is_exact=budget is not None, checkpoint=objective.checkpoint_path,
                  cost_budget=cost_budget)


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
