"""The `epnas` command: a small real search, the baselines, resume after a hard kill, bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
import os

import optuna
import pytest
from optuna.trial import TrialState

from optuna_epnas.cli import main
from optuna_epnas.sampler import STAGE_ATTR

SMALL = ["search", "--layers", "3", "--k", "2", "--iterations", "2", "--channels", "4", "--epochs", "1",
         "--max-train", "200", "--quiet"]
PLANNED = 2 * (6 + 2 + 2)


def completed(url, name):
    return optuna.load_study(storage=url, study_name=name).get_trials(states=(TrialState.COMPLETE,))


def test_search_runs_the_schedule_summarises_and_a_rerun_resumes_with_nothing_to_do(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/e.db"
    assert main(SMALL + ["--storage", url, "--study-name", "e"]) == 0
    out = capsys.readouterr().out
    assert f"{PLANNED} trials planned, 0 already done" in out
    assert "best architecture" in out and "validation accuracy" in out and url in out
    trials = completed(url, "e")
    assert len(trials) == PLANNED
    assert (tmp_path / "e.db.e.supernet.pt").exists()
    assert main(SMALL + ["--storage", url, "--study-name", "e"]) == 0
    assert f"{PLANNED} already done" in capsys.readouterr().out
    assert len(completed(url, "e")) == PLANNED


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_baselines_search_the_same_space_with_the_same_objective(tmp_path, sampler, capsys):
    url = f"sqlite:///{tmp_path}/b.db"
    assert main(SMALL + ["--storage", url, "--sampler", sampler, "--n-trials", "5"]) == 0
    trials = completed(url, f"macro-digits-{sampler}")
    assert len(trials) == 5
    for t in trials:  # complete 3-layer architectures in the very same parameters
        assert sorted(t.params) == ["layer_01.op", "layer_02.op", "layer_02.skip_00", "layer_03.op",
                                    "layer_03.skip_00", "layer_03.skip_01"]
        assert t.user_attrs["level"] == 3 and "arch" in t.user_attrs and t.user_attrs["params"] > 0


MICRO = ["search", "--space", "micro", "--blocks", "2", "--cells", "1", "--ops", "conv3x3,identity", "--k", "2",
         "--iterations", "1", "--channels", "4", "--epochs", "1", "--max-train", "200", "--quiet"]


@pytest.mark.parametrize("sampler", ["epnas", "pnas", "tpe", "random"])
def test_a_micro_search_runs_with_every_sampler(tmp_path, sampler, capsys):
    url = f"sqlite:///{tmp_path}/m.db"
    planned = 10 + 2  # level 1: the 10 unordered pairs of 4 (input, op) choices; level 2: K
    # a progressive sampler fits its schedule to --n-trials: 12 is the schedule of K=2 and one iteration
    budget = "12" if sampler in ("epnas", "pnas") else "4"
    assert main(MICRO + ["--storage", url, "--sampler", sampler, "--n-trials", budget]) == 0
    out = capsys.readouterr().out
    assert "MicroSpace(num_blocks=2" in out and "epnas train --study micro-digits-" + sampler in out
    trials = completed(url, f"micro-digits-{sampler}")
    levels = sorted(t.user_attrs["level"] for t in trials)
    if sampler in ("epnas", "pnas"):
        assert levels == [1] * 10 + [2] * 2 and len(trials) == planned
        assert len({t.user_attrs["arch"] for t in trials if t.user_attrs["level"] == 1}) == 10
    else:  # complete 2-block cells in the very same parameters
        assert levels == [2] * 4
        for t in trials:
            assert sorted(t.params) == sorted(f"cell.block_{b}.{p}" for b in (1, 2) for p in ("in1", "op1", "in2", "op2"))
    for t in trials:
        assert set(t.user_attrs["arch"].replace("(", " ").split()) & {"conv3x3", "identity"}
        assert t.user_attrs["params"] > 0


def test_unknown_ops_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(MICRO + ["--ops", "conv3x3,conv7x7"])
    assert exc.value.code == 2 and "conv7x7" in capsys.readouterr().err


def test_bad_arguments_exit_with_a_clear_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["search", "--k", "0"])
    assert exc.value.code == 2 and "must be a positive integer" in capsys.readouterr().err
    url = f"sqlite:///{tmp_path}/x.db"
    assert main(SMALL + ["--storage", url, "--study-name", "x"]) == 0
    capsys.readouterr()
    assert main(SMALL + ["--storage", url, "--study-name", "x", "--channels", "8"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(SMALL + ["--storage", url, "--study-name", "x", "--image-size", "6"]) == 2
    assert "image_size: study has 8, now 6" in capsys.readouterr().err
    assert main(SMALL + ["--storage", url, "--study-name", "x", "--lr", "0.1"]) == 2  # training settings too
    assert "lr: study has 0.05, now 0.1" in capsys.readouterr().err
    assert main(SMALL + ["--storage", url, "--study-name", "x", "--sampler", "tpe"]) == 2
    assert "searched with --sampler epnas, not tpe" in capsys.readouterr().err
    assert len(completed(url, "x")) == PLANNED  # nothing lost


# the search process of studies/kill_resume.py: KILL_POINT/KILL_AT patch a SIGKILL into it
KILLER = [sys.executable, str(Path(__file__).resolve().parents[1] / "studies" / "kill_resume.py"), "--child"]


def _stages(url, name="k"):
    return sorted((tuple(t.system_attrs[STAGE_ATTR]), t.user_attrs["arch"], t.value) for t in completed(url, name))


@pytest.mark.parametrize("kills, every", [
    (["save:10"], "0"),  # right after the checkpoint that holds trial 8's training and value, before Optuna records it
    (["replace-before:2", "append:5"], "0"),  # during a full checkpoint write, then mid-append of the changes
    (["plan:1"], "0"),  # while planning level 2
    (["train:9", "train:1"], "0"),  # mid-trial, twice in one slot: a death is not the architecture's failure
    # checkpoints a minute apart (the default): the first is the warm-up's, so every kill below lands
    # with the study ahead of the weights, and the resume replays the trials in between
    (["train:9"], "60"),
    (["train:3", "plan:2", "train:5"], "60"),
], ids=lambda v: "-".join(v) if isinstance(v, list) else f"every{v}s")
def test_a_search_killed_anywhere_rerun_with_the_same_command_ends_with_the_same_trials(tmp_path, reference, kills,
                                                                                         every):
    killed = f"sqlite:///{tmp_path}/killed.db"
    cmd = KILLER + SMALL + ["--study-name", "k", "--storage", killed, "--checkpoint-every", every]
    for kill in kills:  # each run counts its own calls from 1
        point, at = kill.split(":")
        died = subprocess.run(cmd, env={**os.environ, "KILL_POINT": point, "KILL_AT": at}, capture_output=True)
        assert died.returncode != 0
    final = subprocess.run(cmd, env={**os.environ, "KILL_POINT": "none", "KILL_AT": "0"}, capture_output=True,
                           text=True)
    assert final.returncode == 0, final.stderr
    assert _stages(killed) == reference  # same architectures, same accuracies, none repeated or lost
    trials = optuna.load_study(storage=killed, study_name="k").trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == PLANNED


def test_search_then_train_then_draw_through_the_command(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/s.db"
    assert main(SMALL + ["--storage", url, "--study-name", "s", "--iterations", "1"]) == 0
    capsys.readouterr()
    out = tmp_path / "trained"
    assert main(["train", "--study", "s", "--storage", url, "--epochs", "1", "--channels", "4", "--max-train", "200",
                 "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "test accuracy of the stand-alone network trained from scratch" in text
    picture = out / ("arch.svg" if shutil.which("dot") else "arch.gv")
    assert sorted(p.name for p in out.iterdir()) == sorted(["arch.json", "model.pt", "result.json", picture.name])
    key = json.loads((out / "result.json").read_text())["arch"]
    ops = re.findall(r"[a-z]+\dx\d", key)
    assert len(ops) == 3 and all(op in picture.read_text() for op in ops)

    assert main(["draw", str(out / "arch.json"), "--out", str(tmp_path / "from_json.gv")]) == 0
    assert main(["draw", "--study", "s", "--storage", url, "--trial", "0", "--out", str(tmp_path / "t0.gv")]) == 0
    first = optuna.load_study(storage=url, study_name="s").trials[0].user_attrs["arch"]
    assert first.split("[")[0].strip() in (tmp_path / "t0.gv").read_text()
    assert main(["draw", "--study", "s", "--storage", url, "--out", str(tmp_path / "best.gv")]) == 0
    # the same architecture drawn from the study and from the trained model's JSON
    assert (tmp_path / "best.gv").read_text() == (tmp_path / "from_json.gv").read_text()
    capsys.readouterr()
    assert main(["draw", "--study", "s", "--storage", url, "--trial", "999", "--out", str(tmp_path / "x.gv")]) == 2
    assert "no trial 999" in capsys.readouterr().err
    assert main(["draw", "--arch", "conv3x3 | max3x3", "--layers", "2", "--out", str(tmp_path / "x.jpg")]) == 2
    assert ".svg" in capsys.readouterr().err and not (tmp_path / "x.jpg").exists()


def test_a_worker_lost_on_another_machine_is_taken_over_with_the_heartbeat(tmp_path, reference):
    from optuna_epnas.supernet.checkpoint import HOLDER_ATTR
    from optuna_epnas.sampler import OWNER_ATTR

    url = f"sqlite:///{tmp_path}/lost.db"
    cmd = KILLER + SMALL + ["--study-name", "k", "--storage", url, "--heartbeat", "1"]
    died = subprocess.run(cmd, env={**os.environ, "KILL_POINT": "train", "KILL_AT": "3"}, capture_output=True)
    assert died.returncode != 0
    study = optuna.load_study(storage=url, study_name="k")
    running = [t for t in study.trials if t.state == TrialState.RUNNING]
    assert len(running) == 1
    # as if that process had run on another machine: nothing here can tell whether it is alive
    study._storage.set_trial_system_attr(running[0]._trial_id, OWNER_ATTR, "elsewhere:123:x")
    study._storage.set_study_system_attr(study._study_id, HOLDER_ATTR, "elsewhere:123:x")
    refused = subprocess.run(cmd, env={**os.environ, "KILL_POINT": "none"}, capture_output=True, text=True)
    assert refused.returncode == 2 and "--takeover" in refused.stderr
    # the heartbeat has Optuna fail the lost trial (not the architecture's failure): its slot is run again
    taken = subprocess.run(cmd + ["--takeover"], env={**os.environ, "KILL_POINT": "none"}, capture_output=True,
                           text=True, timeout=600)
    assert taken.returncode == 0, taken.stderr
    assert _stages(url) == reference


# -- lazy imports, the analysis extra ------------------------------------------------------------------
def test_the_command_line_imports_no_analysis_library():
    heavy = ("scipy", "matplotlib", "optuna_dashboard", "graphviz")
    code = f"import sys, optuna_epnas.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}).stdout
    assert out.strip() == "[]"


def test_without_optuna_dashboard_a_search_says_once_that_its_notes_are_off(monkeypatch, capsys):
    from optuna_epnas.cli import progress

    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "optuna_epnas.analysis.dashboard", raising=False)
    monkeypatch.setattr(progress, "_notes_off_said", False)
    assert progress.dashboard_recorder(10) is None and progress.dashboard_recorder(10) is None
    out = capsys.readouterr().out
    assert out.count("notes are off") == 1 and "optuna_dashboard is not installed" in out and "[analysis]" in out
