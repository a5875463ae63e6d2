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

import datetime
import logging
import math
import os
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_epnas.schedule import TemperatureSpec, planned_trials, temperature_schedule
from optuna_epnas.spaces.base import SearchSpace
from optuna_epnas.surrogate import LSTMSurrogate

_logger = logging.getLogger(__name__)

STAGE_ATTR = "epnas:stage"
OWNER_ATTR = "epnas:owner"
CONFIG_ATTR = "epnas:config"
SELECTIONS = ("epnas", "pnas")
_UNMARKED_GRACE_SECONDS = 10.0


def plan_attr(iteration: int, level: int) -> str:
    return f"epnas:plan:{iteration}:{level}"


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_is_dead(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine: Optuna's heartbeat (RDBStorage(heartbeat_interval=...)) covers it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


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
    done: bool = False  # a COMPLETE or PRUNED trial measured it
    held: bool = False  # a live RUNNING trial is measuring it
    failures: int = 0
    value: float | None = None
    number: int = -1  # trial number of the completed measurement


@dataclass
class _Ledger:
    """Which slot of which stage each earlier trial took, and how it went."""

    stages: dict[tuple[int, int], dict[int, _Slot]] = field(default_factory=lambda: defaultdict(dict))

    @classmethod
    def from_trials(cls, trials: Sequence[FrozenTrial]) -> "_Ledger":
        ledger = cls()
        for t in trials:
            stage = t.system_attrs.get(STAGE_ATTR)
            if stage is None:
                continue
            it, level, slot = stage
            s = ledger.stages[(it, level)].setdefault(slot, _Slot())
            if t.state == TrialState.COMPLETE:
                s.done, s.value, s.number = True, float(t.value), t.number
            elif t.state == TrialState.PRUNED:
                s.done = True
            elif t.state == TrialState.FAIL:
                s.failures += 1
            elif t.state in (TrialState.RUNNING, TrialState.WAITING):
                s.held = True
        return ledger

    def slot(self, it: int, level: int, slot: int) -> _Slot:
        return self.stages.get((it, level), {}).get(slot, _Slot())


class EPNASSampler(BaseSampler):
    """Efficient Progressive NAS (Pérez-Rúa et al., 2018) -- and PNAS with ``selection="pnas"``.

    Use it with an objective that asks ``space.suggest(trial)`` for the architecture and returns its
    validation accuracy in [0, 1], in a study with ``direction="maximize"``.

    Args:
        space: the search space (default: ``MacroSpace()``, 12 layers, the paper's six ops).
        k: architectures kept per level (paper: 25).
        iterations: progressions from level 1 to the last level (paper: 3 to 5).
        selection: ``"epnas"`` samples K candidates with p ∝ s^(1/τ); ``"pnas"`` keeps the top K.
        temperature: τ per iteration: ``(start, end)`` decays geometrically from start to end over
            the iterations; a sequence gives one value per iteration; a callable maps a 0-based
            iteration to τ. Iterations after the schedule keep its last value.
        seed: seeds candidate sampling and surrogate training. ``None`` picks one and stores it in
            the study, so that a resumed search keeps it.
        surrogate_steps: Adam steps per surrogate fit (one fit per level).
        surrogate_ensemble: LSTMs fitted per level (different seeds), their predictions averaged.
            1 is the paper's EPNAS; PNAS used 5. More members, fewer made-up differences between
            candidates that differ only in a unit no measured architecture had at that depth.
        max_retries: a slot whose trial failed is retried this many times before it is given up.
        independent_sampler: samples parameters that are not architecture parameters
            (default: ``RandomSampler(seed)``).
        poll_interval: seconds between looks at the storage while waiting for other workers.
    """

    def __init__(
        self,
        space: SearchSpace | None = None,
        k: int = 25,
        iterations: int = 3,
        selection: str = "epnas",
        temperature: TemperatureSpec = (10.0, 1.0),
        seed: int | None = None,
        surrogate_steps: int = 500,
        surrogate_ensemble: int = 1,
        max_retries: int = 1,
        independent_sampler: BaseSampler | None = None,
        poll_interval: float = 0.2,
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
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        self.space, self.k, self.iterations, self.selection = space, k, iterations, selection
        self._temperature = temperature_schedule(temperature, iterations)
        self.seed = seed
        self.surrogate_ensemble = surrogate_ensemble
        self.surrogate_steps, self.max_retries, self.poll_interval = surrogate_steps, max_retries, poll_interval
        self._independent = independent_sampler or RandomSampler(seed=seed)
        self._plans: dict[tuple[int, int], dict[str, Any]] = {}
        self._plan_lock = threading.Lock()
        self._config: dict[str, Any] | None = None

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
        study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, _owner())

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.space.distributions()

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space or "fixed_params" in trial.system_attrs:
            return {}  # an enqueued trial: the user fixed its parameters, it takes no slot
        self._check_study(study)
        it, level, slot, plan = self._claim(study, trial)
        key = plan["keys"][slot]
        storage, tid = study._storage, trial._trial_id
        storage.set_trial_system_attr(tid, STAGE_ATTR, [it, level, slot])
        attrs = {"iteration": it + 1, "level": level, "arch": key, "temperature": plan["temperature"]}
        if plan["predicted"] is not None:
            attrs["predicted_accuracy"] = plan["predicted"][slot]
            attrs["selection_probability"] = plan["probability"][slot]
        for name, value in attrs.items():
            storage.set_trial_user_attr(tid, name, value)
        return self.space.to_params(self.space.parse(key))

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    # -- state from the storage ----------------------------------------------------------------
    def _check_study(self, study: Study) -> None:
        if self._config is not None:
            return
        if study._is_multi_objective() or study.direction != StudyDirection.MAXIMIZE:
            raise ValueError(
                "EPNASSampler maximises validation accuracy: create the study with direction='maximize'"
            )
        config = {
            "space": self.space.spec(),
            "k": self.k,
            "iterations": self.iterations,
            "selection": self.selection,
            "temperatures": [round(self.temperature(i), 12) for i in range(self.iterations)],
            "seed": self.seed,
            "surrogate": {"steps": self.surrogate_steps, "ensemble": self.surrogate_ensemble},
        }
        stored = study._storage.get_study_system_attrs(study._study_id).get(CONFIG_ATTR)
        if stored is None:
            if config["seed"] is None:
                config["seed"] = int(np.random.SeedSequence().generate_state(1)[0])
            study._storage.set_study_system_attr(study._study_id, CONFIG_ATTR, config)
        else:
            if config["seed"] is None:
                config["seed"] = stored["seed"]
            diff = [f"{name}: study has {stored.get(name)!r}, sampler has {config[name]!r}"
                    for name in config if stored.get(name) != config[name]]
            if diff:
                raise ValueError(
                    f"study {study.study_name!r} was searched with other EPNAS settings ("
                    + "; ".join(diff)
                    + "). Resume it with the same settings, or use a new study name."
                )
        self._config = config

    def _claim(self, study: Study, trial: FrozenTrial) -> tuple[int, int, int, dict[str, Any]]:
        waited_since, warned = time.monotonic(), False
        while True:
            trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
            if self._fail_dead_trials(study, trials):
                continue
            earlier = [t for t in trials if t.number < trial.number]
            choosing = [t.number for t in earlier if _still_choosing(t)]
            found = None if choosing else self._next_slot(study, _Ledger.from_trials(earlier))
            if found is not None:
                return found
            if not warned and time.monotonic() - waited_since > 60:
                _logger.warning(
                    "trial %d has waited a minute for other workers (trials still choosing: %s); a worker "
                    "on another machine that died leaves its trial RUNNING: enable Optuna's heartbeat "
                    "(RDBStorage(heartbeat_interval=...)) to have such trials failed",
                    trial.number, choosing or "none, the current level is still being measured",
                )
                warned = True
            time.sleep(self.poll_interval)

    def _fail_dead_trials(self, study: Study, trials: Sequence[FrozenTrial]) -> bool:
        """Fail RUNNING trials whose process on this machine is gone (a killed search, resumed)."""
        optuna.storages.fail_stale_trials(study)  # heartbeat storages: other machines' dead workers
        failed = False
        for t in trials:
            owner = t.system_attrs.get(OWNER_ATTR)
            if t.state == TrialState.RUNNING and owner and _owner_is_dead(owner):
                try:
                    if study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                        _logger.warning("trial %d was left running by a process that is gone: marked FAIL, "
                                        "its architecture will be measured again", t.number)
                        failed = True
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass
        return failed

    def _next_slot(self, study: Study, ledger: _Ledger) -> tuple[int, int, int, dict[str, Any]] | None:
        """The first open slot of the schedule, or None while the current stage is still running."""
        it = 0
        while True:
            for level in range(1, self.space.max_level + 1):
                plan = self._plan(study, it, level, ledger)
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
        self._check_study(study)
        ledger = _Ledger.from_trials(study._storage.get_all_trials(study._study_id, deepcopy=False))
        stored = study._storage.get_study_system_attrs(study._study_id)
        for it in range(self.iterations):
            for level in range(1, self.space.max_level + 1):
                plan = self._plans.get((it, level)) or stored.get(plan_attr(it, level))
                if plan is None:
                    if level > 1:
                        return False
                    plan = self._plan(study, it, level, ledger)  # level 1 needs no surrogate
                for slot in range(len(plan["keys"])):
                    s = ledger.slot(it, level, slot)
                    if not s.done and (s.held or s.failures <= self.max_retries):
                        return False
        return True

    # -- planning a stage ----------------------------------------------------------------------
    def _plan(self, study: Study, it: int, level: int, ledger: _Ledger) -> dict[str, Any]:
        with self._plan_lock:
            plan = self._plans.get((it, level))
            if plan is None:
                plan = study._storage.get_study_system_attrs(study._study_id).get(plan_attr(it, level))
            if plan is None:
                plan = self._make_plan(it, level, ledger)
                study._storage.set_study_system_attr(study._study_id, plan_attr(it, level), plan)
                _logger.info(
                    "iteration %d level %d: %d of %d candidates chosen (τ=%.3g)",
                    it + 1, level, len(plan["keys"]), plan["candidates"], plan["temperature"],
                )
            self._plans[(it, level)] = plan
            return plan

    def _rng_seed(self, it: int, level: int) -> list[int]:
        assert self._config is not None
        return [self._config["seed"], it, level]

    def _make_plan(self, it: int, level: int, ledger: _Ledger) -> dict[str, Any]:
        tau = self.temperature(it)
        base = {"temperature": tau, "predicted": None, "probability": None}
        if level == 1:
            keys = [self.space.key(a) for a in self.space.initial()]
            return {**base, "keys": keys, "candidates": len(keys)}

        started = time.perf_counter()
        prev_plan = self._plans[(it, level - 1)]
        parents = [self.space.parse(key) for slot, key in enumerate(prev_plan["keys"])
                   if ledger.slot(it, level - 1, slot).value is not None]
        if not parents:
            raise RuntimeError(
                f"no architecture of level {level - 1} in iteration {it + 1} was measured (all failed or "
                "were pruned), so there is nothing to grow; look at the failed trials' errors"
            )
        keys, values = self._training_rows(it, level, ledger)
        seeds = np.random.SeedSequence(self._rng_seed(it, level)).generate_state(self.surrogate_ensemble)
        rows = [self.space.tokens(self.space.parse(k)) for k in keys]
        members = [LSTMSurrogate(self.space.token_dim, steps=self.surrogate_steps, seed=int(s % 2**31)).fit(rows, values)
                   for s in seeds]
        fitted = time.perf_counter()
        prefixes = [self.space.tokens(p) for p in parents]
        children = [self.space.child_tokens(p) for p in parents]
        if len(members) == 1:  # log-sigmoid: no underflow to ties at 0 when the net is saturated
            log_scores = members[0].predict_children(prefixes, children, log=True).astype(np.float64)
        else:  # an ensemble (PNAS) averages away what each member made up about units it never saw
            mean = np.mean([m.predict_children(prefixes, children).astype(np.float64) for m in members], axis=0)
            log_scores = np.log(np.clip(mean, 1e-300, None))
        chosen, probability = select(log_scores, self.k, self.selection, tau, np.random.default_rng(self._rng_seed(it, level)))
        offsets = np.cumsum([0] + [self.space.num_children(p) for p in parents])
        owner = np.searchsorted(offsets, chosen, side="right") - 1
        chosen_keys = [self.space.key(self.space.child(parents[o], int(c - offsets[o]))) for o, c in zip(owner, chosen)]
        return {
            **base,
            "keys": chosen_keys,
            "candidates": int(len(log_scores)),
            "predicted": [float(np.exp(log_scores[c])) for c in chosen],
            "probability": [float(probability[c]) for c in chosen],
            "surrogate_rows": len(keys),
            "fit_seconds": round(fitted - started, 3),
            "score_seconds": round(time.perf_counter() - fitted, 3),
        }

    def _training_rows(self, it: int, level: int, ledger: _Ledger) -> tuple[list[str], list[float]]:
        """One row per distinct architecture measured in earlier stages: its latest accuracy."""
        latest: dict[str, tuple[int, float]] = {}
        for (s_it, s_level), slots in ledger.stages.items():
            if (s_it, s_level) >= (it, level):
                continue
            plan = self._plans.get((s_it, s_level))
            if plan is None:
                continue
            for slot, s in slots.items():
                if s.value is None:
                    continue
                if not 0.0 <= s.value <= 1.0 or math.isnan(s.value):
                    raise ValueError(
                        f"trial {s.number} returned {s.value}; EPNASSampler models validation accuracies "
                        "in [0, 1]: return an accuracy (a fraction), not a percentage or a loss"
                    )
                key = plan["keys"][slot]
                if key not in latest or latest[key][0] < s.number:
                    latest[key] = (s.number, s.value)
        keys = sorted(latest)
        return keys, [latest[k][1] for k in keys]


def select(
    log_scores: np.ndarray, k: int, selection: str, tau: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the K chosen candidates (in draw order), and each candidate's probability p_i.

    Takes log s_i (the surrogate's log-sigmoid: no underflow to ties at 0). EPNAS draws K without
    replacement with p_i ∝ s_i^(1/τ): adding Gumbel noise to log p and taking the top K is exactly
    that sequential draw, in one vectorised pass over ~300k candidates. PNAS takes the K best.
    The probability returned is that of being drawn first.
    """
    logits = log_scores / tau
    probability = np.exp(logits - logits.max())
    probability /= probability.sum()
    n = len(log_scores)
    if n <= k:
        return np.arange(n), probability
    if selection == "pnas":
        return np.argsort(-log_scores, kind="stable")[:k], probability
    perturbed = logits + rng.gumbel(size=n)
    top = np.argpartition(-perturbed, k - 1)[:k]
    return top[np.argsort(-perturbed[top], kind="stable")], probability
