"""EPNASSampler: the progressive schedule, selection, storage state, parallel workers, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from optuna_epnas import EPNASSampler, MacroSpace
from optuna_epnas.sampler import STAGE_ATTR
from optuna_epnas.sampler.selection import select
from optuna_epnas.sampler.schedule import stage_sizes, temperature_schedule
from optuna_epnas.testing.synthetic import SyntheticScore

REPO = Path(__file__).resolve().parents[1]


def run_search(space, objective, storage=None, **kwargs):
    sampler = EPNASSampler(space, **kwargs)
    study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage)
    study.optimize(objective, n_trials=sampler.n_trials)
    return study, sampler


def test_planned_trials_counts_every_stage():
    assert stage_sizes(MacroSpace(6), 8) == [6, 8, 8, 8, 8, 8]
    assert stage_sizes(MacroSpace(4), 100) == [6, 72, 100, 100]  # level 2 has only 6*6*2 candidates
    assert EPNASSampler.planned_trials(MacroSpace(6), 8, 2) == 92
    assert EPNASSampler.planned_trials() == 3 * (6 + 25 * 11)  # paper settings: L=12, K=25, 3 iterations


def test_schedule_grows_level_by_level_from_measured_parents():
    space = MacroSpace(4)
    study, sampler = run_search(space, SyntheticScore(space, seed=1), k=3, iterations=2, seed=0)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == sampler.n_trials == 2 * (6 + 3 + 3 + 3)
    assert sampler.is_finished(study)
    by_stage: dict[tuple[int, int], list[str]] = {}
    for t in trials:
        it, level, _ = t.system_attrs[STAGE_ATTR]
        arch = space.from_params(t.params)
        assert arch.level == level == t.user_attrs["level"]
        assert t.user_attrs["arch"] == arch.key and t.user_attrs["iteration"] == it + 1
        by_stage.setdefault((it, level), []).append(arch.key)
    for it in range(2):
        assert sorted(by_stage[(it, 1)]) == sorted(a.key for a in space.initial())
        for level in (2, 3, 4):
            keys = by_stage[(it, level)]
            assert len(keys) == len(set(keys)) == 3
            parents = {k.rsplit(" | ", 1)[0] for k in keys}
            assert parents <= set(by_stage[(it, level - 1)])  # each child extends a measured parent
    # τ: the first iteration starts at the default schedule's 0.5, the last one reaches its 0.1;
    # predictions from level 2 on
    taus = {t.user_attrs["iteration"]: t.user_attrs["temperature"] for t in trials}
    assert taus == {1: 0.5, 2: 0.1}
    assert all(0 < t.user_attrs["predicted_accuracy"] < 1 for t in trials if t.user_attrs["level"] > 1)
    assert all("predicted_accuracy" not in t.user_attrs for t in trials if t.user_attrs["level"] == 1)


def test_default_sampler_works_without_arguments():
    sampler = EPNASSampler()
    assert sampler.space.num_layers == 12 and sampler.k == 25 and sampler.iterations == 3
    space = sampler.space
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(SyntheticScore(space, seed=0), n_trials=8)
    levels = [t.user_attrs["level"] for t in study.trials]
    assert levels == [1] * 6 + [2, 2]


def test_parameters_outside_the_space_fall_back_to_the_independent_sampler():
    space = MacroSpace(3)
    score = SyntheticScore(space, seed=0)

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        assert 1e-3 <= lr <= 1e-1
        return score(trial)

    study, _ = run_search(space, objective, k=2, iterations=1, seed=0)
    assert len({t.params["lr"] for t in study.trials}) == len(study.trials)


def test_enqueued_trial_keeps_its_parameters_and_takes_no_slot():
    space = MacroSpace(3)
    sampler = EPNASSampler(space, k=2, iterations=1, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    target = SyntheticScore(space, seed=0)
    study.enqueue_trial(space.to_params(target.best()))
    study.optimize(target, n_trials=1 + sampler.n_trials)
    first = study.trials[0]
    assert first.value == 1.0 and STAGE_ATTR not in first.system_attrs
    assert sampler.is_finished(study)


def test_select_pnas_takes_the_top_k_and_epnas_samples_with_p_proportional_to_s_power_inverse_tau():
    scores = np.array([0.2, 0.9, 0.5, 0.8, 0.1])
    rng = np.random.default_rng(0)
    chosen, p = select(np.log(scores), 2, "pnas", 1.0, rng)
    assert list(chosen) == [1, 3]
    for tau in (1.0, 0.5, 3.0):
        expected = scores ** (1 / tau) / (scores ** (1 / tau)).sum()
        draws = Counter(int(select(np.log(scores), 1, "epnas", tau, rng)[0][0]) for _ in range(20000))
        freq = np.array([draws[i] / 20000 for i in range(5)])
        np.testing.assert_allclose(freq, expected, atol=0.015)
        np.testing.assert_allclose(select(np.log(scores), 1, "epnas", tau, rng)[1], expected)
    # without replacement: K distinct indices; all candidates when there are no more than K
    chosen, _ = select(np.log(np.full(100, 0.5)), 30, "epnas", 1.0, rng)
    assert len(set(chosen.tolist())) == 30
    assert sorted(select(np.log(scores), 9, "epnas", 1.0, rng)[0].tolist()) == [0, 1, 2, 3, 4]


def test_temperature_schedules():
    geometric = temperature_schedule((10.0, 1.0), 3)
    assert [round(geometric(i), 6) for i in range(4)] == [10.0, round(10 ** 0.5, 6), 1.0, 1.0]
    below_one = temperature_schedule((10.0, 0.1), 3)
    assert below_one(2) == pytest.approx(0.1)
    assert temperature_schedule([5.0, 2.0, 1.0, 0.5], 4)(3) == 0.5
    assert temperature_schedule(lambda i: 1.0 + i, 2)(1) == 2.0
    assert temperature_schedule((10.0, 1.0), 1)(0) == 1.0
    with pytest.raises(ValueError, match="positive"):
        temperature_schedule((10.0, 0.0), 3)
    with pytest.raises(ValueError, match="positive"):
        temperature_schedule(lambda i: -1.0, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k must be"), ({"iterations": 0}, "iterations must be"), ({"k": 2.5}, "k must be"),
        ({"selection": "greedy"}, "selection must be a Selection"), ({"temperature": (1.0, -1.0)}, "positive"),
        ({"space": "macro"}, "SearchSpace"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        EPNASSampler(**kwargs)


def test_several_objectives_are_refused_when_an_architecture_is_asked_for():
    space = MacroSpace(2)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=EPNASSampler(space, k=2, iterations=1))
    with pytest.raises(ValueError, match="has 2 objectives"):
        study.optimize(lambda t: (SyntheticScore(space)(t), 0.0), n_trials=1)


def test_other_settings_on_a_stored_study_are_refused_and_nothing_is_lost(tmp_path):
    space = MacroSpace(3)
    storage = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize",
                                sampler=EPNASSampler(space, k=2, iterations=1, seed=3))
    study.optimize(SyntheticScore(space), n_trials=7)
    other = optuna.load_study(storage=storage, study_name="s", sampler=EPNASSampler(space, k=3, iterations=1, seed=3))
    with pytest.raises(ValueError, match="k: study has 2, sampler has 3"):
        other.optimize(SyntheticScore(space), n_trials=1)
    assert len(optuna.load_study(storage=storage, study_name="s").get_trials(states=(TrialState.COMPLETE,))) == 7
    # seed=None on resume adopts the stored seed, so the schedule continues exactly
    resumed = optuna.load_study(storage=storage, study_name="s", sampler=EPNASSampler(space, k=2, iterations=1))
    resumed.optimize(SyntheticScore(space), n_trials=3)
    fresh, _ = run_search(space, SyntheticScore(space), k=2, iterations=1, seed=3)
    done = resumed.get_trials(states=(TrialState.COMPLETE,))  # the refused trial failed without params
    assert [t.params for t in done] == [t.params for t in fresh.trials]


def test_a_new_process_on_the_same_storage_continues_the_schedule_exactly(tmp_path):
    space = MacroSpace(4)
    score = SyntheticScore(space, seed=2)
    storage = f"sqlite:///{tmp_path}/r.db"
    reference, sampler = run_search(space, score, k=3, iterations=2, seed=5)
    first = optuna.create_study(storage=storage, study_name="r", direction="maximize",
                                sampler=EPNASSampler(space, k=3, iterations=2, seed=5))
    first.optimize(score, n_trials=13)
    # a fresh sampler object knows nothing in memory: everything comes from the storage
    second = optuna.load_study(storage=storage, study_name="r", sampler=EPNASSampler(space, k=3, iterations=2, seed=5))
    second.optimize(score, n_trials=sampler.n_trials - 13)
    assert [t.params for t in second.trials] == [t.params for t in reference.trials]
    assert [t.value for t in second.trials] == [t.value for t in reference.trials]


def test_a_resume_whose_surrogate_scores_differently_keeps_the_stored_plans(tmp_path, monkeypatch):
    """What a resume on another device does (issue 26): a surrogate fitted there differs from the first
    device's by float rounding that the L1 fit amplifies, but a plan is stored in the study when it is
    made, so the resumed search keeps every stored plan and only the plans made after it can differ."""
    from optuna_epnas.sampler.surrogate import LSTMEnsemble

    space = MacroSpace(4)
    score = SyntheticScore(space, seed=2)
    storage = f"sqlite:///{tmp_path}/d.db"
    reference, sampler = run_search(space, score, k=3, iterations=1, seed=5)
    sizes = stage_sizes(space, 3)
    first = optuna.create_study(storage=storage, study_name="d", direction="maximize",
                                sampler=EPNASSampler(space, k=3, iterations=1, seed=5))
    first.optimize(score, n_trials=sizes[0] + 1)  # level 2's plan is made and stored, one of its trials run
    real = LSTMEnsemble.predict_children
    monkeypatch.setattr(LSTMEnsemble, "predict_children",  # "the other device": the ranking reversed
                        lambda self, *a, **k: 1.0 - real(self, *a, **k) if not k.get("log") else real(self, *a, **k))
    second = optuna.load_study(storage=storage, study_name="d", sampler=EPNASSampler(space, k=3, iterations=1, seed=5))
    second.optimize(score, n_trials=sampler.n_trials - sizes[0] - 1)
    through_level_2 = sizes[0] + sizes[1]
    assert [t.params for t in second.trials[:through_level_2]] == [t.params for t in reference.trials[:through_level_2]]
    assert [t.params for t in second.trials[through_level_2:]] != [t.params for t in reference.trials[through_level_2:]]


WORKER = textwrap.dedent(
    """
    import sys, time, warnings, optuna
    from optuna_epnas import EPNASSampler, MacroSpace
    from optuna_epnas.testing.synthetic import SyntheticScore
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = MacroSpace(4)
    score = SyntheticScore(space, seed=0)
    storage = optuna.storages.RDBStorage(sys.argv[1], engine_kwargs={"connect_args": {"timeout": 60}})
    sampler = EPNASSampler(space, k=4, iterations=2, seed=0)
    sampler.poll_interval = 0.05
    study = optuna.load_study(storage=storage, study_name="shared", sampler=sampler)
    def slow(trial):
        value = score(trial)
        time.sleep(0.05)
        return value
    def stop(study, trial):
        if sampler.is_finished(study):
            study.stop()
    study.optimize(slow, callbacks=[stop])
    """
)


def test_two_processes_sharing_a_storage_never_measure_the_same_slot_twice(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    optuna.create_study(storage=url, study_name="shared", direction="maximize")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    workers = [subprocess.Popen([sys.executable, str(script), url], cwd=REPO) for _ in range(2)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0]
    trials = optuna.load_study(storage=url, study_name="shared").get_trials(states=(TrialState.COMPLETE,))
    # a worker may start one trial of the next iteration before it sees the schedule finished
    trials = [t for t in trials if t.system_attrs[STAGE_ATTR][0] < 2]
    stages = [tuple(t.system_attrs[STAGE_ATTR]) for t in trials]
    assert len(stages) == len(set(stages)) == EPNASSampler.planned_trials(MacroSpace(4), 4, 2)
    assert len({t.system_attrs["epnas:owner"] for t in trials}) == 2  # both workers measured
    keys_per_stage = Counter((s[0], s[1], t.user_attrs["arch"]) for s, t in zip(stages, trials))
    assert max(keys_per_stage.values()) == 1


def test_a_trial_whose_process_died_is_not_held_against_its_slot_but_an_objective_failure_is():
    space = MacroSpace(2)
    study = optuna.create_study(direction="maximize", sampler=EPNASSampler(space, k=2, iterations=1, max_retries=0,
                                                                           seed=0))

    def slot_of(trial):
        space.suggest(trial)  # the sampler claims a slot when the architecture is asked for
        return study._storage.get_trial(trial._trial_id).system_attrs[STAGE_ATTR]

    died = study.ask()  # its process is gone: FAIL without the objective's mark, as Optuna's heartbeat leaves it
    assert slot_of(died) == [0, 1, 0]
    study._storage.set_trial_state_values(died._trial_id, state=TrialState.FAIL)
    again = study.ask()
    assert slot_of(again) == [0, 1, 0]  # the same slot, run again
    study.tell(again, state=TrialState.FAIL)  # the objective failed: counted (max_retries=0: given up)
    assert slot_of(study.ask()) == [0, 1, 1]
