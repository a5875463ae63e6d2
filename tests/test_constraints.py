"""Size limits and Optuna constraints: candidates over a limit are never measured, counts are exact,
infeasible trials are not grown, and bad limits are refused in one line."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from optuna_epnas import CostModel, EPNASSampler, Limits, LSTMSurrogate, MacroSpace, MicroSpace
from optuna_epnas.cli import main
from optuna_epnas.costs.cost import NetworkSize, _count, child_sizes
from optuna_epnas.sampler import CONFIG_ATTR, plan_attr
from optuna_epnas.sampler.coordination import _Ledger, training_rows

SIZE = NetworkSize(num_classes=10, in_channels=1, channels=4, image_size=8)


def exact(space, arch, size=SIZE):
    """Counted by building the network, bypassing every cache and cost class."""
    return _count.__wrapped__(json.dumps(space.spec(), sort_keys=True), space.key(arch), size)


@pytest.mark.parametrize("layers", [3, 6])
def test_per_child_counts_equal_building_each_child(layers):
    space, rng = MacroSpace(layers), np.random.default_rng(layers)
    size = NetworkSize(num_classes=7, in_channels=3, channels=6, image_size=11)  # odd size: ceil-mode pooling
    parent = space.root()
    while space.level(parent) < layers:
        params, macs = child_sizes(space, parent, size)
        children = space.children(parent)
        for i in rng.choice(len(children), min(len(children), 40), replace=False):
            assert (params[i], macs[i]) == exact(space, children[i], size), space.key(children[i])
        parent = children[int(rng.integers(len(children)))]


def test_a_macro_size_is_the_sum_of_its_layers_counted_once_each():
    space, rng = MacroSpace(12), np.random.default_rng(0)
    size = NetworkSize(num_classes=7, in_channels=3, channels=6, image_size=11)  # reductions at odd sizes
    for _ in range(12):
        arch = space.root()
        for _ in range(int(rng.integers(1, 13))):
            arch = space.child(arch, int(rng.integers(space.num_children(arch))))
        assert size.count(space, arch) == exact(space, arch, size), space.key(arch)
    assert len(space.size_terms(arch)) == space.level(arch)


def sized_objective(space, size=SIZE):
    """Bigger networks score higher: a sampler left alone is drawn to the limit and past it."""
    def objective(trial):
        arch = space.suggest(trial)
        params, _ = size.count(space, arch)
        trial.set_user_attr("counted_params", params)
        return 1.0 - 1.0 / (1.0 + params / 1000.0)
    return objective


def limited(**limits):
    return CostModel(network=SIZE, limits=Limits(**limits))


def run(space, n_trials=None, **kwargs):
    sampler = EPNASSampler(space, k=3, iterations=2, seed=0, surrogate=LSTMSurrogate(members=2, steps=20), **kwargs)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(sized_objective(space), n_trials=n_trials or sampler.n_trials)
    return study


def test_a_search_under_max_params_never_measures_a_network_over_it():
    space, limit = MacroSpace(4), 900
    free = run(space)
    assert max(t.user_attrs["counted_params"] for t in free.trials) > limit  # the limit binds
    study = run(space, costs=limited(max_params=limit))
    counted = [t.user_attrs["counted_params"] for t in study.trials]
    assert len(counted) == len(free.trials) and max(counted) <= limit
    attrs = study._storage.get_study_system_attrs(study._study_id)
    assert sum(attrs[plan_attr(it, level)]["over_limits"] for it in range(2) for level in range(1, 5)) > 0
    assert attrs[CONFIG_ATTR]["limits"] == {"max_params": limit, "network": SIZE.__dict__}
    full = [c for t, c in zip(study.trials, counted) if t.user_attrs["level"] == 4]
    assert max(full) > 0.8 * limit  # filtered exactly, not by a margin


def test_max_macs_limits_multiply_adds():
    space, limit = MacroSpace(3), 20_000
    study = run(space, costs=limited(max_macs=limit))
    assert max(SIZE.count(space, space.parse(t.user_attrs["arch"]))[1] for t in study.trials) <= limit


def test_an_infeasible_trial_is_not_grown():
    space = MacroSpace(3)

    def objective(trial):
        arch = space.suggest(trial)
        infeasible = arch.ops[0] == "conv5x5"
        trial.set_constraint("first_not_conv5x5", 1.0 if infeasible else -1.0)
        return 0.99 if infeasible else 0.5 + 0.01 * len(arch.ops)  # the infeasible looks best

    sampler = EPNASSampler(space, k=3, iterations=1, seed=0, surrogate=LSTMSurrogate(members=2, steps=20))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=sampler.n_trials)
    grown = [space.parse(t.user_attrs["arch"]) for t in study.trials if t.user_attrs["level"] > 1]
    assert grown and not any(a.ops[0] == "conv5x5" for a in grown)  # parents are feasible trials only
    keys, values, infeasible = training_rows(sampler._state(study), 0, 3, _Ledger.from_trials(study.trials))
    assert any(infeasible) and not all(infeasible)


def test_bad_limits_are_refused_in_one_line():
    with pytest.raises(ValueError, match="costs=objective.costs"):
        EPNASSampler(MacroSpace(3), costs=CostModel(limits=Limits(max_params=1000)))
    with pytest.raises(ValueError, match="positive integer"):
        limited(max_params=0)
    with pytest.raises(ValueError, match="macro space only"):
        EPNASSampler(MicroSpace(2), costs=limited(max_params=1000))
    with pytest.raises(TypeError, match="costs must be a CostModel"):
        EPNASSampler(MacroSpace(3), costs=Limits(max_params=1000))
    sampler = EPNASSampler(MacroSpace(3), k=2, iterations=1, costs=limited(max_params=50))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    with pytest.raises(ValueError, match="no architecture fits max_params=50: the smallest has 398 parameters"):
        study.optimize(sized_objective(MacroSpace(3)), n_trials=1)


def test_a_study_resumed_with_another_limit_is_refused():
    space = MacroSpace(3)
    storage = optuna.storages.InMemoryStorage()
    first = EPNASSampler(space, k=2, iterations=1, seed=0, surrogate=LSTMSurrogate(steps=5), costs=limited(max_params=900))
    optuna.create_study(storage=storage, study_name="s", direction="maximize", sampler=first).optimize(
        sized_objective(space), n_trials=2)
    other = EPNASSampler(space, k=2, iterations=1, seed=0, surrogate=LSTMSurrogate(steps=5), costs=limited(max_params=800))
    study = optuna.load_study(storage=storage, study_name="s", sampler=other)
    with pytest.raises(ValueError, match="limits"):
        study.optimize(sized_objective(space), n_trials=1)


SMALL = ["search", "--layers", "3", "--k", "2", "--iterations", "1", "--channels", "4", "--epochs", "1",
         "--max-train", "200", "--quiet"]


def test_search_with_max_params_measures_nothing_over_it_and_tpe_sees_the_constraint(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/c.db"
    assert main(SMALL + ["--storage", url, "--study-name", "c", "--max-params", "700"]) == 0
    trials = optuna.load_study(storage=url, study_name="c").trials
    assert "at most 700 parameters" in capsys.readouterr().out
    assert len(trials) == 5 + 2 + 2 and max(t.user_attrs["params"] for t in trials) <= 700  # conv5x5 cannot fit
    assert all(t.constraints["params"] <= 0 for t in trials)
    assert main(SMALL + ["--storage", url, "--study-name", "t", "--sampler", "tpe", "--n-trials", "4",
                         "--max-params", "700"]) == 0
    for t in optuna.load_study(storage=url, study_name="t").trials:  # TPE measures anything, marked
        assert t.constraints["params"] == t.user_attrs["params"] - 700
