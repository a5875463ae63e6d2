"""Worker coordination: which trial measures which slot of which stage, kept in the study storage.

Everything the sampler needs lives in the storage, so a new process that loads the study goes on
exactly where the last one stopped:
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
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from optuna_epnas.storage._storage import (all_trials, batched_writes, fail_trial, set_study_attr, set_trial_attr,
                                   set_trial_user_attr, storage_of, study_attrs, trial_id)
from optuna_epnas.storage.keys import (CONFIG_ATTR, FAULT_ATTR, OBJECTIVE_FAILED_ATTR, OWNER_ATTR, SCHEMA_ATTR,
                                       SCHEMA_VERSION, STAGE_ATTR, USES_SPACE_ATTR, check_schema, plan_attr)
from optuna_epnas.storage.owner import is_gone

_logger = logging.getLogger(__name__)

_UNMARKED_GRACE_SECONDS = 10.0


def _fail_stale_trials(study: Study) -> None:
    """``optuna.storages.fail_stale_trials`` without its experimental-API warning on every claim, as Optuna's
    own optimize loop calls it. Only where the storage has a heartbeat (elsewhere the function does nothing):
    entering ``catch_warnings`` makes a warning already shown once show again (Python resets its registry)."""
    import warnings

    if getattr(storage_of(study), "get_heartbeat_interval", lambda: None)() is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


#: (iteration, level, slot, the stage's plan)
Claim = tuple[int, int, int, dict[str, Any]]


@dataclass
class _Slot:
    done: bool = False  # a COMPLETE or PRUNED trial measured it (pruned: at its last report)
    held: bool = False  # a live RUNNING trial is measuring it
    failures: int = 0
    value: float | None = None
    number: int = -1  # trial number of the completed measurement
    feasible: bool = True  # no Optuna constraint over 0 (trial.set_constraint)

    def open(self, max_retries: int) -> bool:
        """A trial may take it: not measured, not being measured, not given up."""
        return not self.done and not self.held and self.failures <= max_retries

    @property
    def measuring(self) -> bool:
        return self.held and not self.done

    def pending(self, max_retries: int) -> bool:
        """Still to be measured: open, or being measured."""
        return not self.done and (self.held or self.failures <= max_retries)


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

    def stage(self, it: int, level: int, plan: dict[str, Any]) -> list[_Slot]:
        """The slots of a stage, one per architecture of its plan."""
        return [self.slot(it, level, slot) for slot in range(len(plan["keys"]))]


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


def adopt_config(study: Study, config: dict[str, Any]) -> dict[str, Any]:
    """The sampler's settings ``config`` as the study keeps them: a new study stores them (a seed of
    None: a fresh one), a searched one must have the same (a seed of None: its seed) or is refused."""
    attrs = study_attrs(study)
    check_schema(study.study_name, attrs)
    stored = attrs.get(CONFIG_ATTR)
    if stored is None:
        if config["seed"] is None:
            config["seed"] = int(np.random.SeedSequence().generate_state(1)[0])
        set_study_attr(study, SCHEMA_ATTR, SCHEMA_VERSION)
        set_study_attr(study, CONFIG_ATTR, config)
        return config
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
    return config


def wait_for_slot(study: Study, trial: FrozenTrial, state: _StudyState,
                  next_slot: Callable[[_Ledger], Claim | None], poll_interval: float) -> Claim:
    """The slot ``next_slot`` finds for ``trial`` once every earlier trial has claimed its own (claims
    go in number order) -- polling the storage until then, and failing dead trials on the way."""
    waited_since, warned = time.monotonic(), False
    while True:
        trials = all_trials(study)
        if _fail_dead_trials(study, trials):
            continue
        # trials after this one cannot hold a slot yet: claims go in number order
        choosing = [t.number for t in trials if t.number < trial.number and _still_choosing(t)]
        found = None if choosing else next_slot(state.ledger_of([t for t in trials if t.number != trial.number]))
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
        time.sleep(poll_interval)


def take_slot(study: Study, trial: FrozenTrial, claim: Claim) -> str:
    """Mark the trial as measuring its slot; the architecture's key."""
    it, level, slot, plan = claim
    key = plan["keys"][slot]
    attrs = {"iteration": it + 1, "level": level, "arch": key, "temperature": plan["temperature"]}
    if plan["predicted"] is not None:
        attrs["predicted_accuracy"] = plan["predicted"][slot]
        attrs["selection_probability"] = plan["probability"][slot]
    with batched_writes(storage_of(study), trial_id(trial)):  # the slot and what the dashboard shows: one commit
        set_trial_attr(study, trial, STAGE_ATTR, [it, level, slot])
        for name, value in attrs.items():
            set_trial_user_attr(study, trial, name, value)
    return key


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


def _fail_dead_trials(study: Study, trials: Sequence[FrozenTrial]) -> bool:
    """Fail RUNNING trials whose process on this machine is gone (a killed search, resumed)."""
    _fail_stale_trials(study)  # heartbeat storages: other machines' dead workers
    failed = False
    for t in trials:
        owner = t.system_attrs.get(OWNER_ATTR)
        if t.state == TrialState.RUNNING and owner and is_gone(owner):
            try:
                if fail_trial(study, t):
                    _logger.warning("trial %d was left running by a process that is gone: marked FAIL (not "
                                    "counted against its architecture), its slot is run again", t.number)
                    failed = True
            except optuna.exceptions.UpdateFinishedTrialError:
                pass
    return failed


def training_rows(state: _StudyState, it: int, level: int, ledger: _Ledger
                  ) -> tuple[list[str], list[float], list[bool]]:
    """The surrogate's rows for stage (it, level): one per distinct architecture measured in the stages
    before it, with its latest value and whether that measurement was infeasible (a constraint over 0)."""
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
