"""A trial is one unit (issue 25): stopped at any of its steps, or while a level is planned, by Ctrl-C,
SIGTERM or an exception, the same command again ends with the trials, values and supernet of an
uninterrupted run. (SIGKILL at these points: tests/test_cli.py and studies/kill_resume.py.)"""

from __future__ import annotations

import importlib.util
import logging
import signal
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from optuna_epnas.cli import main

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("kill_resume", ROOT / "studies" / "kill_resume.py")
kill_resume = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kill_resume)

# 2 layers, K=2, 1 iteration: 6 + 2 trials, two plans
SEARCH = ["search", "--layers", "2", "--k", "2", "--iterations", "1", "--channels", "4", "--epochs", "1",
          "--max-train", "200", "--ensemble", "2", "--quiet", "--study-name", "f"]  # 2 surrogates: quicker plans
EXIT = {"int": 130, "term": 143, "raise": 2}
#: (point, call it strikes at): mid-level-1, and the second plan (level 2)
POINTS = [(p, kill_resume.MATRIX_AT.get(p, 4)) for p in kill_resume.POINTS]


def _search(tmp: Path, every: str) -> list[str]:
    return SEARCH + ["--storage", f"sqlite:///{tmp}/f.db", "--checkpoint-dir", str(tmp), "--checkpoint-every", every]


def _outcome(tmp: Path):
    return kill_resume.outcome(f"sqlite:///{tmp}/f.db", "f", tmp)


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Ctrl-C must raise KeyboardInterrupt here even when the suite runs in the background: a non-interactive
    shell starts `cmd &` with SIGINT ignored, and Python then keeps it ignored (seen: every SIGINT case
    passed as if never interrupted)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    assert main(_search(tmp, "60")) == 0
    return _outcome(tmp)


@pytest.fixture
def restore_patches():
    replaced: list = []
    yield replaced
    for owner, name, original in reversed(replaced):
        setattr(owner, name, original)


@pytest.mark.parametrize("fault", ["int", "term", "raise"])
@pytest.mark.parametrize("point, at", POINTS, ids=[p for p, _ in POINTS])
def test_a_fault_at_any_step_then_the_same_command_gives_the_uninterrupted_result(
        tmp_path, uninterrupted, restore_patches, point, at, fault, capsys):
    every = "0" if point in ("save", "replace-before", "append") else "60"  # so that the checkpoint write is in a trial
    restore_patches += kill_resume.inject(point, {at}, fault)
    assert main(_search(tmp_path, every)) == EXIT[fault]
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if fault != "raise":
        assert "re-run the same command to resume" in err
    for owner, name, original in restore_patches:
        setattr(owner, name, original)
    study = optuna.load_study(storage=f"sqlite:///{tmp_path}/f.db", study_name="f")
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]  # settled, not left for a resume
    assert main(_search(tmp_path, every)) == 0
    rows, weights = _outcome(tmp_path)
    assert rows == uninterrupted[0]  # the same architectures and values, none lost or repeated
    assert weights.keys() == uninterrupted[1].keys()
    assert all(torch.equal(weights[k], uninterrupted[1][k]) for k in weights)


def test_the_interrupted_trial_is_not_counted_against_its_architecture(tmp_path, restore_patches):
    """Interrupted twice in the same slot: still measured (a failure of the architecture is retried
    once, then given up)."""
    from optuna_epnas.sampler import FAULT_ATTR

    for _ in range(2):
        restore_patches += kill_resume.inject("evaluate", {1}, "int")
        assert main(_search(tmp_path, "60")) == 130
        for owner, name, original in restore_patches:
            setattr(owner, name, original)
    study = optuna.load_study(storage=f"sqlite:///{tmp_path}/f.db", study_name="f")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 2 and all(t.system_attrs[FAULT_ATTR].startswith("interrupted") for t in failed)
    assert failed[0].user_attrs["arch"] == failed[1].user_attrs["arch"]
    assert main(_search(tmp_path, "60")) == 0
    assert failed[0].user_attrs["arch"] in {t.user_attrs["arch"] for t in study.trials if t.state == TrialState.COMPLETE}


def test_a_diverging_trial_leaves_no_nan_weights_without_a_checkpoint(monkeypatch):
    """In memory (no checkpoint to restore), a trial whose loss becomes NaN fails and the supernet is
    as before it: the next trials measure what they would have measured."""
    from optuna_epnas.data.device import load_dataset
    from optuna_epnas.supernet.objective import SupernetObjective
    from optuna_epnas.supernet.trainer import SupernetTrainer
    from optuna_epnas.spaces import MacroSpace

    data = load_dataset("digits", device="cpu", max_train=200)
    objective = SupernetObjective(SupernetTrainer(MacroSpace(2), data, epochs=1, channels=4, seed=0))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=2)
    trainer = objective.trainer
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    fit = trainer._fit

    def diverging(*args, **kwargs):
        fit(*args, **kwargs)  # the training happens, and then the loss is found non-finite
        with torch.no_grad():
            next(trainer.net.parameters()).fill_(float("nan"))
        raise FloatingPointError("the training loss became NaN or infinite in epoch 1")

    monkeypatch.setattr(trainer, "_fit", diverging)
    study.optimize(objective, n_trials=1, catch=(FloatingPointError,))
    assert study.trials[-1].state == TrialState.FAIL
    after = trainer.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert objective.trained == [0, 1] and sorted(objective.values) == [0, 1]


def test_divergence_says_so_in_one_line_per_trial_and_one_error(tmp_path, capfd):
    """--lr 1e9: the warm-up diverges (one error, no trial ran); without a warm-up every level-1 trial
    diverges (one line each, no traceback) and the search stops with one error."""
    issue = ["search", "--dataset", "digits", "--layers", "3", "--k", "3", "--iterations", "1", "--epochs", "1",
             "--channels", "8", "--device", "cpu", "--quiet", "--storage", f"sqlite:///{tmp_path}/d.db", "--lr", "1e9"]
    assert main(issue) == 2
    err = capfd.readouterr().err
    assert "warm-up diverged before any trial ran" in err and "lower --lr" in err and "Traceback" not in err
    logged: list[logging.LogRecord] = []  # what Optuna's own handler prints (it does not propagate)
    catcher = logging.Handler()
    catcher.emit = logged.append
    logging.getLogger("optuna").addHandler(catcher)
    try:
        assert main(issue + ["--study-name", "g", "--warmup-epochs", "0"]) == 2
    finally:
        logging.getLogger("optuna").removeHandler(catcher)
    err = capfd.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("epnas: error: no architecture of level 1")
    failed = [r.getMessage() for r in logged if " failed" in r.getMessage()]
    assert all(r.exc_info is None for r in logged)
    assert sum("diverged: the training loss became NaN" in m for m in failed) == 12  # 6 architectures, retried once
    assert not [m for m in failed if "failed with" in m]  # not Optuna's parameters nor its "failed with value"
