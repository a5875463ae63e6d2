"""The storage layer: SQLite in WAL mode, a trial's writes in one transaction, and what that must not change."""

from __future__ import annotations

import pickle
import sqlite3

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from optuna_epnas.storage._storage import (
    backend, batched_writes, fresh_trial, set_study_attr, set_trial_attr, set_trial_user_attr, storage_of, study_attrs,
    trial_id,
)
from optuna_epnas.storage.storages import open_storage


def _commits(storage) -> list[int]:
    """Counts the transactions that write (one per write outside a batch); reads commit too, uncounted."""
    import sqlalchemy

    counted, writing = [0], [False]
    engine = backend(storage).engine

    @sqlalchemy.event.listens_for(engine, "before_cursor_execute")
    def statement(conn, cursor, sql, *args):
        writing[0] |= sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))

    @sqlalchemy.event.listens_for(engine, "commit")
    def commit(conn):
        counted[0] += writing[0]
        writing[0] = False

    return counted


def test_sqlite_opened_by_epnas_is_in_wal_mode(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/w.db")
    optuna.create_study(storage=storage, study_name="s")
    with sqlite3.connect(tmp_path / "w.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_batch_writes_a_trials_params_and_attrs_in_one_commit_and_they_all_land(tmp_path):
    url = f"sqlite:///{tmp_path}/b.db"
    study = optuna.create_study(storage=open_storage(url), study_name="s", direction="maximize")
    trial, storage = study.ask(), storage_of(study)
    commits = _commits(storage)
    with batched_writes(storage, trial_id(trial)):
        for i in range(40):
            trial.suggest_categorical(f"p{i}", ["a", "b", "c"])
        trial.set_user_attr("arch", "x")
        set_trial_attr(study, trial, "epnas:stage", [0, 1, 2])
        assert commits[0] == 0  # nothing written yet
    assert commits[0] == 1
    study.tell(trial, 0.5)
    stored = optuna.load_study(storage=url, study_name="s").trials[0]  # another connection reads it all
    assert stored.params == trial.params and len(stored.params) == 40
    assert stored.user_attrs["arch"] == "x" and stored.system_attrs["epnas:stage"] == [0, 1, 2]
    assert stored.distributions["p0"] == CategoricalDistribution(["a", "b", "c"])
    assert "set_trial_param" not in storage.__dict__  # the holders are off again: the storage pickles
    pickle.dumps(storage)


def test_a_batch_that_raises_still_writes_what_it_had_and_other_trials_write_through(tmp_path):
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path}/r.db"), study_name="s")
    first, second = study.ask(), study.ask()
    database = backend(storage_of(study))  # under Optuna's cache: what is written
    with pytest.raises(KeyError):
        with batched_writes(storage_of(study), trial_id(first)):
            first.set_user_attr("before", 1)
            second.set_user_attr("other", 2)  # not the batch's trial: written at once
            assert database.get_trial(trial_id(second)).user_attrs == {"other": 2}
            assert database.get_trial(trial_id(first)).user_attrs == {}
            raise KeyError("boom")
    assert database.get_trial(trial_id(first)).user_attrs == {"before": 1}


def test_a_batch_on_a_finished_trial_fails_as_the_write_would(tmp_path):
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path}/f.db"), study_name="s")
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        with batched_writes(storage_of(study), trial_id(trial)):
            set_trial_user_attr(study, trial, "late", 1)


def test_other_storages_write_as_they_go():
    study = optuna.create_study()  # in memory
    trial = study.ask()
    with batched_writes(storage_of(study), trial_id(trial)):
        trial.set_user_attr("x", 1)
        assert fresh_trial(study, trial).user_attrs == {"x": 1}


def test_a_batch_refuses_a_parameter_whose_distribution_changed_as_optuna_does(tmp_path):
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path}/d.db"), study_name="s")
    first = study.ask()
    with batched_writes(storage_of(study), trial_id(first)):
        first.suggest_categorical("op", ["a", "b"])
    study.tell(first, 1.0)
    second = study.ask()
    with pytest.raises(ValueError, match="does not support dynamic value space"):
        with batched_writes(storage_of(study), trial_id(second)):
            storage_of(study).set_trial_param(trial_id(second), "op", 0, CategoricalDistribution(["a", "c"]))


def test_under_an_untested_optuna_version_a_batch_writes_as_it_goes_and_it_all_lands(tmp_path, monkeypatch, caplog):
    import logging

    monkeypatch.setattr(optuna, "__version__", "99.0.0")  # batched_writes patches internals tested on 4.7-5.1
    url = f"sqlite:///{tmp_path}/u.db"
    study = optuna.create_study(storage=open_storage(url), study_name="s", direction="maximize")
    trial, storage = study.ask(), storage_of(study)
    commits = _commits(storage)
    with caplog.at_level(logging.DEBUG, logger="optuna_epnas.storage._storage"):
        for _ in range(2):
            with batched_writes(storage, trial_id(trial)):
                assert "set_trial_param" not in storage.__dict__  # Optuna's own methods: nothing held back
                trial.suggest_categorical("op", ["a", "b", "c"])
                trial.set_user_attr("arch", "x")
                set_trial_attr(study, trial, "epnas:stage", [0, 1, 2])
                assert commits[0] >= 3  # each write its own commit, as it goes
    assert sum("Optuna 99.0.0: trial writes unbatched" in r.getMessage() for r in caplog.records) == 1  # said once
    study.tell(trial, 0.5)
    stored = optuna.load_study(storage=url, study_name="s").trials[0]  # another connection reads it all
    assert stored.params == trial.params == {"op": stored.params["op"]}
    assert stored.user_attrs["arch"] == "x" and stored.system_attrs["epnas:stage"] == [0, 1, 2]
    assert stored.distributions["op"] == CategoricalDistribution(["a", "b", "c"])


# -- every key in one module, with the layout's version (issue 27) ---------------------------------------
def test_every_epnas_key_is_named_in_the_keys_module_only():
    import re
    from pathlib import Path

    import optuna_epnas
    from optuna_epnas.storage import keys

    root = Path(optuna_epnas.__file__).parent
    literal = re.compile(r"""["']epnas:[a-z_]+""")
    elsewhere = {str(p.relative_to(root)): literal.findall(p.read_text()) for p in root.rglob("*.py")
                 if p != Path(keys.__file__)}
    assert {name: found for name, found in elsewhere.items() if found} == {}
    assert len(literal.findall(Path(keys.__file__).read_text())) >= 14


def test_a_study_of_a_newer_storage_layout_is_refused_by_sampler_and_objective_and_left_as_it_was(tmp_path):
    from optuna_epnas import EPNASSampler, MacroSpace, SupernetObjective, SupernetTrainer, load_dataset
    from optuna_epnas.storage.keys import CONFIG_ATTR, OBJECTIVE_ATTR, SCHEMA_ATTR, SCHEMA_VERSION

    space, url = MacroSpace(2), f"sqlite:///{tmp_path}/s.db"
    data = load_dataset("digits", device="cpu", max_train=64)
    fresh = optuna.create_study(storage=url, study_name="new", direction="maximize",
                                sampler=EPNASSampler(space, k=2, iterations=1, seed=0))
    fresh.optimize(SupernetObjective(SupernetTrainer(space, data, epochs=1, channels=4), checkpoint=False), n_trials=1)
    assert study_attrs(fresh)[SCHEMA_ATTR] == SCHEMA_VERSION  # recorded beside the state it describes
    newer = optuna.create_study(storage=url, study_name="newer", direction="maximize",
                                sampler=EPNASSampler(space, k=2, iterations=1, seed=0))
    set_study_attr(newer, SCHEMA_ATTR, SCHEMA_VERSION + 1)
    with pytest.raises(ValueError, match=r"written by a newer optuna_epnas \(storage layout 2; this version reads up to 1\)"):
        SupernetObjective(SupernetTrainer(space, data, epochs=1, channels=4), checkpoint=False).attach(newer)
    with pytest.raises(ValueError, match="written by a newer optuna_epnas"):
        newer.optimize(lambda t: space.suggest(t) and 0.5, n_trials=1)
    attrs = study_attrs(optuna.load_study(storage=url, study_name="newer"))
    assert CONFIG_ATTR not in attrs and OBJECTIVE_ATTR not in attrs  # nothing written under the old layout
