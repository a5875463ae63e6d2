"""``epnas dashboard``'s server: optuna-dashboard's app on a threaded WSGI server, with the architecture
drawings that ``epnas search`` attaches to trials (:mod:`optuna_epnas.analysis.dashboard`) wired in."""

from __future__ import annotations

from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
import optuna_dashboard
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import BaseStorage

from optuna_epnas.storage._storage import study_id
from optuna_epnas.analysis.dashboard import artifact_dir_for, record_study
from optuna_epnas.analysis.notes import SearchInfo
from optuna_epnas.storage.storages import open_storage

__all__ = ["make_dashboard_server", "dashboard_url", "serve_dashboard"]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # the page fires many API calls at once; a stuck one must not block exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- one line per request is noise
        pass


def make_dashboard_server(storage: str | BaseStorage, host: str = "127.0.0.1", port: int = 8080,
                          artifact_dir: str | Path | None = None) -> WSGIServer:
    """optuna-dashboard's app (``optuna_dashboard.wsgi``) on a threaded server, drawings wired in.

    ``port=0`` takes a free port (``server.server_port``). Call ``serve_forever()`` on the result.
    """
    folder = Path(artifact_dir) if artifact_dir is not None else artifact_dir_for(storage)
    store = None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        store = FileSystemArtifactStore(folder)
    app = optuna_dashboard.wsgi(storage, artifact_store=store)
    return make_server(host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)


def dashboard_url(server: WSGIServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/dashboard"


def serve_dashboard(storage_url: str, host: str = "127.0.0.1", port: int = 8080,
                    artifact_dir: str | Path | None = None, record: bool = False) -> int:
    """Serve the dashboard on an existing storage until Ctrl-C; ``record``: first (re)write the notes and
    drawings of every optuna_epnas search in it (:func:`~optuna_epnas.analysis.dashboard.record_study`)."""
    # the dashboard would create an empty database where there is none
    storage = open_storage(storage_url, must_exist=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = storage.get_all_studies()
    if record:
        for s in studies:
            study = optuna.load_study(study_name=s.study_name, storage=storage)
            if SearchInfo.of(study).space is None:
                continue  # not an optuna_epnas search: leave its notes alone
            record_study(study, artifact_dir)
            print(f"recorded notes and drawings of study {s.study_name!r}", flush=True)
    try:
        server = make_dashboard_server(storage, host, port, artifact_dir)
    except OSError as err:  # e.g. the port is taken: say so, as the other commands' errors
        raise RuntimeError(f"cannot serve on {host}:{port}: {err}") from None
    url = dashboard_url(server)
    print(f"optuna-dashboard on {url}  (Ctrl-C to stop)", flush=True)
    for s in studies:
        print(f"  study {s.study_name!r}: {url}/studies/{study_id(s)}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
