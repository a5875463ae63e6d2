"""Final training: picking the best full-size architecture, training from scratch, the baseline, `epnas train`."""

from __future__ import annotations

import argparse
import json

import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial

from optuna_epnas.data.device import load_dataset
from optuna_epnas.standalone.export import ModelSpec, build_model
from optuna_epnas.supernet.objective import SupernetObjective
from optuna_epnas.supernet.trainer import SupernetTrainer
from optuna_epnas.spaces import MacroSpace, MicroSpace
from optuna_epnas.cli.train import add_train_parser, train_command
from optuna_epnas.standalone.retrain import best_architecture, save_run
from optuna_epnas.standalone.train import baseline_cnn, evaluate, train_final

MAX_TRAIN = 200


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", device="cpu", seed=0, max_train=MAX_TRAIN)


@pytest.fixture(scope="module")
def search(tmp_path_factory, data):
    """A real (tiny) search study: 3 random full-size macro architectures measured on a supernet."""
    url = f"sqlite:///{tmp_path_factory.mktemp('search')}/s.db"
    space = MacroSpace(3)
    study = optuna.create_study(storage=url, study_name="s", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(SupernetObjective(SupernetTrainer(space, data, epochs=1, channels=4), checkpoint=False), n_trials=3)
    return url, study, space


def _add(study, space, arch, value, level=None, state=TrialState.COMPLETE):
    study.add_trial(create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None,
        params=space.to_params(arch), distributions=space.distributions(arch.level),
        user_attrs={"arch": space.key(arch), "level": arch.level if level is None else level}))


def parse(argv):
    parser = argparse.ArgumentParser(prog="epnas")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["train", *argv])


def test_best_architecture_is_the_highest_complete_full_size_trial(search):
    url, study, space = search
    study = optuna.load_study(study_name="s", storage=url)
    space_, arch, trial = best_architecture(study)
    assert space_.spec() == space.spec()
    assert trial.value == max(t.value for t in study.get_trials(states=(TrialState.COMPLETE,)))
    assert space.key(arch) == trial.user_attrs["arch"]

    # A better full-size trial wins; a still better shallower one and a failed full-size one do not count.
    top = max(t.value for t in study.trials if t.value is not None)
    best = space.parse("sep5x5 | max3x3 | conv3x3[0,1]")
    _add(study, space, best, top + 0.01)
    _add(study, space, space.parse("avg3x3 | conv5x5"), top + 0.02)
    _add(study, space, space.parse("conv3x3 | conv3x3 | conv3x3"), None, state=TrialState.FAIL)
    _, arch, trial = best_architecture(study)
    assert arch == best and trial.value == pytest.approx(top + 0.01)


def test_best_architecture_errors(tmp_path):
    plain = optuna.create_study(direction="maximize")
    with pytest.raises(ValueError, match="not made by an optuna_epnas search"):
        best_architecture(plain)

    # A search with only shallow trials so far: say what it has.
    data = load_dataset("digits", device="cpu", max_train=50)
    space = MacroSpace(3)
    study = optuna.create_study(direction="maximize")
    SupernetObjective(SupernetTrainer(space, data, channels=4), checkpoint=False).attach(study)  # records the spec
    _add(study, space, space.parse("conv3x3"), 0.5)
    _add(study, space, space.parse("conv3x3 | max3x3"), 0.6)
    _add(study, space, space.parse("conv3x3 | max3x3 | avg3x3"), None, state=TrialState.FAIL)
    with pytest.raises(ValueError, match=r"no complete full-size trial \(level 3\): it has 3 trials, 2 complete "
                                         r"\(1 at level 1, 1 at level 2\)"):
        best_architecture(study)


def _tiny_model(data, seed=0):
    spec = ModelSpec(space=MacroSpace(3).spec(), arch="conv3x3 | sep3x3[0] | max3x3[0,1]",
                     num_classes=data.num_classes, in_channels=data.in_channels, channels=8)
    torch.manual_seed(seed)
    return spec, spec.build()


def test_train_final_history_cosine_schedule_and_reproducibility(data):
    records = []
    spec, model = _tiny_model(data)
    result = train_final(model, data, epochs=2, lr=0.1, seed=3, progress=records.append)
    assert records == result.history and [r.epoch for r in records] == [1, 2]
    for r in records:
        assert r.epochs == 2 and r.train_loss > 0 and 0 <= r.train_accuracy <= 1 and 0 <= r.val_accuracy <= 1
    # Cosine over all steps: half-way it is at half the initial rate, at the end at 0.
    assert records[0].lr == pytest.approx(0.05) and records[1].lr == pytest.approx(0.0, abs=1e-12)
    assert 0 <= result.test_accuracy <= 1 and result.val_accuracy == records[-1].val_accuracy
    assert result.params == sum(p.numel() for p in model.parameters()) and result.seconds > 0
    assert records[1].train_loss < records[0].train_loss

    _, again = _tiny_model(data)
    repeat = train_final(again, data, epochs=2, lr=0.1, seed=3)
    assert [(r.train_loss, r.val_accuracy) for r in repeat.history] == [(r.train_loss, r.val_accuracy) for r in records]
    assert repeat.test_accuracy == result.test_accuracy


def test_saved_model_reloads_with_identical_predictions(data, tmp_path):
    spec, model = _tiny_model(data)
    result = train_final(model, data, epochs=1)
    save_run(tmp_path, model, spec, {"test_accuracy": result.test_accuracy})
    reloaded = build_model(tmp_path / "arch.json")
    reloaded.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    model.eval(), reloaded.eval()
    with torch.no_grad():
        assert torch.equal(model(data.test_x), reloaded(data.test_x))
    assert evaluate(reloaded, data.test_x, data.test_y) == result.test_accuracy


@pytest.mark.parametrize("in_channels", [1, 3])
def test_baseline_cnn_matches_the_parameter_count(in_channels):
    for target in (6_000, 20_000, 55_555, 200_000, 1_000_000, 3_000_000):
        net = baseline_cnn(10, in_channels, target)
        params = sum(p.numel() for p in net.parameters())
        assert abs(params - target) <= 0.1 * target, (target, net.width, params)
    out = baseline_cnn(10, in_channels, 50_000)(torch.randn(2, in_channels, 7, 7))  # odd sizes: ceil pooling
    assert out.shape == (2, 10)


COMMON = ["--epochs", "1", "--max-train", str(MAX_TRAIN), "--device", "cpu", "--quiet"]


def _reload_and_check(out, data):
    result = json.loads((out / "result.json").read_text())
    model = build_model(out / "arch.json")
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    assert evaluate(model, data.test_x, data.test_y) == result["test_accuracy"]
    return result


def test_train_command_macro_from_a_study_with_baseline(search, data, tmp_path, capsys):
    url, study, space = search
    _, arch, trial = best_architecture(optuna.load_study(study_name="s", storage=url))
    out = tmp_path / "run"
    (out).mkdir()
    (out / "notes.txt").write_text("mine")
    assert train_command(parse(["--study", "s", "--storage", url, "--channels", "8", "--baseline",
                                "--out", str(out), *COMMON])) == 0
    text = capsys.readouterr().out
    assert space.key(arch) in text and f"trial {trial.number}" in text and "weight-sharing estimate" in text
    assert "test accuracy of the stand-alone network trained from scratch" in text and "plain CNN baseline" in text
    assert "build_model(" in text and "weights_only=True" in text
    result = _reload_and_check(out, data)
    assert result["source"] == {"study": "s", "storage": url, "trial": trial.number, "picked": "best",
                                "supernet_val_accuracy": trial.value, "search_channels": 4,
                                "search_dataset": "digits"}
    assert result["arch"] == space.key(arch) and result["epochs"] == 1 and len(result["history"]) == 1
    assert result["settings"]["channels"] == 8 and result["settings"]["dataset"] == "digits"
    base = result["baseline"]
    assert abs(base["params"] - result["params"]) <= 0.1 * result["params"] and 0 <= base["test_accuracy"] <= 1
    assert (out / "notes.txt").read_text() == "mine"  # only this run's files are replaced


def test_train_command_micro_from_an_arch_key(data, tmp_path, capsys):
    key = "sep3x3(prev) + identity(prev2) | max3x3(b1) + conv3x3(prev)"
    out = tmp_path / "micro"
    assert train_command(parse(["--arch", key, "--space", "micro", "--blocks", "2", "--cells", "1",
                                "--channels", "4", "--out", str(out), *COMMON])) == 0
    assert "--arch" in capsys.readouterr().out
    result = _reload_and_check(out, data)
    spec = ModelSpec.load(out / "arch.json")
    assert spec.cells == 1 and spec.channels == 4 and spec.space["space"] == "micro"
    assert spec.arch == MicroSpace(2).key(MicroSpace(2).parse(key)) and result["source"] == {"arch": spec.arch}


def test_train_command_errors(search, tmp_path):
    url, _, _ = search
    with pytest.raises(ValueError, match="exactly one of --study"):
        train_command(parse(COMMON))
    with pytest.raises(ValueError, match="exactly one of --study"):
        train_command(parse(["--study", "s", "--arch", "conv3x3", *COMMON]))
    with pytest.raises(ValueError, match="a --study brings its own space"):
        train_command(parse(["--study", "s", "--storage", url, "--space", "micro", *COMMON]))
    with pytest.raises(ValueError, match="no study 'nope'.*'s'"):
        train_command(parse(["--study", "nope", "--storage", url, *COMMON]))
    with pytest.raises(FileNotFoundError, match="no study storage"):
        train_command(parse(["--study", "s", "--storage", f"sqlite:///{tmp_path}/none.db", *COMMON]))
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(ValueError, match="pass --layers 2"):
        train_command(parse(["--arch", "conv3x3 | max3x3", *COMMON]))
    with pytest.raises(SystemExit):
        parse(["--arch", "conv3x3", "--epochs", "0"])


def test_train_command_writes_an_onnx_model_that_onnxruntime_runs_as_torch_does(data, tmp_path, capsys, monkeypatch):
    onnxruntime = pytest.importorskip("onnxruntime")
    key = "sep3x3(prev) + identity(prev2) | max3x3(b1) + conv3x3(prev)"
    args = ["--arch", key, "--space", "micro", "--blocks", "2", "--cells", "1", "--channels", "4", *COMMON]
    with monkeypatch.context() as m:  # the exporter missing: said before any training, nothing written
        m.setitem(__import__("sys").modules, "onnxscript", None)
        with pytest.raises(ImportError, match=r"pip install 'optuna_epnas\[onnx\]'"):
            train_command(parse([*args, "--out", str(tmp_path / "none"), "--onnx"]))
        assert not (tmp_path / "none").exists()
    out = tmp_path / "onnx"
    assert train_command(parse([*args, "--out", str(out), "--onnx"])) == 0
    assert "model.onnx (onnxruntime's logits within" in capsys.readouterr().out
    model = build_model(out / "arch.json")
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    images = torch.randn(5, *data.val_x.shape[1:])  # another batch size than the export's
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    assert torch.allclose(got, model.eval()(images).detach(), atol=1e-5)
