"""Ranking quality: rank correlations, picking architectures, the surrogate held out, `epnas ranking`."""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import warnings

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial
from scipy import stats

from optuna_epnas.data.device import load_dataset
from optuna_epnas.standalone.export import ModelSpec
from optuna_epnas.supernet.objective import SupernetObjective
from optuna_epnas.supernet.trainer import SupernetTrainer
from optuna_epnas.analysis.ranking import (
    RankCorrelation, rank_correlation, spread_trials, standalone_correlations, supernet_vs_standalone,
    surrogate_heldout,
)
from optuna_epnas.analysis.ranking_report import NOTE_MARKER, ranking_markdown
from optuna_epnas.cli.ranking import add_ranking_parser, ranking_command
from optuna_epnas.sampler.epnas import EPNASSampler
from optuna_epnas.spaces import MacroSpace
from optuna_epnas.testing.synthetic import SyntheticScore
from optuna_epnas.standalone.train import train_final
from optuna_epnas.sampler.surrogate import LSTMSurrogate

MAX_TRAIN = 200


# -- rank_correlation -------------------------------------------------------------------------------
@pytest.mark.parametrize("x, y, tau, rho", [
    ([1, 2, 3, 4], [10, 20, 30, 40], 1.0, 1.0),  # perfect
    ([1, 2, 3, 4], [4, 3, 2, 1], -1.0, -1.0),  # reversed
    ([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], 0.6, 0.8),  # 8 concordant, 2 discordant pairs; sum d^2 = 4
    # ties in y: tau-b = (4 - 0) / sqrt(6 * (6 - 2)); rho = Pearson of ranks [1..4] and [1.5,1.5,3.5,3.5]
    ([1, 2, 3, 4], [1, 1, 2, 2], 4 / math.sqrt(24), 4 / math.sqrt(20)),
])
def test_rank_correlation_hand_computed(x, y, tau, rho):
    c = rank_correlation(x, y)
    assert c.n == len(x) and c.defined and c.note == ""
    assert c.kendall_tau == pytest.approx(tau) and c.spearman_rho == pytest.approx(rho)


def test_rank_correlation_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 30) / 10, rng.integers(0, 4, 30) / 10  # many ties, like accuracies of a small set
    c = rank_correlation(list(x), list(y))
    tau, rho = stats.kendalltau(x, y), stats.spearmanr(x, y)
    assert (c.kendall_tau, c.kendall_p) == pytest.approx((tau.statistic, tau.pvalue))
    assert (c.spearman_rho, c.spearman_p) == pytest.approx((rho.statistic, rho.pvalue))


def test_rank_correlation_undefined_and_invalid():
    for x, y, why in (([0.1, 0.2], [0.3, 0.4], "2 pairs"), ([0.1, 0.2, 0.3], [0.5, 0.5, 0.5], "of y are equal")):
        c = rank_correlation(x, y)
        assert not c.defined and why in c.note
        assert all(math.isnan(v) for v in (c.kendall_tau, c.kendall_p, c.spearman_rho, c.spearman_p))
        d = c.to_dict()
        assert d["kendall_tau"] is None and d["n"] == len(x) and json.dumps(d, allow_nan=False)
    with pytest.raises(ValueError, match="equal length"):
        rank_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        rank_correlation([1, 2, float("nan")], [1, 2, 3])


# -- spread_trials -----------------------------------------------------------------------------------
SPACE3 = MacroSpace(3)
FULL = [a for a in itertools.islice(
    (c for b in SPACE3.children(SPACE3.initial()[0]) for c in SPACE3.children(b)), 12)]
START = datetime.datetime(2024, 1, 1)


def _trial(arch, value, minute, level=None, state=TrialState.COMPLETE, **attrs):
    t = create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                     user_attrs={"arch": SPACE3.key(arch), "level": arch.level if level is None else level, **attrs})
    t.datetime_start = t.datetime_complete = START + datetime.timedelta(minutes=minute)  # measurement order
    return t


def test_spread_trials_picks_distinct_full_size_archs_evenly_over_the_ranks():
    values = [0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55]
    order = [3, 7, 0, 9, 5, 1, 8, 2, 6, 4]  # not measured in value order
    trials = [_trial(FULL[i], values[i], minute=m) for m, i in enumerate(order)]
    trials += [
        _trial(FULL[10], 0.99, minute=1),  # measured first at the top ...
        _trial(FULL[10], 0.31, minute=50),  # ... then again lower: the latest counts
        _trial(SPACE3.initial()[0], 0.98, minute=2),  # shallower: not comparable, never picked
        _trial(FULL[11], None, minute=3, state=TrialState.FAIL),
    ]
    picked = spread_trials(trials, max_level=3, n=4)
    # 11 distinct archs sorted by value: 0.10 ... 0.30, 0.31, 0.35 ... 0.55; ranks 0, 3, 7, 10
    assert [t.value for t in picked] == [0.10, 0.25, 0.40, 0.55]
    assert len({t.user_attrs["arch"] for t in picked}) == 4

    every = spread_trials(trials, max_level=3, n=20)  # fewer exist: all of them, once each, by value
    assert len(every) == 11 and [t.value for t in every] == sorted(t.value for t in every)
    assert {t.user_attrs["arch"]: t.value for t in every}[SPACE3.key(FULL[10])] == 0.31
    assert [t.value for t in spread_trials(trials, 3, n=1)] == [0.55]
    with pytest.raises(ValueError, match="positive integer"):
        spread_trials(trials, 3, n=0)


def test_spread_trials_pools_studies_by_measurement_time():
    a = [_trial(FULL[0], 0.9, minute=5), _trial(FULL[1], 0.5, minute=0), _trial(FULL[2], 0.6, minute=0)]
    b = [_trial(FULL[0], 0.2, minute=1)]  # earlier than study a's measurement of the same arch
    assert [t.value for t in spread_trials({"a": a, "b": b}, 3)] == [0.5, 0.6, 0.9]
    b = [_trial(FULL[0], 0.2, minute=9)]  # later: it wins
    assert [t.value for t in spread_trials([*a, *b], 3)] == [0.2, 0.5, 0.6]


# -- surrogate_heldout -------------------------------------------------------------------------------
def _staged(study, key, it, level, value, predicted=None, state=TrialState.COMPLETE):
    attrs = {"arch": key, "level": level, "iteration": it}
    if predicted is not None:
        attrs["predicted_accuracy"] = predicted
    study.add_trial(create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                                 user_attrs=attrs))


def test_surrogate_heldout_leaves_out_only_architectures_measured_in_earlier_stages():
    study = optuna.create_study(direction="maximize")
    for it in (1, 2):
        _staged(study, "a", it, 1, 0.5)
        _staged(study, "b", it, 1, 0.6)
        if it == 1:
            for key, p, v in (("A", 0.9, 0.4), ("B", 0.8, 0.3), ("C", 0.7, 0.2), ("D", 0.6, 0.1)):
                _staged(study, key, 1, 2, v, p)  # A is measured again later: still held out HERE
            _staged(study, "E", 1, 2, None, 0.5, state=TrialState.FAIL)  # never measured: no training row
        else:
            _staged(study, "A", 2, 2, 0.1, 0.9)  # a training row of this stage: would turn τ negative
            for key, p, v in (("E", 0.5, 0.5), ("F", 0.6, 0.6), ("G", 0.7, 0.7)):
                _staged(study, key, 2, 2, v, p)

    rows = surrogate_heldout(study)
    assert [(r["level"], r["iteration"], r["n"], r["excluded"]) for r in rows] == [
        (2, None, 7, 1), (2, 1, 4, 0), (2, 2, 3, 1)]
    assert rows[1]["kendall_tau"] == pytest.approx(1.0) and rows[2]["kendall_tau"] == pytest.approx(1.0)
    pooled = stats.kendalltau([0.9, 0.8, 0.7, 0.6, 0.5, 0.6, 0.7], [0.4, 0.3, 0.2, 0.1, 0.5, 0.6, 0.7])
    assert (rows[0]["kendall_tau"], rows[0]["kendall_p"]) == pytest.approx((pooled.statistic, pooled.pvalue))

    _staged(study, "H", 3, 2, 0.3, 0.5)  # a stage of one pair: marked, not dropped
    assert surrogate_heldout(study.get_trials())[-1] == {
        "level": 2, "iteration": 3, "n": 1, "excluded": 0, "kendall_tau": None, "kendall_p": None}


def test_surrogate_heldout_on_a_real_epnas_run():
    space = MacroSpace(4)
    sampler = EPNASSampler(space, k=4, iterations=2, surrogate=LSTMSurrogate(steps=100), seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(SyntheticScore(space, seed=0, kind="separable"), n_trials=sampler.n_trials)
    rows = surrogate_heldout(study)
    assert [(r["level"], r["iteration"]) for r in rows] == [
        (level, it) for level in (2, 3, 4) for it in (None, 1, 2)]

    # The rule, stated independently: a stage's trial is held out unless a COMPLETE trial of an earlier
    # stage measured the same architecture (for macro keys: the same level in an earlier iteration).
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    for r in rows:
        if r["iteration"] is None:
            continue
        where = (r["iteration"], r["level"])
        stage = [t for t in trials if (t.user_attrs["iteration"], t.user_attrs["level"]) == where]
        before = {t.user_attrs["arch"] for t in trials if (t.user_attrs["iteration"], t.user_attrs["level"]) < where}
        kept = [t for t in stage if t.user_attrs["arch"] not in before]
        assert (r["n"], r["excluded"]) == (len(kept), len(stage) - len(kept))
        if r["kendall_tau"] is not None:
            tau = stats.kendalltau([t.user_attrs["predicted_accuracy"] for t in kept], [t.value for t in kept])
            assert r["kendall_tau"] == pytest.approx(tau.statistic)
    assert any(r["excluded"] > 0 for r in rows)  # this run re-selects a measured architecture: the rule matters

    tpe = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    tpe.optimize(SyntheticScore(space, seed=0), n_trials=5)
    assert surrogate_heldout(tpe) == []


# -- supernet vs stand-alone, end to end -------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", device="cpu", seed=0, max_train=MAX_TRAIN)


@pytest.fixture(scope="module")
def search(data):
    """A real small EPNAS search on a supernet: 5 full-size macro architectures of 3 layers (in memory:
    the same search on SQLite takes 4x as long)."""
    space = MacroSpace(3)
    sampler = EPNASSampler(space, k=5, iterations=1, surrogate=LSTMSurrogate(steps=50), seed=0)
    study = optuna.create_study(study_name="r", direction="maximize", sampler=sampler)
    with warnings.catch_warnings():  # conftest's filter is per test; this fixture is per module
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        objective = SupernetObjective(SupernetTrainer(space, data, epochs=1, channels=4), checkpoint=False)
        study.optimize(objective, n_trials=sampler.n_trials)
    return study, space


def test_supernet_vs_standalone_end_to_end(search, data):
    study, space = search
    calls = []
    corr, rows = supernet_vs_standalone(study, space, data, n=4, epochs=1,
                                        progress=lambda i, n, row: calls.append((i, n, row["arch"])))
    assert [(i, n) for i, n, _ in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len({r["arch"] for r in rows}) == 4 and [c[2] for c in calls] == [r["arch"] for r in rows]
    by_number = {t.number: t for t in study.trials}
    for r in rows:
        assert set(r) == {"arch", "study", "trial", "supernet_accuracy", "standalone_val_accuracy",
                          "standalone_test_accuracy", "params", "seconds"}
        t = by_number[r["trial"]]
        assert (r["study"], r["arch"], r["supernet_accuracy"]) == ("r", t.user_attrs["arch"], t.value)
        assert t.user_attrs["level"] == space.max_level
        assert r["params"] == t.user_attrs["params"]  # the search's width (4): read from the study
    assert [r["supernet_accuracy"] for r in rows] == sorted(r["supernet_accuracy"] for r in rows)
    assert corr == rank_correlation([r["supernet_accuracy"] for r in rows],
                                    [r["standalone_test_accuracy"] for r in rows]) or not corr.defined
    assert standalone_correlations(rows)["test"].n == 4

    # Each network is trained from a seeded initialisation: training one again gives the same numbers.
    spec = ModelSpec(space=space.spec(), arch=rows[0]["arch"], num_classes=10, in_channels=1, channels=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = spec.build()
    again = train_final(model, data, epochs=1, seed=0)
    assert (again.test_accuracy, again.val_accuracy) == (rows[0]["standalone_test_accuracy"],
                                                         rows[0]["standalone_val_accuracy"])
    with pytest.raises(ValueError, match="pass channels="):
        supernet_vs_standalone(study.trials, space, data, n=3, epochs=1)


def test_ranking_markdown_contains_the_numbers():
    corr = RankCorrelation(n=5, kendall_tau=0.6, kendall_p=0.14, spearman_rho=0.8, spearman_p=0.1)
    rows = [{"arch": f"conv3x3 | max3x3[{i % 2}]", "study": "s", "trial": i, "supernet_accuracy": 0.5 + i / 10,
             "standalone_val_accuracy": 0.4 + i / 10, "standalone_test_accuracy": t, "params": 1234, "seconds": 1.0}
            for i, t in enumerate([0.31, 0.22, 0.43, 0.54, 0.65])]
    surrogate = [{"level": 2, "iteration": None, "n": 7, "excluded": 1, "kendall_tau": 0.05, "kendall_p": 0.9},
                 {"level": 2, "iteration": 1, "n": 2, "excluded": 0, "kendall_tau": None, "kendall_p": None}]
    md = ranking_markdown((corr, rows), surrogate, settings={"epochs": 10, "channels": 24})
    assert "n = 5, Kendall τ = +0.600 (p = 0.14), Spearman ρ = +0.800" in md
    assert "strong agreement (Kendall τ = +0.60, n = 5); at this n not distinguishable from chance (p = 0.14)" in md
    assert "epochs 10, channels 24" in md
    assert "| 0.9000 | 0.8000 | 0.6500 | 1,234 | s#4 | `conv3x3 \\| max3x3[0]` |" in md
    assert "| 2 | all | 7 | 1 | +0.050 | 0.9 |" in md and "| 2 | 1 | 2 | 0 | – | – |" in md
    assert "Level 2 (all iterations): the surrogate ranks unseen candidates with no agreement (Kendall τ = +0.05" in md
    inverted = RankCorrelation(n=9, kendall_tau=-0.4, kendall_p=0.01, spearman_rho=-0.5, spearman_p=0.01)
    md = ranking_markdown((inverted, []), None)
    assert "moderate disagreement, the order inverted (Kendall τ = -0.40, n = 9)." in md
    assert "Surrogate" not in ranking_markdown((corr, rows), None)
    assert "not an EPNAS/PNAS search" in ranking_markdown(None, [])


def _parse(argv):
    parser = argparse.ArgumentParser(prog="epnas")
    add_ranking_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["ranking", *argv])


def test_ranking_command_writes_the_report_and_the_note(search, tmp_path, capsys):
    import optuna_dashboard

    url = f"sqlite:///{tmp_path}/r.db"  # `epnas ranking` loads the study from a storage URL
    optuna.copy_study(from_study_name="r", from_storage=search[0]._storage, to_storage=url)
    args = _parse(["--study", "r", "--storage", url, "--n", "3", "--epochs", "1", "--max-train", str(MAX_TRAIN),
                   "--device", "cpu", "--out", str(tmp_path / "out"), "--quiet"])
    assert (args.n, args.epochs, args.channels) == (3, 1, None)
    study = optuna.load_study(study_name="r", storage=url)
    optuna_dashboard.save_note(study, "## Architecture search `r`\n\nbest ...")
    assert ranking_command(args) == 0
    report = json.loads((tmp_path / "out" / "ranking.json").read_text())
    assert len(report["supernet_vs_standalone"]["rows"]) == 3 and report["settings"]["channels"] == 4
    assert report["surrogate_heldout"] == surrogate_heldout(study)
    md = (tmp_path / "out" / "ranking.md").read_text()
    assert md in capsys.readouterr().out

    assert ranking_command(_parse(["--study", "r", "--storage", url, "--surrogate-only",
                                   "--out", str(tmp_path / "out")])) == 0  # again: the section is replaced
    note = optuna_dashboard.get_note(study)
    assert note.startswith("## Architecture search `r`") and note.count(NOTE_MARKER) == 1
    assert note.endswith((tmp_path / "out" / "ranking.md").read_text())
    assert "Supernet accuracy vs" not in note


def test_ranking_markdown_says_why_a_correlation_is_undefined():
    flat = rank_correlation([0.9, 0.8, 0.7], [0.5, 0.5, 0.5])
    rows = [{"arch": "conv3x3", "study": None, "trial": i, "supernet_accuracy": v, "standalone_val_accuracy": 0.4,
             "standalone_test_accuracy": 0.5, "params": 10, "seconds": 0.1} for i, v in enumerate([0.9, 0.8, 0.7])]
    md = ranking_markdown((flat, rows), None)
    assert "undefined (all 3 values of y are equal (0.5))." in md and "| #0 |" in md
