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
from optuna_epnas.costs.cost import NetworkSize
from optuna_epnas.costs.latency import LatencyTable
from optuna_epnas.storage.owner import process_mark
from optuna_epnas.sampler.coordination import (OBJECTIVE_FAILED_ATTR, OWNER_ATTR, USES_SPACE_ATTR, Claim, _Ledger,
                                               _StudyState, adopt_config, plan_attr, take_slot, training_rows,
                                               wait_for_slot)
from optuna_epnas._checks import check_int
from optuna_epnas.sampler.planning import Planner, Rescorer
from optuna_epnas.sampler.schedule import TemperatureSpec, fit_to_budget, planned_trials, temperature_schedule
from optuna_epnas.spaces.base import SearchSpace
from optuna_epnas.spaces.macro import MacroSpace

_logger = logging.getLogger(__name__)


def _planner_settings(*names: str) -> list[property]:
    """Read-only attributes of the sampler that are its planner's."""
    return [property(lambda self, name=name: getattr(self._planner, name)) for name in names]


class EPNASSampler(BaseSampler):
    """Efficient Progressive NAS (Pérez-Rúa et al., 2018) -- and PNAS with ``selection="pnas"``.

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
        reuse: an architecture the schedule plans again after it was measured (every level-1
            architecture in each later iteration, a child drawn again) keeps its recorded value instead
            of a query, and the query goes to one never measured. For a deterministic objective (a
            tabular benchmark, a cached measurement); off by default, where a supernet's later
            measurement of the same path (on more trained weights) is a new one.
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
            ``epnas search`` passes the search's device: a level-12 plan of K=25 fits 5 LSTMs with 500 Adam
            steps as one batched model and scores ~300k candidates, ~4 s on 2 idle CPU cores).
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
        max_params: a hard limit on the stand-alone network's parameters, counted exactly
            (:class:`~optuna_epnas.costs.cost.NetworkSize`) in ``network`` -- pass ``objective.network_size``.
            Candidates over a limit are dropped before the surrogate scores them, at every level: no
            trial measures one. Macro space only.
        max_macs: the same for its forward multiply-adds per image.
        network: the network the limits and cost objectives are counted in (required with either).
        max_latency_ms: a limit on the network's forward latency as estimated by ``latency``, filtered
            like the size limits (the estimate is a sum over the table, so exactly).
        latency: a :class:`~optuna_epnas.costs.latency.LatencyTable` measured on the device
            (``latency_table(...)``); also what ``objectives=("accuracy", "latency")`` counts.
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

    # The settings that make a level's plan, as the planner checked and keeps them.
    k, selection, score, acquisition, beta, rescore, parent_weight, diverse, reuse = _planner_settings(
        "k", "selection", "score", "acquisition", "beta", "rescore", "parent_weight", "diverse", "reuse")
    surrogate_steps, surrogate_ensemble, surrogate_device, limits, objectives, network, latency, max_latency_ms = (
        _planner_settings("surrogate_steps", "surrogate_ensemble", "surrogate_device", "limits", "objectives",
                          "network", "latency", "max_latency_ms"))

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        k: int | None = None,
        iterations: int = 3,
        n_trials: int | None = None,
        reuse: bool = False,
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
        space = MacroSpace() if space is None else space
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace such as MacroSpace(), got {space!r}")
        check_int("iterations", iterations, 1)
        check_int("k", k, 1, optional=True)
        check_int("n_trials", n_trials, 1, optional=True)
        self.budget = n_trials
        if n_trials is not None:
            k, iterations = fit_to_budget(space, n_trials, k, iterations, reuse)
        self._planner = Planner(
            space, k=25 if k is None else k, reuse=reuse, selection=selection, score=score, acquisition=acquisition, beta=beta,
            parent_weight=parent_weight, diverse=diverse, surrogate_steps=surrogate_steps,
            surrogate_ensemble=surrogate_ensemble, surrogate_device=surrogate_device, rescore=rescore,
            max_params=max_params, max_macs=max_macs, network=network, objectives=objectives,
            max_latency_ms=max_latency_ms, latency=latency)
        check_int("max_retries", max_retries, 0)
        self.space, self.iterations, self.seed = space, iterations, seed
        self._temperature = temperature_schedule(temperature, iterations)
        self.max_retries, self.poll_interval = max_retries, poll_interval
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
        """The paper's exact settings (:attr:`PAPER`); keywords override them (e.g. a smaller ``k``). With
        ``n_trials`` and no ``k``, K is fitted to the budget as in the default sampler."""
        preset = {name: value for name, value in cls.PAPER.items() if name != "k" or "n_trials" not in kwargs}
        return cls(space, **{**preset, **kwargs})

    # -- schedule ------------------------------------------------------------------------------
    @staticmethod
    def planned_trials(space: SearchSpace | None = None, k: int = 25, iterations: int = 3, reuse: bool = False) -> int:
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
                "space": self.space.spec(), "k": self.k, "iterations": self.iterations, "selection": self.selection,
                "temperatures": [round(self.temperature(i), 12) for i in range(self.iterations)],
                "seed": self.seed, **({"n_trials": self.budget} if self.budget is not None else {}),
                **self._planner.config()})
        return state
