"""Latency from a per-part table: estimates per child equal the whole network's sum, the table is measured
once per machine, and a latency limit or objective filters and counts with it (no timing is asserted)."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from optuna_epnas import CostModel, EPNASSampler, Limits, LSTMSurrogate, MacroSpace
from optuna_epnas.costs import latency as latency_module
from optuna_epnas.cli import main
from optuna_epnas.costs.cost import NetworkSize
from optuna_epnas.costs.latency import LatencyTable, latency_table, measure_latency

SPACE = MacroSpace(4)
SIZE = NetworkSize(num_classes=10, in_channels=1, channels=4, image_size=8)


@pytest.fixture(scope="module")
def table():
    return measure_latency(SPACE, SIZE, "cpu", repeats=3)


def test_every_part_is_timed_and_each_childs_estimate_is_its_networks_sum(table):
    assert len(table.ops) == SPACE.num_layers and all(set(t) == set(SPACE.ops) for t in table.ops)
    assert sorted(table.reductions) == [str(p) for p in SPACE.reduction_layers()]
    assert all(v > 0 for v in [table.stem, *table.merge, *table.heads, *table.reductions.values()])
    rng, parent = np.random.default_rng(0), SPACE.root()
    while parent.level < SPACE.num_layers:
        children = SPACE.children(parent)
        ms = table.child_ms(SPACE, parent)
        assert [table.network_ms(c) for c in children] == pytest.approx(ms.tolist())
        parent = children[int(rng.integers(len(children)))]
    # the cheapest completion from nothing is the fastest full-depth network: no sampled one is faster
    full = [table.network_ms(a) for a in _full_depth(SPACE, rng, 200)]
    assert min(full) >= table.completion_ms(SPACE, 0) - 1e-9


def _full_depth(space, rng, n):
    out = []
    for _ in range(n):
        arch = space.root()
        while arch.level < space.num_layers:
            arch = space.child(arch, int(rng.integers(space.num_children(arch))))
        out.append(arch)
    return out


def test_the_table_is_measured_once_and_read_back(tmp_path, monkeypatch):
    first = latency_table(SPACE, SIZE, "cpu", cache_dir=tmp_path)
    monkeypatch.setattr(latency_module, "measure_latency", lambda *a, **k: pytest.fail("measured twice"))
    again = latency_table(SPACE, SIZE, "cpu", cache_dir=tmp_path)
    assert again == first and again.digest == first.digest
    assert latency_table(SPACE, SIZE, "cpu", cache_dir=tmp_path).digest == first.digest


def sized(space, table):
    def objective(trial):
        arch = space.suggest(trial)
        trial.set_user_attr("ms", table.network_ms(arch))
        return 1.0 - 1.0 / (1.0 + table.network_ms(arch))  # slower is better: the limit binds
    return objective


@pytest.mark.slow
def test_a_latency_limit_is_never_exceeded_by_a_measured_network(table):
    full = sorted(table.network_ms(a) for a in _full_depth(SPACE, np.random.default_rng(1), 300))
    limit = full[len(full) // 3]
    sampler = EPNASSampler(SPACE, k=3, iterations=2, seed=0, surrogate=LSTMSurrogate(members=2, steps=20),
                           costs=CostModel(latency=table, limits=Limits(max_latency_ms=limit)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(sized(SPACE, table), n_trials=sampler.n_trials)
    assert sampler.is_finished(study) and max(t.user_attrs["ms"] for t in study.trials) <= limit
    with pytest.raises(ValueError, match="latency=optuna_epnas.costs.latency.latency_table"):
        CostModel(limits=Limits(max_latency_ms=1.0))
    with pytest.raises(ValueError, match="positive number"):
        Limits(max_latency_ms=-1.0)
    assert isinstance(table, LatencyTable)


@pytest.mark.slow
def test_the_command_line_limits_and_minimises_latency(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EPNAS_CACHE", str(tmp_path / "cache"))
    url = f"sqlite:///{tmp_path}/l.db"
    small = ["search", "--layers", "3", "--k", "2", "--iterations", "1", "--channels", "4", "--epochs", "1",
             "--max-train", "200", "--quiet", "--storage", url]
    assert main(small + ["--study-name", "two", "--objectives", "accuracy,latency"]) == 0
    assert "ms (estimated)" in capsys.readouterr().out
    trials = optuna.load_study(storage=url, study_name="two").trials
    assert all(t.values[1] == pytest.approx(t.user_attrs["latency_ms"], abs=1e-5) for t in trials)
    full = sorted(t.user_attrs["latency_ms"] for t in trials if t.user_attrs["level"] == 3)
    limit = full[len(full) // 2]  # the median full-depth network of that search fits, others do not
    assert main(small + ["--study-name", "cap", "--max-latency-ms", str(limit)]) == 0  # the same cached table
    capped = optuna.load_study(storage=url, study_name="cap").trials
    assert capped and max(t.user_attrs["latency_ms"] for t in capped) <= limit
    assert all(t.constraints["latency"] <= 0 for t in capped)
