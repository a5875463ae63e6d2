"""The one module that touches Optuna's private storage API.

Optuna has no public API for a sampler's or an objective's own state in the storage; its samplers use
``study._storage`` with namespaced system-attribute keys, and so does this package -- through these
functions only, so that an Optuna change shows in one place. Public APIs are used wherever they exist
(``study.get_trials``, ``study.user_attrs``, ``study.set_user_attr``, ``trial.set_user_attr``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import weakref
from typing import Any, Iterator, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    return study._storage


def study_id(study: optuna.Study) -> int:
    return study._study_id


def trial_id(trial: Any) -> int:
    """The storage's id of a ``Trial`` or ``FrozenTrial`` (not its number)."""
    return trial._trial_id


def backend(storage: Any) -> Any:
    """What Optuna's cache wraps (``_CachedStorage`` around an ``RDBStorage``), else the storage itself."""
    return getattr(storage, "_backend", storage)


def journal_file(storage: Any) -> str | None:
    """The file of a ``JournalStorage(JournalFileBackend(path))`` (Optuna keeps it private); else None."""
    path = getattr(getattr(storage, "_backend", None), "_file_path", None)
    return path if isinstance(path, str) else None


def study_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's system attrs (where the sampler, the objective and the notes keep their state)."""
    return study._storage.get_study_system_attrs(study._study_id)


def set_study_attr(study: optuna.Study, key: str, value: Any) -> None:
    study._storage.set_study_system_attr(study._study_id, key, value)


def set_trial_attr(study: optuna.Study, trial: Any, key: str, value: Any) -> None:
    """A system attr of a trial (``Trial`` or ``FrozenTrial``), also one that is not this process's."""
    study._storage.set_trial_system_attr(trial._trial_id, key, value)


def set_trial_user_attr(study: optuna.Study, trial: Any, key: str, value: Any) -> None:
    """A user attr of a trial given as a ``FrozenTrial`` (which has no setter of its own)."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)


def fresh_trial(study: optuna.Study, trial: Any) -> FrozenTrial:
    """The trial as the storage has it now (a ``FrozenTrial`` goes stale as other processes write)."""
    return study._storage.get_trial(trial._trial_id)


def all_trials(study: optuna.Study, states: Sequence[TrialState] | None = None,
               deepcopy: bool = False) -> list[FrozenTrial]:
    return study._storage.get_all_trials(study._study_id, deepcopy=deepcopy, states=states)


def fail_trial(study: optuna.Study, trial: Any) -> bool:
    """Mark a RUNNING trial FAIL (a dead worker's); False if it had already finished."""
    return study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)


# -- trial writes in one transaction ------------------------------------------------------------------
_WRITES = ("set_trial_param", "set_trial_user_attr", "set_trial_system_attr")


class _Batches:
    """Per storage object: the trial writes held back until their batch ends, by trial id. The holding
    methods are put on the storage object while a batch is open and taken off after (so that it pickles)."""

    def __init__(self, storage: Any) -> None:
        self.storage, self.pending, self.depth = storage, {}, {}

    def open(self, trial_id: int) -> None:
        if not self.depth:  # whatever the object had (its class's method, or someone's wrapper) is kept
            self.saved = {name: self.storage.__dict__.get(name) for name in _WRITES}
            for name in _WRITES:
                self.storage.__dict__[name] = self._holder(name, getattr(self.storage, name))
        self.pending.setdefault(trial_id, [])
        self.depth[trial_id] = self.depth.get(trial_id, 0) + 1

    def close(self, trial_id: int) -> None:
        self.depth[trial_id] -= 1
        if not self.depth[trial_id]:
            del self.depth[trial_id], self.pending[trial_id]
        if not self.depth:
            for name, saved in self.saved.items():
                if saved is None:
                    self.storage.__dict__.pop(name, None)
                else:
                    self.storage.__dict__[name] = saved

    def _holder(self, name: str, write: Any) -> Any:
        def maybe_hold(trial_id: int, *args: Any, **kwargs: Any) -> None:
            with _LOCK:
                ops = self.pending.get(trial_id)
                if ops is not None:
                    ops.append((name, args, kwargs))
                    return
            write(trial_id, *args, **kwargs)

        return maybe_hold

    def flush(self, trial_id: int) -> None:
        with _LOCK:
            ops, self.pending[trial_id] = self.pending.get(trial_id) or [], []
        if not ops:
            return
        from optuna import distributions
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        cached, backend = self.storage, self.storage._backend
        with cached._lock:
            study_id, _ = cached._trial_id_to_study_id_and_number[trial_id]
            known = cached._studies[study_id].param_distribution
        with _create_scoped_session(backend.scoped_session, True) as session:
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
            backend.check_trial_is_updatable(trial_id, trial.state)
            for name, args, kwargs in ops:
                if name == "set_trial_param":
                    param, value, dist = (*args, *kwargs.values())
                    previous = known.get(param)
                    if previous is None:  # a name new to this process: Optuna looks up the study's
                        backend._set_trial_param_without_commit(session, trial_id, param, value, dist)
                    else:  # what _set_trial_param_without_commit does, without looking the trial up again
                        distributions.check_distribution_compatibility(previous, dist)
                        session.add(models.TrialParamModel(
                            trial_id=trial_id, param_name=param, param_value=value,
                            distribution_json=distributions.distribution_to_json(dist)))
                    with cached._lock:
                        known.setdefault(param, dist)
                else:
                    key, value = (*args, *kwargs.values())
                    model = (models.TrialUserAttributeModel if name == "set_trial_user_attr"
                             else models.TrialSystemAttributeModel)
                    backend._set_trial_attr_without_commit(session, model, trial_id, key, value)


_LOCK = threading.RLock()
_BATCHES: "weakref.WeakKeyDictionary[Any, _Batches]" = weakref.WeakKeyDictionary()

#: The Optuna releases (major, minor) whose private RDB storage internals ``batched_writes`` was tested on
#: (tests/test_storages.py): 4.7 up to 5.1 (4.0-4.6 lack some of them). Any other writes unbatched.
_BATCHED_OPTUNA = ((4, 7), (5, 2))  # from, up to (not including)
_logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def _batching_tested(version: str) -> bool:
    """Whether ``batched_writes`` batches under this Optuna version (said once per version where not)."""
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        major_minor = ()
    tested = _BATCHED_OPTUNA[0] <= major_minor < _BATCHED_OPTUNA[1]
    if not tested:
        _logger.debug("Optuna %s: trial writes unbatched, one commit each (batched_writes was tested on Optuna "
                      "%d.%d to %d.%d only)", version, *_BATCHED_OPTUNA[0], _BATCHED_OPTUNA[1][0],
                      _BATCHED_OPTUNA[1][1] - 1)
    return tested


@contextlib.contextmanager
def batched_writes(storage: Any, trial_id: int) -> Iterator[None]:
    """The trial's parameter and attribute writes made inside the block reach the database in one
    transaction when it ends (also when it raises), instead of one commit each: a full-depth macro
    architecture is ~80 parameters. Only for Optuna's cached RDB storage (what ``create_study`` makes of
    a URL); other storages write as they go. Nothing inside the block may read back what it wrote (the
    ``Trial`` object keeps its own copy of its params and user attrs; the storage does not yet have them).
    A process killed inside the block loses those writes, as it would lose the trial's later ones: its
    trial stays RUNNING and is failed and run again. It patches Optuna's internals, so only under the Optuna
    versions it was tested on (``_BATCHED_OPTUNA``); under any other the writes go as they come, unbatched."""
    if not _batching_tested(optuna.__version__):
        yield
        return
    from optuna.storages._cached_storage import _CachedStorage

    if not isinstance(storage, _CachedStorage) or not isinstance(storage._backend, optuna.storages.RDBStorage):
        yield
        return
    with _LOCK:
        batches = _BATCHES.get(storage)
        if batches is None:
            batches = _BATCHES[storage] = _Batches(storage)
        batches.open(trial_id)
    try:
        yield
    finally:
        try:
            batches.flush(trial_id)
        finally:
            with _LOCK:
                batches.close(trial_id)
