"""Storage URLs as the ``epnas`` commands take them: opened with one clear error, printed without
passwords, and the file behind a SQLite URL or a journal storage (where the supernet goes beside).

Besides Optuna's RDB URLs, ``journal:PATH`` is Optuna's JournalStorage in a file (one host, no server)."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any

import optuna

from optuna_epnas.storage._storage import backend as _backend_of
from optuna_epnas.storage._storage import journal_file


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
        file_path = journal_file(storage)
        if file_path is not None:
            return Path(file_path)
        url = getattr(_backend_of(storage), "url", None)
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
        rdb = _rdb_storage(url, **beat)
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


#: What a process that creates an RDB schema at the same moment as another one meets (Optuna creates it
#: without a lock): a table or version row the other made first, SQLite's lock, or (Optuna asserts it)
#: no schema version yet because the other has not stamped it.
_COLLISION = re.compile(r"already exists|unique constraint|duplicate key|database is locked", re.IGNORECASE)


def _rdb_storage(url: str, tries: int = 6, **kwargs: Any) -> optuna.storages.RDBStorage:
    """``RDBStorage(url)``, tried again when its schema creation collides with another process's (two
    searches started together on a new database): once the other is done, the schema is found."""
    import sqlalchemy

    for attempt in range(1, tries):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.DBAPIError, AssertionError) as err:
            if not (isinstance(err, AssertionError) or _COLLISION.search(str(err))):
                raise
        time.sleep(random.Random().uniform(0.05, 0.2) * attempt)  # jittered: the two do not collide again
    return optuna.storages.RDBStorage(url, **kwargs)  # the last try: its error is the one to say


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
