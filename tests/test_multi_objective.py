"""Two-objective searches (accuracy × exact size): the fronts, the sampler's use of them, the objective's
tuple through a kill, the command line's front, and clear refusals."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from optuna_epnas import CostModel, EPNASSampler, LSTMSurrogate, MacroSpace, SupernetObjective, SupernetTrainer
from optuna_epnas.cli import main
from optuna_epnas.costs.cost import NetworkSize
from optuna_epnas.sampler.pareto import crowding, front_ranks
from optuna_epnas.sampler.selection import pareto_log_weights

from test_objective import ARCHS, SPACE, data  # noqa: F401 (data: a fixture)

SIZE = NetworkSize(num_classes=10, in_channels=1, channels=4, image_size=8)


def brute_force_fronts(gain, cost):
    rank, left, front = np.full(len(gain), -1), set(range(len(gain))), 0
    while left:
        top = [i for i in left if not any(gain[j] >= gain[i] and cost[j] <= cost[i]
                                          and (gain[j] > gain[i] or cost[j] < cost[i]) for j in left)]
        rank[top] = front
        left -= set(top)
        front += 1
    return rank


@pytest.mark.parametrize("ties", [True, False])
def test_front_ranks_equal_a_brute_force_non_dominated_sort(ties):
    rng = np.random.default_rng(int(ties))
    for _ in range(100):
        n = int(rng.integers(1, 50))
        gain, cost = (rng.integers(0, 5, n).astype(float), rng.integers(0, 5, n).astype(float)) if ties \
            else (rng.random(n), rng.random(n))
        assert (front_ranks(gain, cost) == brute_force_fronts(gain, cost)).all()


def test_a_whole_front_outweighs_any_crowding_and_a_fronts_ends_are_the_least_crowded():
    gain, cost = np.array([0.9, 0.5, 0.1, 0.8, 0.4]), np.array([3.0, 2.0, 1.0, 3.5, 2.5])
    ranks = front_ranks(gain, cost)
    assert ranks.tolist() == [0, 0, 0, 1, 1]
    assert crowding(gain, cost, ranks)[[0, 2, 3, 4]].tolist() == [1.0, 1.0, 1.0, 1.0]
    weights = pareto_log_weights(gain, cost)
    assert weights[:3].min() > weights[3:].max()


def sized_objective(space):
    """Bigger networks are more accurate: the trade-off a two-objective search must span."""
    def objective(trial):
        arch = space.suggest(trial)
        params = SIZE.count(space, arch)[0]
        return 1.0 - 1.0 / (1.0 + params / 1000.0), float(params)
    return objective


def test_a_two_objective_search_spans_the_front_where_accuracy_alone_climbs_to_the_largest():
    space = MacroSpace(4)
    common = dict(k=4, iterations=2, seed=0, surrogate=LSTMSurrogate(members=2, steps=50))
    two = EPNASSampler(space, costs=CostModel(network=SIZE, minimize="params"), **common)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=two)
    study.optimize(sized_objective(space), n_trials=two.n_trials)
    one = EPNASSampler(space, **common)
    alone = optuna.create_study(direction="maximize", sampler=one)
    alone.optimize(lambda t: sized_objective(space)(t)[0], n_trials=one.n_trials)

    def full_params(s):
        return [SIZE.count(space, space.parse(t.user_attrs["arch"]))[0] for t in s.trials
                if t.user_attrs["level"] == 4]

    assert len(study.trials) == two.n_trials and two.is_finished(study)
    assert np.median(full_params(study)) < np.median(full_params(alone))  # it also grows the cheap end
    assert min(full_params(study)) < min(full_params(alone))


def test_the_objective_returns_accuracy_and_size_and_a_kill_before_the_tell_resumes_both(data, tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    make = lambda: SupernetObjective(SupernetTrainer(SPACE, data, epochs=1, channels=6, batch_size=64),  # noqa: E731
                                     costs=CostModel(minimize="macs"))
    study = optuna.create_study(storage=url, study_name="m", directions=["maximize", "minimize"])
    study.enqueue_trial(SPACE.to_params(SPACE.parse(ARCHS[1])))
    objective = make()
    trial = study.ask()
    accuracy, macs = objective(trial)  # trained and checkpointed; the process dies before study.tell
    assert macs == objective.network_size.count(SPACE, SPACE.parse(ARCHS[1]))[1] and 0 <= accuracy <= 1
    make().attach(optuna.load_study(storage=url, study_name="m"))
    (t,) = optuna.load_study(storage=url, study_name="m").trials
    assert t.state == TrialState.COMPLETE and t.values == [accuracy, macs]


def test_mismatched_objectives_are_refused_in_one_line(data):
    with pytest.raises(ValueError, match="minimize must be one of"):
        CostModel(network=SIZE, minimize="accuracy")
    with pytest.raises(ValueError, match="costs=objective.costs"):
        EPNASSampler(SPACE, costs=CostModel(minimize="params"))
    with pytest.raises(ValueError, match="single-objective"):
        SupernetObjective(SupernetTrainer(SPACE, data), costs=CostModel(minimize="params"), report_epochs=True)
    for directions, sampler, match in [
        (["maximize", "minimize"], EPNASSampler(SPACE, k=2), "has 2 objectives and this EPNASSampler 1"),
        (["maximize"], EPNASSampler(SPACE, k=2, costs=CostModel(network=SIZE, minimize="params")), "1 objectives"),
        (["maximize", "maximize"], EPNASSampler(SPACE, k=2, costs=CostModel(network=SIZE, minimize="params")),
         "maximises params, a cost"),
    ]:
        study = optuna.create_study(directions=directions, sampler=sampler)
        with pytest.raises(ValueError, match=match):
            study.optimize(sized_objective(SPACE) if len(directions) == 2 else lambda t: 0.0 * len(SPACE.suggest(t).ops),
                           n_trials=1)


SMALL = ["search", "--layers", "2", "--k", "2", "--iterations", "1", "--channels", "4", "--epochs", "1",
         "--max-train", "200", "--quiet", "--objectives", "accuracy,params"]


def test_the_command_line_lists_the_front_and_trains_a_member(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/f.db"
    assert main(SMALL + ["--storage", url, "--study-name", "f"]) == 0
    out = capsys.readouterr().out
    assert "Pareto front of the full-depth networks" in out and "--trial N" in out
    study = optuna.load_study(storage=url, study_name="f")
    assert all(t.values[1] == t.user_attrs["params"] for t in study.trials)
    assert main(["train", "--study", "f", "--storage", url, "--epochs", "1", "--max-train", "200", "--quiet",
                 "--out", str(tmp_path / "x")]) == 2
    assert "pick a member of its full-depth Pareto front with --trial N" in capsys.readouterr().err
    member = out.split("Pareto front")[1].split("trial")[1].split()[0]
    assert main(["train", "--study", "f", "--storage", url, "--trial", member, "--epochs", "1", "--channels", "4",
                 "--max-train", "200", "--quiet", "--out", str(tmp_path / "m")]) == 0
    assert main(["ranking", "--study", "f", "--storage", url, "--surrogate-only", "--out", str(tmp_path / "r")]) == 0
    assert main(SMALL[:-2] + ["--storage", url, "--study-name", "f"]) == 2  # resumed as one objective
    assert "not the --objectives given" in capsys.readouterr().err
    for sampler in ("tpe", "nsga2"):
        assert main(SMALL + ["--storage", url, "--study-name", sampler, "--sampler", sampler, "--n-trials", "3"]) == 0
        assert len(optuna.load_study(storage=url, study_name=sampler).trials[0].values) == 2


def _union_area(gain, cost, ref_gain, ref_cost):
    """The area of the union of the rectangles [ref_gain, g] x [c, ref_cost], cell by cell over every
    breakpoint: slow, and nothing like the sweep it checks."""
    xs = sorted({ref_gain, *(g for g in gain if g > ref_gain)})
    ys = sorted({ref_cost, *(c for c in cost if c < ref_cost)})
    area = 0.0
    for x0, x1 in zip(xs, xs[1:]):
        for y0, y1 in zip(ys, ys[1:]):
            if any(g >= x1 and c <= y0 for g, c in zip(gain, cost)):
                area += (x1 - x0) * (y1 - y0)
    return area


def test_hypervolume_is_the_dominated_area_and_ignores_points_beyond_the_reference():
    from optuna_epnas.sampler.pareto import hypervolume

    rng = np.random.default_rng(3)
    for _ in range(30):
        n = int(rng.integers(1, 15))
        gain, cost = rng.random(n), rng.random(n)
        expected = _union_area(list(gain), list(cost), 0.0, 1.0)
        assert hypervolume(gain, cost, 0.0, 1.0) == pytest.approx(expected, abs=1e-12)
    assert hypervolume([0.5, 2.0], [0.5, 3.0], 0.0, 1.0) == 0.25  # the second point is past the reference cost


def test_nsga2_mutations_never_shorten_an_architecture():
    # NSGA-II's mutation leaves a parameter out of its relative sample (it is sampled independently): that
    # is no plan for a shallower network, which only a growing sampler makes
    space = MacroSpace(4)
    sampler = optuna.samplers.NSGAIISampler(population_size=2, mutation_prob=0.5, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    levels = []

    def objective(trial):
        levels.append(space.suggest(trial).level)
        return sized_objective(space)(trial)

    study.optimize(objective, n_trials=12)
    assert levels == [4] * 12
