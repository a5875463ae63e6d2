"""Issue 24: the ranking benchmark's scoring, the estimators it judges, and the fair (FairNAS) warm-up."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats

from optuna_epnas import MacroSpace, SupernetObjective, load_dataset
from optuna_epnas.benchmarks.ranking import Estimate, load_ranking_table, run_benchmark, score_estimate, top_hit_rate
from optuna_epnas.estimators import measure_path, rank_average, shared_weights, warmup_curve, zero_cost
from optuna_epnas.supernet.trainer import SupernetTrainer, fair_draw

SPACE = MacroSpace(3)
ARCHS = ["conv3x3 | conv3x3 | conv3x3", "max3x3 | avg3x3 | max3x3", "sep3x3 | conv5x5[0] | avg3x3[1]",
         "avg3x3 | max3x3[0] | sep5x5", "conv5x5 | sep5x5 | conv3x3[0,1]"]


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", device="cpu", max_train=256)


def _table(tmp_path, accuracies, seeds=2, archs=None):
    archs = archs or [f"a{i}" for i in range(len(accuracies))]
    rows = [{"arch": a, "val_accuracy": [acc] * seeds, "test_accuracy": [acc + 0.001 * s for s in range(seeds)]}
            for a, acc in zip(archs, accuracies)]
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"seeds": list(range(seeds)), "proxy": {"dataset": "x"}, "architectures": rows}))
    return path


def test_scores_agree_with_scipy_and_the_top_hit_rate_counts_the_true_top(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.5, 0.9, 40)
    table = load_ranking_table(_table(tmp_path, truth))
    noisy = table.truth + rng.normal(0, 0.05, 40)
    out = score_estimate(noisy, table, resamples=200)
    assert out["kendall_tau"] == pytest.approx(stats.kendalltau(noisy, table.truth).statistic)
    assert out["spearman"] == pytest.approx(stats.spearmanr(noisy, table.truth).statistic)
    lo, hi = out["kendall_tau_interval"]
    assert lo < out["kendall_tau"] < hi
    assert score_estimate(table.truth, table, resamples=50)["top10_hit_rate"] == 1.0
    assert score_estimate(-table.truth, table, resamples=50)["top10_hit_rate"] == 0.0
    # 10 architectures: the top 1; 11: the top 2 (ceil), half of them hit
    assert top_hit_rate([5, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0], [5, 0, 4.5, 0, 0, 0, 0, 0, 0, 0, 0]) == 0.5


def test_a_constant_estimator_has_no_correlation_and_wrong_lengths_or_nan_are_refused(tmp_path):
    table = load_ranking_table(_table(tmp_path, [0.1, 0.5, 0.3, 0.7]))
    out = score_estimate([1, 1, 1, 1], table, resamples=20)
    assert out["kendall_tau"] is None and out["kendall_tau_interval"] == [None, None]
    with pytest.raises(ValueError, match="3 scores for 4 architectures"):
        score_estimate([1, 2, 3], table)
    with pytest.raises(ValueError, match="non-finite"):
        score_estimate([1, float("nan"), 3, 4], table)


def test_a_broken_table_is_refused_with_what_is_wrong(tmp_path):
    path = _table(tmp_path, [0.1, 0.5, 0.3])
    raw = json.loads(path.read_text())
    raw["architectures"][1]["test_accuracy"] = [0.5]  # one seed missing
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="test_accuracy must be 2 accuracies"):
        load_ranking_table(path)
    path.write_text("{}")
    with pytest.raises(ValueError, match="is not a ranking table"):
        load_ranking_table(path)
    with pytest.raises(ValueError, match="appears twice"):
        load_ranking_table(_table(tmp_path, [0.1, 0.2, 0.3], archs=["a", "a", "b"]))


def test_run_benchmark_scores_plug_in_estimators_and_their_variants(tmp_path):
    table = load_ranking_table(_table(tmp_path, [0.1, 0.5, 0.3, 0.7, 0.2]))
    lookup = dict(zip(table.archs, table.truth))

    def perfect(archs):
        return Estimate([lookup[a] for a in archs], 10.0, {"reversed": Estimate([-lookup[a] for a in archs], 10.0)})

    out = run_benchmark({"perfect": perfect, "plain": lambda archs: [len(a) for a in archs]}, table, resamples=20,
                        say=lambda s: None)
    assert out["perfect"]["kendall_tau"] == pytest.approx(1.0) and out["perfect"]["cost_macs"] == 10.0
    assert out["perfect/reversed"]["kendall_tau"] == pytest.approx(-1.0)
    assert out["plain"]["kendall_tau"] is None and out["plain"]["cost_macs"] is None


def test_fair_draw_uses_every_op_once_per_layer_and_can_start_from_a_prefix():
    space = MacroSpace(5)
    rng = np.random.default_rng(3)
    for _ in range(5):
        paths = fair_draw(space, rng)
        assert len(paths) == len(space.ops)
        for layer in range(5):
            assert Counter(p.ops[layer] for p in paths) == Counter(space.ops)
    prefix = space.parse("sep3x3 | max3x3")
    for p in fair_draw(space, rng, prefix):
        assert p.ops[:2] == prefix.ops and p.level == 5


def test_a_fair_warm_up_trains_every_op_and_charges_each_path(data):
    uniform = SupernetTrainer(SPACE, data, channels=6, batch_size=64, warmup_epochs=1)
    fair = SupernetTrainer(SPACE, data, channels=6, batch_size=64, warmup_epochs=1, warmup_paths="fair")
    for t in (uniform, fair):
        t.start()
        t.warm_up()
    # a fair batch trains six paths: about six times the uniform warm-up's multiply-adds
    assert 4 < fair.warmup_record["cost_macs"] / uniform.warmup_record["cost_macs"] < 8
    assert fair.warmup_record["paths"] == "fair" and "paths" not in uniform.warmup_record
    fresh = SupernetTrainer(SPACE, data, channels=6, batch_size=64)
    fresh.start()
    for name, p in fair.net.named_parameters():
        if ".ops." in name and name.endswith("weight"):  # every op's weights moved in every layer
            assert not torch.equal(p, dict(fresh.net.named_parameters())[name]), name
    with pytest.raises(ValueError, match="warmup_paths must be one of"):
        SupernetTrainer(SPACE, data, warmup_paths="fairnas")


def test_the_uniform_warm_up_is_unchanged_by_the_fair_option(data):
    """The warm-up of a search made before warmup_paths existed draws the same paths: its resume is exact."""
    a = SupernetObjective(SupernetTrainer(SPACE, data, epochs=1, channels=6, batch_size=64, warmup_epochs=1),
                          checkpoint=False).trainer
    b = SupernetTrainer(SPACE, data, channels=6, batch_size=64, warmup_epochs=1, weight_decay=3e-4)
    a.start(); b.start()
    a.warm_up(); b.warm_up(on_epoch=lambda epoch, cost: None)
    for p, q in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(p, q)
    assert a.warmup_record["cost_macs"] == b.warmup_record["cost_macs"]


def test_warmup_curve_measures_at_each_epoch_count_and_charges_what_was_spent(data):
    rows = warmup_curve(SPACE, data, ARCHS, at=(1, 2), channels=6, batch_size=64, orders=2)
    assert set(rows) == {1, 2}
    for epochs in (1, 2):
        assert len(rows[epochs]["accuracy"].scores) == len(ARCHS)
        assert all(0 <= s <= 1 for s in rows[epochs]["accuracy"].scores)
        assert all(s < 0 for s in rows[epochs]["loss"].scores)  # negative cross-entropy
    assert rows[2]["accuracy"].cost_macs > rows[1]["accuracy"].cost_macs
    assert rows[1]["accuracy_1order"].cost_macs < rows[1]["accuracy"].cost_macs


def test_measure_path_depends_on_the_batch_order_only_through_batch_statistics(data):
    trainer = SupernetTrainer(SPACE, data, channels=6, batch_size=64, eval_batch_size=40)
    trainer.start()
    arch = SPACE.parse(ARCHS[2])
    acc, loss = measure_path(trainer, arch)
    assert acc == trainer.evaluate(arch)  # the split's own order is evaluate()'s
    several = measure_path(trainer, arch, orders=3)
    assert several != (acc, loss)  # other batches, other batch statistics (BN in eval uses the batch)
    big = SupernetTrainer(SPACE, data, channels=6, batch_size=64, eval_batch_size=10_000)
    big.start()  # one batch holds the whole split: the order cannot matter
    one, _ = measure_path(big, arch)
    shuffled, _ = measure_path(big, arch, orders=3)
    assert one == pytest.approx(shuffled)


def test_shared_weights_protocols_and_few_shot(data):
    seq = shared_weights(SPACE, data, ARCHS, pretrain="spos", pretrain_epochs=1, finetune_epochs=1,
                         channels=6, batch_size=64)
    ind = shared_weights(SPACE, data, ARCHS, pretrain="spos", pretrain_epochs=1, finetune_epochs=1,
                         sequential=False, channels=6, batch_size=64)
    few = shared_weights(SPACE, data, ARCHS, pretrain="spos", pretrain_epochs=1, finetune_epochs=0,
                         sequential=False, few_shot=True, channels=6, batch_size=64)
    for e in (seq, ind, few):
        assert len(e.scores) == len(ARCHS) and e.cost_macs > 0 and "loss" in e.variants
    assert "frozen" in ind.variants and "frozen" not in seq.variants and "frozen" not in few.variants
    assert seq.scores != ind.scores
    # five first-layer ops among ARCHS: five sub-supernets, each warmed up once (one warm-up for `one`)
    one = shared_weights(SPACE, data, ARCHS, pretrain="spos", pretrain_epochs=1, finetune_epochs=0,
                         sequential=False, channels=6, batch_size=64)
    warm = SupernetTrainer(SPACE, data, channels=6, batch_size=64, warmup_epochs=1)
    warm.start()
    warm.warm_up()
    assert few.cost_macs - one.cost_macs > 2.5 * warm.warmup_record["cost_macs"]
    assert few.scores != one.scores


def test_zero_cost_proxies_score_every_architecture_and_rank_average_combines(data):
    out = zero_cost(SPACE, data, ARCHS, channels=6, batch_size=16)
    assert set(out) == {"grad_norm", "snip", "synflow", "jacob_cov", "naswot", "params"}
    for name, e in out.items():
        assert len(e.scores) == len(ARCHS) and np.all(np.isfinite(e.scores)), name
        assert (e.cost_macs > 0) == (name != "params")
    assert out["params"].scores[1] < out["params"].scores[0]  # pooling has no weights
    assert zero_cost(SPACE, data, ARCHS[:2], ["snip"], channels=6, batch_size=16)["snip"].scores == out["snip"].scores[:2]
    with pytest.raises(ValueError, match="unknown zero-cost proxy"):
        zero_cost(SPACE, data, ARCHS, ["nope"])
    assert rank_average([1, 2, 3], [3, 2, 1]) == [2.0, 2.0, 2.0]


def test_an_objective_with_a_zero_cost_estimator_scores_without_a_supernet_and_records_it(data, tmp_path):
    import optuna

    from optuna_epnas.costs.cost import COST_ATTR
    from optuna_epnas.estimators import ZeroCost
    from optuna_epnas.supernet.objective import OBJECTIVE_ATTR
    from optuna_epnas.storage._storage import study_attrs

    url = f"sqlite:///{tmp_path}/z.db"
    obj = SupernetObjective(SupernetTrainer(SPACE, data, channels=6),
                            estimator=ZeroCost("jacob_cov", repeats=2, batch_size=16))
    study = optuna.create_study(storage=url, study_name="z", direction="maximize")
    obj.attach(study)
    for key in ARCHS[:2]:
        study.enqueue_trial(SPACE.to_params(SPACE.parse(key)))
    study.optimize(obj, n_trials=2)
    assert obj.trainer.net is None and obj.checkpoint_path is None  # nothing trained, nothing kept
    direct = zero_cost(SPACE, data, ARCHS[:2], ["jacob_cov"], channels=6, batch_size=16, repeats=2)["jacob_cov"]
    assert [t.value for t in study.trials] == pytest.approx(direct.scores)
    assert sum(t.user_attrs[COST_ATTR] for t in study.trials) == pytest.approx(direct.cost_macs)
    assert study_attrs(study)[OBJECTIVE_ATTR]["estimator"] == {"kind": "zero-cost", "proxy": "jacob_cov",
                                                              "repeats": 2, "batch_size": 16}
    supernet = SupernetObjective(SupernetTrainer(SPACE, data, channels=6))
    with pytest.raises(ValueError, match="estimator: study has"):
        supernet.attach(optuna.load_study(storage=url, study_name="z"))
    with pytest.raises(ValueError, match="re-scoring evaluates supernet paths"):
        obj.rescore(study, ARCHS[:1])


def test_an_estimator_is_checked_where_it_is_given(data):
    from optuna_epnas.estimators import ZeroCost
    from optuna_epnas.settings import resolve_settings

    with pytest.raises(ValueError, match="warmup_epochs need the supernet"):
        SupernetObjective(SupernetTrainer(SPACE, data, warmup_epochs=1), estimator=ZeroCost())
    with pytest.raises(TypeError, match="estimator must have score"):
        SupernetObjective(SupernetTrainer(SPACE, data), estimator="jacob_cov")
    with pytest.raises(ValueError, match="unknown zero-cost proxy"):
        ZeroCost("nope")
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        ZeroCost(repeats=0)
    with pytest.raises(ValueError, match="unknown estimator 'nope'"):
        resolve_settings("epnas", {"estimator": "nope"})
    assert "estimator" not in resolve_settings("epnas").to_dict()  # absent when off: old runs still resume
    assert resolve_settings("random", {"estimator": "jacob_cov"}).estimator == "jacob_cov"


def test_a_search_with_the_zero_cost_estimator_runs_its_schedule_and_says_score(data, tmp_path, capsys):
    import optuna

    from optuna_epnas.cli.progress import Progress, print_summary
    from optuna_epnas.search import open_search
    from optuna_epnas.settings import resolve_settings

    settings = resolve_settings("epnas", {"estimator": "jacob_cov", "k": 2, "iterations": 1, "channels": 6})
    run = open_search(SPACE, data, "epnas", f"sqlite:///{tmp_path}/s.db", "zc", settings=settings, seed=0)
    assert run.checkpoint is None and run.objective.estimator.proxy == "jacob_cov"
    run.run(callbacks=[Progress(run.study, SPACE, run.budget, run.sampler, quiet=False)])
    trials = run.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == run.budget and all(t.value < 0 for t in trials)  # jacob_cov scores, not accuracies
    print_summary(run.study, SPACE, f"sqlite:///{tmp_path}/s.db", None)
    out = capsys.readouterr().out
    assert " score -" in out and "jacob_cov score (untrained network" in out
    assert re.search(r"best full-depth -\d+\.\d{4}", out) and "best full-depth 0.0000" not in out  # any scale


def test_a_comparison_report_says_which_estimator_scored_the_trials():
    from pathlib import Path

    from optuna_epnas.analysis.tables import results_markdown

    root = Path(__file__).resolve().parent.parent / "studies" / "results"
    zero = results_markdown(json.loads((root / "compare-equal-compute-fashion-zero-cost" / "results.json").read_text()))
    supernet = results_markdown(json.loads((root / "compare-equal-compute-fashion" / "results.json").read_text()))
    assert "zero-cost estimator `jacob_cov`" in zero and "fresh supernet" not in zero.split("\n")[2]
    assert "fresh supernet (3 epochs per trial" in supernet and "zero-cost" not in supernet
    assert "the top 2 distinct full-size architectures" in zero  # the sentence after it is still formatted
