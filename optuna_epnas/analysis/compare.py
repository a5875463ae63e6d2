"""``epnas compare``: EPNAS vs PNAS vs TPE vs random search, same space, objective and trial budget.

Every (sampler, seed) run is a study ``<sampler>-seed<k>`` in ``DIR/studies.db`` with its own fresh
supernet (checkpointed beside the study), set up exactly as ``epnas search`` sets up a search
(:func:`optuna_epnas.search.open_search`, shared with it). Random search here shares weights too: it
is the hard baseline of the weight-sharing literature, not random architectures trained alone. After each search the
``--top`` distinct full-size architectures by supernet accuracy are trained stand-alone from scratch;
the run's chosen architecture is the one with the best stand-alone *validation* accuracy, and its
*test* error is what the comparison reports. ``DIR/results.md`` (tables, plots, conclusions) and
``DIR/results.json`` hold the outcome. Re-running the same command skips finished runs, resumes an
interrupted one and reuses cached stand-alone results. What the runs measured and how it is shown
(summaries, conclusions, plots, ``results.md``) is :mod:`optuna_epnas.analysis.report`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import os
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_epnas.analysis import ranking
from optuna_epnas.argtypes import (
    accuracy, add_data_arguments, load_data, non_negative_int, positive_int,
)
from optuna_epnas.analysis.report import (
    best_so_far, choose_by_validation, conclusions, default_target, fmt_acc, mechanism_ranking_table,
    paired_differences, results_markdown, sampler_of,
    sampler_table, search_seconds, summarise, surrogate_table, top_architectures, trials_to_reach, write_plots,
)
from optuna_epnas.data import DeviceData, available_datasets
from optuna_epnas.export import ModelSpec
from optuna_epnas.objective import checkpoint_path_for
from optuna_epnas.sampler.schedule import planned_trials
from optuna_epnas.cost import cumulative_cost, total_cost
from optuna_epnas.search import (
    BASELINES, PROGRESSIVE, SAMPLER_NAMES, Progress, SearchSettings, add_search_arguments, add_space_arguments,
    finished_trials, make_objective, make_space, open_search, resolve_settings, settings_from_args,
)
from optuna_epnas.spaces import MicroSpace, SearchSpace
from optuna_epnas.train import DEFAULT_CHANNELS, _HelpFormatter, _seeded, train_final

RESULTS_FORMAT = "optuna_epnas.analysis.compare/1"
RUN_ATTR = "compare:run"  # study user attribute: the settings a run was made with (checked on resume)
DATA_SEED = 0  # one train/val split for every run: all samplers are judged on the same images
DEFAULT_FINAL_CELLS = 3  # micro: normal cells per stage in stand-alone training, as `epnas train`
#: ``train_final``'s SGD settings (its defaults; lr cosine-decayed to 0), which stand-alone training uses.
FINAL_SCHEDULE = {name: inspect.signature(train_final).parameters[name].default
                  for name in ("lr", "batch_size", "momentum", "weight_decay")}


# -- stand-alone training, cached per run ------------------------------------------------------------
def train_standalone(space: SearchSpace, arch: str, data: DeviceData, settings: dict[str, Any]) -> dict[str, Any]:
    """Train ``arch`` as a stand-alone network from scratch: seeded init and data order, and
    ``train_final``'s schedule, the one the ranking report's stand-alone networks get too."""
    spec = ModelSpec(space=space.spec(), arch=arch, num_classes=data.num_classes, in_channels=data.in_channels,
                     channels=settings["channels"], cells=settings["cells"])
    model = _seeded(settings["seed"], spec.build)
    result = train_final(model, data, epochs=settings["epochs"], seed=settings["seed"])
    return {"val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy,
            "test_error": 1.0 - result.test_accuracy, "params": result.params, "seconds": result.seconds}


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


def _write_json(path: Path, value: Any) -> None:
    """Atomically: a killed run leaves the previous file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def standalone_results(
    run: str, candidates: list[dict[str, Any]], space: SearchSpace, data: DeviceData, settings: dict[str, Any],
    cache: Path, say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Each candidate with its stand-alone numbers; trained ones are read from ``cache`` (same settings)."""
    stored = _read_json(cache, {"run": run, "trained": []})
    done = {(e["arch"], json.dumps(e["settings"], sort_keys=True)): e for e in stored["trained"]}
    fingerprint = json.dumps(settings, sort_keys=True)
    out = []
    for c in candidates:
        entry = done.get((c["arch"], fingerprint))
        if entry is None:
            entry = {"arch": c["arch"], "settings": settings, **train_standalone(space, c["arch"], data, settings)}
            stored["trained"].append(entry)
            _write_json(cache, stored)  # after every training: an interrupted run keeps what it trained
            say(f"  stand-alone {run} #{c['rank']}/{len(candidates)}: supernet {c['supernet_accuracy']:.4f} -> "
                f"val {entry['val_accuracy']:.4f}, test error {100 * entry['test_error']:.2f}% "
                f"({entry['params']:,} parameters, {entry['seconds']:.1f}s)  {c['arch']}")
        else:
            say(f"  stand-alone {run} #{c['rank']}/{len(candidates)}: cached (val {entry['val_accuracy']:.4f}, "
                f"test error {100 * entry['test_error']:.2f}%)")
        out.append({**c, **{k: entry[k] for k in ("val_accuracy", "test_accuracy", "test_error", "params", "seconds")}})
    return out


# -- the ranking report (optuna_epnas.analysis.ranking), cached ------------------------------------------------
def ranking_report(
    studies: Sequence[optuna.Study], space: SearchSpace, data: DeviceData, n: int, settings: dict[str, Any],
    cache: Path, say: Callable[[str], None],
) -> dict[str, Any] | None:
    """Supernet vs stand-alone rank correlation over the pooled full-size trials of every run (spread
    over supernet accuracy), and the surrogate's held-out rank correlation of each EPNAS/PNAS run.

    Cached in ``cache`` with the trials and settings it was made from: a re-run trains nothing again.
    None when ``n`` is 0.
    """
    if n == 0:
        return None
    full = {s.study_name: [t for t in s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                           if t.user_attrs.get("level") == space.max_level] for s in studies}
    key = {"n": n, "settings": settings,
           "trials": sorted([name, t.number, t.value] for name, ts in full.items() for t in ts)}
    cached = _read_json(cache, None)
    if cached is not None and cached.get("key") == key:
        say("ranking report: cached")
        return cached
    picked = len(ranking.spread_trials(list(studies), space.max_level, n))
    if picked == 0:
        say("ranking report: skipped, no run measured a full-size architecture")
        return None
    say(f"ranking report: training {picked} of the runs' pooled full-size architectures stand-alone "
        "(spread over supernet accuracy)")

    def progress(i: int, total: int, row: dict[str, Any]) -> None:
        say(f"  ranking [{i}/{total}] {row['study']}#{row['trial']}: supernet {row['supernet_accuracy']:.4f} -> "
            f"val {row['standalone_val_accuracy']:.4f}, test {row['standalone_test_accuracy']:.4f} "
            f"({row['seconds']:.1f}s)")

    supernet = ranking.supernet_vs_standalone(list(studies), space, data, n=n, epochs=settings["epochs"],
                                              channels=settings["channels"], cells=settings["cells"],
                                              seed=settings["seed"], progress=progress)
    surrogate = {s.study_name: ranking.surrogate_heldout(s) for s in studies
                 if sampler_of(s.study_name) in PROGRESSIVE}
    report = {
        "key": key, "supernet": {**supernet[0].to_dict(), "rows": supernet[1]}, "surrogate": surrogate,
        "markdown": ranking.ranking_markdown(supernet, None, {k: settings[k] for k in ("epochs", "channels", "seed")})
        + surrogate_table(surrogate),
    }
    report = _jsonable(report)  # as the cache gives it back: NaN -> None
    _write_json(cache, report)
    return report


def final_weight_rankings(plan: Plan, studies: Sequence[optuna.Study], runs: Sequence[dict[str, Any]],
                          rows: Sequence[dict[str, Any]], say: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Each run's supernet, as its search left it, on the ranking report's architectures.

    The same architectures (trained stand-alone once) are evaluated on every run's final weights
    (evaluation only, on the re-scoring subset of the validation split), so runs made with and
    without warm-up or re-scoring are judged on equal terms: Kendall τ against the stand-alone test
    accuracy. Cheap (no training), so not cached. A run without its checkpoint is left out.
    """
    keys = [r["arch"] for r in rows]
    test = [r["standalone_test_accuracy"] for r in rows]
    out: dict[str, dict[str, Any]] = {}
    for study, run in zip(studies, runs):
        path = checkpoint_path_for(plan.storage, study.study_name)
        if path is None or not path.exists():
            say(f"final-weight ranking: {study.study_name} has no supernet checkpoint, left out")
            continue
        objective = make_objective(plan.space, plan.data, plan.settings(run["sampler"]), run["seed"])
        values, _ = objective.rescore(study, keys)
        out[study.study_name] = {"sampler": run["sampler"], "seed": run["seed"], "values": values,
                                 **ranking.rank_correlation(values, test).to_dict()}
    return out


def _jsonable(value: Any) -> Any:
    """Plain JSON values (NaN -> None) for the JSON files."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


# -- one run: search, then its top architectures stand-alone -----------------------------------------
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


def choose_and_retest(plan: Plan, run: str, seed: int, trials: Sequence[FrozenTrial], cache: Path,
                      say: Callable[[str], None], view: str = "") -> dict[str, Any]:
    """The top architectures of ``trials`` stand-alone (training seed ``seed``), the one chosen by
    validation accuracy, and its test error averaged over ``plan.final_seeds`` training seeds."""
    top = top_architectures(trials, plan.space.max_level, plan.top)
    candidates = standalone_results(run, top, plan.space, plan.data, {**plan.final, "seed": seed}, cache, say)
    chosen = choose_by_validation(candidates)
    out: dict[str, Any] = {"candidates": candidates, "chosen": None, "test_error": None, "test_errors": []}
    if chosen is None:
        say(f"run {run}: no full-size architecture within the budget, nothing to train stand-alone")
        return out
    errors = [chosen["test_error"]]
    for extra in range(1, plan.final_seeds):  # the same network, other initialisations and data orders
        again = standalone_results(run, [{**chosen, "rank": f"{chosen['rank']}, training seed {seed + 1000 * extra}"}],
                                   plan.space, plan.data, {**plan.final, "seed": seed + 1000 * extra}, cache, say)
        errors.append(again[0]["test_error"])
    out.update(chosen=chosen["rank"], test_error=float(np.mean(errors)), test_errors=errors)
    say(f"run {run}{view}: chosen #{chosen['rank']} by stand-alone validation accuracy {chosen['val_accuracy']:.4f}: "
        f"test error {100 * out['test_error']:.2f}% (mean of {len(errors)} training seeds: "
        f"{', '.join(f'{100 * e:.2f}' for e in errors)})")
    return out


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
        search.run([progress])
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


# -- the `epnas compare` command -----------------------------------------------------------------------
def sampler_list(text: str) -> tuple[str, ...]:
    """``epnas,random`` -> ('epnas', 'random'): known names, each once, in the order given."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in SAMPLER_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown sampler(s) {unknown or [text]}; choose from {','.join(SAMPLER_NAMES)}")
    return names


#: The options that make a comparison, in the parser's order: `results.md` rebuilds the command from them.
SETTING_OPTIONS = (
    "space", "layers", "blocks", "cells", "ops", "dataset", "data_root", "max_train", "image_size", "samplers",
    "seeds", "budget_kind", "budget", "k", "iterations", "tau_start", "tau_end", "score", "acquisition", "beta",
    "ensemble", "parent_weight", "diverse", "rescore", "warmup_epochs", "epochs", "channels", "batch_size", "lr",
    "top", "final_epochs", "final_channels", "final_cells", "final_seeds", "target", "ranking_n", "out", "device",
)


def add_compare_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``compare`` to the subparsers object of the ``epnas`` parser; returns the subparser."""
    c = commands.add_parser(
        "compare", help="EPNAS vs PNAS vs TPE vs random search: same space, objective and budget, over seeds",
        description="Run every sampler on the same space, objective settings and trial budget, each seed with its "
                    "own fresh supernet; train each run's top architectures stand-alone; write results.md, "
                    "results.json and plots into --out. Re-running the same command resumes it.",
        formatter_class=_HelpFormatter,
    )
    add_space_arguments(c.add_argument_group("search space (as epnas search)"))
    data = c.add_argument_group("data")
    add_data_arguments(data, available_datasets())
    runs = c.add_argument_group("runs")
    runs.add_argument("--samplers", type=sampler_list, default=BASELINES,
                      help=f"comma-separated, of {','.join(SAMPLER_NAMES)} (default: {','.join(BASELINES)})")
    runs.add_argument("--seeds", type=positive_int, default=3, help="runs per sampler, seeds 0..N-1")
    runs.add_argument("--budget-kind", choices=("trials", "compute"), default="trials",
                      help="trials: every sampler gets --budget finished trials; compute: EPNAS/PNAS variants run "
                           "their schedule, TPE and random run until they have spent what the first of them in "
                           "--samplers spent with the same seed (multiply-adds, optuna_epnas.cost), and each run is "
                           "also judged at --budget trials")
    runs.add_argument("--budget", type=positive_int, default=None,
                      help="finished trials per run, every sampler (default: the trials the EPNAS schedule plans)")
    add_search_arguments(c.add_argument_group("search (as epnas search)"))
    final = c.add_argument_group("stand-alone training (train_final's schedule, as epnas train's defaults)")
    final.add_argument("--top", type=positive_int, default=3,
                       help="distinct full-size architectures per run, best supernet accuracy first")
    final.add_argument("--final-epochs", type=positive_int, default=30, help="epochs from scratch")
    final.add_argument("--final-channels", type=positive_int, default=None,
                       help=f"width (default: {DEFAULT_CHANNELS['macro']} macro, {DEFAULT_CHANNELS['micro']} micro)")
    final.add_argument("--final-cells", type=positive_int, default=DEFAULT_FINAL_CELLS,
                       help="micro: normal cells per stage")
    final.add_argument("--final-seeds", type=positive_int, default=2,
                       help="training seeds of each run's chosen network; its test error is their mean")
    report = c.add_argument_group("report")
    report.add_argument("--target", type=accuracy, default=None,
                        help="supernet accuracy for 'trials to reach' (default: the median over all runs of the "
                             "final best full-size supernet accuracy)")
    report.add_argument("--ranking-n", type=non_negative_int, default=20,
                        help="pooled full-size architectures trained stand-alone for the ranking report (0: skip)")
    report.add_argument("--out", default="epnas-compare", help="folder of studies.db, results.md, results.json, plots")
    c.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    c.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    c.add_argument("--workers", type=positive_int, default=1,
                   help="runs at once, each in its own process with its own study and supernet on the one storage "
                        "(same results as 1; each takes its share of the CPU cores)")
    return c


def command_line(args: argparse.Namespace) -> str:
    """The ``epnas compare`` command with every setting spelled out."""
    parts = ["epnas", "compare"]
    for name in SETTING_OPTIONS:
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):  # --rescore / --no-rescore
            parts.append(flag if value else f"--no-{flag[2:]}")
            continue
        if isinstance(value, (tuple, list)):
            value = ",".join(value)
        parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def _check(args: argparse.Namespace) -> None:
    """What argparse checks, again, for a Namespace made in Python."""
    if not args.samplers or any(s not in SAMPLER_NAMES for s in args.samplers):
        raise ValueError(f"--samplers must name some of {','.join(SAMPLER_NAMES)}, got {args.samplers!r}")
    for name in ("seeds", "top", "final_epochs", "final_seeds", *(("workers",) if hasattr(args, "workers") else ())):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
    if args.budget_kind not in ("trials", "compute"):
        raise ValueError(f"--budget-kind must be trials or compute, got {args.budget_kind!r}")
    if args.budget_kind == "compute" and not any(x in PROGRESSIVE for x in args.samplers):
        raise ValueError("--budget-kind compute gives TPE and random search what an EPNAS/PNAS schedule spends: "
                         f"name one of {','.join(PROGRESSIVE)} in --samplers")
    resolve_settings("epnas", settings_from_args(args))  # bad values in a Namespace made in Python
    if len(getattr(args, "objectives", None) or ("accuracy",)) > 1:
        raise ValueError("epnas compare judges one objective (the chosen network's test error); for accuracy and "
                         "a cost at equal compute, run python studies/pareto_compare.py")
    if args.budget is not None and args.budget < 1:
        raise ValueError(f"--budget must be a positive integer, got {args.budget!r}")
    if args.ranking_n < 0:
        raise ValueError(f"--ranking-n must be 0 or more, got {args.ranking_n!r}")
    if args.target is not None and not 0.0 < args.target <= 1.0:
        raise ValueError(f"--target must be an accuracy in (0, 1], got {args.target!r}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")


def compare_command(args: argparse.Namespace) -> int:
    """``epnas compare``: see :func:`add_compare_parser` for the options."""
    _check(args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import matplotlib

    matplotlib.use("Agg")  # a command writing PNG files: never a window

    def say(line: str) -> None:
        print(line, flush=True)

    space = make_space(args)
    data = load_data(args, args.dataset, DATA_SEED)
    plan = make_plan(args, space, data)
    settings = plan.settings("epnas")
    total, planned = len(args.samplers) * args.seeds, planned_trials(space, settings.k, settings.iterations)
    say(f"epnas compare: {', '.join(args.samplers)} × seeds 0..{args.seeds - 1} on {space!r} "
        f"({space.cardinality():.3g} architectures), {args.dataset} on {data.device} ({len(data.train_x)} train / "
        f"{len(data.val_x)} val / {len(data.test_x)} test images)\n"
        + (f"{total} runs of {plan.budget} trials each" + ("" if plan.budget == planned else
                                                           f" (the EPNAS schedule plans {planned})")
           if plan.budget_kind == "trials" else
           f"{total} runs at equal compute: schedules run to their end, TPE/random spend what "
           f"{reference_sampler(args.samplers)} spent (judged at {plan.budget} trials too)")
        + f", stand-alone top {args.top} per run; everything in {plan.out}/")

    studies, runs = run_all(args, plan, say)
    rank = {sampler: i for i, sampler in enumerate(args.samplers)}  # report in the order given
    pairs = sorted(zip(studies, runs), key=lambda p: (p[1]["seed"], rank[p[1]["sampler"]]))
    studies, runs = [p[0] for p in pairs], [p[1] for p in pairs]

    results = analyse(args, plan, studies, runs, say)
    out = plan.out
    _write_json(out / "results.json", _jsonable(results))
    (out / "results.md").write_text(results_markdown(results))
    say("\n" + "\n".join(sampler_table(results["samplers"], plan.budget)) + "\n\n"
        + "\n".join(f"- {line}" for line in results["conclusions"]))
    say(f"\nwrote {out / 'results.md'}, {out / 'results.json'} and {len(results['plots'])} plots; "
        f"studies in {out / 'studies.db'} (epnas dashboard --storage sqlite:///{out / 'studies.db'})")
    return 0


def run_all(args: argparse.Namespace, plan: Plan, say: Callable[[str], None]
            ) -> tuple[list[optuna.Study], list[dict[str, Any]]]:
    """Every (sampler, seed) run, seed-major (an interrupted comparison has every sampler at equal
    seeds), the compute reference of a seed before its TPE/random runs; over ``args.workers``
    processes when more than 1, each run in one of them with its own study and supernet."""
    order = sorted(args.samplers, key=lambda x: x not in PROGRESSIVE)  # the compute reference runs first
    jobs = [(sampler, seed) for seed in range(args.seeds) for sampler in order]
    reference = reference_sampler(args.samplers)
    records: dict[tuple[str, int], dict[str, Any]] = {}

    def cost_budget(sampler: str, seed: int) -> float | None:
        if plan.budget_kind == "compute" and sampler not in PROGRESSIVE:
            return records[(reference, seed)]["total_cost_macs"]
        return None

    def ready(sampler: str, seed: int) -> bool:
        return not (plan.budget_kind == "compute" and sampler not in PROGRESSIVE) or (reference, seed) in records

    position = {job: f"({i + 1}/{len(jobs)})" for i, job in enumerate(jobs)}
    if getattr(args, "workers", 1) <= 1:
        studies = {}
        for sampler, seed in jobs:
            studies[(sampler, seed)], records[(sampler, seed)] = do_run(
                plan, sampler, seed, position[(sampler, seed)], say, cost_budget(sampler, seed))
        return [studies[j] for j in jobs], [records[j] for j in jobs]

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    waiting, running = list(jobs), {}
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_start, initargs=(args,)) as pool:
        while waiting or running:
            for job in [j for j in waiting if ready(*j)][:max(0, args.workers - len(running))]:
                waiting.remove(job)
                running[pool.submit(_worker_run, *job, position[job], cost_budget(*job))] = job
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                records[running.pop(future)] = future.result()  # a run's error ends the comparison here
    studies = [optuna.load_study(study_name=f"{sampler}-seed{seed}", storage=plan.storage) for sampler, seed in jobs]
    return studies, [records[j] for j in jobs]


_WORKER: dict[str, Any] = {}


def _worker_start(args: argparse.Namespace) -> None:
    """A ``--workers`` process: its share of the cores, the comparison's data and plan, loaded once."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.workers))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    space = make_space(args)
    _WORKER["plan"] = make_plan(args, space, load_data(args, args.dataset, DATA_SEED))


def _worker_run(sampler: str, seed: int, position: str, cost_budget: float | None) -> dict[str, Any]:
    _, record = do_run(_WORKER["plan"], sampler, seed, position, lambda line: print(line, flush=True), cost_budget)
    return record


def reference_sampler(samplers: Sequence[str]) -> str | None:
    """The progressive sampler whose spending sets TPE's and random search's compute budget."""
    return next((x for x in samplers if x in PROGRESSIVE), None)


def make_plan(args: argparse.Namespace, space: SearchSpace, data: DeviceData) -> Plan:
    kind = "micro" if isinstance(space, MicroSpace) else "macro"
    defaults = resolve_settings("epnas", settings_from_args(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return Plan(
        # a long lock timeout: --workers processes write to this one SQLite file side by side
        space=space, data=data, storage=optuna.storages.RDBStorage(
            f"sqlite:///{(out / 'studies.db').resolve()}", engine_kwargs={"connect_args": {"timeout": 120}}),
        out=out,
        budget=args.budget or planned_trials(space, defaults.k, defaults.iterations),
        given=settings_from_args(args),
        final={"epochs": args.final_epochs, "channels": args.final_channels or DEFAULT_CHANNELS[kind],
               "cells": args.final_cells if kind == "micro" else None, "dataset": args.dataset,
               "max_train": args.max_train, "image_size": data.image_size, "data_seed": DATA_SEED,
               "device": str(data.device),
               "schedule": FINAL_SCHEDULE},
        top=args.top, quiet=args.quiet, max_train=args.max_train, budget_kind=args.budget_kind,
        final_seeds=args.final_seeds,
    )


def analyse(args: argparse.Namespace, plan: Plan, studies: Sequence[optuna.Study], runs: list[dict[str, Any]],
            say: Callable[[str], None]) -> dict[str, Any]:
    """Target, summaries, ranking report, conclusions and plots: everything results.json holds."""
    if args.target is not None:
        target, rule = args.target, "given with --target"
    else:
        target, rule = default_target(runs), "the median over all runs of the final best full-size supernet accuracy"
    for r in runs:
        r["trials_to_target"] = None if target is None else trials_to_reach(r["curve"], target)
    summary = summarise(args.samplers, runs)
    ranking_settings = {**plan.final, "seed": 0}
    ranked = ranking_report(studies, plan.space, plan.data, args.ranking_n, ranking_settings,
                            plan.out / "ranking.json", say)
    if ranked is not None:
        ranked["final_weights"] = final_weight_rankings(plan, studies, runs, ranked["supernet"]["rows"], say)
        ranked["markdown"] += mechanism_ranking_table(
            ranked["final_weights"], ranked["supernet"]["rows"], ranked["surrogate"],
            {x: plan.settings(x) for x in args.samplers})
        for study in studies:  # each run's dashboard note carries the comparison's ranking report too
            ranking.append_to_study_note(study, f"*Pooled over the {len(studies)} runs of the comparison in "
                                                f"`{plan.out}` ({study.study_name} is one).*\n\n" + ranked["markdown"])
    test_images = len(plan.data.test_x)
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT, "command": command_line(args),
        "settings": {**{k: getattr(args, k) for k in SETTING_OPTIONS}, "space": plan.space.spec(),
                     "data_seed": DATA_SEED},  # "space": the space's full spec, not only its kind
        "final": plan.final, "device": str(plan.data.device), "budget": plan.budget,
        "test_images": test_images, "target": target, "target_rule": rule,
        "samplers": summary, "runs": runs, "paired": paired_differences(summary),
        "search_settings": {x: plan.settings(x).to_dict() for x in args.samplers},
        "compute_reference": reference_sampler(args.samplers) if plan.budget_kind == "compute" else None,
        "ranking": None if ranked is None else {k: v for k, v in ranked.items() if k != "key"},
        "conclusions": conclusions(summary, target, rule, plan.budget, test_images, ranked),
    }
    results["plots"] = write_plots(plan.out, runs, args.samplers, target, studies, plan.space.max_level)
    return results
