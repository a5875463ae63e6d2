"""``torchrun --nproc_per_node=2 epnas search``: one supernet over two gloo ranks. The same trials and
values as one process; every trial ends with the ranks' copies checked identical; a kill of rank 0
and a re-run resume exactly as one process does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import pytest
import torch.distributed as dist

from optuna_epnas.supernet.objective import RANKS_ATTR
from optuna_epnas.sampler import STAGE_ATTR
from test_cli import KILLER, PLANNED, SMALL, _stages, completed

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")


def torchrun(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=900)


def test_two_ranks_train_one_supernet_and_resume_after_a_kill(tmp_path, reference):
    whole = f"sqlite:///{tmp_path}/whole.db"
    done = torchrun("-m", "optuna_epnas.cli", *SMALL, "--storage", whole, "--study-name", "k")
    assert done.returncode == 0, done.stderr[-6000:]
    assert "× 2 ranks" in done.stdout
    trials = completed(whole, "k")
    assert len(trials) == PLANNED
    assert all(t.system_attrs[RANKS_ATTR] == 2 for t in trials)  # identical weights on both ranks, every trial
    assert _stages(whole) == reference  # the same trials and values as one process (whole-batch BN statistics)
    # rank 0 killed right after a checkpoint written after every trial (its trial not yet recorded), then
    # killed mid-training with checkpoints a minute apart (the trials since the warm-up's are replayed on
    # both ranks), then the same command again
    killed = f"sqlite:///{tmp_path}/killed.db"
    for kill, every in ((("save", "6"), "0"), (("train", "4"), "60")):
        died = torchrun(*KILLER[1:], *SMALL, "--storage", killed, "--study-name", "k", "--checkpoint-every", every,
                        env={"KILL_POINT": kill[0], "KILL_AT": kill[1]})
        assert died.returncode != 0
        assert 0 < len(completed(killed, "k")) < PLANNED
    again = torchrun("-m", "optuna_epnas.cli", *SMALL, "--storage", killed, "--study-name", "k")
    assert again.returncode == 0, again.stderr[-6000:]
    assert "replaying the training of" in again.stderr
    assert _stages(killed) == _stages(whole)
    assert len(optuna.load_study(storage=killed, study_name="k").get_trials(
        states=(optuna.trial.TrialState.COMPLETE,))) == PLANNED


def test_epnas_train_on_two_ranks_writes_one_result(tmp_path):
    out = tmp_path / "trained"
    done = torchrun("-m", "optuna_epnas.cli", "train", "--arch", "conv3x3 | max3x3[0]", "--layers", "2",
                    "--epochs", "2", "--channels", "4", "--max-train", "200", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr[-6000:]  # the ranks' weights are checked identical at the end
    assert "× 2 ranks" in done.stdout and done.stdout.count("test accuracy of the stand-alone network") == 1
    result = json.loads((out / "result.json").read_text())
    assert 0.0 <= result["test_accuracy"] <= 1.0 and (out / "model.pt").exists()


def test_two_ranks_stop_a_pruned_trial_together_and_match_one_process(tmp_path):
    # a pruner stops training after an epoch on rank 0; the other rank is told and stops there too
    pruning = [*SMALL, "--iterations", "1", "--epochs", "3", "--report-epochs", "--pruner", "successive-halving"]
    one, two = f"sqlite:///{tmp_path}/one.db", f"sqlite:///{tmp_path}/two.db"
    alone = subprocess.run([sys.executable, "-m", "optuna_epnas.cli", *pruning, "--storage", one, "--study-name", "p"],
                           capture_output=True, text=True, timeout=900)
    assert alone.returncode == 0, alone.stderr[-6000:]
    done = torchrun("-m", "optuna_epnas.cli", *pruning, "--storage", two, "--study-name", "p")
    assert done.returncode == 0, done.stderr[-6000:]

    def stages(url):
        return sorted((tuple(t.system_attrs[STAGE_ATTR]), t.state.name, t.value, t.intermediate_values)
                      for t in optuna.load_study(storage=url, study_name="p").trials)

    assert any(state == "PRUNED" for _, state, _, _ in stages(one))
    assert stages(two) == stages(one)
