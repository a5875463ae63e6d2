"""Runs of samplers on NAS-Bench-201 at equal queries: one search per (sampler, budget, seed), each its
own study (a budget is its own search, with a schedule fitted to it, not the prefix of a longer one).

Every finished run is appended to a JSON-lines file as it ends, so an interrupted benchmark resumes
where it stopped (a run cut short is run again from its start: a tabular search takes seconds to a minute).
"""

from __future__ import annotations

import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import optuna

from optuna_epnas.benchmarks.nb201 import TEST_ATTR, TabularObjective

#: The samplers a benchmark knows, in report order.
SAMPLERS = ("epnas", "epnas-remeasure", "epnas-surrogate-only", "epnas-paper", "pnas", "random", "tpe", "rea")
DEFAULT_SAMPLERS = ("epnas", "epnas-paper", "pnas", "random", "tpe", "rea")
RUNS_FILE = "runs.jsonl"


def make_sampler(name: str, space: Any, budget: int, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` for a search of ``budget`` queries. The EPNAS variants fit their schedule to
    the budget; on a table (a deterministic objective) they reuse recorded values, as
    ``TabularObjective.deterministic`` allows, except ``epnas-remeasure``, which queries again."""
    from optuna_epnas.sampler.epnas import EPNASSampler
    from optuna_epnas.sampler.selection import Softmax
    from optuna_epnas.testing.rea import RegularizedEvolutionSampler

    deterministic = TabularObjective.deterministic
    makers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
        "epnas": lambda: EPNASSampler(space, n_trials=budget, seed=seed, reuse=deterministic),
        "epnas-remeasure": lambda: EPNASSampler(space, n_trials=budget, seed=seed),
        # the draw before parent weight and the diverse draw (settings.VARIANTS' ablation of the same name)
        "epnas-surrogate-only": lambda: EPNASSampler(space, n_trials=budget, seed=seed, reuse=deterministic,
                                                     selection=Softmax(parent_weight=0.0, diverse=False)),
        "epnas-paper": lambda: EPNASSampler.paper(space, n_trials=budget, seed=seed, reuse=deterministic),
        "pnas": lambda: EPNASSampler.paper(space, pnas=True, n_trials=budget, seed=seed, reuse=deterministic),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "rea": lambda: RegularizedEvolutionSampler(population_size=20, sample_size=5, seed=seed),
    }
    if name not in makers:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return makers[name]()


@dataclass(frozen=True)
class RunSpec:
    sampler: str
    budget: int
    seed: int


def anytime(trials: Sequence[optuna.trial.FrozenTrial], max_level: int) -> list[float | None]:
    """After each query (trial, in number order): the test accuracy (%) of the best-by-validation
    complete cell so far (None before the first complete one)."""
    best_val, best_test, curve = -np.inf, None, []
    for t in sorted(trials, key=lambda t: t.number):
        if t.value is not None and t.user_attrs.get("level") == max_level and t.value > best_val:
            best_val, best_test = t.value, t.user_attrs[TEST_ATTR]
        curve.append(best_test)
    return curve


def run_one(spec: RunSpec, space_spec: dict[str, Any]) -> dict[str, Any]:
    """One search: ``spec.budget`` queries of ``spec.sampler`` with ``spec.seed``, in memory."""
    import torch

    from optuna_epnas.spaces.base import SearchSpace

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.from_spec(space_spec)
    objective = TabularObjective(space)
    started = time.perf_counter()
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec.sampler, space, spec.budget, spec.seed))
    study.optimize(objective, n_trials=spec.budget)
    trials = study.get_trials(deepcopy=False)
    curve = anytime(trials, space.max_level)
    complete = [t for t in trials if t.user_attrs.get("level") == space.max_level]
    return {"sampler": spec.sampler, "budget": spec.budget, "seed": spec.seed, "queries": len(trials),
            "test_accuracy": curve[-1] if curve else None,
            "best_validation": max((100 * t.value for t in complete), default=None),
            "complete_queries": len(complete), "distinct_cells": len({t.user_attrs["arch"] for t in trials}),
            "seconds": round(time.perf_counter() - started, 2), "anytime": curve,
            # the surrogate's fits (hence EPNAS's draws) may differ across torch builds and processors
            "torch": torch.__version__, "python": platform.python_version()}


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The finished runs recorded in ``path`` (a line cut by a kill is skipped)."""
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return runs


def run_benchmark(out: Path, samplers: Sequence[str], budgets: Sequence[int], seeds: Iterable[int],
                  space_spec: dict[str, Any], workers: int = 1,
                  progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every (sampler, budget, seed) not yet in ``out/runs.jsonl``, over ``workers`` processes; all runs."""
    for name in samplers:
        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUNS_FILE
    done = {(r["sampler"], r["budget"], r["seed"]) for r in read_runs(path) if r.get("space") == space_spec}
    todo = [RunSpec(s, b, seed) for b in budgets for seed in seeds for s in samplers
            if (s, b, seed) not in done]
    progress(f"{len(done)} runs already recorded in {path}; {len(todo)} to run on {workers} worker(s)")
    with path.open("a") as sink:
        def record(result: dict[str, Any], index: int) -> None:
            sink.write(json.dumps({**result, "space": space_spec}) + "\n")
            sink.flush()
            os.fsync(sink.fileno())
            progress(f"[{index}/{len(todo)}] {result['sampler']} budget {result['budget']} seed {result['seed']}: "
                     f"test {result['test_accuracy']} ({result['seconds']:.0f} s)")

        if workers <= 1:
            for i, spec in enumerate(todo, start=1):
                record(run_one(spec, space_spec), i)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(run_one, spec, space_spec) for spec in todo]
                for i, future in enumerate(as_completed(futures), start=1):
                    record(future.result(), i)
    return [r for r in read_runs(path) if r.get("space") == space_spec]
