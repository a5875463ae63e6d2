"""Per-epoch reports and pruning: reports change no value, a pruned trial is measured at its last report
(by the sampler and through a kill), and the command line's default prunes nothing."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from optuna_epnas import EPNASSampler, SupernetObjective, SupernetTrainer
from optuna_epnas.storage._storage import fail_trial
from optuna_epnas.cli import main
from optuna_epnas.costs.cost import COST_ATTR
from optuna_epnas.sampler.surrogate import LSTMSurrogate

from test_objective import ARCHS, SPACE, data  # noqa: F401 (data: a fixture)


class PruneFromEpoch(optuna.pruners.BasePruner):
    """Prunes every trial once it has reported ``epoch`` (0-based)."""

    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch

    def prune(self, study, trial) -> bool:
        return trial.last_step is not None and trial.last_step >= self.epoch


def objective(data, **kwargs):
    """``kwargs``: the objective's (report_epochs)."""
    return SupernetObjective(SupernetTrainer(SPACE, data, epochs=3, channels=6, batch_size=64), **kwargs)


def enqueued(study, keys):
    for key in keys:
        study.enqueue_trial(SPACE.to_params(SPACE.parse(key)))
    return study


def test_reports_are_the_learning_curve_and_change_no_value(data):
    plain = enqueued(optuna.create_study(direction="maximize"), ARCHS)
    plain.optimize(objective(data), n_trials=len(ARCHS))
    reported = enqueued(optuna.create_study(direction="maximize"), ARCHS)
    reported.optimize(objective(data, report_epochs=True), n_trials=len(ARCHS))  # MedianPruner: never prunes here
    assert [t.value for t in plain.trials] == [t.value for t in reported.trials]
    for t in reported.trials:
        assert sorted(t.intermediate_values) == [0, 1, 2] and t.intermediate_values[2] == t.value
        assert not plain.trials[t.number].intermediate_values


def test_a_pruned_trial_is_measured_at_its_last_report_and_grown_from(data):
    sampler = EPNASSampler(SPACE, k=2, iterations=1, seed=0, surrogate=LSTMSurrogate(members=2, steps=20))
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=PruneFromEpoch(1))
    study.optimize(objective(data, report_epochs=True), n_trials=sampler.n_trials)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * sampler.n_trials
    assert sampler.is_finished(study)  # every level was grown from pruned parents
    for t in study.trials:
        assert sorted(t.intermediate_values) == [0, 1] and t.value == t.intermediate_values[1]
    full = objective(data)  # 3 epochs and one evaluation, against 2 epochs and 2 evaluations
    arch = SPACE.parse(study.trials[0].user_attrs["arch"])
    macs = full.trainer._macs(arch)
    assert study.trials[0].user_attrs[COST_ATTR] == 3 * macs * 2 * len(data.train_y) + macs * len(data.val_y) * 2


@pytest.mark.parametrize("dead_trial_failed", [False, True])
def test_a_trial_pruned_then_killed_before_it_was_recorded_resumes_pruned(data, tmp_path, dead_trial_failed):
    url = f"sqlite:///{tmp_path}/p.db"
    study = enqueued(optuna.create_study(storage=url, study_name="p", direction="maximize",
                                         pruner=PruneFromEpoch(0)), ARCHS[:1])
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        objective(data, report_epochs=True)(trial)  # checkpointed; the process dies before study.tell
    report = study.trials[0].intermediate_values[0]
    if dead_trial_failed:  # a resumed sampler found the process gone first
        fail_trial(study, trial)
    resumed = objective(data, report_epochs=True)
    resumed.attach(optuna.load_study(storage=url, study_name="p"))
    trials = optuna.load_study(storage=url, study_name="p").trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(pruned) == 1 and pruned[0].value == report and pruned[0].intermediate_values == {0: report}
    assert resumed.trained == [pruned[0].number] and resumed.pruned == {pruned[0].number}


def test_the_command_line_prunes_nothing_by_default_and_a_pruner_needs_reports(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/c.db"
    small = ["search", "--layers", "2", "--k", "2", "--iterations", "1", "--channels", "4", "--epochs", "2",
             "--max-train", "200", "--quiet", "--storage", url]
    assert main(small + ["--study-name", "r", "--report-epochs"]) == 0
    trials = optuna.load_study(storage=url, study_name="r").trials
    assert all(t.state == TrialState.COMPLETE and len(t.intermediate_values) == 2 for t in trials)
    assert main(small + ["--study-name", "m", "--pruner", "median"]) == 2
    assert "add --report-epochs" in capsys.readouterr().err
