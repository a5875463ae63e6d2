"""Issue 10's mechanisms: compute accounting, re-scoring, standardised selection and acquisition, warm-up,
the paper preset, and the paired statistics of a comparison."""

from __future__ import annotations

import dataclasses

import numpy as np
import optuna
import pytest
from scipy import stats

from optuna_epnas import (UCB, EPNASSampler, LSTMSurrogate, MacroSpace, Mean, Softmax, SupernetObjective,
                          SupernetTrainer, TopK, load_dataset)
from optuna_epnas.storage._storage import storage_of, study_attrs
from optuna_epnas.analysis.report import paired_difference
from optuna_epnas.costs.cost import COST_ATTR, TRAIN_FACTOR, WARMUP_ATTR, cumulative_cost, forward_macs, total_cost, trial_costs
from optuna_epnas.analysis.notes import SearchInfo, study_note
from optuna_epnas.sampler import plan_attr
from optuna_epnas.sampler.selection import expected_improvement, log_weights, select
from optuna_epnas.settings import SAMPLER_NAMES, VARIANTS, resolve_settings

SPACE = MacroSpace(3)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", device="cpu", max_train=256)


def _deepen(arch, index=0):
    return SPACE.child(arch, index)


def test_forward_macs_grow_with_depth_and_width_and_match_the_stand_alone_count():
    one = SPACE.initial()[0]
    two = _deepen(one, 7)
    three = _deepen(two, 3)
    macs = [forward_macs(SPACE, a, 10, 1, 8, 8) for a in (one, two, three)]
    assert macs[0] < macs[1] < macs[2]
    assert forward_macs(SPACE, three, 10, 1, 16, 8) > 3 * macs[2]  # convs grow with channels²
    assert forward_macs(SPACE, three, 10, 1, 8, 16) > 3 * macs[2]  # and with the image area


def test_a_trial_records_its_training_and_evaluation_cost(data):
    obj = SupernetObjective(SupernetTrainer(SPACE, data, epochs=2, channels=6, batch_size=64))
    study = optuna.create_study(direction="maximize")
    key = "conv3x3 | sep3x3[0] | max3x3[1]"
    study.enqueue_trial(SPACE.to_params(SPACE.parse(key)))
    study.optimize(obj, n_trials=1)
    fwd = forward_macs(SPACE, SPACE.parse(key), 10, 1, 6, data.image_size)
    expected = TRAIN_FACTOR * fwd * 2 * len(data.train_y) + fwd * len(data.val_y)
    assert study.trials[0].user_attrs[COST_ATTR] == expected
    assert total_cost(study) == expected


def test_warm_up_trains_the_supernet_before_the_first_trial_and_is_counted_and_checkpointed(data, tmp_path):
    url = f"sqlite:///{tmp_path}/w.db"
    study = optuna.create_study(storage=url, study_name="w", direction="maximize")
    obj = SupernetObjective(SupernetTrainer(SPACE, data, epochs=1, channels=6, batch_size=64, warmup_epochs=1))
    cold = SupernetObjective(SupernetTrainer(SPACE, data, epochs=1, channels=6, batch_size=64))
    cold.attach(None)
    obj.attach(study)
    changed = [not np.allclose(a.detach(), b.detach())
               for a, b in zip(obj.trainer.net.parameters(), cold.trainer.net.parameters())]
    assert sum(changed) > len(changed) // 2  # most of the supernet's tensors moved: paths of every op
    warm = study_attrs(study)[WARMUP_ATTR]
    assert warm["epochs"] == 1 and warm["cost_macs"] > 0
    study.enqueue_trial(SPACE.to_params(SPACE.parse("conv3x3 | conv3x3 | conv3x3")))
    study.optimize(obj, n_trials=1)
    costs = trial_costs(study)
    assert costs[-1] == warm["cost_macs"] and cumulative_cost(study, study.trials) == [sum(costs.values())]
    # a new process resumes the warmed-up checkpoint and does not warm up again
    again = SupernetObjective(SupernetTrainer(SPACE, data, epochs=1, channels=6, batch_size=64, warmup_epochs=1))
    again.attach(optuna.load_study(storage=url, study_name="w"))
    assert again.trainer.warmed_up and again.trained == obj.trained
    for a, b in zip(again.trainer.net.parameters(), obj.trainer.net.parameters()):
        assert torch_equal(a, b)


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_a_rescoring_sampler_fits_on_the_rescored_values_stores_them_and_charges_their_cost(data):
    calls = []

    def rescore(study, keys):
        calls.append(list(keys))
        return [0.5 + 0.01 * i for i in range(len(keys))], 1000.0 * len(keys)

    sampler = EPNASSampler(SPACE, k=2, iterations=1, seed=0, surrogate=LSTMSurrogate(steps=20, rescore=rescore))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: (SPACE.suggest(t), 0.3)[1], n_trials=sampler.n_trials)
    assert len(calls) == SPACE.max_level - 1  # before each level's fit, on everything measured before it
    attrs = study_attrs(study)
    plan2, plan3 = attrs[plan_attr(0, 2)], attrs[plan_attr(0, 3)]
    assert plan2["rescored"]["keys"] == sorted(attrs[plan_attr(0, 1)]["keys"]) == calls[0]
    assert plan3["rescored"]["values"] == [0.5 + 0.01 * i for i in range(len(calls[1]))]
    assert len(calls[1]) == len(calls[0]) + 2  # level 2's two measured architectures joined the rows
    first_of_level3 = min(t.number for t in study.trials if t.user_attrs["level"] == 3)
    assert plan3["planned_by"] == first_of_level3
    assert trial_costs(study)[first_of_level3] == 1000.0 * len(calls[1])
    assert all(t.value == 0.3 for t in study.trials)  # the trials keep what they measured
    # the dashboard's study note shows both: the latest re-scored targets beside the measured values
    note = study_note(study, SearchInfo.of(study), study.trials)
    assert "### Re-scored before iteration 1, level 3" in note
    best_key = calls[1][-1]  # the fake gave the last key the highest value
    assert f"- `{best_key}`: re-scored {0.5 + 0.01 * (len(calls[1]) - 1):.4f} · measured 0.3000" in note
    assert "re-scored on the current weights" in note and "compute spent" in note


def test_rescore_returning_something_else_than_accuracies_is_a_clear_error():
    sampler = EPNASSampler(SPACE, k=2, iterations=1, seed=0,
                           surrogate=LSTMSurrogate(steps=5, rescore=lambda study, keys: ([50.0] * len(keys), 0.0)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    with pytest.raises(ValueError, match="rescore must return one accuracy in"):
        study.optimize(lambda t: (SPACE.suggest(t), 0.3)[1], n_trials=sampler.n_trials)


def test_z_scored_weights_do_not_depend_on_the_scale_of_the_scores_and_raw_ones_do():
    rng = np.random.default_rng(0)
    each = rng.uniform(0.6, 0.7, size=(5, 200))
    for acquisition in (Mean(), UCB()):
        z = log_weights(each, acquisition, "z")
        np.testing.assert_allclose(log_weights(0.1 + 0.5 * each, acquisition, "z"), z, atol=1e-9)
        assert abs(z.mean()) < 1e-9 and z.std() == pytest.approx(1.0)
    raw = log_weights(each, Mean(), "raw")
    np.testing.assert_allclose(raw, np.log(each.mean(axis=0)))
    assert not np.allclose(np.ptp(log_weights(0.5 * each, Mean(), "raw")), np.ptp(raw) * 2)
    ucb = log_weights(each, UCB(beta=2.0), "raw")
    np.testing.assert_allclose(ucb, np.log(each.mean(axis=0) + 2.0 * each.std(axis=0)))


def test_z_scores_make_the_draw_sharp_where_the_papers_form_is_near_uniform():
    # 500 candidates whose predicted accuracies are a few points apart, as the measurements found
    scores = np.linspace(0.60, 0.64, 500)[None, :]
    top = slice(450, 500)  # the best 10%
    p_raw = select(log_weights(scores, Mean(), "raw"), 1, "epnas", 1.0, np.random.default_rng(0))[1]
    p_z = select(log_weights(scores, Mean(), "z"), 1, "epnas", 0.25, np.random.default_rng(0))[1]
    assert p_raw[top].sum() < 0.11  # τ=1 on raw scores: the best 10% get hardly more than 10%
    assert p_z[top].sum() > 0.5


def test_expected_improvement_is_the_normal_formula_and_zero_without_hope():
    mean, std, best = np.array([0.5, 0.7, 0.7, 0.9]), np.array([0.1, 0.05, 0.0, 0.0]), 0.7
    ei = expected_improvement(mean, std, best)
    samples = np.random.default_rng(0).normal(mean[:2, None], std[:2, None], size=(2, 400_000))
    np.testing.assert_allclose(ei[:2], np.maximum(samples - best, 0).mean(axis=1), rtol=0.02, atol=1e-4)
    assert ei[2] == 0.0 and ei[3] == pytest.approx(0.2)


def test_ucb_and_ei_need_an_ensemble_and_bad_settings_are_refused():
    with pytest.raises(ValueError, match="members >= 2"):
        EPNASSampler(SPACE, selection=Softmax(acquisition=UCB()), surrogate=LSTMSurrogate(members=1))
    with pytest.raises(ValueError, match="score must be one of"):
        Softmax(score="rank")
    with pytest.raises(ValueError, match="beta"):
        UCB(beta=float("nan"))
    with pytest.raises(TypeError, match="rescore must be a callable"):
        LSTMSurrogate(rescore=True)
    with pytest.raises(TypeError, match="acquisition must be an Acquisition"):
        TopK(acquisition="ucb")
    with pytest.raises(TypeError, match="selection must be a Selection"):
        EPNASSampler(SPACE, selection="pnas")


def test_the_paper_preset_is_the_papers_settings_and_a_study_refuses_a_switch():
    paper = EPNASSampler.paper(SPACE, k=2, iterations=2, seed=0)
    assert (paper.k, paper.selection.score, paper.selection.acquisition, paper.surrogate.members,
            paper.surrogate.rescore) == (2, "raw", Mean(), 1, None)
    paper = EPNASSampler.paper(SPACE, k=2, iterations=2, seed=0, surrogate=LSTMSurrogate(members=1, steps=5))
    assert [paper.temperature(i) for i in range(2)] == [10.0, 1.0]
    study = optuna.create_study(direction="maximize", sampler=paper)
    study.optimize(lambda t: (SPACE.suggest(t), 0.3)[1], n_trials=3)
    study.sampler = EPNASSampler(SPACE, k=2, iterations=2, seed=0, surrogate=LSTMSurrogate(steps=5))
    with pytest.raises(ValueError, match="score"):
        study.optimize(lambda t: (SPACE.suggest(t), 0.3)[1], n_trials=1)


def test_named_variants_change_only_their_own_mechanisms():
    default = resolve_settings("epnas", {"k": 4})
    assert default.k == 4 and not default.rescore and default.warmup_epochs >= 1 and default.score == "z"
    paper = resolve_settings("epnas-paper", {"k": 4, "score": "z", "tau_start": None})
    assert paper.k == 4 and paper.score == "raw" and paper.temperature == (10.0, 1.0) and not paper.rescore
    for name in SAMPLER_NAMES:
        settings = resolve_settings(name, {"k": 4})
        every, base = dataclasses.asdict(settings), dataclasses.asdict(default)
        changed = {f for f, v in every.items() if v != base[f]}
        assert changed == {f for f, v in VARIANTS[name].items() if (tuple(v) if isinstance(v, tuple) else v) != base[f]}
    with pytest.raises(ValueError, match="unknown sampler"):
        resolve_settings("bohb")


def test_paired_difference_bootstrap_interval_and_wilcoxon():
    seeds = [0, 1, 2, 3, 4]
    a = [0.20, 0.21, 0.19, 0.22, 0.20]
    b = [0.22, 0.22, 0.21, 0.23, 0.23]
    summary = {"epnas": {"seeds": seeds, "test_errors": a}, "random": {"seeds": seeds[::-1], "test_errors": b[::-1]}}
    d = paired_difference(summary, "epnas", "random")
    diffs = np.array(a) - np.array(b)
    assert d["n"] == 5 and d["mean"] == pytest.approx(diffs.mean())
    assert d["ci95"][0] <= d["mean"] <= d["ci95"][1] < 0
    assert d["wilcoxon_p"] == pytest.approx(stats.wilcoxon(diffs).pvalue)
    assert (d["a_lower_on"], d["a_higher_on"]) == (5, 0)
    summary["random"]["test_errors"] = [None, 0.2, 0.2, 0.2, 0.2]  # seed 4 (listed first) has no result
    assert paired_difference(summary, "epnas", "random")["n"] == 4


def test_a_heavy_parent_weight_draws_the_children_of_the_best_measured_parent():
    space = MacroSpace(2)

    def objective(trial):
        arch = space.suggest(trial)
        return 0.9 if arch.ops[0] == "sep5x5" else 0.1  # one level-1 architecture stands out

    chosen = {}
    for weight in (0.0, 50.0):
        sampler = EPNASSampler(space, k=6, iterations=1, seed=3, surrogate=LSTMSurrogate(steps=5),
                               selection=Softmax(parent_weight=weight))
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(objective, n_trials=sampler.n_trials)
        chosen[weight] = [t.user_attrs["arch"].split(" | ")[0] for t in study.trials if t.user_attrs["level"] == 2]
    assert chosen[50.0] == ["sep5x5"] * 6
    assert set(chosen[0.0]) != {"sep5x5"}  # 5 surrogate steps learn nothing: the draw is spread over parents
    with pytest.raises(ValueError, match="parent_weight"):
        Softmax(parent_weight=-1.0)


def test_the_diverse_draw_takes_groups_by_their_summed_probability_and_one_member_each():
    # group 0: nine members of weight 1; groups 1-3: one member of weight 1 each. K=1: group 0 is
    # drawn with probability 9/12 (without groups each candidate would be 1/12, group 0 still 9/12);
    # K=4: every group once, never two members of one group.
    logits = np.zeros(12)
    groups = np.r_[np.zeros(9, int), 1, 2, 3]
    rng = np.random.default_rng(0)
    first = [groups[select(logits, 1, "epnas", 1.0, rng, groups)[0][0]] for _ in range(4000)]
    assert np.mean(np.array(first) == 0) == pytest.approx(0.75, abs=0.03)
    for _ in range(50):
        chosen = select(logits, 4, "epnas", 1.0, rng, groups)[0]
        assert sorted(groups[chosen]) == [0, 1, 2, 3]
    # fewer groups than K: one per group, then the rest of the candidates, each at most once
    chosen = select(logits, 6, "epnas", 1.0, rng, groups)[0]
    assert len(set(chosen)) == 6 and set(groups[chosen]) == {0, 1, 2, 3}
    # PNAS: the best member of each of the best groups
    scores = np.array([5.0, 4.0, 3.0, 0.0, 1.0])
    assert list(select(scores, 2, "pnas", 1.0, rng, np.array([0, 0, 0, 1, 1]))[0]) == [0, 4]


def test_a_diverse_sampler_grows_each_parent_with_distinct_ops_and_a_study_remembers_it():
    space = MacroSpace(3)

    def objective(trial):
        arch = space.suggest(trial)
        return 0.9 if arch.ops[0] == "sep5x5" else 0.1

    # parent weight 50: every child extends sep5x5, so the draw is inside one parent's 6 ops x skips
    sampler = EPNASSampler(space, k=6, iterations=1, seed=0, surrogate=LSTMSurrogate(steps=5),
                           selection=Softmax(parent_weight=50.0, diverse=True))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=sampler.n_trials)
    for level in (2, 3):
        archs = [space.parse(t.user_attrs["arch"]) for t in study.trials if t.user_attrs["level"] == level]
        pairs = [(a.ops[:-1], a.ops[-1]) for a in archs]  # (parent's ops, new op)
        assert len(set(pairs)) == len(pairs) == 6  # with diverse=False, 6 draws of 24 repeat an op
    plain = optuna.create_study(direction="maximize", storage=storage_of(study), study_name=study.study_name,
                                load_if_exists=True, sampler=EPNASSampler(
                                    space, k=6, iterations=1, seed=0, surrogate=LSTMSurrogate(steps=5),
                                    selection=Softmax(parent_weight=50.0, diverse=False)))
    with pytest.raises(ValueError, match="other EPNAS settings"):
        plain.optimize(objective, n_trials=1, catch=())
    with pytest.raises(TypeError, match="diverse"):
        Softmax(diverse="yes")


def test_the_parent_weight_trusts_the_measurement_not_the_rescored_value():
    # Re-scoring on the current shared weights ranks the most recently trained path first; the parent
    # weight must follow what each parent's own trial measured. Here the re-scorer says the opposite of
    # the measurements: children must still extend the best-measured parent.
    space = MacroSpace(2)

    def objective(trial):
        arch = space.suggest(trial)
        return 0.9 if arch.ops[0] == "sep5x5" else 0.1

    def inverted(study, keys):
        return [0.1 if k.startswith("sep5x5") else 0.9 for k in keys], 0.0

    sampler = EPNASSampler(space, k=6, iterations=1, seed=3, surrogate=LSTMSurrogate(steps=5, rescore=inverted),
                           selection=Softmax(parent_weight=50.0))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=sampler.n_trials)
    assert [t.user_attrs["arch"].split(" | ")[0] for t in study.trials if t.user_attrs["level"] == 2] == ["sep5x5"] * 6
