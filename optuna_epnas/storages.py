"""Storage URLs as the ``epnas`` commands take them: opened with one clear error, printed without
passwords, and the file behind a SQLite URL or a journal storage (where the supernet goes beside).

Besides Optuna's RDB URLs, ``journal:PATH`` is Optuna's JournalStorage in a file (one host, no server)."""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from pathlib import Path
from typing import Any, Iterator

import optuna


def public_url(storage: Any) -> str:
    """The storage URL without a password, for everything printed or written to files."""
    if not isinstance(storage, str):
        return type(storage).__name__
    try:
        from sqlalchemy.engine import make_url

        return make_url(storage).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy knows: keep nothing that could be a secret
        return re.sub(r"//[^/@]*@", "//***@", storage)


JOURNAL_PREFIX = "journal:"


def storage_file(storage: Any) -> Path | None:
    """The file a SQLite URL or a journal-file storage keeps its studies in; None for other storages."""
    if isinstance(storage, str) and storage.startswith(JOURNAL_PREFIX):
        return Path(storage[len(JOURNAL_PREFIX):])
    if isinstance(storage, str):
        url = storage
    else:
        backend = getattr(storage, "_backend", storage)  # _CachedStorage wraps an RDBStorage
        file_path = getattr(backend, "_file_path", None)  # JournalStorage(JournalFileBackend(path))
        if isinstance(file_path, str):
            return Path(file_path)
        url = getattr(backend, "url", None)
    if not isinstance(url, str) or not url.startswith("sqlite:"):
        return None
    try:
        from sqlalchemy.engine import make_url

        database = make_url(url).database  # without ?timeout=60 and the like
    except Exception:
        return None
    return Path(database) if database and database != ":memory:" else None


def open_storage(url: str, heartbeat: float | None = None, must_exist: bool = False) -> str | optuna.storages.BaseStorage:
    """The storage of a URL (an RDB one with Optuna's heartbeat when ``heartbeat`` seconds are given),
    or one ``ValueError``/``FileNotFoundError`` that says what is wrong. ``must_exist``: a SQLite file
    that is not there is an error (loading would create an empty database)."""
    file = storage_file(url)
    if must_exist and file is not None and not file.is_file():
        raise FileNotFoundError(f"no study storage at {file}: run `epnas search` first, or pass --storage")
    if heartbeat is not None and url.startswith(JOURNAL_PREFIX):
        raise ValueError("--heartbeat needs an RDB storage (sqlite:///..., postgresql://...), not a journal file")
    try:
        if url.startswith(JOURNAL_PREFIX):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(str(file)))
        # A stale trial (no heartbeat for 2 intervals + grace) is failed by Optuna, and its slot run again.
        beat = {} if heartbeat is None else {"heartbeat_interval": max(1, round(heartbeat)),
                                             "grace_period": max(2, round(2 * heartbeat))}
        rdb = optuna.storages.RDBStorage(url, **beat)
        if rdb.engine.name == "sqlite":
            _write_ahead_log(rdb)
        return rdb if heartbeat is not None else optuna.storages.get_storage(rdb)
    except Exception as err:  # sqlalchemy's ArgumentError, OperationalError, a missing driver, ...
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(url, str) and "@" in url:
            reason = reason.replace(url, public_url(url))
        raise ValueError(
            f"cannot open the storage {public_url(url)} ({type(err).__name__}: {reason}); give an Optuna storage "
            "URL such as sqlite:///epnas.db (its directory must exist and be writable), journal:epnas.log or "
            "postgresql://user@host/db (its server reachable, its driver installed)") from None


def _write_ahead_log(rdb: optuna.storages.RDBStorage) -> None:
    """SQLite in WAL mode with ``synchronous=NORMAL``: a commit no longer waits for the disk (5.5 -> 1.8
    ms here), readers (the dashboard) no longer block the search, and a killed process loses nothing
    committed -- only a power cut can lose the last commits (the database stays consistent). WAL needs
    a local file system (not NFS), as SQLite's locking does anyway."""
    import sqlalchemy

    def on_connect(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sqlalchemy.event.listen(rdb.engine, "connect", on_connect)
    rdb.engine.dispose()  # the connection Optuna opened to create the schema predates the pragmas


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


@contextlib.contextmanager
def batched_writes(storage: Any, trial_id: int) -> Iterator[None]:
    """The trial's parameter and attribute writes made inside the block reach the database in one
    transaction when it ends (also when it raises), instead of one commit each: a full-depth macro
    architecture is ~80 parameters. Only for Optuna's cached RDB storage (what ``create_study`` makes of
    a URL); other storages write as they go. Nothing inside the block may read back what it wrote (the
    ``Trial`` object keeps its own copy of its params and user attrs; the storage does not yet have them).
    A process killed inside the block loses those writes, as it would lose the trial's later ones: its
    trial stays RUNNING and is failed and run again."""
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
