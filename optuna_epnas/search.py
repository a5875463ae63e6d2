"""The search set-up shared by ``epnas search`` and ``epnas compare``: the sampler, the study with its
supernet objective (:func:`open_search`), and the loop that runs it (:class:`Search`). What the command
prints per trial, before and after, and its dashboard notes are :mod:`optuna_epnas.cli.progress`'s."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_epnas.storage._storage import set_study_attr, study_attrs
from optuna_epnas.costs.cost import NetworkSize, total_cost
from optuna_epnas.data.device import DeviceData
from optuna_epnas.costs.latency import LatencyTable, latency_table
from optuna_epnas.costs.model import CostModel, Limits
from optuna_epnas.supernet.objective import SupernetObjective
from optuna_epnas.supernet.store import CheckpointStore
from optuna_epnas.supernet.trainer import SupernetTrainer
from optuna_epnas.sampler.epnas import EPNASSampler
from optuna_epnas.sampler.presets import sampler_options
from optuna_epnas.sampler.surrogate import Rescorer
from optuna_epnas.sampler.schedule import planned_trials
from optuna_epnas.settings import PROGRESSIVE, SAMPLER_NAMES, SUPERNET, SearchSettings, resolve_settings
from optuna_epnas.spaces import SearchSpace
from optuna_epnas.storage.keys import FAULT_ATTR, OWNER_ATTR, SAMPLER_ATTR
from optuna_epnas.storage.storages import open_storage

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
                 rescore: Rescorer | None = None, costs: CostModel | None = None,
                 device: Any = None) -> optuna.samplers.BaseSampler:
    """The named sampler, seeded: a progressive variant (EPNAS or PNAS selection), TPE or random.
    ``costs``: the objective's cost model (its limits and cost objective); ``device``: where a
    progressive sampler's surrogates run (the search's)."""
    if name in PROGRESSIVE:
        return EPNASSampler(space, seed=seed, costs=costs,
                            **sampler_options(settings, pnas=name == "pnas", rescore=rescore, device=device))
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

    def run(self, callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
            recorder: Any = None) -> None:
        """Run what is left (nothing when done). ``recorder``: what writes the dashboard notes, a
        callback that is also closed at the end and writes the study's final note (``epnas search``'s:
        :func:`optuna_epnas.cli.progress.dashboard_recorder`); None: no notes."""
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


def make_objective(space: SearchSpace, data: DeviceData, settings: SearchSettings, seed: int,
                   **kwargs: Any) -> SupernetObjective:
    """The supernet objective a search with ``settings`` and ``seed`` trains (not yet attached to a study);
    ``kwargs``: :class:`~optuna_epnas.SupernetObjective`'s ``checkpoint`` (where and when its checkpoint
    goes) and ``report_epochs``."""
    estimator = None
    if settings.estimator != "supernet":
        from optuna_epnas.estimators import ZeroCost

        estimator = ZeroCost(settings.estimator)
    trainer = SupernetTrainer(space, data, epochs=settings.epochs, channels=settings.channels,
                              batch_size=settings.batch_size, lr=settings.lr, seed=seed,
                              warmup_epochs=0 if estimator else settings.warmup_epochs)
    costs = CostModel(latency=latency_for(space, data, settings),
                      minimize=settings.objectives[1] if len(settings.objectives) > 1 else None,
                      limits=Limits(settings.max_params, settings.max_macs, settings.max_latency_ms))
    return SupernetObjective(trainer, costs=costs, estimator=estimator, **kwargs)


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
    ``takeover``, ``checkpoint_every``: see :class:`~optuna_epnas.supernet.store.CheckpointStore` (its
    ``takeover``, ``every``); ``report_epochs``: see :class:`~optuna_epnas.SupernetObjective`; ``pruner``: the
    study's (default: none -- not Optuna's MedianPruner).
    A checkpoint or study made with other settings, or another sampler, fails here, before any trial.
    """
    settings = settings or resolve_settings(sampler)
    if not isinstance(pruner, (optuna.pruners.NopPruner, type(None))) and not report_epochs:
        raise ValueError("a pruner stops trials by their per-epoch reports: add --report-epochs (report_epochs=True)")
    objective = make_objective(space, data, settings, seed, report_epochs=report_epochs,
                               checkpoint=CheckpointStore(checkpoint, every=checkpoint_every, takeover=takeover))
    made = make_sampler(sampler, space, settings, seed, rescore=objective.rescore, costs=objective.costs,
                        device=data.device)
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
