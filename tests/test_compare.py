"""`epnas compare`: equal budgets and settings, the results folder, choice by validation, resume, bad input."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import optuna
import optuna_dashboard
import pytest
from optuna.trial import TrialState

from optuna_epnas.analysis import compare, ranking, ranking_report, retest
from optuna_epnas.analysis import report as compare_report
from optuna_epnas.analysis import tables
from optuna_epnas.cli import compare as cli_compare
from optuna_epnas.cli.compare import add_compare_parser, compare_command
from optuna_epnas.supernet.objective import OBJECTIVE_ATTR, SupernetObjective
from optuna_epnas.settings import VARIANTS, resolve_settings
from optuna_epnas.standalone.train import TrainResult

TINY = ["compare", "--layers", "2", "--k", "2", "--iterations", "1", "--channels", "4", "--epochs", "1",
        "--max-train", "200", "--final-epochs", "1", "--final-channels", "4", "--quiet"]
MAIN = TINY + ["--seeds", "2", "--samplers", "epnas,random", "--top", "1", "--ranking-n", "4", "--final-seeds", "1"]
BUDGET = 6 + 2  # the EPNAS schedule of 2 layers, K=2, 1 iteration: the 6 one-layer architectures, then K
RUNS = ("epnas-seed0", "random-seed0", "epnas-seed1", "random-seed1")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="epnas")
    add_compare_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def run(argv: list[str], out: Path) -> int:
    return compare_command(parse(argv + ["--out", str(out)]))


def count_training(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count stand-alone trainings, those of the ranking report included."""
    calls: list[int] = []
    real = retest.train_final

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(retest, "train_final", counting)
    monkeypatch.setattr(ranking, "train_final", counting)
    return calls


def load(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'studies.db'}")


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    with pytest.MonkeyPatch.context() as mp:
        calls = count_training(mp)
        assert run(MAIN, out) == 0
    return out, len(calls)


# -- the comparison ------------------------------------------------------------------------------------
def test_every_run_has_the_budget_and_the_same_search_settings(compared):
    out, _ = compared
    assert sorted(optuna.get_all_study_names(f"sqlite:///{out / 'studies.db'}")) == sorted(RUNS)
    specs, settings = {}, {}
    for name in RUNS:
        study = load(out, name)
        assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == BUDGET
        specs[name] = study._storage.get_study_system_attrs(study._study_id)[OBJECTIVE_ATTR]
        settings[name] = study.user_attrs[compare.RUN_ATTR]
        assert (out / f"studies.db.{name}.supernet.pt").exists()  # its own supernet, beside the study
        seed = int(name[-1])
        assert specs[name]["seed"] == settings[name]["seed"] == seed
    # the same space and objective settings everywhere, but the seed, the sampler and what the sampler's
    # variant fixes itself (random search trains no warm-up: its trials are uniform path training)
    for name in RUNS:
        own = {"seed", "sampler", "cost_budget", *VARIANTS[name.rsplit("-seed", 1)[0]]}
        assert {k: v for k, v in specs[name].items() if k not in own} == \
            {k: v for k, v in specs["epnas-seed0"].items() if k not in own}
        assert {k: v for k, v in settings[name].items() if k not in own} == \
            {k: v for k, v in settings["epnas-seed0"].items() if k not in own}
    assert specs["epnas-seed0"]["warmup_epochs"] == 1 and specs["random-seed0"]["warmup_epochs"] == 0
    assert settings["random-seed1"]["budget"] == BUDGET and settings["random-seed1"]["epochs"] == 1


def _table(markdown: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after ``heading``."""
    section = markdown.split(heading, 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    block = []
    for line in section.splitlines()[section.splitlines().index(rows[0]):]:
        if not line.startswith("|"):
            break
        block.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return block[2:]


def test_the_results_folder_reads_what_the_json_says(compared):
    out, trainings = compared
    results = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    assert results["budget"] == BUDGET and len(results["runs"]) == 4
    assert trainings == 4 + len(results["ranking"]["supernet"]["rows"])  # top 1 per run + the ranking's
    assert 0 < len(results["ranking"]["supernet"]["rows"]) <= 4

    for plot in results["plots"]:
        assert (out / plot["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({plot['file']})" in markdown
    assert {p["file"] for p in results["plots"]} >= {"best_so_far.png", "test_error.png",
                                                      "history-epnas-seed0.png", "history-random-seed0.png"}

    rows = {r[0]: r for r in _table(markdown, "## Per sampler")}
    assert set(rows) == {"EPNAS", "random"}
    for sampler, label in (("epnas", "EPNAS"), ("random", "random")):
        s, row = results["samplers"][sampler], rows[label]
        assert row[1] == "2"
        assert row[2] == f"{100 * s['test_error_mean']:.2f} ± {100 * s['test_error_std']:.2f}"
        assert row[3] == " ".join(f"{100 * e:.2f}" for e in s["test_errors"])
        assert row[4] == str(BUDGET) and row[5] == f"{s['total_cost_mean']:.3g}"
        assert row[6].startswith(" ".join("–" if t is None else str(t) for t in s["trials_to_target"]))
        assert row[8] == f"{s['best_supernet_mean']:.4f} ± {s['best_supernet_std']:.4f}"

    per_run = {r[0]: r for r in _table(markdown, "## Per run")}
    for r in results["runs"]:
        row = per_run[r["run"]]
        assert row[1] == str(BUDGET) == str(r["trials"])
        assert row[2] == f"{r['best_supernet_accuracy']:.4f}"
        assert row[7] == f"{100 * r['test_error']:.2f}"
        chosen = next(c for c in r["candidates"] if c["rank"] == r["chosen"])
        assert r["test_error"] == pytest.approx(1 - chosen["test_accuracy"])
    median = sorted(r["best_supernet_accuracy"] for r in results["runs"])
    assert results["target"] == pytest.approx((median[1] + median[2]) / 2)
    assert "## Conclusions" in markdown and "## Ranking quality" in markdown
    for name in RUNS:  # and in every run's optuna-dashboard study note
        note = optuna_dashboard.get_note(load(out, name))
        assert ranking_report.NOTE_MARKER in note and results["ranking"]["markdown"] in note and name in note
    assert results["command"].startswith("epnas compare --space macro --layers 2")
    assert f"`{results['command']}`" in markdown


def test_each_runs_final_supernet_ranks_the_ranking_architectures_by_mechanism(compared):
    out, _ = compared
    results = json.loads((out / "results.json").read_text())
    rows, final = results["ranking"]["supernet"]["rows"], results["ranking"]["final_weights"]
    assert set(final) == set(RUNS)
    test = [r["standalone_test_accuracy"] for r in rows]
    for name, f in final.items():
        assert len(f["values"]) == len(rows) and all(0 <= v <= 1 for v in f["values"])
        assert f["kendall_tau"] == ranking.rank_correlation(f["values"], test).to_dict()["kendall_tau"]
    table = {r[0]: r for r in _table((out / "results.md").read_text(), "### Ranking by mechanism")}
    for sampler, warmup, rescore in (("epnas", "1", "no"), ("random", "0", "no")):
        taus = [f["kendall_tau"] for f in final.values() if f["sampler"] == sampler and f["kendall_tau"] is not None]
        assert table[sampler][1:4] == [warmup, rescore, str(len(taus))]
        if taus:
            assert table[sampler][4].startswith(f"{np.mean(taus):+.3f}")
    defined = [r for name, rs in results["ranking"]["surrogate"].items() for r in rs
               if name.startswith("epnas-") and r["iteration"] is None and r["kendall_tau"] is not None]
    # K=2: level 2 has two held-out architectures, too few for a τ, so no level has one
    assert not defined and table["epnas"][6] == "–" and table["random"][6] == "–"


def test_the_mechanism_table_averages_runs_and_pools_what_each_sampler_measured():
    rows = [{"arch": a, "study": s, "supernet_accuracy": v, "standalone_test_accuracy": t}
            for a, s, v, t in (("a", "epnas-rescore-seed0", 0.5, 0.80), ("b", "epnas-rescore-seed1", 0.6, 0.81),
                               ("c", "epnas-rescore-seed0", 0.7, 0.79), ("d", "epnas-no-warmup-seed0", 0.4, 0.70))]
    final = {"epnas-rescore-seed0": {"sampler": "epnas-rescore", "kendall_tau": 0.2},
             "epnas-rescore-seed1": {"sampler": "epnas-rescore", "kendall_tau": 0.6},
             "epnas-no-warmup-seed0": {"sampler": "epnas-no-warmup", "kendall_tau": None}}
    surrogate = {"epnas-rescore-seed0": [{"level": 2, "iteration": None, "n": 5, "kendall_tau": 0.5},
                                 {"level": 2, "iteration": 1, "n": 3, "kendall_tau": 0.9}],
                 "epnas-rescore-seed1": [{"level": 2, "iteration": None, "n": 7, "kendall_tau": 0.1}]}
    markdown = tables.mechanism_ranking_table(
        final, rows, surrogate, {x: resolve_settings(x) for x in ("epnas-rescore", "epnas-no-warmup")})
    table = {r[0]: r for r in _table(markdown, "### Ranking by mechanism")}
    # epnas-rescore measured a, b, c: supernet 0.5 0.6 0.7 against stand-alone 0.80 0.81 0.79 -> τ = -1/3
    assert table["epnas-rescore"][1:] == ["1", "yes", "2", "+0.400 ± 0.283", "-0.333 (3)", "L2 +0.30 (12)"]
    assert table["epnas-no-warmup"][1:] == ["0", "no", "0", "–", "– (1)", "–"]


def test_final_weight_rankings_evaluate_each_run_on_its_own_last_weights(compared):
    # A run's last trial was measured right after its training, on weights nothing has changed since;
    # the validation split of this tiny data set is smaller than the re-scoring subset, so evaluating
    # that architecture on the run's final supernet must give the trial's value exactly.
    out, _ = compared
    args = parse(MAIN + ["--out", str(out)])
    plan = cli_compare.make_plan(args)
    assert len(plan.data.val_y) <= 1000
    studies = [load(out, name) for name in RUNS]
    runs = [{"sampler": n.rsplit("-seed", 1)[0], "seed": int(n.rsplit("-seed", 1)[1])} for n in RUNS]
    lasts = [max(s.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number) for s in studies]
    rows = [{"arch": t.user_attrs["arch"], "standalone_test_accuracy": 0.1 * i} for i, t in enumerate(lasts)]
    final = retest.final_weight_rankings(plan, studies, runs, rows, lambda line: None)
    for i, (name, last) in enumerate(zip(RUNS, lasts)):
        assert final[name]["values"][i] == pytest.approx(last.value, abs=1e-9)


def test_a_second_identical_call_runs_no_trial_and_trains_nothing(compared, monkeypatch, capsys):
    out, _ = compared
    before = {name: len(load(out, name).trials) for name in RUNS}
    calls = count_training(monkeypatch)
    first = json.loads((out / "results.json").read_text())
    assert run(MAIN, out) == 0
    assert calls == []
    assert {name: len(load(out, name).trials) for name in RUNS} == before
    assert capsys.readouterr().out.count("search already done") == 4
    again = json.loads((out / "results.json").read_text())
    assert again["samplers"] == first["samplers"] and again["ranking"] == first["ranking"]


def test_other_settings_on_the_same_folder_are_refused(compared):
    out, _ = compared
    with pytest.raises(ValueError, match="other settings.*epochs"):
        run(MAIN[:MAIN.index("--epochs") + 1] + ["2"] + MAIN[MAIN.index("--epochs") + 2:], out)


# -- choosing by validation ----------------------------------------------------------------------------
def test_the_chosen_architecture_is_the_best_by_validation_not_by_test(tmp_path, monkeypatch):
    # The supernet's best has the better test accuracy but the worse validation accuracy.
    fake = iter([(0.50, 0.90), (0.80, 0.10)])  # (val, test) in supernet-rank order

    def train_final(model, data, epochs, seed=0, **kwargs):
        val, test = next(fake)
        return TrainResult(history=[], test_accuracy=test, val_accuracy=val, params=1, seconds=0.0)

    monkeypatch.setattr(retest, "train_final", train_final)
    argv = TINY + ["--samplers", "random", "--seeds", "1", "--top", "2", "--ranking-n", "0", "--final-seeds", "1"]
    assert run(argv, tmp_path) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (r,) = results["runs"]
    assert [c["rank"] for c in r["candidates"]] == [1, 2] and r["chosen"] == 2
    assert r["test_error"] == pytest.approx(0.90)  # the chosen one's, though rank 1 tests better
    assert results["samplers"]["random"]["test_error_mean"] == pytest.approx(0.90)
    assert results["ranking"] is None and "## Ranking quality" not in (tmp_path / "results.md").read_text()


def test_choose_by_validation_breaks_ties_by_supernet_rank():
    candidates = [{"rank": 1, "val_accuracy": 0.7, "test_accuracy": 0.1}, {"rank": 2, "val_accuracy": 0.9},
                  {"rank": 3, "val_accuracy": 0.9, "test_accuracy": 0.99}]
    assert compare_report.choose_by_validation(candidates)["rank"] == 2
    assert compare_report.choose_by_validation([]) is None


# -- budgets and resuming ------------------------------------------------------------------------------
def test_an_interrupted_run_resumes_to_exactly_a_budget_below_the_schedule(tmp_path, monkeypatch):
    real, calls = SupernetObjective.__call__, []

    def interrupted(self, trial):
        calls.append(trial.number)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, trial)

    # 5 trials: the progressive run stops inside its first level, before any full-size architecture.
    argv = TINY + ["--samplers", "epnas", "--seeds", "1", "--budget", "5", "--ranking-n", "0"]
    monkeypatch.setattr(SupernetObjective, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(argv, tmp_path)
    monkeypatch.setattr(SupernetObjective, "__call__", real)
    assert not (tmp_path / "results.json").exists()
    assert run(argv, tmp_path) == 0
    study = load(tmp_path, "epnas-seed0")
    assert [t.number for t in study.trials if t.state == TrialState.FAIL] == [2]
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert [t.number for t in finished] == [0, 1, 3, 4, 5]  # the first two kept, the failed slot measured again
    assert [t.user_attrs["level"] for t in finished] == [1] * 5
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["runs"][0]["trials"] == 5 and results["runs"][0]["test_error"] is None
    assert results["target"] is None
    assert "EPNAS: no run found a full-size architecture within 5 trials." in results["conclusions"]


# -- pieces --------------------------------------------------------------------------------------------
def _trial(number: int, level: int, value: float, arch: str) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(value=value, user_attrs={"level": level, "arch": arch})
    trial.number = number
    return trial


def test_best_so_far_counts_full_size_trials_only_and_top_takes_the_latest_measurement():
    trials = [_trial(0, 1, 0.9, "a"), _trial(1, 2, 0.5, "a|b"), _trial(2, 2, 0.7, "a|c"), _trial(3, 2, 0.4, "a|c")]
    curve = compare_report.best_so_far(trials, max_level=2)
    assert curve == [None, 0.5, 0.7, 0.7]
    assert compare_report.trials_to_reach(curve, 0.6) == 3 and compare_report.trials_to_reach(curve, 0.8) is None
    top = compare_report.top_architectures(trials, max_level=2, n=3)
    assert [(c["arch"], c["supernet_accuracy"]) for c in top] == [("a|b", 0.5), ("a|c", 0.4)]


def test_conclusions_say_when_the_spread_is_larger_than_the_difference():
    summary = {
        "epnas": {"runs": 3, "test_errors": [0.10, 0.12, 0.14], "test_error_mean": 0.12, "test_error_std": 0.02,
                  "reached_target": 1, "trials_to_target": [None, 40, None], "best_supernet_mean": 0.9,
                  "search_seconds_mean": 100.0, "trials": [92, 92, 92], "total_cost_mean": 2.5e9},
        "random": {"runs": 3, "test_errors": [0.11, 0.11, 0.11], "test_error_mean": 0.11, "test_error_std": 0.0,
                   "reached_target": 3, "trials_to_target": [10, 20, 30], "best_supernet_mean": 0.8,
                   "search_seconds_mean": 90.0, "trials": [60, 61, 62], "total_cost_mean": 2.6e9},
    }
    lines = compare_report.conclusions(summary, 0.85, "a rule", 92, 359, None)
    text = "\n".join(lines)
    assert "EPNAS's mean stand-alone test error is higher than random's by 1.00 points" in text
    assert "lower on 1 of 3 seeds, higher on 2" in text and "do not tell them apart" in text
    assert "EPNAS reached it in 1 of 3 runs (after 40 trials); random reached it in 3 of 3 runs" in text
    assert "did not give the lowest stand-alone test error (random)" in text
    assert "trials per run, mean: EPNAS 92, random 61; compute per run, mean: EPNAS 2.5e+09, random 2.6e+09" in text


# -- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--samplers", "epnas,foo"], "unknown sampler(s) ['foo']"),
    (["--seeds", "0"], "must be a positive integer, got 0"),
    (["--ranking-n", "-1"], "must be 0 or a positive integer"),
    (["--target", "1.5"], "must be an accuracy in (0, 1]"),
])
def test_bad_options_are_refused_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse(["compare", *argv])
    assert message in capsys.readouterr().err


def test_a_bad_namespace_is_refused_before_anything_runs(tmp_path):
    args = parse(TINY + ["--out", str(tmp_path / "x")])
    args.seeds = 0
    with pytest.raises(ValueError, match="--seeds must be a positive integer"):
        compare_command(args)
    args.seeds, args.samplers = 1, ("epnas", "bogus")
    with pytest.raises(ValueError, match="--samplers"):
        compare_command(args)
    args.samplers, args.objectives = ("epnas",), ("accuracy", "params")
    with pytest.raises(ValueError, match="studies/pareto_compare.py"):
        compare_command(args)
    assert not (tmp_path / "x").exists()


def test_at_equal_compute_random_search_spends_what_epnas_spent_and_is_judged_at_equal_trials_too(tmp_path):
    out = tmp_path / "cmp"
    argv = TINY + ["--seeds", "1", "--samplers", "random,epnas", "--top", "1", "--ranking-n", "0",
                   "--budget-kind", "compute"]
    assert run(argv, out) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["budget_kind"] == "compute" and results["compute_reference"] == "epnas"
    runs = {r["sampler"]: r for r in results["runs"]}
    assert [r["sampler"] for r in results["runs"]] == ["random", "epnas"]  # reported in the order given
    epnas, rand = runs["epnas"], runs["random"]
    assert epnas["trials"] == BUDGET and epnas["cost_budget_macs"] is None
    assert rand["cost_budget_macs"] == epnas["total_cost_macs"] == epnas["cost_curve"][-1]
    # random stopped at the trial that crossed the budget, not one earlier or later
    assert rand["cost_curve"][-1] >= epnas["total_cost_macs"] > rand["cost_curve"][-2]
    assert rand["total_cost_macs"] == rand["cost_curve"][-1]
    # every run is also judged at the equal-trial budget; a run that made more trials on its first ones
    for r in (epnas, rand):
        assert r["equal_trials"]["trials"] == min(BUDGET, r["trials"])
        assert len(r["test_errors"]) == 2  # --final-seeds 2 by default: the chosen network trained twice
    if rand["trials"] > BUDGET:
        assert rand["equal_trials"]["cost_macs"] == rand["cost_curve"][BUDGET - 1]
    assert {(d["a"], d["b"], d["view"]) for d in results["paired"]} == \
        {("epnas", "random", "budget"), ("epnas", "random", "equal_trials")}
    md = (out / "results.md").read_text()
    assert "## At equal trials" in md and "## Paired by seed" in md and "best_so_far_compute.png" in md
    assert (out / "best_so_far_compute.png").stat().st_size > 0
    # a re-run with the other budget kind on the same folder is refused, nothing lost
    with pytest.raises(ValueError, match="budget_kind"):
        run(TINY + ["--seeds", "1", "--samplers", "random,epnas", "--top", "1", "--ranking-n", "0"], out)
    assert json.loads((out / "results.json").read_text()) == results


def test_a_compute_budget_needs_a_progressive_sampler_to_set_it(tmp_path):
    with pytest.raises(ValueError, match="--budget-kind compute"):
        run(TINY + ["--samplers", "tpe,random", "--budget-kind", "compute"], tmp_path / "cmp")


def test_the_recorded_command_parses_back_to_the_same_settings_booleans_included():
    argv = TINY + ["--samplers", "epnas", "--no-rescore", "--no-diverse", "--parent-weight", "2", "--out", "x"]
    args = parse(argv)
    line = cli_compare.command_line(args)
    assert "--no-rescore" in line and "--no-diverse" in line and "--parent-weight 2.0" in line
    again = parse(line.split()[1:])
    assert {k: getattr(again, k) for k in cli_compare.SETTING_OPTIONS} == {k: getattr(args, k) for k in cli_compare.SETTING_OPTIONS}
    settings = resolve_settings("epnas", cli_compare.settings_from_args(again))
    assert (settings.rescore, settings.diverse, settings.parent_weight) == (False, False, 2.0)
    # off, the two later options are not stored: runs made before they existed still resume
    paper = resolve_settings("epnas-paper").to_dict()
    assert "diverse" not in paper and "parent_weight" not in paper
    assert {"diverse", "parent_weight"} <= set(resolve_settings("epnas").to_dict())


def test_workers_spread_the_runs_over_processes_with_the_same_results(tmp_path):
    argv = TINY + ["--seeds", "2", "--samplers", "epnas,random", "--top", "1", "--ranking-n", "0", "--final-seeds", "1",
                   "--budget-kind", "compute"]  # random waits for its seed's EPNAS run to know its budget

    def timeless(value):  # everything but the seconds things took
        if isinstance(value, dict):
            return {k: timeless(v) for k, v in value.items() if not k.endswith("seconds")}
        return [timeless(v) for v in value] if isinstance(value, list) else value

    def outcome(out):
        return timeless(json.loads((out / "results.json").read_text())["runs"])

    assert run(argv, tmp_path / "serial") == 0
    assert run(argv + ["--workers", "2"], tmp_path / "parallel") == 0
    assert outcome(tmp_path / "parallel") == outcome(tmp_path / "serial")
