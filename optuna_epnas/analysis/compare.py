"""``epnas compare``: EPNAS vs PNAS vs TPE vs random search, same space, objective and trial budget.

Every (sampler, seed) run is a study ``<sampler>-seed<k>`` in ``DIR/studies.db`` with its own fresh
supernet (checkpointed beside the study), set up exactly as ``epnas search`` sets up a search
(:func:`optuna_epnas.search.open_search`, shared with it). Random search here shares weights too: it
is the hard baseline of the weight-sharing literature, not random architectures trained alone. After each search the
``top`` distinct full-size architectures by supernet accuracy are trained stand-alone from scratch
(:mod:`optuna_epnas.analysis.retest`); the run's chosen architecture is the one with the best stand-alone
*validation* accuracy, and its *test* error is what the comparison reports. ``DIR/results.md`` (tables,
plots, conclusions) and ``DIR/results.json`` hold the outcome (:func:`compare`). Re-running the same
comparison skips finished runs, resumes an interrupted one and reuses cached stand-alone results. What
the runs measured and how it is shown (summaries, conclusions, plots, ``results.md``) is
:mod:`optuna_epnas.analysis.report`.
"""

from __future__ import annotations

import json
import os
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import TrialState

from optuna_epnas.analysis.plots import write_plots
from optuna_epnas.analysis.ranking_report import append_to_study_note
from optuna_epnas.analysis.report import (
    best_so_far, conclusions, default_target, paired_differences, search_seconds, summarise, trials_to_reach,
)
from optuna_epnas.analysis.tables import fmt_acc, mechanism_ranking_table, results_markdown, sampler_table
from optuna_epnas.analysis.retest import (
    _jsonable, _write_json, choose_and_retest, final_weight_rankings, ranking_report,
)
from optuna_epnas.costs.cost import cumulative_cost, total_cost
from optuna_epnas.data.device import DeviceData
from optuna_epnas.sampler.schedule import planned_trials
from optuna_epnas.cli.progress import Progress, dashboard_recorder
from optuna_epnas.search import finished_trials, open_search
from optuna_epnas.settings import FINAL, PROGRESSIVE, SearchSettings, resolve_settings
from optuna_epnas.spaces import SearchSpace

RESULTS_FORMAT = "optuna_epnas.analysis.compare/1"
RUN_ATTR = "compare:run"  # study user attribute: the settings a run was made with (checked on resume)
DATA_SEED = 0  # one train/val split for every run: all samplers are judged on the same images


# -- what every run shares ---------------------------------------------------------------------------
@dataclass
class Plan:
    """What every run of a comparison shares."""

    space: SearchSpace
    data: DeviceData
    storage: optuna.storages.RDBStorage  # one for all runs: a storage per study re-checks the schema each time
    out: Path
    budget: int  # trials: every run's (--budget-kind trials), or the equal-trial view's (compute)
    given: dict[str, Any]  # search settings from the command line; each variant resolves its own from them
    final: dict[str, Any]  # stand-alone training settings but the seed
    top: int
    quiet: bool
    max_train: int | None = None
    budget_kind: str = "trials"
    final_seeds: int = 1

    def settings(self, sampler: str) -> SearchSettings:
        return resolve_settings(sampler, self.given)



def make_plan(space: SearchSpace, data: DeviceData, out: str | Path, given: dict[str, Any], *,
              budget: int | None = None, budget_kind: str = "trials", top: int = 3, final_epochs: int = FINAL.epochs,
              final_channels: int | None = None, final_cells: int = FINAL.cells, final_seeds: int = 2,
              max_train: int | None = None, quiet: bool = False) -> Plan:
    """The comparison's folder ``out`` with its ``studies.db``; ``given``: the search settings given
    (None: not given); ``budget``: trials per run (default: what the EPNAS schedule plans)."""
    defaults = resolve_settings("epnas", given)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return Plan(
        # a long lock timeout: --workers processes write to this one SQLite file side by side
        space=space, data=data, storage=optuna.storages.RDBStorage(
            f"sqlite:///{(out / 'studies.db').resolve()}", engine_kwargs={"connect_args": {"timeout": 120}}),
        out=out,
        budget=budget or planned_trials(space, defaults.k, defaults.iterations),
        given=given,
        final={"epochs": final_epochs, "channels": final_channels or type(space).final_channels,
               "cells": final_cells if "cells" in space.network_options else None, "dataset": data.name,
               "max_train": max_train, "image_size": data.image_size, "data_seed": DATA_SEED,
               "device": str(data.device),
               "schedule": FINAL.schedule()},
        top=top, quiet=quiet, max_train=max_train, budget_kind=budget_kind, final_seeds=final_seeds,
    )


# -- one run: search, then its top architectures stand-alone -----------------------------------------
#: Under ``--budget-kind compute`` TPE and random search stop at this many times the schedule's
#: trials at the latest, whatever they have spent (a guard against an objective that records no cost).
COMPUTE_TRIAL_CAP = 20


def run_settings(plan: Plan, sampler: str, seed: int, cost_budget: float | None) -> dict[str, Any]:
    """What a run's study must have been made with to be resumed (JSON-normalised: tuples -> lists)."""
    return json.loads(json.dumps({
        "sampler": sampler, "seed": seed, "budget": plan.budget, "budget_kind": plan.budget_kind,
        "cost_budget": cost_budget, "space": plan.space.spec(), "dataset": plan.data.name,
        "max_train": plan.max_train, "data_seed": DATA_SEED, **plan.settings(sampler).to_dict()}))


def _check_run_settings(study: optuna.Study, settings: dict[str, Any]) -> None:
    stored = study.user_attrs.get(RUN_ATTR)
    if stored is None:
        study.set_user_attr(RUN_ATTR, settings)
    elif stored != settings:
        diff = "; ".join(f"{k}: {stored.get(k)!r} there, {settings.get(k)!r} now"
                         for k in sorted(set(stored) | set(settings)) if stored.get(k) != settings.get(k))
        raise ValueError(f"run {study.study_name!r} was made with other settings ({diff}); re-run the same "
                         "command to resume the comparison, or use another --out")


def do_run(plan: Plan, sampler: str, seed: int, position: str, say: Callable[[str], None],
           cost_budget: float | None = None) -> tuple[optuna.Study, dict[str, Any]]:
    """Search (or resume, or skip a finished search), then train its top architectures stand-alone.

    Under a compute budget, a run that made more trials than the equal-trial budget is also judged
    as if it had stopped there (the first ``plan.budget`` trials of a seeded run are the run that
    budget would have made): ``record["equal_trials"]``.
    """
    study, record = search_run(plan, sampler, seed, position, say, cost_budget)
    trials = finished_trials(study)
    cache = plan.out / "standalone" / f"{record['run']}.json"
    record.update(choose_and_retest(plan, record["run"], seed, trials, cache, say))
    if plan.budget_kind == "compute":
        if len(trials) > plan.budget:
            prefix = trials[:plan.budget]
            curve = best_so_far(prefix, plan.space.max_level)
            record["equal_trials"] = {"trials": plan.budget, "best_supernet_accuracy": curve[-1] if curve else None,
                                      "cost_macs": record["cost_curve"][plan.budget - 1],
                                      **choose_and_retest(plan, record["run"], seed, prefix, cache, say,
                                                          f" at its first {plan.budget} trials")}
        else:
            record["equal_trials"] = {k: record[k] for k in ("trials", "best_supernet_accuracy", "candidates",
                                                             "chosen", "test_error", "test_errors")}
            record["equal_trials"]["cost_macs"] = record["total_cost_macs"]
    return study, record


def search_run(plan: Plan, sampler: str, seed: int, position: str, say: Callable[[str], None],
               cost_budget: float | None = None) -> tuple[optuna.Study, dict[str, Any]]:
    """The run's search, run, resumed or skipped when finished, and what it measured."""
    name = f"{sampler}-seed{seed}"
    if cost_budget is not None:  # TPE / random under --budget-kind compute
        budget = COMPUTE_TRIAL_CAP * plan.budget
    else:
        budget = None if plan.budget_kind == "compute" else plan.budget  # compute: a schedule runs to its end
    search = open_search(plan.space, plan.data, sampler, plan.storage, name, settings=plan.settings(sampler),
                         seed=seed, budget=budget, cost_budget=cost_budget)
    _check_run_settings(search.study, run_settings(plan, sampler, seed, cost_budget))
    done, skipped = search.finished, search.is_done()
    if not skipped:
        goal = f"{search.budget} trials" if cost_budget is None else f"{cost_budget:.3g} MACs of compute"
        say(f"run {name} {position}: search " + (f"resuming at {done} trials of {goal}" if done
                                                  else f"starting, {goal}"))
        progress = Progress(search.study, plan.space, search.budget, search.sampler if search.progressive else None,
                            quiet=plan.quiet)
        search.run([progress], recorder=dashboard_recorder(search.budget))
    trials = finished_trials(search.study)
    curve = best_so_far(trials, plan.space.max_level)
    costs = cumulative_cost(search.study, trials)
    record: dict[str, Any] = {
        "run": name, "sampler": sampler, "seed": seed, "trials": len(trials),
        "failed": len(search.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))),
        "best_supernet_accuracy": curve[-1] if curve else None, "curve": curve,
        "cost_curve": costs, "total_cost_macs": total_cost(search.study), "cost_budget_macs": cost_budget,
        "search_seconds": search_seconds(search.study),
    }
    say(f"run {name} {position}: search {'already ' if skipped else ''}done, {len(trials)} trials, "
        f"{record['total_cost_macs']:.3g} MACs, best full-size supernet accuracy "
        f"{fmt_acc(record['best_supernet_accuracy'])}, {record['search_seconds']:.0f}s of trials")
    return search.study, record


# -- the comparison ------------------------------------------------------------------------------------
def compare(plan: Plan, samplers: Sequence[str], seeds: int, *, command: str, options: dict[str, Any],
            target: float | None = None, ranking_n: int = 20, workers: int = 1,
            worker_plan: Callable[[], Plan] | None = None, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every (sampler, seed) run of ``plan``, then the analysis: writes ``results.json``, ``results.md`` and
    the plots into ``plan.out`` and returns the results. ``command``, ``options``: how the comparison was
    asked for (results.md shows them); ``target``: supernet accuracy for "trials to reach" (default: the
    median final best); ``ranking_n``: architectures of the pooled ranking report (0: none); ``workers``
    processes, each making its plan with ``worker_plan`` (picklable)."""
    import matplotlib

    matplotlib.use("Agg")  # a command writing PNG files: never a window
    say = say or _say
    settings = plan.settings("epnas")
    total, planned = len(samplers) * seeds, planned_trials(plan.space, settings.k, settings.iterations)
    data = plan.data
    say(f"epnas compare: {', '.join(samplers)} × seeds 0..{seeds - 1} on {plan.space!r} "
        f"({plan.space.cardinality():.3g} architectures), {data.name} on {data.device} ({len(data.train_x)} train / "
        f"{len(data.val_x)} val / {len(data.test_x)} test images)\n"
        + (f"{total} runs of {plan.budget} trials each" + ("" if plan.budget == planned else
                                                           f" (the EPNAS schedule plans {planned})")
           if plan.budget_kind == "trials" else
           f"{total} runs at equal compute: schedules run to their end, TPE/random spend what "
           f"{reference_sampler(samplers)} spent (judged at {plan.budget} trials too)")
        + f", stand-alone top {plan.top} per run; everything in {plan.out}/")

    studies, runs = run_all(plan, samplers, seeds, say, workers, worker_plan)
    rank = {sampler: i for i, sampler in enumerate(samplers)}  # report in the order given
    pairs = sorted(zip(studies, runs), key=lambda p: (p[1]["seed"], rank[p[1]["sampler"]]))
    studies, runs = [p[0] for p in pairs], [p[1] for p in pairs]

    results = analyse(plan, studies, runs, samplers, target, ranking_n, command, options, say)
    out = plan.out
    _write_json(out / "results.json", _jsonable(results))
    (out / "results.md").write_text(results_markdown(results))
    say("\n" + "\n".join(sampler_table(results["samplers"], plan.budget)) + "\n\n"
        + "\n".join(f"- {line}" for line in results["conclusions"]))
    look = shlex.join(["epnas", "dashboard", "--storage", f"sqlite:///{out / 'studies.db'}"])  # a path with spaces
    say(f"\nwrote {out / 'results.md'}, {out / 'results.json'} and {len(results['plots'])} plots; "
        f"studies in {out / 'studies.db'} ({look})")
    return results


def _say(line: str) -> None:
    print(line, flush=True)


def run_all(plan: Plan, samplers: Sequence[str], seeds: int, say: Callable[[str], None], workers: int = 1,
            worker_plan: Callable[[], Plan] | None = None) -> tuple[list[optuna.Study], list[dict[str, Any]]]:
    """Every (sampler, seed) run, seed-major (an interrupted comparison has every sampler at equal
    seeds), the compute reference of a seed before its TPE/random runs; over ``workers`` processes
    when more than 1, each run in one of them with its own study and supernet (and the plan that
    ``worker_plan`` makes there)."""
    order = sorted(samplers, key=lambda x: x not in PROGRESSIVE)  # the compute reference runs first
    jobs = [(sampler, seed) for seed in range(seeds) for sampler in order]
    reference = reference_sampler(samplers)
    records: dict[tuple[str, int], dict[str, Any]] = {}

    def cost_budget(sampler: str, seed: int) -> float | None:
        if plan.budget_kind == "compute" and sampler not in PROGRESSIVE:
            return records[(reference, seed)]["total_cost_macs"]
        return None

    def ready(sampler: str, seed: int) -> bool:
        return not (plan.budget_kind == "compute" and sampler not in PROGRESSIVE) or (reference, seed) in records

    position = {job: f"({i + 1}/{len(jobs)})" for i, job in enumerate(jobs)}
    if workers <= 1:
        studies = {}
        for sampler, seed in jobs:
            studies[(sampler, seed)], records[(sampler, seed)] = do_run(
                plan, sampler, seed, position[(sampler, seed)], say, cost_budget(sampler, seed))
        return [studies[j] for j in jobs], [records[j] for j in jobs]
    if worker_plan is None:
        raise ValueError("workers > 1 need worker_plan: what makes the plan in each worker process")

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    waiting, running = list(jobs), {}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_start, initargs=(worker_plan, workers)) as pool:
        while waiting or running:
            for job in [j for j in waiting if ready(*j)][:max(0, workers - len(running))]:
                waiting.remove(job)
                running[pool.submit(_worker_run, *job, position[job], cost_budget(*job))] = job
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                records[running.pop(future)] = future.result()  # a run's error ends the comparison here
    studies = [optuna.load_study(study_name=f"{sampler}-seed{seed}", storage=plan.storage) for sampler, seed in jobs]
    return studies, [records[j] for j in jobs]


_WORKER: dict[str, Any] = {}


def _worker_start(worker_plan: Callable[[], Plan], workers: int) -> None:
    """A worker process: its share of the cores, the comparison's data and plan, loaded once."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    _WORKER["plan"] = worker_plan()


def _worker_run(sampler: str, seed: int, position: str, cost_budget: float | None) -> dict[str, Any]:
    _, record = do_run(_WORKER["plan"], sampler, seed, position, _say, cost_budget)
    return record


def reference_sampler(samplers: Sequence[str]) -> str | None:
    """The progressive sampler whose spending sets TPE's and random search's compute budget."""
    return next((x for x in samplers if x in PROGRESSIVE), None)


def analyse(plan: Plan, studies: Sequence[optuna.Study], runs: list[dict[str, Any]], samplers: Sequence[str],
            target: float | None, ranking_n: int, command: str, options: dict[str, Any],
            say: Callable[[str], None]) -> dict[str, Any]:
    """Target, summaries, ranking report, conclusions and plots: everything results.json holds."""
    if target is not None:
        rule = "given with --target"
    else:
        target, rule = default_target(runs), "the median over all runs of the final best full-size supernet accuracy"
    for r in runs:
        r["trials_to_target"] = None if target is None else trials_to_reach(r["curve"], target)
    summary = summarise(samplers, runs)
    ranking_settings = {**plan.final, "seed": 0}
    ranked = ranking_report(studies, plan.space, plan.data, ranking_n, ranking_settings,
                            plan.out / "ranking.json", say)
    if ranked is not None:
        ranked["final_weights"] = final_weight_rankings(plan, studies, runs, ranked["supernet"]["rows"], say)
        ranked["markdown"] += mechanism_ranking_table(
            ranked["final_weights"], ranked["supernet"]["rows"], ranked["surrogate"],
            {x: plan.settings(x) for x in samplers})
        for study in studies:  # each run's dashboard note carries the comparison's ranking report too
            append_to_study_note(study, f"*Pooled over the {len(studies)} runs of the comparison in "
                                        f"`{plan.out}` ({study.study_name} is one).*\n\n" + ranked["markdown"])
    test_images = len(plan.data.test_x)
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT, "command": command,
        "settings": {**options, "space": plan.space.spec(),
                     "data_seed": DATA_SEED},  # "space": the space's full spec, not only its kind
        "final": plan.final, "device": str(plan.data.device), "budget": plan.budget,
        "test_images": test_images, "target": target, "target_rule": rule,
        "samplers": summary, "runs": runs, "paired": paired_differences(summary),
        "search_settings": {x: plan.settings(x).to_dict() for x in samplers},
        "compute_reference": reference_sampler(samplers) if plan.budget_kind == "compute" else None,
        "ranking": None if ranked is None else {k: v for k, v in ranked.items() if k != "key"},
        "conclusions": conclusions(summary, target, rule, plan.budget, test_images, ranked),
    }
    results["plots"] = write_plots(plan.out, runs, samplers, target, studies, plan.space.max_level)
    return results
