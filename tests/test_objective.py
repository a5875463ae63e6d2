"""SupernetObjective: what a trial records, seeded reproducibility, the checkpoint beside the study."""

from __future__ import annotations

import optuna
import pytest
import torch

from optuna_epnas import MacroSpace, SupernetObjective, SupernetTrainer, load_dataset
from optuna_epnas.nn import count_parameters
from optuna_epnas.supernet.checkpoint import default_path

SPACE = MacroSpace(3)
# complete architectures: a plain Optuna trial (no EPNASSampler) asks for every layer
ARCHS = ["conv3x3 | conv3x3 | conv3x3", "sep3x3 | max3x3[0] | avg3x3", "conv3x3 | avg3x3 | sep5x5[0,1]",
         "conv3x3 | max3x3 | sep5x5[1]"]


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", device="cpu", max_train=256)


def objective(data, checkpoint=None, **kwargs):
    """The tests' objective; ``kwargs``: its trainer's settings."""
    return SupernetObjective(SupernetTrainer(SPACE, data, epochs=1, channels=6, batch_size=64, **kwargs), checkpoint)


def run(study, obj, keys):
    for key in keys:
        study.enqueue_trial(SPACE.to_params(SPACE.parse(key)))
    study.optimize(obj, n_trials=len(keys))
    return [t.value for t in study.trials[-len(keys):]]


def test_trial_records_architecture_level_parameters_and_returns_validation_accuracy(data):
    study = optuna.create_study(direction="maximize")
    run(study, objective(data), ARCHS[2:3])
    assert study.trials[0].params == SPACE.to_params(SPACE.parse(ARCHS[2]))
    t = study.trials[0]
    arch = SPACE.parse(ARCHS[2])
    assert t.user_attrs["arch"] == arch.key and t.user_attrs["level"] == 3
    assert t.user_attrs["params"] == count_parameters(SPACE, arch, 10, 1, 6)
    assert 0.0 <= t.value <= 1.0
    assert t.value * len(data.val_y) == pytest.approx(round(t.value * len(data.val_y)))  # a fraction of val


def test_seeded_runs_are_reproducible_and_the_seed_matters(data):
    values = [run(optuna.create_study(direction="maximize"), objective(data, seed=s), ARCHS) for s in (0, 0, 1)]
    assert values[0] == values[1]
    assert values[0] != values[2]


def test_supernet_resumes_from_the_checkpoint_beside_the_study(data, tmp_path):
    # uninterrupted: four trials in one process
    url_a = f"sqlite:///{tmp_path}/a.db"
    whole = run(optuna.create_study(storage=url_a, study_name="s", direction="maximize"), objective(data), ARCHS)
    # interrupted: three trials, then a fresh objective (a new process) on the same storage
    url_b = f"sqlite:///{tmp_path}/b.db"
    first = objective(data)
    study = optuna.create_study(storage=url_b, study_name="s", direction="maximize")
    part = run(study, first, ARCHS[:3])
    path = default_path(url_b, "s")
    assert path == tmp_path / "b.db.s.supernet.pt" and path.exists()
    second = objective(data)
    second.attach(optuna.load_study(storage=url_b, study_name="s"))
    assert second.trained == [0, 1, 2]
    for (name, p), q in zip(first.trainer.net.state_dict().items(), second.trainer.net.state_dict().values()):
        assert torch.equal(p, q), name
    rest = run(optuna.load_study(storage=url_b, study_name="s"), second, ARCHS[3:])
    assert part + rest == whole


def test_a_checkpoint_with_other_settings_is_refused_and_kept(data, tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    run(optuna.create_study(storage=url, study_name="s", direction="maximize"), objective(data), ARCHS[:1])
    path = default_path(url, "s")
    before = path.read_bytes()
    wider = SupernetObjective(SupernetTrainer(SPACE, data, epochs=1, channels=8))
    with pytest.raises(ValueError, match="other settings"):
        wider.attach(optuna.load_study(storage=url, study_name="s"))
    assert path.read_bytes() == before


def test_in_memory_studies_keep_no_checkpoint_and_bad_arguments_are_clear(data):
    assert default_path(optuna.storages.InMemoryStorage(), "s") is None
    for kwargs, match in (({"epochs": 0}, "epochs"), ({"channels": -1}, "channels"), ({"lr": 0.0}, "lr")):
        with pytest.raises(ValueError, match=match):
            SupernetObjective(SupernetTrainer(SPACE, data, **kwargs))


def test_a_second_trial_at_once_on_one_supernet_is_refused_before_it_takes_a_slot(data):
    from optuna_epnas import EPNASSampler
    from optuna_epnas.sampler import STAGE_ATTR

    obj = objective(data)
    study = optuna.create_study(direction="maximize", sampler=EPNASSampler(SPACE, k=2, iterations=1))
    obj._busy.acquire()  # as if another thread's trial were training
    trial = study.ask()
    try:
        with pytest.raises(RuntimeError, match="one trial at a time: run study.optimize with n_jobs=1"):
            obj(trial)
    finally:
        obj._busy.release()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert STAGE_ATTR not in study.trials[0].system_attrs
    study.optimize(obj, n_trials=1)  # released: the next trial trains, from the first slot
    assert study.trials[1].system_attrs[STAGE_ATTR] == [0, 1, 0]
