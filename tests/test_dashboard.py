"""optuna-dashboard: trial and study notes, drawings as trial artifacts, and a real search seen in a real browser."""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import wsgiref.util
from pathlib import Path

import optuna
import optuna_dashboard
import pytest
from optuna.trial import TrialState, create_trial

from optuna_epnas.analysis import dashboard, dashboard_server
from optuna_epnas.analysis.dashboard import DashboardRecorder, artifact_dir_for, get_trial_note, record_study
from optuna_epnas.analysis.notes import SearchInfo, study_note, trial_note
from optuna_epnas.cli import dashboard as cli_dashboard
from optuna_epnas.cli import main as epnas_main
from optuna_epnas.cli.dashboard import add_dashboard_parser
from optuna_epnas.supernet.objective import OBJECTIVE_ATTR
from optuna_epnas.sampler import CONFIG_ATTR
from optuna_epnas.spaces import MacroSpace

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"  # kept after the run (git-ignored)
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")

SPACE = MacroSpace(num_layers=3)
CONFIG = {"space": SPACE.spec(), "k": 2, "iterations": 1, "selection": "epnas", "temperatures": [1.0], "seed": 0,
          "surrogate": {"steps": 500, "ensemble": 1}}
OBJECTIVE = {"space": SPACE.spec(), "channels": 4, "dataset": "digits", "num_classes": 10, "in_channels": 1, "seed": 0}
EPNAS_ATTRS = {"iteration": 1, "level": 3, "arch": "sep3x3 | conv3x3 | avg3x3[0,1]", "temperature": 1.0,
               "predicted_accuracy": 0.19524, "selection_probability": 0.028853, "params": 618, "train_seconds": 0.041}
TPE_ATTRS = {"arch": "conv3x3 | max3x3[0] | sep5x5[1]", "level": 3, "params": 700, "train_seconds": 0.05}


def _frozen(value: float | None, attrs: dict, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    return create_trial(state=state, value=value, user_attrs=attrs)


def _study(url: str | None, epnas: bool = True, name: str = "s") -> optuna.Study:
    """A study as `epnas search` leaves it (settings in system attrs), without training anything; None: in memory."""
    study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    study._storage.set_study_system_attr(study._study_id, OBJECTIVE_ATTR, OBJECTIVE)
    if epnas:
        study._storage.set_study_system_attr(study._study_id, CONFIG_ATTR, CONFIG)
    return study


def _add(study: optuna.Study, value: float | None, attrs: dict, state=TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    study.add_trial(_frozen(value, attrs, state))
    return study.get_trials(deepcopy=False)[-1]


def _level(n: int) -> dict:
    return {"arch": " | ".join(["conv3x3"] * n), "level": n, "params": 100 * n, "train_seconds": 0.01}


# -- note content ---------------------------------------------------------------------------------
def test_a_trial_note_of_an_epnas_trial_says_where_what_and_how_well():
    info = SearchInfo(SPACE, CONFIG, OBJECTIVE)
    note = trial_note(_frozen(0.2013888, EPNAS_ATTRS), info, "/artifacts/1/9/abc")
    for text in ("`sep3x3 | conv3x3 | avg3x3[0,1]`", "level 3 of 3", "iteration 1 of 1", "τ = 1",
                 "surrogate prediction 0.1952", "selection probability 0.0289", "**0.2014**", "618", "0.04 s",
                 "](/artifacts/1/9/abc)"):
        assert text in note, (text, note)


def test_a_trial_note_of_a_tpe_trial_has_no_schedule_and_says_when_it_failed():
    info = SearchInfo(SPACE, None, OBJECTIVE)
    note = trial_note(_frozen(0.5, TPE_ATTRS), info)
    assert "`conv3x3 | max3x3[0] | sep5x5[1]`" in note and "level 3 of 3" in note and "**0.5000**" in note
    assert "iteration" not in note and "surrogate" not in note and "τ" not in note and "![" not in note
    failed = trial_note(_frozen(None, {"arch": "conv3x3", "level": 1}, TrialState.FAIL), info)
    assert "trial FAIL" in failed and "level 1 of 3" in failed


def test_the_study_note_shows_the_best_full_size_architecture_settings_and_progress():
    study = _study(None)
    _add(study, 0.9, _level(1))  # better, but shallower: not comparable
    _add(study, 0.3, _level(3))
    best = _add(study, 0.6, EPNAS_ATTRS)
    info = SearchInfo.of(study)
    note = study_note(study, info, study.get_trials(deepcopy=False), "/artifacts/1/3/x")
    assert f"(trial {best.number}): `{EPNAS_ATTRS['arch']}`" in note and "**0.6000**" in note
    assert "3 of 10 planned (3 complete, 2 at full depth, 0 failed or pruned)" in note
    assert "time per trial" in note and "weight-sharing estimates" in note
    assert "macro, 3 layers" in note and "K = 2" in note and "digits, supernet 4 channels" in note
    assert note.rstrip().endswith("](/artifacts/1/3/x)")  # the drawing last: the text stays in view

    tpe = _study(None, epnas=False, name="tpe")
    _add(tpe, 0.4, _level(2))
    note = study_note(tpe, SearchInfo.of(tpe), tpe.get_trials(deepcopy=False), planned=5)
    assert "No full-size architecture" in note and "1 of 5 planned" in note and "not EPNAS/PNAS" in note


# -- what the recorder writes -----------------------------------------------------------------------
def _drawings(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> list[dict]:
    """The trial's artifacts as optuna-dashboard lists them (its web API, as its page reads a study)."""
    environ: dict = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(PATH_INFO=f"/api/studies/{study._study_id}", QUERY_STRING="after=0")
    status = []
    body = b"".join(optuna_dashboard.wsgi(study._storage)(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:500])
    (found,) = [t for t in json.loads(body)["trials"] if t["trial_id"] == trial._trial_id]
    return found["artifacts"]


@needs_dot
def test_the_recorder_writes_notes_and_a_drawing_per_architecture_and_the_study_note_when_due(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    study = _study(url)
    recorder = DashboardRecorder(study_note_every=3, study_note_seconds=0)
    versions = []
    for i in range(7):  # level-1 trials: only the count makes the study note due (calls 1, 4, 7)
        recorder(study, _add(study, 0.1, {**_level(1), "arch": ["conv3x3", "sep3x3", "max3x3"][i % 3]}))
        versions.append(study._storage.get_study_system_attrs(study._study_id).get("dashboard:note_ver"))
    assert versions == [1, 1, 1, 2, 2, 2, 3]
    best = _add(study, 0.7, EPNAS_ATTRS)
    recorder(study, best)  # a new best full-size architecture: the study note at once
    assert study._storage.get_study_system_attrs(study._study_id)["dashboard:note_ver"] == 4
    assert EPNAS_ATTRS["arch"] in optuna_dashboard.get_note(study)

    recorder.close()  # drawings are made on a background thread
    folder = artifact_dir_for(url)
    assert folder == tmp_path / "r.db.artifacts" and len(list(folder.iterdir())) == 4  # 4 distinct architectures
    for trial in study.get_trials(deepcopy=False):
        (meta,) = _drawings(study, trial)
        assert meta["mimetype"] == "image/svg+xml" and meta["filename"] == f"arch-trial-{trial.number:04d}.svg"
        assert "<svg" in (folder / meta["artifact_id"]).read_text()
        note = get_trial_note(study, trial)
        assert f"### Trial {trial.number}: `{trial.user_attrs['arch']}`" in note
        assert f"(/artifacts/{study._study_id}/{trial._trial_id}/{meta['artifact_id']})" in note
    assert f"/artifacts/{study._study_id}/{best._trial_id}/" in optuna_dashboard.get_note(study)


def test_a_trial_costs_the_recorder_no_read_of_the_growing_study_attrs(tmp_path, monkeypatch):
    study = _study(f"sqlite:///{tmp_path}/n.db")
    recorder = DashboardRecorder(study_note_seconds=3600)  # the study note once, then not for an hour
    reads = []
    original = type(study._storage).get_study_system_attrs
    monkeypatch.setattr(type(study._storage), "get_study_system_attrs",
                        lambda self, study_id: reads.append(1) or original(self, study_id))
    for i in range(30):
        recorder(study, _add(study, 0.1, {**_level(1), "arch": ["conv3x3", "sep3x3", "max3x3"][i % 3]}))
    recorder.close()
    assert len(reads) <= 3  # the first trial's note reads once (and the search info); later trials none
    note = get_trial_note(study, study.get_trials(deepcopy=False)[-1])  # optuna-dashboard reads them back
    assert "### Trial 29: `max3x3`" in note
    assert optuna_dashboard.get_note(study).startswith("## Architecture search")
    recorder.write_study_note(study, final=True)  # a rewrite keeps the version count right
    assert study._storage.get_study_system_attrs(study._study_id)["dashboard:note_ver"] == 2


def test_notes_go_through_save_note_where_its_note_layout_is_not_recognised(tmp_path, monkeypatch):
    assert dashboard._note_layout() is not None  # learned from this optuna-dashboard's save_note: the cache is on
    monkeypatch.setattr(dashboard, "_note_layout", lambda: None)  # as after a layout it does not recognise
    writes, save_note = [], optuna_dashboard.save_note
    monkeypatch.setattr(optuna_dashboard, "save_note", lambda target, body: writes.append(1) or save_note(target, body))
    study = _study(f"sqlite:///{tmp_path}/f.db")
    recorder = DashboardRecorder(artifact_dir=False, study_note_seconds=3600)
    for i in range(3):
        recorder(study, _add(study, 0.1, {**_level(1), "arch": ["conv3x3", "sep3x3", "max3x3"][i]}))
    recorder.write_study_note(study, final=True)
    assert len(writes) == 5  # 3 trial notes and the study note twice, each by optuna-dashboard itself
    assert "### Trial 2: `max3x3`" in get_trial_note(study, study.get_trials(deepcopy=False)[-1])
    assert optuna_dashboard.get_note(study).startswith("## Architecture search")
    assert study._storage.get_study_system_attrs(study._study_id)["dashboard:note_ver"] == 2


@needs_dot
def test_record_study_is_idempotent_and_leaves_what_the_sampler_reads_alone(tmp_path):
    study = _study(f"sqlite:///{tmp_path}/i.db")
    for n in (1, 2, 3):
        _add(study, 0.1 * n, _level(n))
    trials_before = [(t.user_attrs, t.system_attrs) for t in study.get_trials()]
    attrs_before = study._storage.get_study_system_attrs(study._study_id)

    record_study(study)
    notes = [get_trial_note(study, t) for t in study.get_trials(deepcopy=False)]
    record_study(study)
    trials = study.get_trials(deepcopy=False)
    assert [len(_drawings(study, t)) for t in trials] == [1, 1, 1]
    assert len(list((tmp_path / "i.db.artifacts").iterdir())) == 3
    assert [get_trial_note(study, t) for t in trials] == notes
    assert [(t.user_attrs, t.system_attrs) for t in study.get_trials()] == trials_before
    attrs = study._storage.get_study_system_attrs(study._study_id)
    assert {k: v for k, v in attrs.items() if not k.startswith("dashboard:")} == attrs_before


def test_a_storage_without_a_file_gets_notes_but_no_drawings():
    assert artifact_dir_for("postgresql://u@h/db") is None and artifact_dir_for("sqlite:///:memory:") is None
    study = _study(None)  # in memory
    trial = _add(study, 0.5, EPNAS_ATTRS)
    DashboardRecorder()(study, trial)
    assert "![" not in get_trial_note(study, trial) and EPNAS_ATTRS["arch"] in get_trial_note(study, trial)
    assert "weight-sharing" in optuna_dashboard.get_note(study)


def test_the_recorder_never_stops_a_search(tmp_path, monkeypatch, caplog):
    study = _study(f"sqlite:///{tmp_path}/x.db")
    trial = _add(study, 0.5, EPNAS_ATTRS)

    def storage_hiccup(*args):
        raise OSError("database is locked")

    monkeypatch.setattr(dashboard, "save_trial_note", storage_hiccup)
    DashboardRecorder(artifact_dir=False)(study, trial)  # an exception here would end study.optimize
    assert "could not record trial 0" in caplog.text and "database is locked" in caplog.text


def test_the_dashboard_command_refuses_a_missing_database_and_a_taken_port(tmp_path):
    with pytest.raises(FileNotFoundError, match="no study storage"):
        cli_dashboard.main(["--storage", f"sqlite:///{tmp_path}/missing.db"])
    assert not (tmp_path / "missing.db").exists()
    url = f"sqlite:///{tmp_path}/p.db"
    _study(url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match="cannot serve on"):
            cli_dashboard.main(["--storage", url, "--port", str(taken.getsockname()[1])])


# -- end to end: a real search, the real dashboard, a real browser ----------------------------------
def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _render(url: str, screenshot: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, and a screenshot of what a person sees."""
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=15000",
           "--window-size=1400,1000", f"--screenshot={screenshot}", "--dump-dom", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _wait_until_it_answers(url: str, seconds: float = 30.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/meta", timeout=5) as r:
                return json.load(r)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@needs_dot
@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_a_real_search_in_the_real_dashboard_in_a_real_browser(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path}/e2e.db"
    assert epnas_main(["search", "--layers", "3", "--k", "2", "--iterations", "1", "--channels", "4", "--epochs", "1",
                       "--max-train", "200", "--quiet", "--storage", url]) == 0
    study = optuna.load_study(study_name="macro-digits-epnas", storage=url)
    best = max((t for t in study.trials if t.user_attrs["level"] == 3), key=lambda t: t.value)
    arch = best.user_attrs["arch"]

    # `epnas dashboard --record --port 0`, in a thread; the server it makes is kept to shut it down.
    servers = []
    make = dashboard_server.make_dashboard_server

    def make_and_keep(*args, **kwargs):
        servers.append(make(*args, **kwargs))
        return servers[-1]

    monkeypatch.setattr(dashboard_server, "make_dashboard_server", make_and_keep)
    parser = argparse.ArgumentParser()
    add_dashboard_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dashboard", "--storage", url, "--port", "0", "--record"])
    thread = threading.Thread(target=cli_dashboard.dashboard_command, args=(args,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not servers and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert servers, "the dashboard server did not start"
        base = f"http://127.0.0.1:{servers[0].server_port}"
        assert _wait_until_it_answers(base)["artifact_is_available"] is True
        (meta,) = _drawings(study, best)
        with urllib.request.urlopen(f"{base}/artifacts/{study._study_id}/{best._trial_id}/{meta['artifact_id']}") as r:
            assert r.headers["Content-Type"] == "image/svg+xml" and b"<svg" in r.read()

        ARTIFACTS.mkdir(exist_ok=True)
        shots = {"trial": ARTIFACTS / "dashboard.png", "note": ARTIFACTS / "dashboard-note.png"}
        trial_page = _render(f"{base}/dashboard/studies/{study._study_id}/trials?numbers={best.number}",
                             shots["trial"], tmp_path / "chromium")
        note_page = _render(f"{base}/dashboard/studies/{study._study_id}/note", shots["note"], tmp_path / "chromium")
    finally:
        for server in servers:
            server.shutdown()
        thread.join(timeout=10)
    out = capsys.readouterr().out
    assert "recorded notes and drawings of study 'macro-digits-epnas'" in out
    assert f"/dashboard/studies/{study._study_id}" in out

    for page in (trial_page, note_page):
        assert "macro-digits-epnas" in page  # the app bar names the study
        assert arch in page, "the best architecture's key is not on the page"
    assert f"Trial {best.number}: " in trial_page and "arch-trial-" in trial_page  # its note and its artifact
    assert "Best full-size architecture" in note_page and "weight-sharing estimates" in note_page
    for shot in shots.values():
        assert shot.stat().st_size > 10_000
        print(f"dashboard screenshot: {shot}")
