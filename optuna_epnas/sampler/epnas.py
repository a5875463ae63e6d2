"""EPNASSampler: progressive architecture search as an Optuna sampler.

Each *stage* of the schedule is one level of one iteration. Level 1 evaluates every one-unit
architecture; level l+1 expands the architectures measured at level l by every possible next unit,
scores all of them with the LSTM surrogate (trained on every distinct architecture measured in the
earlier stages) and keeps K: drawn without replacement with p ∝ s^(1/τ) (EPNAS) or the top K (PNAS).
The progression from level 1 to the last level repeats for ``iterations`` iterations, τ annealed
across them.

Everything the sampler needs lives in the study storage, so a new process that loads the study goes
on exactly where the last one stopped:
- each trial's stage and slot (trial system attr ``epnas:stage``) and the process that ran it
  (``epnas:owner``), plus readable user attrs (iteration, level, arch, τ, prediction, probability);
- each stage's plan (study system attr ``epnas:plan:<iteration>:<level>``) and the settings
  (``epnas:config``), written by the first trial of the stage.
Slots are claimed in trial-number order -- a trial waits until every earlier running trial has
claimed its own -- so two processes sharing a storage never take the same slot. A stage is planned
only once the previous one has finished, so parallel workers wait at each level's boundary.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_epnas.cost import PLAN_PREFIX, NetworkSize, child_sizes, completion_sizes, per_cost_class
from optuna_epnas.latency import LatencyTable
from optuna_epnas.owner import is_gone, process_mark
from optuna_epnas.sampler.pareto import crowding, front_ranks
from optuna_epnas.sampler.schedule import TemperatureSpec, planned_trials, temperature_schedule
from optuna_epnas.spaces.base import SearchSpace
from optuna_epnas._storage import batched_writes
from optuna_epnas.sampler.surrogate import LSTMSurrogate
from optuna_epnas.values import COSTS, check_objectives

_logger = logging.getLogger(__name__)

STAGE_ATTR = "epnas:stage"
OWNER_ATTR = "epnas:owner"
#: Set (by :meth:`EPNASSampler.after_trial`) on a trial whose objective raised or returned no value: a
#: failure of the architecture, counted against its slot's retries. A FAIL trial without it ended
#: because its process died (killed, or found stale by Optuna's heartbeat): its slot is run again.
OBJECTIVE_FAILED_ATTR = "epnas:objective_failed"
#: Set by an objective on a trial it fails for a reason that is not the architecture's (a checkpoint
#: it could not write): not counted either.
FAULT_ATTR = "epnas:fault"
CONFIG_ATTR = "epnas:config"
#: Set on the study when a trial first asks for an architecture (``space.suggest``): from then on every
#: trial claims its slot when its sampling starts. Before it, EPNAS takes no slot and leaves every
#: parameter to its independent sampler (an objective that never asks for an architecture).
USES_SPACE_ATTR = "epnas:uses_space"
SELECTIONS = ("epnas", "pnas")
SCORES = ("raw", "z")
ACQUISITIONS = ("mean", "ucb", "ei")
#: A callable ``(study, arch keys) -> (accuracies on the current supernet weights, MACs spent)``, such
#: as :meth:`optuna_epnas.SupernetObjective.rescore`.
Rescorer = Callable[[Study, Sequence[str]], tuple[Sequence[float], float]]
_UNMARKED_GRACE_SECONDS = 10.0
# Optuna's function without its experimental-API warning on every claim (it is stable in use here).
_fail_stale_trials = getattr(optuna.storages.fail_stale_trials, "__wrapped__", optuna.storages.fail_stale_trials)


def plan_attr(iteration: int, level: int) -> str:
    return f"{PLAN_PREFIX}{iteration}:{level}"


def _still_choosing(trial: FrozenTrial) -> bool:
    """An earlier trial that may yet claim a slot: later trials wait for it (claims go in number order).

    A trial gets its owner mark an instant after it is created, so a running trial without one is
    waited for briefly; past that it is not an EPNAS trial (another sampler's, or enqueued).
    """
    if trial.state != TrialState.RUNNING or STAGE_ATTR in trial.system_attrs:
        return False
    if OWNER_ATTR in trial.system_attrs:
        return True
    start = trial.datetime_start
    return start is None or (datetime.datetime.now() - start).total_seconds() < _UNMARKED_GRACE_SECONDS


@dataclass
class _Slot:
    done: bool = False  # a COMPLETE or PRUNED trial measured it (pruned: at its last report)
    held: bool = False  # a live RUNNING trial is measuring it
    failures: int = 0
    value: float | None = None
    number: int = -1  # trial number of the completed measurement
    feasible: bool = True  # no Optuna constraint over 0 (trial.set_constraint)


@dataclass
class _Ledger:
    """Which slot of which stage each trial took, and how it went.

    Kept up to date rather than rebuilt (:meth:`update`): a finished trial never changes, so each is
    read once; only the running ones are looked at again (rebuilding took ~9 ms at 1,000 trials, twice
    per trial)."""

    stages: dict[tuple[int, int], dict[int, _Slot]] = field(default_factory=lambda: defaultdict(dict))
    seen: set[int] = field(default_factory=set)  # finished trials already counted
    held: set[tuple[int, int, int]] = field(default_factory=set)  # slots a RUNNING/WAITING trial holds now

    @classmethod
    def from_trials(cls, trials: Sequence[FrozenTrial]) -> "_Ledger":
        return cls().update(trials)

    def update(self, trials: Sequence[FrozenTrial]) -> "_Ledger":
        """Count the finished trials not counted yet; the running ones decide what is held."""
        self.held = set()
        for t in trials:
            if t.number in self.seen:
                continue
            stage = t.system_attrs.get(STAGE_ATTR)
            if t.state in (TrialState.RUNNING, TrialState.WAITING):
                if stage is not None:
                    self.held.add(tuple(stage))
                continue
            self.seen.add(t.number)
            if stage is None:
                continue
            it, level, slot = stage
            s = self.stages[(it, level)].setdefault(slot, _Slot())
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED):  # pruned: at its last report (Optuna's value)
                if t.number < s.number:  # the latest measurement of a slot counts, in whatever order read
                    continue
                value = t.values[0] if t.values else None  # several objectives: the accuracy comes first
                s.done, s.number = True, t.number
                # a non-finite value is no measurement: not a parent, not a surrogate row
                s.value = float(value) if value is not None and math.isfinite(value) else None
                s.feasible = all(c <= 0.0 for c in t.constraints.values())
            elif t.state == TrialState.FAIL:
                if OBJECTIVE_FAILED_ATTR in t.system_attrs and FAULT_ATTR not in t.system_attrs:
                    s.failures += 1
        return self

    def slot(self, it: int, level: int, slot: int) -> _Slot:
        s = self.stages.get((it, level), {}).get(slot, _Slot())
        return dataclasses.replace(s, held=True) if (it, level, slot) in self.held else s


@dataclass
class _StudyState:
    """What a sampler caches of one study: its checked settings and its stages' plans."""

    storage: Any  # held so that the id() in the cache key cannot be reused by another storage
    config: dict[str, Any] | None = None
    plans: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    uses_space: bool = False
    maximize: bool = True
    ledger: _Ledger = field(default_factory=_Ledger)
    ledger_lock: Any = field(default_factory=threading.Lock)

    def ledger_of(self, trials: Sequence[FrozenTrial]) -> _Ledger:
        """The study's ledger brought up to date with ``trials`` (all of the study's)."""
        with self.ledger_lock:
            return self.ledger.update(trials)


class _Targets:
    """What the surrogate fits, from a study's values: "higher is better", in [0, 1].

    Accuracy-like values (a maximised study, every value in [0, 1]) are fitted as they are; anything
    else -- an error or loss being minimised, a percentage -- is turned so that higher is better and
    scaled to [0.05, 0.95] over the values measured so far (the surrogate's output is a sigmoid).
    """

    def __init__(self, values: Sequence[float], maximize: bool) -> None:
        self.sign = 1.0 if maximize else -1.0
        v = np.asarray(values, dtype=np.float64) * self.sign
        self.identity = maximize and bool(np.all((v >= 0.0) & (v <= 1.0)))
        self.low, self.spread = (float(v.min()), float(np.ptp(v))) if len(v) else (0.0, 0.0)

    def __call__(self, values: Sequence[float]) -> list[float]:
        v = np.asarray(values, dtype=np.float64) * self.sign
        if self.identity:
            return [float(x) for x in v]
        if not self.spread > 0:
            return [0.5] * len(v)
        return [float(x) for x in 0.05 + 0.9 * (v - self.low) / self.spread]


class EPNASSampler(BaseSampler):
    """Efficient Progressive NAS (Pérez-Rúa et al., 2018) -- and PNAS with ``selection="pnas"``.

    Use it with an objective that asks ``space.suggest(trial)`` for the architecture and returns its
    validation accuracy in a study with ``direction="maximize"`` -- or any single value to maximise or
    minimise (an error, a loss): the surrogate fits it turned "higher is better" and scaled (see
    :class:`_Targets`). NaN or infinite values count as failed measurements. Until a trial asks for an
    architecture, EPNAS takes no slot and every parameter is its independent sampler's.

    The defaults are the variant that measured best in this package's studies (README, "Defaults");
    :meth:`paper` gives the paper's exact settings.

    Args:
        space: the search space (default: ``MacroSpace()``, 12 layers, the paper's six ops).
        k: architectures kept per level (paper: 25).
        iterations: progressions from level 1 to the last level (paper: 3 to 5).
        selection: ``"epnas"`` samples K candidates with probabilities from their scores under τ;
            ``"pnas"`` keeps the top K.
        temperature: τ per iteration: ``(start, end)`` decays geometrically from start to end over
            the iterations; a sequence gives one value per iteration; a callable maps a 0-based
            iteration to τ. Iterations after the schedule keep its last value.
        score: ``"raw"`` is the paper's p ∝ a^(1/τ) over the acquisition values a (whose meaning
            depends on the scale of the accuracies: a few points apart, τ=1 is near uniform);
            ``"z"`` standardises a across the candidates of the level first, p ∝ exp(z/τ), so that τ
            means the same on every data set.
        acquisition: ``"mean"`` -- the surrogate's (ensemble mean) predicted accuracy;
            ``"ucb"`` -- mean + ``beta`` × the ensemble's standard deviation; ``"ei"`` -- expected
            improvement over the best accuracy measured so far (normal, ensemble mean and std).
            ``ucb`` and ``ei`` need ``surrogate_ensemble`` >= 2.
        beta: the UCB's weight on the ensemble's disagreement.
        parent_weight: adds ``parent_weight`` × the parent's measured accuracy (z-scored across the
            parents, or its log with ``score="raw"``) to each child's log-weight, so that children of
            the better-measured parents are drawn first (default 3; 0: the surrogate alone, as the paper).
            The LSTM has never seen a sequence as long as the children it scores; the parent's
            measurement is what the progression has actually learned about them.
        diverse: draw the K children from distinct (parent, unit) groups first -- in the macro space a
            parent and the new layer's op, whatever its skips (``space.child_groups``) -- so that one
            parent's new layer is tried with several ops rather than one op with several skip patterns.
            Default True; False: the paper's draw over all candidates.
        seed: seeds candidate sampling and surrogate training. ``None`` picks one and stores it in
            the study, so that a resumed search keeps it.
        surrogate_steps: Adam steps per surrogate fit (one fit per level).
        surrogate_ensemble: LSTMs fitted per level (different seeds); their mean (and spread) is the
            prediction. 1 is the paper's EPNAS; PNAS used 5.
        surrogate_device: where the surrogates are fitted and score the candidates (default the CPU;
            ``epnas search`` passes the search's device: a level-12 plan of K=25 scores ~300k
            candidates with 5 LSTMs after 5 x 500 Adam steps, a minute on 2 CPU cores).
        rescore: before each level's surrogate fit, re-evaluate every distinct architecture measured
            so far on the *current* shared weights and fit on those values, which come from one
            moment of training and so compare with each other (the measurements themselves stay on
            the trials). A callable ``(study, keys) -> (accuracies, MACs)``: pass
            ``objective.rescore`` of the :class:`~optuna_epnas.SupernetObjective`; the re-scored
            values go into the level's stored plan and their cost is charged to the trial that planned.
            Off (None) by default: on a supernet trained one path at a time, the current weights favour
            the most recently trained path (measured on Fashion-MNIST: it re-scored best before 7 of 8
            levels), which the surrogate would then learn.
        max_retries: a slot whose objective failed (raised, or returned no value) is retried this many
            times before it is given up. A trial whose process died does not count: its slot is run again.
        independent_sampler: samples parameters that are not architecture parameters
            (default: ``RandomSampler(seed)``).
        poll_interval: seconds between looks at the storage while waiting for other workers.
        max_params, max_macs: hard limits on the stand-alone network's parameters and forward
            multiply-adds per image, counted exactly (:class:`~optuna_epnas.cost.NetworkSize`) in
            ``network`` -- pass ``objective.network_size``. Candidates over a limit are dropped before
            the surrogate scores them, at every level: no trial measures one. Macro space only.
        network: the network the limits and cost objectives are counted in (required with either).
        max_latency_ms, latency: a limit on the network's forward latency as estimated by ``latency``, a
            :class:`~optuna_epnas.latency.LatencyTable` measured on the device (``latency_table(...)``),
            filtered like the size limits (the estimate is a sum over the table, so exactly); ``latency``
            is also what ``objectives=("accuracy", "latency")`` counts.
        objectives: for a study with two directions, what its values are: ``("accuracy", "params")``
            ``("accuracy", "macs")`` or ``("accuracy", "latency")`` (as ``SupernetObjective(objectives=...)``
            returns them; the cost minimised). The surrogate predicts the accuracy, the cost is counted exactly, and each
            level's candidates are ordered by their predicted non-dominated front (NSGA-II's crowding
            distance inside a front), over which the K are drawn under τ as in one objective (PNAS:
            the K first). Macro space only.

    A trial with an Optuna constraint over 0 (``trial.set_constraint``) is infeasible: it is not grown
    further, and the surrogate fits it at the worst value measured, so that it does not learn that an
    infeasible architecture is good.
    """

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        k: int = 25,
        iterations: int = 3,
        selection: str = "epnas",
        temperature: TemperatureSpec = (0.5, 0.1),
        seed: int | None = None,
        surrogate_steps: int = 500,
        surrogate_ensemble: int = 5,
        max_retries: int = 1,
        independent_sampler: BaseSampler | None = None,
        poll_interval: float = 0.2,
        score: str = "z",
        acquisition: str = "ucb",
        beta: float = 1.0,
        rescore: Rescorer | None = None,
        parent_weight: float = 3.0,
        diverse: bool = True,
        max_params: int | None = None,
        max_macs: int | None = None,
        network: NetworkSize | None = None,
        objectives: Sequence[str] | None = None,
        max_latency_ms: float | None = None,
        latency: LatencyTable | None = None,
        surrogate_device: str | None = None,
    ) -> None:
        if space is None:
            from optuna_epnas.spaces.macro import MacroSpace

            space = MacroSpace()
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace such as MacroSpace(), got {space!r}")
        for name, value, low in (("k", k, 1), ("iterations", iterations, 1), ("max_retries", max_retries, 0),
                                 ("surrogate_steps", surrogate_steps, 1),
                                 ("surrogate_ensemble", surrogate_ensemble, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name, value, allowed in (("selection", selection, SELECTIONS), ("score", score, SCORES),
                                     ("acquisition", acquisition, ACQUISITIONS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if acquisition != "mean" and surrogate_ensemble < 2:
            raise ValueError(f"acquisition={acquisition!r} needs the spread of an ensemble: "
                             f"surrogate_ensemble >= 2 (got {surrogate_ensemble}), or acquisition='mean'")
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        if rescore is not None and not callable(rescore):
            raise TypeError(f"rescore must be a callable (study, keys) -> (accuracies, MACs) such as "
                            f"objective.rescore, got {rescore!r}")
        self.space, self.k, self.iterations, self.selection = space, k, iterations, selection
        self._temperature = temperature_schedule(temperature, iterations)
        self.seed = seed
        self.surrogate_ensemble = surrogate_ensemble
        self.surrogate_device = str(torch.device(surrogate_device or "cpu"))  # a string: the sampler pickles
        self.surrogate_steps, self.max_retries, self.poll_interval = surrogate_steps, max_retries, poll_interval
        if not (isinstance(parent_weight, (int, float)) and math.isfinite(parent_weight) and parent_weight >= 0):
            raise ValueError(f"parent_weight must be a finite number >= 0, got {parent_weight!r}")
        self.score, self.acquisition, self.beta, self.rescore = score, acquisition, float(beta), rescore
        self.parent_weight = float(parent_weight)
        if not isinstance(diverse, bool):
            raise TypeError(f"diverse must be True or False, got {diverse!r}")
        self.diverse = diverse
        self.limits = _limits(space, max_params, max_macs, network)
        self.objectives = None if objectives is None else check_objectives(objectives)
        if self.objectives is not None and len(self.objectives) > 1:
            _needs_network_counts(space, network, f"objectives={self.objectives}")
        else:
            self.objectives = None
        if max_latency_ms is not None and not (isinstance(max_latency_ms, (int, float)) and max_latency_ms > 0
                                               and math.isfinite(max_latency_ms)):
            raise ValueError(f"max_latency_ms must be a positive number, got {max_latency_ms!r}")
        if (max_latency_ms is not None or "latency" in (self.objectives or ())) and not isinstance(latency, LatencyTable):
            raise ValueError("a latency limit or objective needs the table it is estimated from: "
                             f"latency=optuna_epnas.latency.latency_table(space, objective.network_size, device), got {latency!r}")
        self.max_latency_ms, self.latency = max_latency_ms, latency
        self.network = network
        self._independent = independent_sampler or RandomSampler(seed=seed)
        self._arch_names = frozenset(space.distributions())
        self._plan_lock = threading.Lock()
        self._states: dict[tuple[int, int], _StudyState] = {}
        self._claims: dict[int, dict[str, Any]] = {}  # trial id -> params claimed by claim_architecture

    def __getstate__(self) -> dict[str, Any]:
        # the lock does not pickle; cached study state is read back from the storage
        return {**self.__dict__, "_plan_lock": None, "_states": {}, "_claims": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._plan_lock = threading.Lock()

    #: The paper's EPNAS: p ∝ s^(1/τ) over one LSTM's predicted accuracy, τ 10 → 1, K=25, 3 iterations,
    #: no re-scoring.
    PAPER = {"k": 25, "iterations": 3, "selection": "epnas", "temperature": (10.0, 1.0), "score": "raw",
             "acquisition": "mean", "surrogate_ensemble": 1, "rescore": None, "parent_weight": 0.0,
             "diverse": False}

    @classmethod
    def paper(cls, space: SearchSpace | None = None, **kwargs: Any) -> "EPNASSampler":
        """The paper's exact settings (:attr:`PAPER`); keywords override them (e.g. a smaller ``k``)."""
        return cls(space, **{**cls.PAPER, **kwargs})

    # -- schedule ------------------------------------------------------------------------------
    @staticmethod
    def planned_trials(space: SearchSpace | None = None, k: int = 25, iterations: int = 3) -> int:
        """Trials in a full schedule (failed trials are retried on top of these)."""
        if space is None:
            from optuna_epnas.spaces.macro import MacroSpace

            space = MacroSpace()
        return planned_trials(space, k, iterations)

    @property
    def n_trials(self) -> int:
        """Trials in this sampler's full schedule."""
        return planned_trials(self.space, self.k, self.iterations)

    def temperature(self, iteration: int) -> float:
        """τ of a 0-based iteration."""
        return float(self._temperature(iteration))

    # -- Optuna sampler interface --------------------------------------------------------------
    def reseed_rng(self) -> None:
        self._independent.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        # Mark the trial's process first: later trials wait for it to claim a slot, unless it died.
        study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, process_mark())
        self._independent.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        # Optuna calls this in the trial's own process before it stores the state, so a FAIL without
        # this mark is a process that died, not an architecture that failed.
        if state == TrialState.FAIL:
            study._storage.set_trial_system_attr(trial._trial_id, OBJECTIVE_FAILED_ATTR, True)
        self._claims.pop(trial._trial_id, None)
        self._independent.after_trial(study, trial, state, values)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.space.distributions() if self._uses_space(study) else {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        # Parameters of a relative space that are not the architecture's (a caller's own space) are the
        # independent sampler's; the architecture takes a slot unless the trial was enqueued with fixed
        # parameters.
        params = {name: self._independent.sample_independent(study, trial, name, dist)
                  for name, dist in search_space.items() if name not in self._arch_names}
        if self._arch_names.intersection(search_space) and "fixed_params" not in trial.system_attrs:
            params.update(self._claim_params(study, trial))
        return params

    def claim_architecture(self, trial: optuna.trial.Trial) -> dict[str, Any] | None:
        """The planned architecture's parameters for a trial that asks for one (``space.suggest``) but
        whose relative sampling ran before the study was known to search this space (its first trial):
        claims its slot now; :meth:`sample_independent` then returns these values. None for an enqueued
        trial (its parameters are the user's)."""
        frozen = trial.study._storage.get_trial(trial._trial_id)
        if "fixed_params" in frozen.system_attrs:
            return None
        if frozen._trial_id not in self._claims:
            self._claims[frozen._trial_id] = self._claim_params(trial.study, frozen)
        return self._claims[frozen._trial_id]

    def _claim_params(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        state = self._check_study(study)
        if not state.uses_space:
            study._storage.set_study_system_attr(study._study_id, USES_SPACE_ATTR, True)
            state.uses_space = True
        it, level, slot, plan = self._claim(study, trial)
        key = plan["keys"][slot]
        storage, tid = study._storage, trial._trial_id
        attrs = {"iteration": it + 1, "level": level, "arch": key, "temperature": plan["temperature"]}
        if plan["predicted"] is not None:
            attrs["predicted_accuracy"] = plan["predicted"][slot]
            attrs["selection_probability"] = plan["probability"][slot]
        with batched_writes(storage, tid):  # the slot and what the dashboard shows of it: one commit
            storage.set_trial_system_attr(tid, STAGE_ATTR, [it, level, slot])
            for name, value in attrs.items():
                storage.set_trial_user_attr(tid, name, value)
        return self.space.to_params(self.space.parse(key))

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        claimed = self._claims.get(trial._trial_id)
        if claimed is not None and param_name in claimed:
            return claimed[param_name]
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    # -- state from the storage ----------------------------------------------------------------
    def _state(self, study: Study) -> _StudyState:
        key = (id(study._storage), study._study_id)
        with self._plan_lock:
            state = self._states.get(key)
            if state is None or state.storage is not study._storage:
                state = self._states[key] = _StudyState(storage=study._storage)
            return state

    def _uses_space(self, study: Study) -> bool:
        state = self._state(study)
        if not state.uses_space:  # one read per trial until a trial has asked for an architecture
            state.uses_space = bool(study._storage.get_study_system_attrs(study._study_id).get(USES_SPACE_ATTR))
        return state.uses_space

    def _check_study(self, study: Study) -> _StudyState:
        state = self._state(study)
        if state.config is not None:
            return state
        wanted = len(self.objectives or ("value",))
        if len(study.directions) != wanted:
            raise ValueError(
                f"study {study.study_name!r} has {len(study.directions)} objectives and this EPNASSampler "
                f"{wanted}: it searches one value (accuracy, or an error or loss to minimise), or accuracy and "
                "a cost with objectives=('accuracy', 'params'|'macs'), network=objective.network_size")
        if self.objectives and study.directions[1] != StudyDirection.MINIMIZE:
            raise ValueError(f"the study maximises {self.objectives[1]}, a cost: create it with "
                             "directions=['maximize', 'minimize']")
        if isinstance(getattr(study, "pruner", None), optuna.pruners.HyperbandPruner):
            raise ValueError(
                "HyperbandPruner splits the trials into brackets and hands samplers one bracket's view of the "
                "study, which a progressive schedule over all trials does not fit: use another pruner "
                "(MedianPruner, SuccessiveHalvingPruner) or none"
            )
        state.maximize = study.directions[0] == StudyDirection.MAXIMIZE
        if self.rescore is not None and not state.maximize:
            raise ValueError("rescore re-measures validation accuracies, which a minimised study cannot "
                             "compare with its values: use direction='maximize' or rescore=None")
        config = {
            "space": self.space.spec(),
            "k": self.k,
            "iterations": self.iterations,
            "selection": self.selection,
            "temperatures": [round(self.temperature(i), 12) for i in range(self.iterations)],
            "seed": self.seed,
            "surrogate": {"steps": self.surrogate_steps, "ensemble": self.surrogate_ensemble},
            "score": self.score, "acquisition": self.acquisition, "beta": self.beta,
            "rescore": self.rescore is not None,
            **({"parent_weight": self.parent_weight} if self.parent_weight else {}),  # absent: as before
            **({"diverse": True} if self.diverse else {}),
            **({"limits": {**self.limits, "network": dataclasses.asdict(self.network)}} if self.limits else {}),
            **({"objectives": list(self.objectives), "network": dataclasses.asdict(self.network)}
               if self.objectives else {}),
            **({"latency": {"max_ms": self.max_latency_ms, "table": self.latency.digest,
                            "device": self.latency.device}} if self.latency is not None else {}),
        }
        stored = study._storage.get_study_system_attrs(study._study_id).get(CONFIG_ATTR)
        if stored is None:
            if config["seed"] is None:
                config["seed"] = int(np.random.SeedSequence().generate_state(1)[0])
            study._storage.set_study_system_attr(study._study_id, CONFIG_ATTR, config)
        else:
            if config["seed"] is None:
                config["seed"] = stored["seed"]
            # both ways: an option stored only when set (parent_weight, diverse) must not be dropped either
            diff = [f"{name}: study has {stored.get(name)!r}, sampler has {config.get(name)!r}"
                    for name in dict.fromkeys([*config, *stored]) if stored.get(name) != config.get(name)]
            if diff:
                raise ValueError(
                    f"study {study.study_name!r} was searched with other EPNAS settings ("
                    + "; ".join(diff)
                    + "). Resume it with the same settings, or use a new study name."
                )
        state.config = config
        return state

    def _claim(self, study: Study, trial: FrozenTrial) -> tuple[int, int, int, dict[str, Any]]:
        waited_since, warned = time.monotonic(), False
        while True:
            trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
            if self._fail_dead_trials(study, trials):
                continue
            # trials after this one cannot hold a slot yet: claims go in number order
            choosing = [t.number for t in trials if t.number < trial.number and _still_choosing(t)]
            found = None if choosing else self._next_slot(study, self._state(study).ledger_of(
                [t for t in trials if t.number != trial.number]), trial.number)
            if found is not None:
                return found
            if not warned and time.monotonic() - waited_since > 60:
                _logger.warning(
                    "trial %d has waited a minute for other workers (trials still choosing: %s); a worker "
                    "on another machine that died leaves its trial RUNNING: enable Optuna's heartbeat "
                    "(epnas search --heartbeat SECONDS, or RDBStorage(heartbeat_interval=...)) to have such "
                    "trials failed and their slots run again",
                    trial.number, choosing or "none, the current level is still being measured",
                )
                warned = True
            time.sleep(self.poll_interval)

    def _fail_dead_trials(self, study: Study, trials: Sequence[FrozenTrial]) -> bool:
        """Fail RUNNING trials whose process on this machine is gone (a killed search, resumed)."""
        _fail_stale_trials(study)  # heartbeat storages: other machines' dead workers
        failed = False
        for t in trials:
            owner = t.system_attrs.get(OWNER_ATTR)
            if t.state == TrialState.RUNNING and owner and is_gone(owner):
                try:
                    if study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                        _logger.warning("trial %d was left running by a process that is gone: marked FAIL (not "
                                        "counted against its architecture), its slot is run again", t.number)
                        failed = True
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass
        return failed

    def _next_slot(self, study: Study, ledger: _Ledger, number: int) -> tuple[int, int, int, dict[str, Any]] | None:
        """The first open slot of the schedule for trial ``number``, or None while the current stage
        is still running."""
        it = 0
        while True:
            for level in range(1, self.space.max_level + 1):
                plan = self._plan(study, it, level, ledger, number)
                held = False
                for slot in range(len(plan["keys"])):
                    s = ledger.slot(it, level, slot)
                    if s.done:
                        continue
                    if s.held:
                        held = True
                    elif s.failures <= self.max_retries:
                        return it, level, slot, plan
                if held:
                    return None
            it += 1

    def is_finished(self, study: Study) -> bool:
        """Whether every stage of the ``iterations`` planned iterations has been measured.

        Never plans a stage itself (that is the next trial's work): a stage without a stored plan
        has not started, so the schedule is not finished.
        """
        state = self._check_study(study)
        ledger = state.ledger_of(study._storage.get_all_trials(study._study_id, deepcopy=False))
        stored: dict[str, Any] | None = None  # read only for a plan this process has not seen
        for it in range(self.iterations):
            for level in range(1, self.space.max_level + 1):
                plan = state.plans.get((it, level))
                if plan is None:
                    stored = study._storage.get_study_system_attrs(study._study_id) if stored is None else stored
                    plan = stored.get(plan_attr(it, level))
                if plan is None:
                    if level > 1:
                        return False
                    plan = self._plan(study, it, level, ledger, None)  # level 1: no surrogate, no cost
                for slot in range(len(plan["keys"])):
                    s = ledger.slot(it, level, slot)
                    if not s.done and (s.held or s.failures <= self.max_retries):
                        return False
        return True

    # -- planning a stage ----------------------------------------------------------------------
    def _plan(self, study: Study, it: int, level: int, ledger: _Ledger, number: int | None) -> dict[str, Any]:
        """The stored plan of a stage, or a new one made (and stored) by trial ``number``."""
        state = self._state(study)
        with self._plan_lock:
            plan = state.plans.get((it, level))
            if plan is None:
                plan = study._storage.get_study_system_attrs(study._study_id).get(plan_attr(it, level))
            if plan is None:
                plan = self._make_plan(study, state, it, level, ledger, number)
                study._storage.set_study_system_attr(study._study_id, plan_attr(it, level), plan)
                _logger.info(
                    "iteration %d level %d: %d of %d candidates chosen (τ=%.3g)",
                    it + 1, level, len(plan["keys"]), plan["candidates"], plan["temperature"],
                )
            state.plans[(it, level)] = plan
            return plan

    @staticmethod
    def _rng_seed(state: _StudyState, it: int, level: int) -> list[int]:
        assert state.config is not None
        return [state.config["seed"], it, level]

    def _make_plan(self, study: Study, state: _StudyState, it: int, level: int, ledger: _Ledger,
                   number: int | None) -> dict[str, Any]:
        tau = self.temperature(it)
        base = {"temperature": tau, "predicted": None, "probability": None}
        if level == 1:
            initial = self.space.initial()
            fits = self._fits(self.space.root())
            keys = [self.space.key(a) for a, ok in zip(initial, fits) if ok]
            if not keys:
                raise ValueError(f"no architecture fits {self._limits_text()}: the smallest has "
                                 f"{self._smallest(self.space.root())}; raise the limit")
            return {**base, "keys": keys, "candidates": len(keys), **self._rejected(len(initial) - len(keys))}

        started = time.perf_counter()
        prev_plan = state.plans[(it, level - 1)]
        last_level = [(self.space.parse(key), s.value, s.feasible) for key, s in
                      ((key, ledger.slot(it, level - 1, slot)) for slot, key in enumerate(prev_plan["keys"]))
                      if s.value is not None]
        if not last_level:
            raise RuntimeError(
                f"no architecture of level {level - 1} in iteration {it + 1} was measured (all failed or "
                "were pruned), so there is nothing to grow; look at the failed trials' errors"
            )
        # Grow feasible architectures (no Optuna constraint over 0); only when none is, the infeasible ones.
        any_feasible = any(ok for _, _, ok in last_level)
        if not any_feasible:
            _logger.warning("iteration %d level %d: every architecture measured at level %d broke a constraint; "
                            "growing them anyway", it + 1, level, level - 1)
        measured_parents = [(p, v) for p, v, ok in last_level if ok or not any_feasible]
        parents = [p for p, _ in measured_parents]
        keys, measured, infeasible = self._training_rows(state, it, level, ledger)
        targets = _Targets(measured, state.maximize)
        values = targets(measured)
        rescored = None
        if self.rescore is not None:  # accuracies of a maximised study: fitted as they are
            values, macs = self._rescored(study, keys)  # its cost is charged to `planned_by` (cost.py)
            rescored = {"keys": keys, "values": values, "cost_macs": macs}
        if any(infeasible) and not all(infeasible):  # not good, whatever they measured: the worst feasible value
            worst = min(v for v, bad in zip(values, infeasible) if not bad)
            values = [worst if bad else v for v, bad in zip(values, infeasible)]
        rescored_at = time.perf_counter()
        seeds = np.random.SeedSequence(self._rng_seed(state, it, level)).generate_state(self.surrogate_ensemble)
        rows = [self.space.tokens(self.space.parse(k)) for k in keys]
        members = [LSTMSurrogate(self.space.token_dim, steps=self.surrogate_steps, seed=int(s % 2**31),
                                 device=self.surrogate_device).fit(rows, values)
                   for s in seeds]
        fitted = time.perf_counter()
        prefixes = [self.space.tokens(p) for p in parents]
        fits = [self._fits(p) for p in parents]  # the children under the limits: all others are never scored
        children = [self.space.child_tokens(p)[f] for p, f in zip(parents, fits)]
        child_index = [np.flatnonzero(f) for f in fits]  # candidate -> its index among its parent's children
        sizes = [len(c) for c in children]  # children per parent, in candidate order
        if not sum(sizes):
            # each parent fitted with its cheapest completion, so only a limit changed on resume gets here
            raise ValueError(f"no architecture of level {level} grown from level {level - 1}'s fits "
                             f"{self._limits_text()}: raise the limit")
        predicted, log_weights = self._score(members, prefixes, children, best=max(values))
        if self.objectives:  # the predicted front and crowding, over (acquisition, exact cost)
            cost = np.concatenate([self._costs(p)[f] for p, f in zip(parents, fits)])
            log_weights = _pareto_weights(log_weights, cost)
        if self.parent_weight:  # trust what was measured: children of the better-measured parents first
            # The trial's own measurement, not a re-scored value: re-scoring on the current weights ranks
            # the most recently trained path first (measured: 7 of 8 levels of a Fashion-MNIST run).
            parent_values = np.array(targets([v for _, v in measured_parents]), dtype=np.float64)
            parent_score = (_pareto_weights(parent_values, np.array([self._cost(p) for p in parents]))
                            if self.objectives else _scaled(parent_values, self.score))
            log_weights = log_weights + self.parent_weight * np.repeat(parent_score, sizes)
        groups = None
        if self.diverse:  # (parent, group) -> one id
            each = [self.space.child_groups(p)[f] for p, f in zip(parents, fits)]
            width = 1 + max(int(g.max()) for g in each if len(g))
            groups = np.concatenate([i * width + g for i, g in enumerate(each)])
        chosen, probability = select(log_weights, self.k, self.selection, tau,
                                     np.random.default_rng(self._rng_seed(state, it, level)), groups)
        offsets = np.cumsum([0] + sizes)
        owner = np.searchsorted(offsets, chosen, side="right") - 1
        chosen_keys = [self.space.key(self.space.child(parents[o], int(child_index[o][c - offsets[o]])))
                       for o, c in zip(owner, chosen)]
        return {
            **base,
            "keys": chosen_keys,
            "candidates": int(len(log_weights)),
            **self._rejected(sum(len(f) for f in fits) - int(len(log_weights))),
            "predicted": [float(predicted[c]) for c in chosen],
            "probability": [float(probability[c]) for c in chosen],
            "surrogate_rows": len(keys),
            "rescored": rescored,
            "planned_by": number,
            "rescore_seconds": round(rescored_at - started, 3),
            "fit_seconds": round(fitted - rescored_at, 3),
            "score_seconds": round(time.perf_counter() - fitted, 3),
        }

    # -- size limits -----------------------------------------------------------------------------
    def _fits(self, parent: Any) -> np.ndarray:
        """Per child of ``parent``: whether it and its cheapest full-depth completion are within every
        limit (a child that only fits as a partial network would leave the next level nothing to grow)."""
        fits = np.ones(self.space.num_children(parent), dtype=bool)
        if self.limits:
            params, macs = self._completed_sizes(parent)
            fits &= (params <= self.limits.get("max_params", np.inf)) & (macs <= self.limits.get("max_macs", np.inf))
        if self.max_latency_ms is not None:
            assert self.latency is not None
            fits &= self._completed_ms(parent) <= self.max_latency_ms
        return fits

    def _completed_ms(self, parent: Any) -> np.ndarray:
        assert self.latency is not None
        return self.latency.child_ms(self.space, parent) + self.latency.completion_ms(self.space, parent.level + 1)

    def _completed_sizes(self, parent: Any) -> tuple[np.ndarray, np.ndarray]:
        params, macs = child_sizes(self.space, parent, self.network)
        more_params, more_macs = completion_sizes(self.space, self.space.level(parent) + 1, self.network)
        return params + more_params, macs + more_macs

    def _costs(self, parent: Any) -> np.ndarray:
        """The cost objective of every child of ``parent``."""
        return per_cost_class(self.space, parent, self._cost).astype(np.float64)

    def _cost(self, arch: Any) -> float:
        assert self.objectives is not None and self.network is not None
        if self.objectives[1] == "latency":
            assert self.latency is not None
            return self.latency.network_ms(arch)
        return float(self.network.count(self.space, arch)[COSTS.index(self.objectives[1])])

    def _smallest(self, parent: Any) -> str:
        if not self.limits:
            return f"{float(self._completed_ms(parent).min()):.3g} ms (estimated) at full depth"
        params, macs = self._completed_sizes(parent)
        return f"{int(params.min()):,} parameters and {int(macs.min()):,} multiply-adds at full depth"

    def _limits_text(self) -> str:
        limits = [f"{name}={value:,}" for name, value in self.limits.items()]
        return " and ".join(limits + ([f"max_latency_ms={self.max_latency_ms:g}"] if self.max_latency_ms else []))

    def _rejected(self, count: int) -> dict[str, int]:
        return {"over_limits": count} if self.limits or self.max_latency_ms is not None else {}

    def _rescored(self, study: Study, keys: list[str]) -> tuple[list[float], float]:
        assert self.rescore is not None
        values, macs = self.rescore(study, keys)
        values = [float(v) for v in values]
        if len(values) != len(keys) or not all(0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"rescore must return one accuracy in [0, 1] per architecture ({len(keys)}), "
                             f"got {values[:5]}{'...' if len(values) > 5 else ''}")
        return values, float(macs)

    def _score(self, members: Sequence[LSTMSurrogate], prefixes: list[np.ndarray], children: list[np.ndarray],
               best: float) -> tuple[np.ndarray, np.ndarray]:
        """Each candidate's predicted accuracy (the ensemble mean) and its selection log-weight."""
        if len(members) == 1 and self.acquisition == "mean" and self.score == "raw":
            # log-sigmoid: no underflow to ties at 0 when the net is saturated
            log_scores = members[0].predict_children(prefixes, children, log=True).astype(np.float64)
            return np.exp(log_scores), log_scores
        each = np.stack([m.predict_children(prefixes, children).astype(np.float64) for m in members])
        return each.mean(axis=0), log_weights(each, self.acquisition, self.score, self.beta, best)

    @staticmethod
    def _training_rows(state: _StudyState, it: int, level: int,
                       ledger: _Ledger) -> tuple[list[str], list[float], list[bool]]:
        """One row per distinct architecture measured in earlier stages: its latest value, and whether
        that measurement was infeasible (a constraint over 0)."""
        latest: dict[str, tuple[int, float]] = {}
        infeasible: set[str] = set()
        for (s_it, s_level), slots in ledger.stages.items():
            if (s_it, s_level) >= (it, level):
                continue
            plan = state.plans.get((s_it, s_level))
            if plan is None:
                continue
            for slot, s in slots.items():
                if s.value is None:
                    continue
                key = plan["keys"][slot]
                if key not in latest or latest[key][0] < s.number:
                    latest[key] = (s.number, s.value)
                    (infeasible.add if not s.feasible else infeasible.discard)(key)
        keys = sorted(latest)
        return keys, [latest[k][1] for k in keys], [k in infeasible for k in keys]


def _limits(space: SearchSpace, max_params: int | None, max_macs: int | None,
            network: NetworkSize | None) -> dict[str, int]:
    limits = {name: value for name, value in (("max_params", max_params), ("max_macs", max_macs)) if value is not None}
    for name, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if limits:
        _needs_network_counts(space, network, ", ".join(limits))
    return {name: int(value) for name, value in limits.items()}


def _needs_network_counts(space: SearchSpace, network: NetworkSize | None, what: str) -> None:
    if not isinstance(network, NetworkSize):
        raise ValueError(f"{what} is counted in a network of a given width and input: pass "
                         f"network=objective.network_size (or an optuna_epnas.cost.NetworkSize), got {network!r}")
    if space.child_cost_classes(space.root()) is None:
        raise ValueError(f"{what}: sizes are counted for the macro space only; {space!r} has no exact per-child "
                         "count yet (each child's network would be built to count it)")


def _pareto_weights(gain: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Selection log-weights from the non-dominated front of (gain up, cost down) and the crowding
    distance inside it (a whole front counts more than any crowding), z-scored as ``score="z"``."""
    ranks = front_ranks(gain, cost)
    return _scaled(-ranks + 0.5 * crowding(gain, cost, ranks), "z")


def log_weights(each: np.ndarray, acquisition: str, score: str, beta: float = 1.0, best: float = 0.0) -> np.ndarray:
    """Selection log-weights w (p ∝ exp(w/τ)) from the ensemble's predictions ``each`` (members ×
    candidates): the acquisition a -- mean, mean + β·std (``"ucb"``) or expected improvement over
    ``best`` (``"ei"``) -- then log a (``score="raw"``, the paper's p ∝ a^(1/τ)) or a's z-score across
    the candidates (``"z"``: the same τ means the same sharpness whatever the scale of the scores)."""
    mean, std = each.mean(axis=0), each.std(axis=0)
    if acquisition == "ucb":
        value = mean + beta * std
    elif acquisition == "ei":
        value = expected_improvement(mean, std, best)
    else:
        value = mean
    return _scaled(value, score)


def _scaled(value: np.ndarray, score: str) -> np.ndarray:
    """log(value) (``score="raw"``) or its z-score across the values (``"z"``)."""
    if score == "raw":
        return np.log(np.clip(value, 1e-300, None))
    spread = value.std()
    return (value - value.mean()) / spread if spread > 0 else np.zeros_like(value)


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """E[max(Y - best, 0)] for Y ~ N(mean, std²); where std is 0, max(mean - best, 0)."""
    from scipy.stats import norm

    safe = np.where(std > 0, std, 1.0)
    z = (mean - best) / safe
    ei = (mean - best) * norm.cdf(z) + safe * norm.pdf(z)
    return np.where(std > 0, np.maximum(ei, 0.0), np.maximum(mean - best, 0.0))


def select(
    log_scores: np.ndarray, k: int, selection: str, tau: float, rng: np.random.Generator,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the K chosen candidates (in draw order), and each candidate's probability p_i.

    Takes log-weights w_i (log s_i of the surrogate's log-sigmoid -- no underflow to ties at 0 -- or
    standardised scores). EPNAS draws K without replacement with p_i ∝ exp(w_i/τ) (= s_i^(1/τ)): adding Gumbel noise to log p and taking the top K is exactly
    that sequential draw, in one vectorised pass over ~300k candidates. PNAS takes the K best.
    The probability returned is that of being drawn first.

    ``groups`` (a group id per candidate): the diverse draw. Groups are drawn first, without
    replacement, each with the summed probability of its members (PNAS: by its best member), then one
    member within each (by its probability; PNAS: the best); when there are fewer groups than K the
    rest are drawn from the remaining candidates as without groups.
    """
    logits = log_scores / tau
    probability = np.exp(logits - logits.max())
    probability /= probability.sum()
    n = len(log_scores)
    if n <= k:
        return np.arange(n), probability
    perturbed = logits if selection == "pnas" else logits + rng.gumbel(size=n)
    if groups is not None:
        return _one_per_group(logits, perturbed, np.asarray(groups), k, selection, rng), probability
    if selection == "pnas":
        return np.argsort(-log_scores, kind="stable")[:k], probability
    top = np.argpartition(-perturbed, k - 1)[:k]
    return top[np.argsort(-perturbed[top], kind="stable")], probability


def _one_per_group(logits: np.ndarray, perturbed: np.ndarray, groups: np.ndarray, k: int, selection: str,
                   rng: np.random.Generator) -> np.ndarray:
    _, inverse = np.unique(groups, return_inverse=True)
    m = int(inverse.max()) + 1
    # each group's representative: its member with the highest (perturbed; PNAS: plain) value
    order = np.lexsort((-perturbed, inverse))
    first = order[np.r_[0, np.flatnonzero(np.diff(inverse[order])) + 1]]
    if selection == "pnas":
        group_value = logits[first]
    else:  # log of the group's summed probability, Gumbel-perturbed: a draw of groups without replacement
        peak = np.full(m, -np.inf)
        np.maximum.at(peak, inverse, logits)
        mass = np.log(np.bincount(inverse, weights=np.exp(logits - peak[inverse]), minlength=m)) + peak
        group_value = mass + rng.gumbel(size=m)
    picked = first[np.argsort(-group_value, kind="stable")[:k]]
    if len(picked) < k:
        rest = np.setdiff1d(np.arange(len(logits)), picked)
        more = rest[np.argsort(-perturbed[rest], kind="stable")[:k - len(picked)]]
        picked = np.concatenate([picked, more])
    return picked
