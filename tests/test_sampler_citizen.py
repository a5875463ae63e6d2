"""EPNASSampler in any study a user can make: Optuna's generic sampler tests, any direction and scale,
studies that never ask for an architecture, pickling, one sampler over several studies."""

from __future__ import annotations

import math
import pickle
import warnings

import optuna
import pytest
from optuna.testing.pytest_samplers import (BasicSamplerTestCase, MultiObjectiveSamplerTestCase,
                                            RelativeSamplerTestCase)
from optuna.trial import TrialState

from optuna_epnas import EPNASSampler, LSTMSurrogate, MacroSpace, Softmax, TopK
from optuna_epnas.sampler import STAGE_ATTR, USES_SPACE_ATTR
from optuna_epnas.testing.synthetic import SyntheticScore

SPACE = MacroSpace(3, ops=["conv3x3", "sep3x3", "max3x3"])
FAST = dict(k=2, iterations=1, surrogate=LSTMSurrogate(members=2, steps=20))


@pytest.fixture(params=[Softmax, TopK])
def selection(request):
    return request.param()


class TestOptunaBasic(BasicSamplerTestCase):
    @pytest.fixture
    def sampler(self, selection):
        return lambda: EPNASSampler(SPACE, selection=selection, seed=0, **FAST)


class TestOptunaRelative(RelativeSamplerTestCase):
    @pytest.fixture
    def sampler(self, selection):
        return lambda: EPNASSampler(SPACE, selection=selection, seed=0, **FAST)


class TestOptunaMultiObjective(MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self, selection):
        return lambda: EPNASSampler(SPACE, selection=selection, seed=0, **FAST)


def keys(study):
    return [t.user_attrs.get("arch") for t in study.get_trials(states=(TrialState.COMPLETE,))]


def search(direction, value, sampler=None, n_trials=None, **kwargs):
    sampler = sampler or EPNASSampler(SPACE, seed=1, **{**FAST, **kwargs})
    study = optuna.create_study(direction=direction, sampler=sampler)
    score = SyntheticScore(SPACE, seed=4)
    study.optimize(lambda t: value(score(t)), n_trials=n_trials or sampler.n_trials)
    return study


def test_a_minimised_error_in_percent_searches_as_the_maximised_accuracy_in_percent():
    # both are turned "higher is better" and scaled over the values seen: the same targets, the same search
    percent = search("maximize", lambda s: 100 * s)
    error = search("minimize", lambda s: 100 * (1 - s))
    assert keys(error) == keys(percent) and len(keys(error)) == 3 + 2 + 2
    # and it is a search, not a random draw: level 3 children extend level 2's measured parents
    assert {k.rsplit(" | ", 1)[0] for k in keys(error)[-2:]} <= set(keys(error)[3:5])


def test_a_non_finite_value_is_no_measurement_its_architecture_is_not_grown():
    first = [SPACE.key(a) for a in SPACE.initial()]
    study = optuna.create_study(direction="maximize", sampler=EPNASSampler(SPACE, seed=1, **FAST))
    score = SyntheticScore(SPACE, seed=4)

    def objective(trial):
        arch = SPACE.suggest(trial)
        return math.inf if SPACE.key(arch).startswith("max3x3") else score(trial)

    study.optimize(objective, n_trials=7)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 7  # the sampler did not crash
    grown = [t.user_attrs["arch"] for t in study.trials if t.user_attrs["level"] > 1]
    assert grown and not any(k.startswith("max3x3") for k in grown)  # inf is not the best parent
    assert "max3x3" in first


def test_a_study_that_never_asks_for_an_architecture_takes_no_slot():
    sampler = EPNASSampler(SPACE, seed=0, **FAST)
    study = optuna.create_study(sampler=sampler)  # minimize, Optuna's default
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.3) ** 2, n_trials=12)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 12
    assert not any(STAGE_ATTR in t.system_attrs for t in study.trials)
    assert USES_SPACE_ATTR not in study._storage.get_study_system_attrs(study._study_id)
    # its values are the independent sampler's: RandomSampler(seed=0) draws the same x's
    random = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    random.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.3) ** 2, n_trials=12)
    assert [t.params for t in study.trials] == [t.params for t in random.trials]


def test_an_objective_asking_other_parameters_first_still_gets_the_planned_architecture():
    asked = []

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
        asked.append(SPACE.suggest(trial).level)
        return SyntheticScore(SPACE, seed=4)(trial) * (0.5 + 0.5 * lr)

    sampler = EPNASSampler(SPACE, seed=0, **FAST)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=sampler.n_trials)
    assert sampler.is_finished(study)
    assert [t.user_attrs["level"] for t in study.trials] == asked == [1, 1, 1, 2, 2, 3, 3]
    assert all("lr" in t.params for t in study.trials)


def test_the_sampler_pickles_and_the_copy_continues_the_search_exactly():
    sampler = EPNASSampler(SPACE, seed=2, **FAST)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    score = SyntheticScore(SPACE, seed=4)
    study.optimize(score, n_trials=4)
    study.sampler = pickle.loads(pickle.dumps(sampler))
    study.optimize(score, n_trials=3)
    whole = search("maximize", lambda s: s, sampler=EPNASSampler(SPACE, seed=2, **FAST))
    assert keys(study) == keys(whole)


def test_one_sampler_object_searches_two_studies_each_as_a_fresh_one_would():
    sampler = EPNASSampler(SPACE, seed=3, **FAST)
    first = search("maximize", lambda s: s, sampler=sampler)
    second = search("maximize", lambda s: 1 - s, sampler=sampler)  # other values: another search
    assert keys(first) == keys(search("maximize", lambda s: s, sampler=EPNASSampler(SPACE, seed=3, **FAST)))
    assert keys(second) == keys(search("maximize", lambda s: 1 - s, sampler=EPNASSampler(SPACE, seed=3, **FAST)))
    assert keys(first) != keys(second)


def test_two_threads_share_one_sampler_and_the_schedule_ends_complete():
    sampler = EPNASSampler(SPACE, seed=0, **FAST)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(SyntheticScore(SPACE, seed=4), n_trials=sampler.n_trials, n_jobs=2)
    assert sampler.is_finished(study)
    stages = sorted(tuple(t.system_attrs[STAGE_ATTR]) for t in study.trials)
    assert len(stages) == len(set(stages)) == sampler.n_trials  # every slot once


def test_reseeding_keeps_the_schedule_and_only_touches_the_independent_sampler():
    sampler = EPNASSampler(SPACE, seed=5, **FAST)
    sampler.reseed_rng()
    study = search("maximize", lambda s: s, sampler=sampler)
    assert keys(study) == keys(search("maximize", lambda s: s, sampler=EPNASSampler(SPACE, seed=5, **FAST)))


def test_arguments_after_the_space_are_keyword_only_and_no_experimental_warning_is_raised():
    with pytest.raises(TypeError):
        EPNASSampler(SPACE, 2)  # type: ignore[misc]
    with warnings.catch_warnings():
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)
        search("maximize", lambda s: s)


def test_hyperband_which_filters_the_study_by_bracket_is_refused_and_other_pruners_work():
    study = optuna.create_study(direction="maximize", sampler=EPNASSampler(SPACE, seed=0, **FAST),
                                pruner=optuna.pruners.HyperbandPruner())
    with pytest.raises(ValueError, match="HyperbandPruner"):
        study.optimize(SyntheticScore(SPACE, seed=4), n_trials=1)
    sampler = EPNASSampler(SPACE, seed=0, **FAST)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=optuna.pruners.MedianPruner())
    study.optimize(SyntheticScore(SPACE, seed=4), n_trials=sampler.n_trials)
    assert sampler.is_finished(study)
