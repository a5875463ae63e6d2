"""EPNASSampler: progressive architecture search as an Optuna sampler.

Each *stage* of the schedule is one level of one iteration. Level 1 evaluates every one-unit
architecture; level l+1 expands the architectures measured at level l by every possible next unit,
scores all of them with the LSTM surrogate (trained on every distinct architecture measured in the
earlier stages) and keeps K: drawn without replacement with p ∝ s^(1/τ) (EPNAS) or the top K (PNAS).
The progression from level 1 to the last level repeats for ``iterations`` iterations, τ annealed
across them.

A trial claims the first open slot of the schedule (:mod:`.coordination`: in trial-number order, all
state in the study storage, so that workers share a study and a new process resumes it), planning the
slot's stage first if no trial has (:mod:`.planning`), and is handed that slot's architecture.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from optuna_epnas.storage._storage import (all_trials, fresh_trial, set_study_attr, set_trial_attr, storage_of, study_attrs,
                                   study_id, trial_id)
from optuna_epnas.costs.model import CostModel
from optuna_epnas.storage.owner import process_mark
from optuna_epnas.sampler.coordination import (OBJECTIVE_FAILED_ATTR, OWNER_ATTR, USES_SPACE_ATTR, Claim, _Ledger,
                                               _StudyState, adopt_config, plan_attr, take_slot, training_rows,
                                               wait_for_slot)
from optuna_epnas._checks import check_int
from optuna_epnas.sampler.planning import Planner
from optuna_epnas.sampler.presets import paper_options
from optuna_epnas.sampler.selection import Selection
from optuna_epnas.sampler.surrogate import LSTMSurrogate
from optuna_epnas.settings import SAMPLER
from optuna_epnas.sampler.schedule import TemperatureSpec, fit_to_budget, planned_trials, temperature_schedule
from optuna_epnas.spaces.base import SearchSpace
from optuna_epnas.spaces.macro import MacroSpace

_logger = logging.getLogger(__name__)


def _planner_settings(*names: str) -> list[property]:
    """Read-only attributes of the sampler that are its planner's."""
    return [property(lambda self, name=name: getattr(self._planner, name)) for name in names]


class EPNASSampler(BaseSampler):
    """Efficient Progressive NAS (Pérez-Rúa et al., 2018) -- and PNAS with ``selection=TopK()``.

    Use it with an objective that asks ``space.suggest(trial)`` for the architecture and returns its
    validation accuracy in a study with ``direction="maximize"`` -- or any single value to maximise or
    minimise (an error, a loss): the surrogate fits it turned "higher is better" and scaled (see
    :class:`~optuna_epnas.sampler.planning._Targets`). NaN or infinite values count as failed
    measurements. Until a trial asks for an architecture, EPNAS takes no slot and every parameter is its
    independent sampler's.

    The defaults are the variant that measured best in this package's studies (docs/defaults.md);
    :meth:`paper` gives the paper's exact settings.

    Args:
        space: the search space (default: ``MacroSpace()``, 12 layers, the paper's six ops).
        k: architectures kept per level (paper: 25; the default without ``n_trials``).
        iterations: progressions from level 1 to the last level (paper: 3 to 5); with ``n_trials``, the most.
        n_trials: a budget of trials (queries) that the schedule is fitted to: the largest K with which
            ``iterations`` progressions fit (fewer iterations if K=1 does not; with ``k`` given, the most
            iterations that fit), and the last level of the last iteration takes what is left, so the
            search ends on complete architectures within the budget (:attr:`n_trials` is then the budget).
            None: the full schedule of ``k`` and ``iterations``.
        temperature: τ per iteration: ``(start, end)`` decays geometrically from start to end over
            the iterations; a sequence gives one value per iteration; a callable maps a 0-based
            iteration to τ. Iterations after the schedule keep its last value.
        selection: how a level's K are drawn from its candidates
            (:class:`~optuna_epnas.sampler.selection.Softmax`: EPNAS, p ∝ exp(w/τ) without replacement;
            :class:`~optuna_epnas.sampler.selection.TopK`: PNAS), with its acquisition, score scale,
            parent weight and diverse draw (default ``Softmax()``: UCB over z-scores, parent weight 3,
            diverse).
        surrogate: what scores the candidates (default
            :class:`LSTMSurrogate() <optuna_epnas.sampler.surrogate.LSTMSurrogate>`: 5 LSTMs, 500 Adam
            steps, on the CPU, no re-scoring).
        costs: the :class:`~optuna_epnas.costs.model.CostModel` shared with the objective -- pass
            ``objective.costs``: its limits (candidates over one are dropped before the surrogate scores
            them, at every level: no trial measures one) and, for a study with two directions, the cost
            minimised beside the accuracy (the surrogate predicts the accuracy, the cost is counted
            exactly, and each level's candidates are ordered by their predicted non-dominated front,
            NSGA-II's crowding distance inside a front, over which the K are drawn under τ as in one
            objective). Sizes are counted for the macro space only. Default: no limits, one objective.
        reuse: an architecture the schedule plans again after it was measured (every level-1
            architecture in each later iteration, a child drawn again) keeps its recorded value instead
            of a query, and the query goes to one never measured. For a deterministic objective (a
            tabular benchmark, a cached measurement); off by default, where a supernet's later
            measurement of the same path (on more trained weights) is a new one.
        seed: seeds candidate sampling and surrogate training. ``None`` picks one and stores it in
            the study, so that a resumed search keeps it.
        independent_sampler: samples parameters that are not architecture parameters
            (default: ``RandomSampler(seed)``).
        max_retries: a slot whose objective failed (raised, or returned no value) is retried this many
            times before it is given up. A trial whose process died does not count: its slot is run again.

    :attr:`poll_interval` (seconds between looks at the storage while waiting for other workers, 0.2) is
    an attribute: set it on the sampler to change it.

    A trial with an Optuna constraint over 0 (``trial.set_constraint``) is infeasible: it is not grown
    further, and the surrogate fits it at the worst value measured, so that it does not learn that an
    infeasible architecture is good.
    """

    #: Seconds between looks at the storage while waiting for other workers.
    poll_interval = 0.2

    # The settings that make a level's plan, as the planner checked and keeps them.
    k, selection, surrogate, costs, reuse = _planner_settings("k", "selection", "surrogate", "costs", "reuse")

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        k: int | None = None,
        iterations: int = SAMPLER.iterations,
        n_trials: int | None = None,
        temperature: TemperatureSpec = SAMPLER.temperature,
        selection: Selection | None = None,
        surrogate: LSTMSurrogate | None = None,
        costs: CostModel | None = None,
        reuse: bool = False,
        seed: int | None = None,
        independent_sampler: BaseSampler | None = None,
        max_retries: int = SAMPLER.max_retries,
    ) -> None:
        space = MacroSpace() if space is None else space
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace such as MacroSpace(), got {space!r}")
        check_int("iterations", iterations, 1)
        check_int("k", k, 1, optional=True)
        check_int("n_trials", n_trials, 1, optional=True)
        self.budget = n_trials
        if n_trials is not None:
            k, iterations = fit_to_budget(space, n_trials, k, iterations, reuse)
        self._planner = Planner(space, k=SAMPLER.k if k is None else k, selection=selection, surrogate=surrogate,
                                costs=costs, reuse=reuse)
        check_int("max_retries", max_retries, 0)
        self.space, self.iterations, self.seed = space, iterations, seed
        self._temperature = temperature_schedule(temperature, iterations)
        self.max_retries = max_retries
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

    @classmethod
    def paper(cls, space: SearchSpace | None = None, *, pnas: bool = False, **kwargs: Any) -> "EPNASSampler":
        """The paper's exact settings (:data:`optuna_epnas.settings.PAPER`: τ 10 → 1, one LSTM's predicted
        accuracy, p ∝ s^(1/τ), K=25, 3 iterations, no re-scoring); ``pnas``: its top K. Keywords override
        them (e.g. a smaller ``k``); with ``n_trials`` and no ``k``, K is fitted to the budget as in the
        default sampler."""
        return cls(space, **{**paper_options(pnas), **kwargs})

    # -- schedule ------------------------------------------------------------------------------
    @staticmethod
    def planned_trials(space: SearchSpace | None = None, k: int = SAMPLER.k, iterations: int = SAMPLER.iterations,
                       reuse: bool = False) -> int:
        """Trials in a full schedule (failed trials are retried on top of these)."""
        return planned_trials(MacroSpace() if space is None else space, k, iterations, reuse)

    @property
    def n_trials(self) -> int:
        """Trials in this sampler's full schedule: the budget ``n_trials`` when one was given."""
        return self.budget if self.budget is not None else planned_trials(self.space, self.k, self.iterations, self.reuse)

    def temperature(self, iteration: int) -> float:
        """τ of a 0-based iteration."""
        return float(self._temperature(iteration))

    def is_finished(self, study: Study) -> bool:
        """Whether every slot of the ``iterations`` iterations is done with: measured, or given up (its
        objective failed more than ``max_retries`` times) and not being measured again.

        A stage after level 1 without a stored plan has not started, so the schedule is not finished. A
        missing level-1 plan needs no surrogate: it is made and stored here (as the next trial would
        make it) and its slots counted. The first call on a study checks the sampler's settings against
        it (and stores them in a new study), as a claim does.
        """
        state = self._check_study(study)
        ledger = state.ledger_of(all_trials(study))
        stored: dict[str, Any] | None = None  # read only for a plan this process has not seen
        for it in range(self.iterations):
            for level in range(1, self.space.max_level + 1):
                plan = state.plans.get((it, level))
                if plan is None:
                    stored = study_attrs(study) if stored is None else stored
                    plan = stored.get(plan_attr(it, level))
                if plan is None:
                    if level > 1:
                        return False
                    plan = self._plan(study, it, level, ledger, None)  # level 1: no surrogate, no cost
                if any(s.pending(self.max_retries) for s in ledger.stage(it, level, plan)):
                    return False
        return True

    # -- Optuna sampler interface --------------------------------------------------------------
    def reseed_rng(self) -> None:
        self._independent.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        # Mark the trial's process first: later trials wait for it to claim a slot, unless it died.
        set_trial_attr(study, trial, OWNER_ATTR, process_mark())
        self._independent.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        # Optuna calls this in the trial's own process before it stores the state, so a FAIL without
        # this mark is a process that died, not an architecture that failed.
        if state == TrialState.FAIL:
            set_trial_attr(study, trial, OBJECTIVE_FAILED_ATTR, True)
        self._claims.pop(trial_id(trial), None)
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
        frozen = fresh_trial(trial.study, trial)
        if "fixed_params" in frozen.system_attrs:
            return None
        if trial_id(frozen) not in self._claims:
            self._claims[trial_id(frozen)] = self._claim_params(trial.study, frozen)
        return self._claims[trial_id(frozen)]

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        claimed = self._claims.get(trial_id(trial))
        if claimed is not None and param_name in claimed:
            return claimed[param_name]
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    # -- the algorithm: claim a slot, plan its stage when needed, hand out its architecture -----
    def _claim_params(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        state = self._check_study(study)
        if not state.uses_space:
            set_study_attr(study, USES_SPACE_ATTR, True)
            state.uses_space = True
        claim = wait_for_slot(study, trial, state, lambda ledger: self._next_slot(study, ledger, trial.number),
                              self.poll_interval)
        return self.space.to_params(self.space.parse(take_slot(study, trial, claim)))

    def _next_slot(self, study: Study, ledger: _Ledger, number: int) -> Claim | None:
        """The first open slot of the schedule for trial ``number``, or None while the current stage
        is still being measured (the next one is planned from its measurements)."""
        it = 0
        while True:
            for level in range(1, self.space.max_level + 1):
                plan = self._plan(study, it, level, ledger, number)
                slots = ledger.stage(it, level, plan)
                for slot, s in enumerate(slots):
                    if s.open(self.max_retries):
                        return it, level, slot, plan
                if any(s.measuring for s in slots):
                    return None
            it += 1

    def _plan(self, study: Study, it: int, level: int, ledger: _Ledger, number: int | None) -> dict[str, Any]:
        """The stored plan of a stage, or a new one made (and stored) by trial ``number``."""
        state = self._state(study)
        with self._plan_lock:
            plan = state.plans.get((it, level))
            if plan is None:
                plan = study_attrs(study).get(plan_attr(it, level))
            if plan is None:
                plan = self._make_plan(study, state, it, level, ledger, number)
                set_study_attr(study, plan_attr(it, level), plan)
                _logger.info(
                    "iteration %d level %d: %d of %d candidates chosen (τ=%.3g)",
                    it + 1, level, len(plan["keys"]), plan["candidates"], plan["temperature"],
                )
            state.plans[(it, level)] = plan
            return plan

    def _make_plan(self, study: Study, state: _StudyState, it: int, level: int, ledger: _Ledger,
                   number: int | None) -> dict[str, Any]:
        """A new plan of stage (it, level) (:class:`~optuna_epnas.sampler.planning.Planner`): at level 1
        every one-unit architecture within the limits; after it, K children of the previous level's."""
        tau = self.temperature(it)
        rows = training_rows(state, it, level, ledger)
        if level == 1:
            return self._planner.first_level(tau, rows)
        previous = state.plans[(it, level - 1)]
        last_level = [(self.space.parse(key), s.value, s.feasible)
                      for key, s in zip(previous["keys"], ledger.stage(it, level - 1, previous)) if s.value is not None]
        reused = previous.get("reused", {})
        last_level += [(self.space.parse(key), value, ok)
                       for key, value, ok in zip(reused.get("keys", []), reused.get("values", []), reused.get("feasible", []))]
        assert state.config is not None
        return self._planner.next_level(study, it, level, last_level, rows, state.maximize, tau,
                                        [state.config["seed"], it, level], number, self._stage_k(state, it, level))

    def _stage_k(self, state: _StudyState, it: int, level: int) -> int:
        """K of a stage; with a budget, the last stage of the last iteration takes what the others left."""
        if self.budget is None or (it, level) != (self.iterations - 1, self.space.max_level):
            return self.k
        spent = sum(len(plan["keys"]) for stage, plan in state.plans.items() if stage < (it, level))
        return max(1, self.budget - spent)

    # -- the study's settings and cached state -------------------------------------------------
    def _state(self, study: Study) -> _StudyState:
        storage = storage_of(study)
        key = (id(storage), study_id(study))
        with self._plan_lock:
            state = self._states.get(key)
            if state is None or state.storage is not storage:
                state = self._states[key] = _StudyState(storage=storage)
            return state

    def _uses_space(self, study: Study) -> bool:
        state = self._state(study)
        if not state.uses_space:  # one read per trial until a trial has asked for an architecture
            state.uses_space = bool(study_attrs(study).get(USES_SPACE_ATTR))
        return state.uses_space

    def _check_study(self, study: Study) -> _StudyState:
        """The study's state, its settings checked against the sampler's (and stored in a new study)."""
        state = self._state(study)
        if state.config is None:
            state.maximize = self._planner.check_study(study)
            state.config = adopt_config(study, {
                "space": self.space.spec(), "k": self.k, "iterations": self.iterations, "selection": self.selection.name,
                "temperatures": [round(self.temperature(i), 12) for i in range(self.iterations)],
                "seed": self.seed, **({"n_trials": self.budget} if self.budget is not None else {}),
                **self._planner.config()})
        return state
