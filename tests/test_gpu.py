"""The GPU path: uint8 data on the device, training with bf16 + channels_last, benchmarks/gpu_search.py.

The CUDA tests skip where there is no CUDA device; the CPU tests run the benchmark script end to end
on a tiny setting and check the pieces its projection is made of."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from optuna_epnas import MacroSpace, SupernetObjective, SupernetTrainer
from optuna_epnas.data.device import load_dataset, make_generator
from optuna_epnas.sampler.schedule import planned_trials

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_search.py"
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA: torch.cuda.is_available() is False on this machine")

#: A tiny setting of the script: 4 layers, 2 levels + a depth-4 probe, 192 training images, 1 epoch.
TINY = ["--layers", "4", "--train-images", "192", "--val-images", "64", "--epochs", "1", "--levels", "2",
        "--trials-per-level", "1", "--probe-depths", "4", "--compare-reps", "1", "--batch-size", "64"]


@pytest.fixture(scope="module")
def gpu_search():
    spec = importlib.util.spec_from_file_location("gpu_search", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_search"] = module
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- CPU


def test_gpu_search_runs_on_cpu_and_projects(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--data-root", str(tmp_path), "--bandwidth-gbs", "50",
           "--cuda-graphs", *TINY]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    trials = planned_trials(MacroSpace(num_layers=4), 25, 3)
    assert f"= {trials} trials" in text
    m = re.search(r"PROJECTED paper-size search on cpu .*?: ([\d,.]+) CPU-minutes .* a CPU measurement", text)
    assert m and float(m.group(1).replace(",", "")) > 0, text
    assert "synthetic CIFAR-10-shaped uint8 tensors" in text and "train uint8" in text
    assert "--cuda-graphs: skipped (needs CUDA" in text
    assert re.search(r"ratio supernet time / plain time = \d+\.\d+", text), text
    assert "logits max |diff| 0.0e+00" in text  # the plain module computes the supernet path's function
    assert len(re.findall(r"measured / floor = [\d,.]+x", text)) == 3  # depths 1, 2, 4
    assert "GPU-minutes" not in text
    assert len(re.findall(r"^  level 1   depth  1", text, re.M)) == 6  # every one-layer architecture


def test_plan_interpolate_and_defaults(gpu_search):
    space = MacroSpace(num_layers=12)
    args = gpu_search.parse_args(["--device", "cpu", "--levels", "2", "--trials-per-level", "3",
                                  "--probe-depths", "2,4,12", "--probe-trials", "2"])
    assert (args.batch_size, args.lr, args.amp, args.channels_last) == (128, 0.05, False, False)
    assert gpu_search.parse_args(["--device", "cpu", "--batch-size", "512"]).lr == pytest.approx(0.2)
    plan = gpu_search.plan_trials(space, args)
    labels = [label for label, _ in plan]
    assert labels == ["level 1"] * 6 + ["level 2"] * 3 + ["probe 4"] * 2 + ["probe 12"] * 2  # 2 <= --levels
    level1 = [a for label, a in plan if label == "level 1"]
    assert level1 == space.initial()
    for label, arch in plan[6:9]:
        assert arch.level == 2 and arch.ops[:1] + arch.skips[:1] in [a.ops + a.skips for a in level1]
    assert [a.level for label, a in plan if label.startswith("probe")] == [4, 4, 12, 12]
    assert gpu_search.interpolate([1, 2, 12], [1.0, 2.0, 7.0], 7) == pytest.approx(4.5)
    assert gpu_search.interpolate([1, 4], [1.0, 4.0], 12) == pytest.approx(12.0)  # extrapolated linearly
    assert gpu_search.interpolate([2], [3.0], 12) == pytest.approx(18.0)
    with pytest.raises(SystemExit):
        gpu_search.parse_args(["--device", "cpu", "--compile", "--cuda-graphs"])


def test_cuda_graphs_are_off_on_the_cpu_and_asking_for_them_there_changes_nothing():
    """Off CUDA the trainer trains eagerly whatever ``cuda_graphs`` says: bit for bit the same weights."""
    space = MacroSpace(num_layers=3)
    data = load_dataset("digits", device="cpu", uint8=("train",), max_train=256)
    arch = space.child(space.child(space.root(), 2), 9)
    states = []
    for graphs in (None, True):
        obj = SupernetObjective(SupernetTrainer(space, data, epochs=2, channels=4, batch_size=100), checkpoint=False)
        trainer = obj.trainer
        assert trainer.cuda_graphs is False  # the default off CUDA
        trainer.cuda_graphs = graphs
        obj.attach(None)
        trainer.train(arch, 3)
        states.append(trainer.net.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_step_bytes_counts_saved_activations(gpu_search):
    space = MacroSpace(num_layers=3)
    data = load_dataset("digits", device="cpu", max_train=256)
    obj = SupernetObjective(SupernetTrainer(space, data, channels=8), checkpoint=False)
    obj.attach(None)
    trainer = obj.trainer
    arch = space.child(space.child(space.root(), 0), 1)  # conv3x3 | conv3x3[0]
    x, y = next(data.train_batches(64, make_generator("cpu", 0)))
    small, big = gpu_search.step_bytes(trainer, arch, x[:32], y[:32]), gpu_search.step_bytes(trainer, arch, x, y)
    # at least: the stem's and two layers' 8-channel float32 outputs of 8x8 images, for every image
    assert big["saved"] >= 3 * 64 * 8 * 8 * 8 * 4
    assert big["params"] == sum(p.numel() for p in trainer.net.path_parameters(arch))
    assert big["total"] == 2 * big["saved"] + x.numel() * 4 + 28 * big["params"]
    assert 1.8 < big["saved"] / small["saved"] < 2.2  # activations scale with the batch
    assert all(p.grad is None for p in trainer.net.parameters())  # nothing trained


# ----------------------------------------------------------------------------- CUDA


@needs_cuda
def test_cuda_uint8_batches_bit_identical_and_no_host_sync():
    full = load_dataset("digits", device="cuda")
    small = load_dataset("digits", device="cuda", uint8=True)
    assert small.train_x.is_cuda and small.train_x.dtype == torch.uint8
    assert torch.equal(small.images("val"), full.val_x)
    a = [x for x, _ in full.train_batches(100, make_generator("cuda", 0))]
    small.normalise(small.train_x[:1])  # the statistics are on the device before the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host synchronisation below raises
    try:
        b = [x for x, _ in small.train_batches(100, make_generator("cuda", 0))]
        e = [x for x, _ in small.eval_batches("val", 50)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(a) == len(b) and all(torch.equal(p, q) for p, q in zip(a, b))
    assert torch.equal(torch.cat(e), full.val_x)


@needs_cuda
def test_cuda_trial_amp_channels_last_syncs_once_per_epoch(gpu_search):
    space = MacroSpace(num_layers=4)
    data = load_dataset("digits", device="cuda", uint8=("train",))
    obj = SupernetObjective(SupernetTrainer(space, data, epochs=2, channels=8, batch_size=128), checkpoint=False)
    trainer = obj.trainer
    assert trainer.amp and trainer.channels_last  # the objective's CUDA defaults
    trainer.cuda_graphs = False  # the eager step's count (a capture synchronises when it begins, once per trial)
    obj.attach(None)
    arch = space.child(space.child(space.root(), 1), 7)
    trainer.train(arch, step=0)  # lazy CUDA initialisation outside the count
    n = gpu_search.count_syncs(data.device, lambda: trainer.train(arch, step=1))
    assert n <= trainer.epochs, f"{n} host synchronisations in {trainer.epochs} epochs of training"
    assert 0.0 <= trainer.evaluate(arch) <= 1.0
    assert all(torch.isfinite(p).all() for p in trainer.net.parameters())


@needs_cuda
def test_cuda_graph_capture_trains_as_eager(gpu_search):
    space = MacroSpace(num_layers=4)
    data = load_dataset("digits", device="cuda", uint8=("train",))
    obj = SupernetObjective(SupernetTrainer(space, data, epochs=1, channels=8, batch_size=100), checkpoint=False)
    trainer = obj.trainer
    assert trainer.cuda_graphs  # the default on CUDA
    obj.attach(None)
    arch = space.child(space.child(space.child(space.root(), 3), 5), 14)
    assert "captured vs eager" in gpu_search.check_captured(trainer, arch)  # raises SystemExit otherwise
    start = gpu_search.snapshot(trainer)
    trainer.cuda_graphs = False
    trainer.train(arch, step=4)
    eager = gpu_search.snapshot(trainer)
    trainer.set_state(start)
    trainer.cuda_graphs = True
    trainer.train(arch, step=4)
    captured = gpu_search.snapshot(trainer)
    w0 = gpu_search.weights(start)
    change = [e - w for e, w in zip(gpu_search.weights(eager), w0)]
    got = [c - w for c, w in zip(gpu_search.weights(captured), w0)]
    assert gpu_search.rel_diff(change, got) < 0.05
    assert all(p.grad is None for p in trainer.net.parameters())  # the graph's gradients released with it


@needs_cuda
def test_a_step_that_cannot_be_captured_trains_eagerly_with_one_warning(monkeypatch, gpu_search):
    space = MacroSpace(num_layers=3)
    data = load_dataset("digits", device="cuda", uint8=("train",))
    arch = space.child(space.child(space.root(), 1), 4)
    changes = []
    for broken in (False, True):
        obj = SupernetObjective(SupernetTrainer(space, data, epochs=1, channels=8, batch_size=100), checkpoint=False)
        obj.attach(None)
        trainer = obj.trainer
        start = gpu_search.weights(gpu_search.snapshot(trainer))  # the same seeded initialisation both times
        trainer.cuda_graphs = broken
        if broken:
            def refuse(*args, **kwargs):
                raise RuntimeError("operation not permitted when stream is capturing")
            monkeypatch.setattr(torch.cuda, "graph", refuse)
            with pytest.warns(RuntimeWarning, match="could not be captured"):
                trainer.train(arch, step=2)
            assert trainer.cuda_graphs is False
        else:
            trainer.train(arch, step=2)
        changes.append([w - s for w, s in zip(gpu_search.weights(gpu_search.snapshot(trainer)), start)])
    assert gpu_search.rel_diff(changes[0], changes[1]) < 1e-2  # eager both times: the fallback lost nothing


@needs_cuda
def test_gpu_search_main_on_cuda(gpu_search, tmp_path, capsys):
    result = gpu_search.main(["--device", "cuda", "--data-root", str(tmp_path), "--cuda-graphs", *TINY])
    text = capsys.readouterr().out
    assert result["kind"] == "GPU" and result["projected_minutes"] > 0 and math.isfinite(result["supernet_over_plain"])
    assert "GPU-minutes" in text and "host synchronisations" in text and "peak device memory" in text
    assert "--cuda-graphs check: captured vs eager" in text
    assert np.isfinite(list(result["per_depth_seconds"].values())).all()


def test_the_command_line_trains_gpu_sized_batches_on_cuda_unless_told_otherwise():
    from optuna_epnas.cli import build_parser
    from optuna_epnas.cli.search import settings_from_args
    from optuna_epnas.settings import GPU_TRAINING, resolve_settings

    args = build_parser().parse_args(["search"])
    on_gpu = resolve_settings("epnas", settings_from_args(args, torch.device("cuda")))
    on_cpu = resolve_settings("epnas", settings_from_args(args, torch.device("cpu")))
    assert (on_gpu.batch_size, on_gpu.lr) == (GPU_TRAINING["batch_size"], GPU_TRAINING["lr"]) == (256, 0.1)
    assert (on_cpu.batch_size, on_cpu.lr) == (128, 0.05)
    told = build_parser().parse_args(["search", "--batch-size", "64"])
    assert resolve_settings("epnas", settings_from_args(told, torch.device("cuda"))).batch_size == 64


@needs_cuda
def test_the_surrogate_fits_and_scores_on_cuda_as_on_the_cpu():
    """Same weights (drawn on the CPU), same batches, exact float32 products (no TF32): before fitting the
    devices agree to rounding; an L1 fit amplifies rounding slowly, so after 100 steps on a learnable
    target they agree closely. Calibrated on the CPU between the batched ensemble and the sequential
    nn.LSTM members it replaced (same seed and target): max |diff| 4e-4 and Kendall τ 1.0 after 100 steps,
    τ 0.89 after 500. A resume on another device keeps the stored plans (tests/test_sampler.py)."""
    from scipy.stats import kendalltau

    from optuna_epnas.sampler.surrogate import OneLSTM

    space, rng = MacroSpace(6), np.random.default_rng(0)
    archs = []
    for _ in range(260):
        arch = space.root()
        for _ in range(int(rng.integers(1, 7))):
            arch = space.child(arch, int(rng.integers(space.num_children(arch))))
        archs.append(arch)
    seqs = [space.tokens(a) for a in archs]
    y = [0.3 + 0.5 * sum(op == "conv3x3" for op in a.ops) / a.level for a in archs]
    before = [OneLSTM(space.token_dim, seed=1, device=d).predict(seqs) for d in ("cpu", "cuda")]
    np.testing.assert_allclose(before[0], before[1], atol=1e-5)
    cpu = OneLSTM(space.token_dim, steps=100, seed=1).fit(seqs[:200], y[:200])
    gpu = OneLSTM(space.token_dim, steps=100, seed=1, device="cuda").fit(seqs[:200], y[:200])
    a, b = cpu.predict(seqs[200:]), gpu.predict(seqs[200:])
    assert np.abs(a - b).max() < 5e-3 and kendalltau(a, b)[0] > 0.95
    parents = [a for a in archs if a.level == 3][:4]  # one level: the prefixes are one length
    prefixes, children = [space.tokens(p) for p in parents], [space.child_tokens(p) for p in parents]
    np.testing.assert_allclose(cpu.predict_children(prefixes, children), gpu.predict_children(prefixes, children),
                               atol=5e-3)
