"""The supernet checkpoint's rules: where it goes, whose it is, who holds it; faults that must stop a
search with one clear error and lose nothing."""

from __future__ import annotations

import os
import shutil
import socket

import optuna
import pytest
import torch
from optuna.trial import TrialState

from optuna_epnas.supernet import checkpoint as ckpt
from optuna_epnas.supernet.store import CheckpointStore
from optuna_epnas.storage._storage import set_study_attr, storage_of, study_attrs
from optuna_epnas.storage.owner import _start_of, is_gone, process_mark
from optuna_epnas.storage.storages import open_storage, public_url, storage_file

from test_objective import ARCHS, SPACE, data, objective, run  # noqa: F401 (data: a fixture)


def test_checkpoint_paths_ignore_url_options_and_keep_study_names_apart(tmp_path):
    assert storage_file(f"sqlite:///{tmp_path}/q.db?timeout=60") == tmp_path / "q.db"
    assert ckpt.default_path(f"sqlite:///{tmp_path}/q.db?timeout=60", "s") == tmp_path / "q.db.s.supernet.pt"
    assert ckpt.safe_name("exp_1") == "exp_1" and ckpt.safe_name("exp 1") != ckpt.safe_name("exp_1")
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    assert ckpt.default_path(journal, "s") == tmp_path / "j.log.s.supernet.pt"
    assert ckpt.default_path("postgresql://u:secret@host/db", "s") is None


def test_every_file_beside_a_sqlite_url_with_options_is_beside_its_database(data, tmp_path):
    """One parser (storages.storage_file) for every file derived from a storage URL: ``?timeout=60`` once
    put the checkpoint at ``x.db?timeout=60.<study>.supernet.pt``."""
    from optuna_epnas.analysis.dashboard import artifact_dir_for

    url = f"sqlite:///{tmp_path}/x.db?timeout=60"
    study = optuna.create_study(storage=open_storage(url), study_name="exp 1", direction="maximize")
    obj = objective(data)
    obj.attach(study)
    assert obj.checkpoint_path == tmp_path / f"x.db.{ckpt.safe_name('exp 1')}.supernet.pt"
    assert artifact_dir_for(url) == artifact_dir_for(storage_of(study)) == tmp_path / "x.db.artifacts"
    assert open_storage(url, must_exist=True) is not None  # the file it checks is x.db
    assert sorted(p.name for p in tmp_path.iterdir() if "?" in p.name) == []


def test_a_journal_storage_resumes_its_supernet(data, tmp_path):
    def journal():
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))

    first = objective(data)
    run(optuna.create_study(storage=journal(), study_name="s", direction="maximize"), first, ARCHS[:2])
    second = objective(data)
    second.attach(optuna.load_study(storage=journal(), study_name="s"))
    assert second.trained == [0, 1] and second.checkpoint_path == tmp_path / "j.log.s.supernet.pt"
    for p, q in zip(first.trainer.net.state_dict().values(), second.trainer.net.state_dict().values()):
        assert torch.equal(p, q)


def test_a_storage_without_a_file_needs_a_checkpoint_location(data, tmp_path, monkeypatch):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/x.db", study_name="s", direction="maximize")
    monkeypatch.setattr(ckpt, "default_path", lambda storage, name: None)  # as for PostgreSQL
    with pytest.raises(ValueError, match="--checkpoint-dir"):
        objective(data).attach(study)
    given = objective(data, checkpoint=tmp_path)  # a directory: <study>.supernet.pt in it, recorded in the study
    run(study, given, ARCHS[:1])
    assert (tmp_path / "s.supernet.pt").exists()
    again = objective(data)  # no location given: the recorded one
    again.attach(optuna.load_study(storage=f"sqlite:///{tmp_path}/x.db", study_name="s"))
    assert again.checkpoint_path == (tmp_path / "s.supernet.pt").resolve() and again.trained == [0]


def test_a_missing_or_foreign_checkpoint_is_refused_and_nothing_is_lost(data, tmp_path):
    url = f"sqlite:///{tmp_path}/a.db"
    run(optuna.create_study(storage=url, study_name="a", direction="maximize"), objective(data), ARCHS[:2])
    run(optuna.create_study(storage=url, study_name="b", direction="maximize"), objective(data), ARCHS[:1])
    path_a, path_b = ckpt.default_path(url, "a"), ckpt.default_path(url, "b")
    shutil.copy(path_b, path_a)  # b's weights where a's belong
    with pytest.raises(RuntimeError, match="another study"):
        objective(data).attach(optuna.load_study(storage=url, study_name="a"))
    path_a.unlink()
    with pytest.raises(RuntimeError, match="checkpoint .* is missing"):
        objective(data).attach(optuna.load_study(storage=url, study_name="a"))
    assert len(optuna.load_study(storage=url, study_name="a").get_trials(states=(TrialState.COMPLETE,))) == 2
    path_a.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="is not a supernet checkpoint"):
        objective(data).attach(optuna.load_study(storage=url, study_name="a"))
    assert path_a.read_bytes() == b"not a checkpoint"


def test_an_older_checkpoint_of_the_study_is_brought_forward_by_replaying_what_it_lacks(data, tmp_path, caplog):
    url = f"sqlite:///{tmp_path}/a.db"
    study = optuna.create_study(storage=url, study_name="a", direction="maximize")
    run(study, objective(data), ARCHS[:1])
    older = ckpt.default_path(url, "a").read_bytes()
    later = objective(data)
    run(optuna.load_study(storage=url, study_name="a"), later, ARCHS[1:3])
    later.save()
    ckpt.default_path(url, "a").write_bytes(older)  # as a kill after the trials, before the next checkpoint, leaves it
    resumed = objective(data)
    resumed.attach(optuna.load_study(storage=url, study_name="a"))
    assert resumed.trained == [0, 1, 2] and "replaying the training of 2 trial(s)" in caplog.text
    assert "measures" not in caplog.text  # each replayed trial measured again what it recorded
    for p, q in zip(later.trainer.net.state_dict().values(), resumed.trainer.net.state_dict().values()):
        assert torch.equal(p, q)  # the same weights, bit for bit (CPU)
    assert ckpt.read(ckpt.default_path(url, "a"), data.device)["trained"] == [0, 1, 2]  # and checkpointed


def test_a_second_live_process_is_refused_and_a_dead_one_is_taken_over(data, tmp_path):
    url = f"sqlite:///{tmp_path}/a.db"
    study = optuna.create_study(storage=url, study_name="a", direction="maximize")
    alive = f"{socket.gethostname()}:1:{_start_of(1) or ''}"  # init: alive for as long as this machine is
    set_study_attr(study, ckpt.HOLDER_ATTR, alive)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node=N"):
        objective(data).attach(study)
    gone = f"{socket.gethostname()}:1:{'x' * 8}-0"  # PID 1 again, but not the process that wrote the mark
    assert is_gone(gone) and not is_gone(alive) and not is_gone(process_mark())
    set_study_attr(study, ckpt.HOLDER_ATTR, gone)
    obj = objective(data)
    run(study, obj, ARCHS[:1])
    other_host = "elsewhere:123:abc"
    set_study_attr(study, ckpt.HOLDER_ATTR, other_host)
    with pytest.raises(RuntimeError, match="--takeover"):
        objective(data).attach(study)
    objective(data, checkpoint=CheckpointStore(takeover=True)).attach(study)
    assert study_attrs(study)[ckpt.HOLDER_ATTR] == process_mark()


def test_a_nan_loss_fails_the_trial_and_restores_the_supernet(data, tmp_path):
    url = f"sqlite:///{tmp_path}/a.db"
    study = optuna.create_study(storage=url, study_name="a", direction="maximize")
    obj = objective(data)
    run(study, obj, ARCHS[:1])
    before = {k: v.clone() for k, v in obj.trainer.net.state_dict().items()}
    obj.trainer.lr = 1e30  # diverges at once
    obj.trainer.optimizer.param_groups[0]["lr"] = 1e30
    study.enqueue_trial(SPACE.to_params(SPACE.parse(ARCHS[0])))
    study.optimize(obj, n_trials=1, catch=(FloatingPointError,))
    last = study.trials[-1]
    assert last.state == TrialState.FAIL
    assert all(torch.equal(before[k], v) for k, v in obj.trainer.net.state_dict().items())
    assert obj.trained == [0]


def test_non_finite_hyperparameters_are_refused(data):
    for kwargs in ({"lr": float("inf")}, {"lr": float("nan")}, {"weight_decay": float("inf")}, {"momentum": -1}):
        with pytest.raises(ValueError, match="finite"):
            objective(data, **kwargs)


def test_storage_errors_are_one_line_and_passwords_never_shown(tmp_path):
    assert public_url("postgresql://user:secret@host/db") == "postgresql://user:***@host/db"
    for url in ("nonsense://x", f"sqlite:///{tmp_path}/no/such/dir/x.db", "postgresql://user:secret@127.0.0.1:1/db"):
        with pytest.raises(ValueError) as err:
            optuna.create_study(storage=open_storage(url), study_name="s")
        message = str(err.value)
        assert "cannot open the storage" in message and "secret" not in message and "\n" not in message
    with pytest.raises(FileNotFoundError, match="run `epnas search` first"):
        open_storage(f"sqlite:///{tmp_path}/absent.db", must_exist=True)
    assert not os.path.exists(tmp_path / "absent.db")


def test_a_journal_file_from_the_command_line_searches_resumes_and_trains(tmp_path, capsys):
    from optuna_epnas.cli import main

    small = ["--layers", "2", "--k", "2", "--iterations", "1", "--channels", "4", "--epochs", "1", "--max-train", "200",
             "--quiet"]
    url = f"journal:{tmp_path}/j.log"
    assert main(["search", *small, "--storage", url, "--study-name", "j"]) == 0
    assert (tmp_path / "j.log.j.supernet.pt").exists()
    assert main(["search", *small, "--storage", url, "--study-name", "j"]) == 0
    assert "8 trials planned, 8 already done" in capsys.readouterr().out
    assert main(["search", *small, "--storage", url, "--study-name", "j", "--heartbeat", "1"]) == 2
    assert "--heartbeat needs an RDB storage" in capsys.readouterr().err
    assert main(["train", "--study", "j", "--storage", url, "--epochs", "1", "--channels", "4", "--max-train", "200",
                 "--out", str(tmp_path / "t"), "--quiet"]) == 0


# -- the checkpoint as a log of changes (issue 26: the micro supernet's 200 MiB were written every minute) ----
def _state_of(obj):
    return {"model": obj.trainer.net.state_dict(), "optimizer": obj.trainer.optimizer.state_dict()}


def _same_tensors(a, b):
    ta, tb = dict(ckpt._tensors(a)), dict(ckpt._tensors(b))
    bits = ckpt._BITS
    return ta.keys() == tb.keys() and all(
        torch.equal(ta[k].view(bits[ta[k].element_size()]), tb[k].view(bits[tb[k].element_size()])) for k in ta)


def _records(path):
    """The places of the tensors each record of the log holds (the changed ones), as ``(entry, *place)``."""
    import io
    import zlib

    raw, offset, out, layouts = path.read_bytes(), len(ckpt._MAGIC), [], {}
    while offset < len(raw):
        length, crc = ckpt._RECORD.unpack_from(raw, offset)
        payload = raw[offset + ckpt._RECORD.size: offset + ckpt._RECORD.size + length]
        assert zlib.crc32(payload) == crc
        record = torch.load(io.BytesIO(payload), weights_only=True)
        layouts.update(record["layout"])
        out.append({(k, *layouts[k][1][i]) for k, written in record["tensors"].items() for i in written})
        offset += ckpt._RECORD.size + length
    return out


def test_checkpoints_after_the_first_append_only_what_a_trial_changed_and_read_back_bit_for_bit(data, tmp_path):
    import copy

    url = f"sqlite:///{tmp_path}/a.db"
    study = optuna.create_study(storage=url, study_name="a", direction="maximize")
    obj = objective(data, checkpoint=CheckpointStore(every=0))
    run(study, obj, ARCHS[:1])
    path = obj.checkpoint_path
    full = path.stat().st_size
    for key in ARCHS[1:3]:
        before, size = copy.deepcopy(_state_of(obj)), path.stat().st_size
        run(study, obj, [key])
        after = _state_of(obj)
        old = dict(ckpt._tensors(before))
        changed = {k for k, t in ckpt._tensors(after) if k not in old or not _same_tensors({0: t}, {0: old[k]})}
        assert _records(path)[-1] == changed  # the trial's path (weights, momentum, BN statistics) ...
        assert set(old) - changed and 0 < path.stat().st_size - size < full  # ... not the whole supernet
        state = ckpt.read(path, data.device)
        assert _same_tensors(state, after)  # the whole state as trained, bit for bit
        assert state["trained"] == obj.trained and state["values"] == obj.values
    resumed = objective(data)
    resumed.attach(optuna.load_study(storage=url, study_name="a"))
    assert _same_tensors(_state_of(resumed), _state_of(obj)) and resumed.trained == obj.trained


def test_the_log_is_rewritten_whole_once_its_changes_outgrow_it_and_when_someone_else_wrote_the_file(tmp_path):
    path = tmp_path / "s.supernet.pt"
    file = ckpt.CheckpointFile(path)
    state = {"format": ckpt.FORMAT, "model": {f"w{i}": torch.zeros(1000) for i in range(4)}, "trained": []}
    full = file.write(state)
    appended = []
    for step in range(1, 7):  # each write changes one of four tensors: about a quarter of the whole
        state["model"][f"w{step % 4}"] += 1
        state["trained"].append(step)
        appended.append(file.write(state))
        assert _same_tensors(ckpt.read(path, torch.device("cpu")), state)
    assert all(a < full / 3 for a in appended[:4])  # the first four fit beside the full state ...
    assert appended[4] >= full * 0.9 and path.stat().st_size == appended[4] + appended[5]  # ... then it starts over
    path.write_bytes(path.read_bytes())  # another writer (a restored backup): not appended to blindly
    state["model"]["w0"] += 1
    assert file.write(state) >= full * 0.9
    state["model"]["w1"].zero_()
    state["model"]["w1"][0] = -0.0  # bits, not values: -0.0 == 0.0, and a resume must be exact
    file.write(state)
    assert torch.signbit(ckpt.read(path, torch.device("cpu"))["model"]["w1"][0])


def test_a_write_cut_off_mid_append_resumes_from_the_checkpoint_before_it(data, tmp_path, caplog):
    url = f"sqlite:///{tmp_path}/a.db"
    study = optuna.create_study(storage=url, study_name="a", direction="maximize")
    obj = objective(data, checkpoint=CheckpointStore(every=0))
    run(study, obj, ARCHS[:2])
    path = obj.checkpoint_path
    before_last = ckpt.read(path, data.device)
    run(study, obj, ARCHS[2:3])
    size = path.stat().st_size
    whole = path.read_bytes()
    os.truncate(path, size - 100)  # as a kill during the last append leaves it
    with pytest.warns(UserWarning, match="was cut off"):
        assert _same_tensors(ckpt.read(path, data.device), before_last)
    resumed = objective(data, checkpoint=CheckpointStore(every=0))
    with pytest.warns(UserWarning, match="was cut off"):
        resumed.attach(optuna.load_study(storage=url, study_name="a"))
    assert "replaying the training of 1 trial(s)" in caplog.text  # trial 2, trained again
    assert _same_tensors(_state_of(resumed), _state_of(obj)) and resumed.trained == obj.trained
    # the replay's checkpoint was written whole (never appended after the cut-off bytes): it reads clean
    assert _same_tensors(ckpt.read(path, data.device), _state_of(obj)) and len(whole) != path.stat().st_size
