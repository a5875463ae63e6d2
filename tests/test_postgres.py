"""Searches on a real PostgreSQL (and the same cases on SQLite): a kill -9 and a resume end with the
uninterrupted run's trials; a second process on a study's supernet is refused while the first runs.

The server: EPNAS_TEST_POSTGRES=postgresql://user:password@host/db (.ci/run starts Debian's and sets it).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import optuna
import pytest

from optuna_epnas.storage._storage import study_attrs
from optuna_epnas.supernet.checkpoint import HOLDER_ATTR
from optuna_epnas.storage.storages import open_storage
from test_cli import KILLER, PLANNED, SMALL, _stages, completed

POSTGRES = os.environ.get("EPNAS_TEST_POSTGRES")


def _postgres():
    if not POSTGRES:
        pytest.skip("no PostgreSQL server: set EPNAS_TEST_POSTGRES=postgresql://... (.ci/run starts one)")
    try:
        optuna.get_all_study_names(open_storage(POSTGRES))
    except ValueError as err:
        pytest.skip(f"PostgreSQL at EPNAS_TEST_POSTGRES cannot be reached: {err}")
    return POSTGRES


@pytest.fixture
def postgres():
    return _postgres()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    return f"sqlite:///{tmp_path}/s.db" if request.param == "sqlite" else _postgres()


def search(storage, name, checkpoints):
    return KILLER + SMALL + ["--storage", storage, "--study-name", name, "--checkpoint-dir", str(checkpoints)]


def test_kill_and_resume_on_postgresql(postgres, tmp_path, reference):  # SQLite: test_cli.py
    storage = postgres
    name = f"kill-{uuid.uuid4().hex[:8]}"
    # right after a checkpoint written after every trial; then mid-trial, with checkpoints a minute apart
    # (the trials since the last one are replayed)
    for point, at, every in (("save", "10", "0"), ("train", "3", "60")):
        died = subprocess.run(search(storage, name, tmp_path) + ["--checkpoint-every", every], capture_output=True,
                              env={**os.environ, "KILL_POINT": point, "KILL_AT": at})
        assert died.returncode != 0
    final = subprocess.run(search(storage, name, tmp_path), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert _stages(storage, name) == reference
    assert ":***@" in final.stdout  # the password is never printed
    assert "epnas:epnas@" not in final.stdout + final.stderr


def test_a_second_process_on_a_running_study_is_refused(storage, tmp_path):
    name = f"two-{uuid.uuid4().hex[:8]}"
    first = subprocess.Popen(search(storage, name, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the first holds the supernet
        try:
            study = optuna.load_study(storage=storage, study_name=name)
            if study_attrs(study).get(HOLDER_ATTR):
                break
        except KeyError:
            pass
        time.sleep(0.5)
    second = subprocess.run(search(storage, name, tmp_path), capture_output=True, text=True)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 2 and "being trained by another process" in second.stderr
    assert "Traceback" not in second.stderr
    assert len(completed(storage, name)) == PLANNED  # nothing past the schedule
    again = subprocess.run(search(storage, name, tmp_path), capture_output=True, text=True)
    assert again.returncode == 0 and f"{PLANNED} already done" in again.stdout  # released at the end


def test_heartbeat_storage(postgres):
    storage = open_storage(postgres, heartbeat=5)
    assert storage.get_heartbeat_interval() == 5
