"""What a user is told (issue 25, items 3-5): one clear line per bad input or fault, and follow-up
commands and summaries that say what is true."""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import re
import sys
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from optuna_epnas.supernet import checkpoint as ckpt
from optuna_epnas.storage._storage import set_study_attr
from optuna_epnas.cli import main
from optuna_epnas.standalone.export import SPEC_FORMAT, build_model
from optuna_epnas.spaces import MacroSpace

TINY = ["search", "--dataset", "digits", "--layers", "2", "--k", "2", "--iterations", "1", "--epochs", "1",
        "--channels", "4", "--max-train", "200", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny search whose URL has a query and whose study name a space: (argv, what it printed)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('finished')}/f.db?timeout=60"
    argv = TINY + ["--storage", url, "--study-name", "s 1"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return argv, out.getvalue()


# -- 1: two searches starting together on a new SQLite file ------------------------------------------
def _open_and_create(url: str, name: str, barrier) -> None:
    from optuna_epnas.storage.storages import open_storage

    barrier.wait()  # both create the schema at the same moment
    optuna.create_study(storage=open_storage(url), study_name=name)


def test_two_processes_creating_a_new_sqlite_file_at_once_both_succeed(tmp_path):
    fork = multiprocessing.get_context("fork")  # fast: the parent has imported everything
    for round_ in range(5):  # without the retry, nearly every round collided
        url = f"sqlite:///{tmp_path}/r{round_}.db"
        barrier = fork.Barrier(2)
        workers = [fork.Process(target=_open_and_create, args=(url, name, barrier)) for name in ("a", "b")]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert [w.exitcode for w in workers] == [0, 0], f"round {round_}"
        assert sorted(optuna.get_all_study_names(url)) == ["a", "b"]


# -- 2: epnas dashboard without graphviz ---------------------------------------------------------------
def test_dashboard_without_graphviz_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # as if not installed
    for module in ("optuna_epnas.standalone.draw", "optuna_epnas.analysis.dashboard", "optuna_epnas.analysis.dashboard_server"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    assert main(["dashboard", "--storage", f"sqlite:///{tmp_path}/none.db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("epnas: error: epnas dashboard needs graphviz, which is not installed: pip install")
    assert err.count("\n") == 1


# -- 3: build_model on a malformed arch.json -----------------------------------------------------------
GOOD = {"format": SPEC_FORMAT, "space": {"space": "macro", "num_layers": 2, "ops": ["conv3x3", "conv5x5"]},
        "arch": "conv3x3 | conv5x5[0]", "num_classes": 10}


@pytest.mark.parametrize("change, message", [
    ({"arch": 3}, r"arch must be an architecture key, a string .* got int 3"),
    ({"arch": ["conv3x3"]}, r"arch must be an architecture key, a string .* got list \['conv3x3'\]"),
    ({"space": "macro"}, r"space must be a search space spec, a dict .* got str 'macro'"),
    ({"space": {**GOOD["space"], "colour": "red"}},
     r"search space spec \{.*\} has unknown key\(s\) \['colour'\]; a macro space's spec has the keys space, "
     r"num_layers, ops"),
    ({"space": {**GOOD["space"], "ops": "conv3x3"}},
     r"ops must be a list of operation names, not the string 'conv3x3' \(e.g. \['conv3x3'\]\)"),
], ids=["arch-number", "arch-list", "space-string", "space-unknown-key", "ops-string"])
def test_build_model_names_the_bad_field_of_an_arch_json(tmp_path, change, message):
    assert isinstance(build_model(GOOD), torch.nn.Module)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({**GOOD, **change}))
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {message}"):
        build_model(path)


def test_a_space_given_ops_as_a_string_is_refused_not_split_into_letters():
    with pytest.raises(ValueError, match="not the string 'conv3x3'"):
        MacroSpace(2, ops="conv3x3")


# -- 4: a garbage checkpoint ---------------------------------------------------------------------------
def test_a_garbage_checkpoint_is_called_what_it_is_without_torchs_advice(tmp_path):
    path = tmp_path / "s.supernet.pt"
    path.write_bytes(bytes(range(7, 47)))
    with pytest.raises(RuntimeError) as err:
        ckpt.read(path, torch.device("cpu"))
    text = str(err.value)
    assert text.startswith(f"{path} is not a supernet checkpoint (it is damaged, or another file is in its place)")
    assert "new study name" in text and "weights_only" not in text and "\n" not in text


# -- 5: a checkpoint folder that cannot be written ----------------------------------------------------
def test_an_unwritable_checkpoint_says_so_not_the_clean_up_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)  # the write fails ...
    monkeypatch.setattr(Path, "unlink", refuse)  # ... and so does removing what it left, as in a read-only folder
    with pytest.raises(RuntimeError, match=r"could not write the supernet checkpoint .*s\.pt \(\[Errno 13\] "
                                           r"Permission denied\); free space or fix its permissions"):
        ckpt.write(tmp_path / "s.pt", {"format": ckpt.FORMAT})


def test_an_unwritable_checkpoint_dir_is_refused_before_the_search(tmp_path, monkeypatch):
    from optuna_epnas.cli.search import _checkpoint_dir

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match="cannot use --checkpoint-dir .*: it is not writable"):
        _checkpoint_dir(str(tmp_path))


# -- 6: other settings on a finished study ------------------------------------------------------------
def test_other_settings_on_a_finished_study_are_refused_before_resuming_is_said(finished, capsys):
    argv, said = finished
    assert "8 trials planned, 0 already done\n" in said
    assert main(argv + ["--k", "4"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("epnas: error: study 's 1' was searched with other EPNAS settings (k: ")
    assert main(argv) == 0
    assert "8 trials planned, 8 already done, nothing left to run" in capsys.readouterr().out


# -- 7: epnas train --trial N -------------------------------------------------------------------------
def test_train_of_a_chosen_trial_does_not_call_it_the_best_full_size(finished, tmp_path, capsys):
    argv, _ = finished
    storage = argv[argv.index("--storage") + 1]
    assert main(["train", "--study", "s 1", "--storage", storage, "--trial", "0", "--epochs", "1", "--channels", "4",
                 "--max-train", "200", "--device", "cpu", "--quiet", "--out", str(tmp_path / "t0")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"epnas train: architecture of study 's 1' ({storage}), trial 0 (1 of 2 layers):"
    result = json.loads((tmp_path / "t0" / "result.json").read_text())
    assert result["source"]["picked"] == "--trial"


# -- 8: follow-up commands quoted for a shell ---------------------------------------------------------
def test_printed_follow_up_commands_are_quoted_for_a_shell(finished):
    argv, said = finished
    storage = argv[argv.index("--storage") + 1]
    assert f"train it from scratch with: epnas train --study 's 1' --storage '{storage}'\n" in said
    assert f"look at it with: epnas dashboard --storage '{storage}'\n" in said


# -- 9: a study name in a message -----------------------------------------------------------------------
def test_a_held_supernet_names_its_study_without_a_quote_then_s():
    study = optuna.create_study(study_name="s1")
    set_study_attr(study, ckpt.HOLDER_ATTR, "elsewhere:1:x")  # a live process on another machine
    with pytest.raises(RuntimeError, match=r"^the supernet of study 's1' is being trained by another process"):
        ckpt.hold(study, None)


# -- 10: failed trials of this run and of earlier ones ---------------------------------------------------
def test_the_summary_says_only_this_runs_failures_are_above(capsys):
    from optuna_epnas.cli.progress import print_summary

    space = MacroSpace(1, ops=("conv3x3",))
    study = optuna.create_study(direction="maximize")
    failed = create_trial(state=TrialState.FAIL)
    study.add_trials([failed, failed])  # trials 0 and 1: an earlier run's
    study.add_trial(create_trial(params={"x": "a"}, distributions={"x": CategoricalDistribution(["a"])}, value=0.5,
                                 user_attrs={"arch": "conv3x3", "level": 1, "params": 10}))
    study.add_trial(failed)  # trial 3: this run's
    print_summary(study, space, "sqlite:///x.db", None, trials_before=2)
    out = capsys.readouterr().out
    assert ("1 trial(s) failed in this run: their errors are above; 2 trial(s) failed in earlier runs (trial numbers "
            "0, 1): their errors are in those runs' output (") in out
    print_summary(study, space, "sqlite:///x.db", None)  # by default every failure is this run's
    assert "3 trial(s) failed in this run: their errors are above (" in capsys.readouterr().out
