"""``epnas compare``: EPNAS vs PNAS vs TPE vs random search, same space, objective and trial budget.

Every (sampler, seed) run is a study ``<sampler>-seed<k>`` in ``DIR/studies.db`` with its own fresh
supernet (checkpointed beside the study), set up exactly as ``epnas search`` sets up a search
(:func:`open_search`, shared with it). Random search here shares weights too: it is the hard baseline
of the weight-sharing literature, not random architectures trained alone. After each search the
``--top`` distinct full-size architectures by supernet accuracy are trained stand-alone from scratch;
the run's chosen architecture is the one with the best stand-alone *validation* accuracy, and its
*test* error is what the comparison reports. ``DIR/results.md`` (tables, plots, conclusions) and
``DIR/results.json`` hold the outcome. Re-running the same command skips finished runs, resumes an
interrupted one and reuses cached stand-alone results.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import os
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_epnas import ranking
from optuna_epnas.argtypes import positive_float, positive_int
from optuna_epnas.dashboard import DashboardRecorder
from optuna_epnas.data import DeviceData, available_datasets, load_dataset
from optuna_epnas.export import ModelSpec
from optuna_epnas.objective import SupernetObjective, checkpoint_path_for
from optuna_epnas.sampler import EPNASSampler
from optuna_epnas.schedule import planned_trials
from optuna_epnas.spaces import MicroSpace, SearchSpace
from optuna_epnas.train import DEFAULT_CHANNELS, _seeded, train_final

SAMPLER_NAMES = ("epnas", "pnas", "tpe", "random")
PROGRESSIVE = ("epnas", "pnas")
RESULTS_FORMAT = "optuna_epnas.compare/1"
RUN_ATTR = "compare:run"  # study user attribute: the settings a run was made with (checked on resume)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
DATA_SEED = 0  # one train/val split for every run: all samplers are judged on the same images
DEFAULT_FINAL_CELLS = 3  # micro: normal cells per stage in stand-alone training, as `epnas train`
#: ``train_final``'s SGD settings (its defaults; lr cosine-decayed to 0), which stand-alone training uses.
FINAL_SCHEDULE = {name: inspect.signature(train_final).parameters[name].default
                  for name in ("lr", "batch_size", "momentum", "weight_decay")}


# -- a search, set up as `epnas search` sets it up -----------------------------------------------------
def make_sampler(name: str, space: SearchSpace, *, k: int, iterations: int, temperature: tuple[float, float],
                 ensemble: int, seed: int) -> optuna.samplers.BaseSampler:
    """EPNAS/PNAS (the progressive sampler in either selection mode), TPE or random, seeded."""
    if name in PROGRESSIVE:
        return EPNASSampler(space, k=k, iterations=iterations, selection=name, temperature=temperature, seed=seed,
                            surrogate_ensemble=ensemble)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLER_NAMES)}")


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE and PRUNED trials in trial order: what a trial budget counts (failed ones are retried)."""
    return sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)


@dataclass
class Search:
    """A study, its sampler and its supernet objective, ready to run or resume.

    ``budget_is_exact``: stop at exactly ``budget`` finished trials, whatever the sampler (a
    progressive sampler stops mid-schedule or goes on into further iterations). Otherwise a
    progressive sampler runs its schedule to the end (``budget`` is then its planned trials).
    """

    study: optuna.Study
    sampler: optuna.samplers.BaseSampler
    objective: SupernetObjective
    space: SearchSpace
    budget: int
    budget_is_exact: bool
    checkpoint: Path | None

    @property
    def progressive(self) -> bool:
        return isinstance(self.sampler, EPNASSampler)

    @property
    def finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED))

    def is_done(self) -> bool:
        if self.progressive and not self.budget_is_exact:
            assert isinstance(self.sampler, EPNASSampler)
            return self.sampler.is_finished(self.study)
        return self.finished >= self.budget

    def run(self, callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = ()) -> None:
        """Run what is left (nothing when done), with the dashboard notes ``epnas search`` writes."""
        recorder = DashboardRecorder(planned_trials=self.budget)  # trial notes + drawings, a study note
        if not self.is_done():
            self.study.optimize(self.objective, callbacks=[*callbacks, recorder, self._stop_rule()])
        recorder.write_study_note(self.study)  # final numbers, also when nothing was left to run

    def _stop_rule(self) -> Callable[[optuna.Study, FrozenTrial], None]:
        if self.progressive and not self.budget_is_exact:
            def stop_when_finished(study: optuna.Study, trial: FrozenTrial) -> None:
                if self.is_done():
                    study.stop()

            return stop_when_finished
        return optuna.study.MaxTrialsCallback(self.budget, states=FINISHED)


def open_search(
    space: SearchSpace, data: DeviceData, sampler: str, storage: str | optuna.storages.BaseStorage, study_name: str,
    *, k: int = 25, iterations: int = 3, temperature: tuple[float, float] = (10.0, 1.0), ensemble: int = 1,
    seed: int = 0, epochs: int = 3, channels: int = 24, batch_size: int = 128, lr: float = 0.05,
    budget: int | None = None,
) -> Search:
    """Create or load the study and attach its supernet (``epnas search`` and ``epnas compare``).

    ``budget=None``: a progressive sampler runs its schedule, TPE/random get as many trials as the
    schedule plans; an int: every sampler gets exactly that many finished trials. A checkpoint or
    study made with other settings fails here, before any trial.
    """
    made = make_sampler(sampler, space, k=k, iterations=iterations, temperature=temperature, ensemble=ensemble,
                        seed=seed)
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", sampler=made,
                                load_if_exists=True)
    objective = SupernetObjective(space, data, epochs=epochs, channels=channels, batch_size=batch_size, lr=lr,
                                  seed=seed)
    objective.attach(study)
    return Search(study=study, sampler=made, objective=objective, space=space,
                  budget=budget or planned_trials(space, k, iterations), budget_is_exact=budget is not None,
                  checkpoint=checkpoint_path_for(storage, study_name))


# -- what a run measured -----------------------------------------------------------------------------
def best_so_far(trials: Sequence[FrozenTrial], max_level: int) -> list[float | None]:
    """Per finished trial: the best full-size supernet accuracy up to it (None before the first)."""
    best: float | None = None
    curve: list[float | None] = []
    for t in trials:
        if t.state == TrialState.COMPLETE and t.user_attrs.get("level") == max_level and t.value is not None:
            best = t.value if best is None else max(best, t.value)
        curve.append(best)
    return curve


def trials_to_reach(curve: Sequence[float | None], target: float) -> int | None:
    """1-based count of finished trials after which the best-so-far reached ``target``; None: never."""
    for i, value in enumerate(curve, start=1):
        if value is not None and value >= target - 1e-12:
            return i
    return None


def top_architectures(trials: Sequence[FrozenTrial], max_level: int, n: int) -> list[dict[str, Any]]:
    """The ``n`` distinct full-size architectures with the best supernet accuracy.

    An architecture measured more than once counts with its latest measurement, as the surrogate
    reads it: the supernet's weights moved on since the earlier ones.
    """
    latest: dict[str, FrozenTrial] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if t.state == TrialState.COMPLETE and t.user_attrs.get("level") == max_level and "arch" in t.user_attrs:
            latest[t.user_attrs["arch"]] = t
    ranked = sorted(latest.values(), key=lambda t: (-t.value, t.number))[:n]
    return [{"rank": i, "arch": t.user_attrs["arch"], "trial": t.number, "supernet_accuracy": t.value,
             "params_search": t.user_attrs.get("params")} for i, t in enumerate(ranked, start=1)]


def search_seconds(study: optuna.Study) -> float:
    """Sum of trial durations (sampling + supernet training), failed trials included: a resumed run
    counts the work done, not the time it lay interrupted."""
    return round(sum((t.datetime_complete - t.datetime_start).total_seconds()
                     for t in study.get_trials(deepcopy=False)
                     if t.datetime_start is not None and t.datetime_complete is not None), 3)


def choose_by_validation(candidates: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The candidate with the best stand-alone validation accuracy; ties go to the better supernet rank.

    Never by test accuracy: the test split only reports the chosen architecture's error.
    """
    trained = [c for c in candidates if c.get("val_accuracy") is not None]
    return min(trained, key=lambda c: (-c["val_accuracy"], c["rank"])) if trained else None


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


# -- the ranking report (optuna_epnas.ranking), cached ------------------------------------------------
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
                 if _sampler_of(s.study_name) in PROGRESSIVE}
    report = {
        "key": key, "supernet": {**supernet[0].to_dict(), "rows": supernet[1]}, "surrogate": surrogate,
        "markdown": ranking.ranking_markdown(supernet, None, {k: settings[k] for k in ("epochs", "channels", "seed")})
        + _surrogate_table(surrogate),
    }
    report = _jsonable(report)  # as the cache gives it back: NaN -> None
    _write_json(cache, report)
    return report


def _surrogate_table(surrogate: dict[str, list[dict[str, Any]]]) -> str:
    """One row per (progressive run, level): the surrogate's held-out τ over all iterations."""
    lines = ["", "### Surrogate predictions on held-out architectures (EPNAS/PNAS runs)", ""]
    rows = [(run, r) for run, rs in surrogate.items() for r in rs if r["iteration"] is None]
    if not rows:
        return "\n".join(lines + ["No EPNAS/PNAS run with predictions past level 1.", ""])
    lines += ["Kendall τ of the LSTM's prediction (made before the trial) and the measured supernet accuracy, over "
              "each level's architectures the surrogate was not trained on, all iterations pooled (per iteration: "
              "results.json).", "", "| run | level | held-out n | Kendall τ | p |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {run} | {r['level']} | {r['n']} | {_num(r['kendall_tau'], '+.3f')} | {_num(r['kendall_p'], '.2g')} |"
              for run, r in rows]
    return "\n".join(lines + [""])


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


def _num(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _sampler_of(run: str) -> str:
    return run.rsplit("-seed", 1)[0]


# -- one run: search, then its top architectures stand-alone -----------------------------------------
@dataclass
class Plan:
    """What every run of a comparison shares."""

    space: SearchSpace
    data: DeviceData
    storage: optuna.storages.RDBStorage  # one for all runs: a storage per study re-checks the schema each time
    out: Path
    budget: int
    search: dict[str, Any]  # open_search keywords: the same for every run but the seed
    final: dict[str, Any]  # stand-alone training settings but the seed
    top: int
    quiet: bool
    max_train: int | None = None


def run_settings(plan: Plan, sampler: str, seed: int) -> dict[str, Any]:
    """What a run's study must have been made with to be resumed (JSON-normalised: tuples -> lists)."""
    return json.loads(json.dumps({
        "sampler": sampler, "seed": seed, "budget": plan.budget, "space": plan.space.spec(),
        "dataset": plan.data.name, "max_train": plan.max_train, "data_seed": DATA_SEED, **plan.search}))


def _check_run_settings(study: optuna.Study, settings: dict[str, Any]) -> None:
    stored = study.user_attrs.get(RUN_ATTR)
    if stored is None:
        study.set_user_attr(RUN_ATTR, settings)
    elif stored != settings:
        diff = "; ".join(f"{k}: {stored.get(k)!r} there, {settings.get(k)!r} now"
                         for k in sorted(set(stored) | set(settings)) if stored.get(k) != settings.get(k))
        raise ValueError(f"run {study.study_name!r} was made with other settings ({diff}); re-run the same "
                         "command to resume the comparison, or use another --out")


def do_run(plan: Plan, sampler: str, seed: int, position: str,
           say: Callable[[str], None]) -> tuple[optuna.Study, dict[str, Any]]:
    """Search (or resume, or skip a finished search), then train its top architectures stand-alone."""
    study, record = search_run(plan, sampler, seed, position, say)
    top = top_architectures(finished_trials(study), plan.space.max_level, plan.top)
    record["candidates"] = standalone_results(record["run"], top, plan.space, plan.data, {**plan.final, "seed": seed},
                                              plan.out / "standalone" / f"{record['run']}.json", say)
    chosen = choose_by_validation(record["candidates"])
    record["chosen"] = None if chosen is None else chosen["rank"]
    record["test_error"] = None if chosen is None else chosen["test_error"]
    if chosen is None:
        say(f"run {record['run']}: no full-size architecture within the budget, nothing to train stand-alone")
    else:
        say(f"run {record['run']}: chosen #{chosen['rank']} by stand-alone validation accuracy "
            f"{chosen['val_accuracy']:.4f}: test error {100 * chosen['test_error']:.2f}%")
    return study, record


def search_run(plan: Plan, sampler: str, seed: int, position: str,
               say: Callable[[str], None]) -> tuple[optuna.Study, dict[str, Any]]:
    """The run's search, run, resumed or skipped when finished, and what it measured."""
    from optuna_epnas.cli import _Progress  # cli imports this module: imported here, not at the top

    name = f"{sampler}-seed{seed}"
    search = open_search(plan.space, plan.data, sampler, plan.storage, name, seed=seed, budget=plan.budget,
                         **plan.search)
    _check_run_settings(search.study, run_settings(plan, sampler, seed))
    done, skipped = search.finished, search.is_done()
    if not skipped:
        say(f"run {name} {position}: search " + (f"resuming at {done}/{plan.budget} trials" if done
                                                  else f"starting, {plan.budget} trials"))
        progress = _Progress(search.study, plan.space, plan.budget, search.sampler if search.progressive else None,
                             quiet=plan.quiet)
        search.run([progress])
    trials = finished_trials(search.study)
    curve = best_so_far(trials, plan.space.max_level)
    record: dict[str, Any] = {
        "run": name, "sampler": sampler, "seed": seed, "trials": len(trials),
        "failed": len(search.study.get_trials(deepcopy=False, states=(TrialState.FAIL,))),
        "best_supernet_accuracy": curve[-1] if curve else None, "curve": curve,
        "search_seconds": search_seconds(search.study),
    }
    say(f"run {name} {position}: search {'already ' if skipped else ''}done, {len(trials)} trials, best full-size "
        f"supernet accuracy {_acc(record['best_supernet_accuracy'])}, {record['search_seconds']:.0f}s of trials")
    return search.study, record


# -- numbers over seeds, and what they say -----------------------------------------------------------
def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None where undefined)."""
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def default_target(runs: Sequence[dict[str, Any]]) -> float | None:
    """The median over runs of the final best full-size supernet accuracy: about half the runs reach it."""
    bests = [r["best_supernet_accuracy"] for r in runs if r["best_supernet_accuracy"] is not None]
    return statistics.median(bests) if bests else None


def summarise(samplers: Sequence[str], runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per sampler, over its seeds: test error, trials to the target, search time, best supernet accuracy."""
    summary = {}
    for sampler in samplers:
        mine = sorted((r for r in runs if r["sampler"] == sampler), key=lambda r: r["seed"])
        errors = [r["test_error"] for r in mine if r["test_error"] is not None]
        bests = [r["best_supernet_accuracy"] for r in mine if r["best_supernet_accuracy"] is not None]
        reached = [r["trials_to_target"] for r in mine if r["trials_to_target"] is not None]
        summary[sampler] = {
            "runs": len(mine), "seeds": [r["seed"] for r in mine],
            "test_errors": [r["test_error"] for r in mine],
            **dict(zip(("test_error_mean", "test_error_std"), _mean_std(errors))),
            "trials_to_target": [r["trials_to_target"] for r in mine], "reached_target": len(reached),
            "trials_to_target_mean": _mean_std(reached)[0],
            **dict(zip(("search_seconds_mean", "search_seconds_std"), _mean_std([r["search_seconds"] for r in mine]))),
            **dict(zip(("best_supernet_mean", "best_supernet_std"), _mean_std(bests))),
        }
    return summary


def _label(sampler: str) -> str:
    return {"epnas": "EPNAS", "pnas": "PNAS", "tpe": "TPE", "random": "random"}.get(sampler, sampler)


def _pair_line(a: str, b: str, summary: dict[str, dict[str, Any]], test_images: int) -> str | None:
    sa, sb = summary[a], summary[b]
    if sa["test_error_mean"] is None or sb["test_error_mean"] is None:
        return None
    diff = 100 * (sa["test_error_mean"] - sb["test_error_mean"])
    word = "higher than" if diff > 0 else "lower than" if diff < 0 else "equal to"
    images = abs(diff) / 100 * test_images
    by = f" by {abs(diff):.2f} points (≈{images:.1f} of the {test_images} test images)" if diff else ""
    pairs = [(x, y) for x, y in zip(sa["test_errors"], sb["test_errors"]) if x is not None and y is not None]
    seeds = (f"; lower on {sum(x < y for x, y in pairs)} of {len(pairs)} seeds, higher on "
             f"{sum(x > y for x, y in pairs)}") if pairs else ""
    spreads = [s for s in (sa["test_error_std"], sb["test_error_std"]) if s is not None]
    if not spreads:
        verdict = "one seed each: no spread to compare the difference with"
    elif abs(diff) < 100 * max(spreads):
        verdict = "the difference is smaller than the spread, so these runs do not tell them apart"
    else:
        verdict = (f"the difference is larger than either spread (with {min(sa['runs'], sb['runs'])} seeds an "
                   "observation, not a significance test)")
    std = ", ".join(f"{_label(s)} {_pct(summary[s]['test_error_std'])}" for s in (a, b))
    return (f"{_label(a)}'s mean stand-alone test error is {word} {_label(b)}'s{by}{seeds}. Spread over seeds "
            f"(std, points): {std}; {verdict}.")


def conclusions(summary: dict[str, dict[str, Any]], target: float | None, target_rule: str, budget: int,
                test_images: int, ranking_result: dict[str, Any] | None) -> list[str]:
    """Plain sentences computed from the numbers; nothing they do not show."""
    lines = []
    with_error = sorted((s for s in summary if summary[s]["test_error_mean"] is not None),
                        key=lambda s: summary[s]["test_error_mean"])
    if with_error:
        lines.append("Mean stand-alone test error of the chosen architecture, lowest first: " + ", ".join(
            f"{_label(s)} {100 * summary[s]['test_error_mean']:.2f}%" for s in with_error)
            + f" (one test image is {100 / test_images:.2f} points).")
    for s in summary:
        if summary[s]["test_error_mean"] is None:
            lines.append(f"{_label(s)}: no run found a full-size architecture within {budget} trials.")
    reference = "random" if "random" in summary else next(iter(summary))
    pairs = [(s, reference) for s in summary if s != reference]
    if "epnas" in summary and "pnas" in summary and reference not in ("epnas", "pnas"):
        pairs.append(("epnas", "pnas"))
    lines += [line for a, b in pairs if (line := _pair_line(a, b, summary, test_images))]
    if target is not None:
        lines.append(f"Supernet accuracy target {target:.4f} ({target_rule}): " + "; ".join(
            f"{_label(s)} reached it in {v['reached_target']} of {v['runs']} runs"
            + (f" (after {', '.join(str(t) for t in v['trials_to_target'] if t is not None)} trials)"
               if v["reached_target"] else "") for s, v in summary.items()) + f", of {budget} each.")
    by_supernet = max((s for s in summary if summary[s]["best_supernet_mean"] is not None),
                      key=lambda s: summary[s]["best_supernet_mean"], default=None)
    if by_supernet is not None and with_error and by_supernet != with_error[0]:
        lines.append(f"The best mean supernet accuracy ({_label(by_supernet)}, "
                     f"{summary[by_supernet]['best_supernet_mean']:.4f}) did not give the lowest stand-alone test "
                     f"error ({_label(with_error[0])}): the higher supernet accuracy did not carry over to stand-alone "
                     "training here.")
    lines.append("Search time per run (sum of trial durations), mean: " + ", ".join(
        f"{_label(s)} {v['search_seconds_mean']:.0f} s" for s, v in summary.items()) + f"; {budget} trials each.")
    if ranking_result is not None:
        c = ranking_result["supernet"]
        if c["kendall_tau"] is None:
            lines.append(f"Supernet vs stand-alone ranking over {c['n']} pooled architectures: "
                         f"undefined ({c['note']}).")
        else:
            strength = ranking.strength(c["kendall_tau"])
            agreement = (f"{strength} disagreement (the order is inverted)"
                         if c["kendall_tau"] < 0 and strength != "no" else f"{strength} agreement")
            chance = ("not distinguishable from chance at this n (p ≥ 0.05)" if c["kendall_p"] >= 0.05
                      else "p < 0.05")
            lines.append(f"Supernet accuracy vs stand-alone test accuracy over {c['n']} pooled full-size "
                         f"architectures: Kendall τ = {c['kendall_tau']:+.2f} (p = {c['kendall_p']:.2g}), "
                         f"{agreement}, {chance}.")
    return lines


# -- plots --------------------------------------------------------------------------------------------
def _color(sampler: str) -> str:
    return f"C{SAMPLER_NAMES.index(sampler) if sampler in SAMPLER_NAMES else len(SAMPLER_NAMES)}"


def plot_best_so_far(runs: Sequence[dict[str, Any]], samplers: Sequence[str], target: float | None,
                     path: Path) -> Path:
    """Best-so-far full-size supernet accuracy vs finished trials: mean over seeds, band min to max."""
    from matplotlib.figure import Figure  # a Figure, not pyplot: no global state, no display needed
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    for sampler in samplers:
        curves = [r["curve"] for r in runs if r["sampler"] == sampler and r["curve"]]
        if not curves:
            continue
        width = max(len(c) for c in curves)
        values = np.full((len(curves), width), np.nan)
        for i, c in enumerate(curves):
            values[i, :len(c)] = [np.nan if v is None else v for v in c]
        seen = ~np.isnan(values).all(axis=0)  # trials before any run measured a full-size architecture: blank
        x = np.arange(1, width + 1)[seen]
        mean = np.nanmean(values[:, seen], axis=0)
        ax.plot(x, mean, color=_color(sampler), label=f"{_label(sampler)} (mean of {len(curves)})")
        ax.fill_between(x, np.nanmin(values[:, seen], axis=0), np.nanmax(values[:, seen], axis=0),
                        color=_color(sampler), alpha=0.2, linewidth=0)
    if target is not None:
        ax.axhline(target, color="0.4", linestyle="--", linewidth=1, label=f"target {target:.4f}")
    ax.set_xlabel("finished trials")
    ax.set_ylabel("best full-size supernet val accuracy so far")
    ax.set_title("Search progress (band: min to max over seeds)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.savefig(path, dpi=120)
    return path


def plot_test_error(runs: Sequence[dict[str, Any]], samplers: Sequence[str], path: Path) -> Path:
    """Stand-alone test error of each run's chosen architecture: a point per seed, the mean ± std."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.6 * len(samplers) + 2.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, sampler in enumerate(samplers):
        errors = [100 * r["test_error"] for r in runs if r["sampler"] == sampler and r["test_error"] is not None]
        if not errors:
            continue
        jitter = np.linspace(-0.12, 0.12, len(errors)) if len(errors) > 1 else np.zeros(1)
        ax.scatter(i + jitter, errors, color=_color(sampler), alpha=0.7, zorder=3, label="seeds" if i == 0 else None)
        mean, std = _mean_std(errors)
        ax.errorbar([i + 0.3], [mean], yerr=[[std or 0.0], [std or 0.0]], fmt="_", markersize=18, capsize=4,
                    color="black", zorder=4, label="mean ± std" if i == 0 else None)
    ax.set_xticks(range(len(samplers)), [_label(s) for s in samplers])
    ax.set_xlim(-0.6, len(samplers) - 0.4)
    ax.set_ylabel("stand-alone test error of the chosen architecture (%)")
    ax.set_title("Chosen architecture, trained from scratch")
    ax.grid(axis="y", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing to show when no run found a full-size architecture
        ax.legend(loc="best")
    fig.savefig(path, dpi=120)
    return path


def plot_history(study: optuna.Study, max_level: int, path: Path) -> Path:
    """Optuna's own optimization-history plot of one run's full-size trials.

    A progressive run's shallower trials are left out (copied into an in-memory study): their
    accuracies are not comparable, and the plot's best-value line would be a shallow one.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    full = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.user_attrs.get("level") == max_level]
    view = optuna.create_study(direction="maximize", study_name=study.study_name)
    view.add_trials(full)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_optimization_history(view, target_name="supernet val accuracy")
    ax.set_title(f"{study.study_name}: full-size trials (optuna.visualization)")
    ax.set_xlabel("full-size trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig = ax.figure
    fig.set_size_inches(7.5, 4.5)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


# -- results.md / results.json -------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _pm(mean: float | None, std: float | None, fmt: Callable[[float | None], str]) -> str:
    return fmt(mean) + ("" if std is None else f" ± {fmt(std)}")


def _acc(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _secs(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def sampler_table(summary: dict[str, dict[str, Any]], budget: int) -> list[str]:
    lines = ["| sampler | runs | stand-alone test error (%), mean ± std | per seed | trials to reach target "
             "(per seed; – not reached) | search time (s), mean ± std | "
             "best full-size supernet accuracy, mean ± std |",
             "|---|---:|---:|---|---|---:|---:|"]
    for s, v in summary.items():
        per_seed = " ".join(_pct(e) for e in v["test_errors"])
        reach = " ".join("–" if t is None else str(t) for t in v["trials_to_target"])
        lines.append(f"| {_label(s)} | {v['runs']} | {_pm(v['test_error_mean'], v['test_error_std'], _pct)} | "
                     f"{per_seed} | {reach} ({v['reached_target']}/{v['runs']}, of {budget}) | "
                     f"{_pm(v['search_seconds_mean'], v['search_seconds_std'], _secs)} | "
                     f"{_pm(v['best_supernet_mean'], v['best_supernet_std'], _acc)} |")
    return lines


def _code(arch: str) -> str:
    return "`" + arch.replace("|", "\\|") + "`"  # GFM tables: an escaped pipe, also inside code


def run_table(runs: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| run | trials | best supernet acc | trials to target | search (s) | chosen (supernet rank) | "
             "stand-alone val | stand-alone test error (%) | parameters | architecture |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        c = next((c for c in r["candidates"] if c["rank"] == r["chosen"]), None)
        lines.append(
            f"| {r['run']} | {r['trials']} | {_acc(r['best_supernet_accuracy'])} | "
            f"{'–' if r['trials_to_target'] is None else r['trials_to_target']} | {_secs(r['search_seconds'])} | "
            + (f"#{c['rank']} of {len(r['candidates'])} | {_acc(c['val_accuracy'])} | {_pct(c['test_error'])} | "
               f"{c['params']:,} | {_code(c['arch'])} |" if c else "– | – | – | – | – |"))
    return lines


def candidate_table(runs: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| run | supernet rank | supernet acc | stand-alone val | stand-alone test error (%) | chosen | "
             "architecture |",
             "|---|---:|---:|---:|---:|:---:|---|"]
    for r in runs:
        for c in r["candidates"]:
            chosen = "✓" if c["rank"] == r["chosen"] else ""
            lines.append(f"| {r['run']} | {c['rank']} | {_acc(c['supernet_accuracy'])} | {_acc(c['val_accuracy'])} | "
                         f"{_pct(c['test_error'])} | {chosen} | {_code(c['arch'])} |")
    return lines


def results_markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    space = s["space"]
    shape = (f"{space.get('num_layers')} layers" if space.get("space") == "macro"
             else f"{space.get('num_blocks')} blocks, {space.get('cells')} cells per stage")
    lines = [
        f"# {', '.join(_label(x) for x in s['samplers'])} on the {space.get('space')} space ({shape}), {s['dataset']}",
        "",
        f"Each sampler: {s['seeds']} seeds × {results['budget']} trials on its own fresh supernet "
        f"({s['epochs']} epochs per trial, {s['channels']} channels); random search shares weights too (the hard "
        f"baseline). Per run, the top {s['top']} distinct full-size architectures by supernet accuracy were trained "
        f"stand-alone from scratch ({results['final']['epochs']} epochs, {results['final']['channels']} channels); "
        "the **chosen** one has the best stand-alone *validation* accuracy, and its *test* error is reported. "
        f"Every run sees the same train/validation split (seed {DATA_SEED}); test split: {results['test_images']} "
        "images, never used to choose.",
        "",
        f"Supernet accuracy target: **{_acc(results['target'])}** ({results['target_rule']}).",
        "",
        "## Per sampler",
        "",
        *sampler_table(results["samplers"], results["budget"]),
        "",
        "## Conclusions",
        "",
        *[f"- {line}" for line in results["conclusions"]],
        "",
        "## Plots",
        "",
        *[f"![{p['title']}]({p['file']})\n\n{p['caption']}\n" for p in results["plots"]],
        "## Per run",
        "",
        *run_table(results["runs"]),
        "",
        "Search time: the sum of the run's trial durations (sampling + supernet training), so a resumed run counts "
        "the work, not the pause.",
        "",
        "### Stand-alone candidates",
        "",
        *candidate_table(results["runs"]),
        "",
    ]
    if results["ranking"] is not None:
        lines += [results["ranking"]["markdown"].rstrip(), ""]
    lines += [
        "## Settings",
        "",
        f"command: `{results['command']}`",
        "",
        *[f"- {name}: `{json.dumps(value)}`" for name, value in (
            ("search space", s["space"]),
            ("data", {k: s[k] for k in ("dataset", "data_root", "max_train", "data_seed")}),
            ("runs", {"samplers": s["samplers"], "seeds": s["seeds"], "budget": results["budget"]}),
            ("search", {k: s[k] for k in ("k", "iterations", "tau_start", "tau_end", "ensemble", "epochs", "channels",
                                          "batch_size", "lr")}),
            ("stand-alone", {"top": s["top"], **results["final"]}),
            ("device", results["device"]))],
        "",
    ]
    return "\n".join(lines)


# -- the `epnas compare` command -----------------------------------------------------------------------
def sampler_list(text: str) -> tuple[str, ...]:
    """``epnas,random`` -> ('epnas', 'random'): known names, each once, in the order given."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in SAMPLER_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown sampler(s) {unknown or [text]}; choose from {','.join(SAMPLER_NAMES)}")
    return names


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


def accuracy(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be an accuracy in (0, 1], got {text}")
    return value


#: The options that make a comparison, in the parser's order: `results.md` rebuilds the command from them.
SETTING_OPTIONS = (
    "space", "layers", "blocks", "cells", "ops", "dataset", "data_root", "max_train", "samplers", "seeds", "budget",
    "k", "iterations", "tau_start", "tau_end", "ensemble", "epochs", "channels", "batch_size", "lr", "top",
    "final_epochs", "final_channels", "final_cells", "target", "ranking_n", "out", "device",
)


def add_compare_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``compare`` to the subparsers object of the ``epnas`` parser; returns the subparser."""
    from optuna_epnas.cli import _op_list  # cli imports this module: imported here, not at the top
    from optuna_epnas.train import _HelpFormatter

    c = commands.add_parser(
        "compare", help="EPNAS vs PNAS vs TPE vs random search: same space, objective and budget, over seeds",
        description="Run every sampler on the same space, objective settings and trial budget, each seed with its "
                    "own fresh supernet; train each run's top architectures stand-alone; write results.md, "
                    "results.json and plots into --out. Re-running the same command resumes it.",
        formatter_class=_HelpFormatter,
    )
    space = c.add_argument_group("search space (as epnas search)")
    space.add_argument("--space", choices=("macro", "micro"), default="macro")
    space.add_argument("--layers", type=positive_int, default=12, help="macro: layers of a complete architecture")
    space.add_argument("--blocks", type=positive_int, default=5, help="micro: blocks of a complete cell")
    space.add_argument("--cells", type=positive_int, default=2, help="micro: normal cells between reductions (search)")
    space.add_argument("--ops", type=_op_list, default=None,
                       help="comma-separated subset of the operations (default: all)")
    data = c.add_argument_group("data")
    data.add_argument("--dataset", choices=available_datasets(), default="digits")
    data.add_argument("--data-root", default=None, help="folder holding the data set files (fashion-mnist, cifar10)")
    data.add_argument("--max-train", type=positive_int, default=None, help="use at most this many training images")
    runs = c.add_argument_group("runs")
    runs.add_argument("--samplers", type=sampler_list, default=SAMPLER_NAMES,
                      help=f"comma-separated, of {','.join(SAMPLER_NAMES)} (default: all four)")
    runs.add_argument("--seeds", type=positive_int, default=3, help="runs per sampler, seeds 0..N-1")
    runs.add_argument("--budget", type=positive_int, default=None,
                      help="finished trials per run, every sampler (default: the trials the EPNAS schedule plans)")
    search = c.add_argument_group("search (as epnas search)")
    search.add_argument("--k", type=positive_int, default=25, help="architectures kept per level")
    search.add_argument("--iterations", type=positive_int, default=3, help="progressions from level 1 to full depth")
    search.add_argument("--tau-start", type=positive_float, default=10.0, help="EPNAS temperature, first iteration")
    search.add_argument("--tau-end", type=positive_float, default=1.0, help="EPNAS temperature, last iteration")
    search.add_argument("--ensemble", type=positive_int, default=1, help="LSTM surrogates averaged per level")
    search.add_argument("--epochs", type=positive_int, default=3, help="supernet training epochs per trial")
    search.add_argument("--channels", type=positive_int, default=24, help="supernet width")
    search.add_argument("--batch-size", type=positive_int, default=128, help="supernet SGD batch size")
    search.add_argument("--lr", type=positive_float, default=0.05, help="supernet SGD learning rate")
    final = c.add_argument_group("stand-alone training (train_final's schedule, as epnas train's defaults)")
    final.add_argument("--top", type=positive_int, default=3,
                       help="distinct full-size architectures per run, best supernet accuracy first")
    final.add_argument("--final-epochs", type=positive_int, default=30, help="epochs from scratch")
    final.add_argument("--final-channels", type=positive_int, default=None,
                       help=f"width (default: {DEFAULT_CHANNELS['macro']} macro, {DEFAULT_CHANNELS['micro']} micro)")
    final.add_argument("--final-cells", type=positive_int, default=DEFAULT_FINAL_CELLS,
                       help="micro: normal cells per stage")
    report = c.add_argument_group("report")
    report.add_argument("--target", type=accuracy, default=None,
                        help="supernet accuracy for 'trials to reach' (default: the median over all runs of the "
                             "final best full-size supernet accuracy)")
    report.add_argument("--ranking-n", type=non_negative_int, default=20,
                        help="pooled full-size architectures trained stand-alone for the ranking report (0: skip)")
    report.add_argument("--out", default="epnas-compare", help="folder of studies.db, results.md, results.json, plots")
    c.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    c.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    return c


def command_line(args: argparse.Namespace) -> str:
    """The ``epnas compare`` command with every setting spelled out."""
    import shlex

    parts = ["epnas", "compare"]
    for name in SETTING_OPTIONS:
        value = getattr(args, name, None)
        if value is None:
            continue
        if isinstance(value, (tuple, list)):
            value = ",".join(value)
        parts += [f"--{name.replace('_', '-')}", shlex.quote(str(value))]
    return " ".join(parts)


def _check(args: argparse.Namespace) -> None:
    """What argparse checks, again, for a Namespace made in Python."""
    if not args.samplers or any(s not in SAMPLER_NAMES for s in args.samplers):
        raise ValueError(f"--samplers must name some of {','.join(SAMPLER_NAMES)}, got {args.samplers!r}")
    for name in ("seeds", "top", "final_epochs", "k", "iterations", "epochs"):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
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
    from optuna_epnas.cli import make_space  # cli imports this module: imported here, not at the top

    _check(args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import matplotlib

    matplotlib.use("Agg")  # a command writing PNG files: never a window

    def say(line: str) -> None:
        print(line, flush=True)

    space = make_space(args)
    device = None if args.device == "auto" else args.device
    data = load_dataset(args.dataset, root=args.data_root, device=device, seed=DATA_SEED, max_train=args.max_train)
    plan = make_plan(args, space, data)
    total, planned = len(args.samplers) * args.seeds, planned_trials(space, args.k, args.iterations)
    say(f"epnas compare: {', '.join(args.samplers)} × seeds 0..{args.seeds - 1} on {space!r} "
        f"({space.cardinality():.3g} architectures), {args.dataset} on {data.device} ({len(data.train_x)} train / "
        f"{len(data.val_x)} val / {len(data.test_x)} test images)\n"
        f"{total} runs of {plan.budget} trials each" + ("" if plan.budget == planned else
                                                        f" (the EPNAS schedule plans {planned})")
        + f", stand-alone top {args.top} per run; everything in {plan.out}/")

    studies, runs = [], []
    for seed in range(args.seeds):  # seed-major: an interrupted comparison has every sampler at equal seeds
        for sampler in args.samplers:
            position = f"({len(runs) + 1}/{total})"
            study, record = do_run(plan, sampler, seed, position, say)
            studies.append(study)
            runs.append(record)

    results = analyse(args, plan, studies, runs, say)
    out = plan.out
    _write_json(out / "results.json", _jsonable(results))
    (out / "results.md").write_text(results_markdown(results))
    say("\n" + "\n".join(sampler_table(results["samplers"], plan.budget)) + "\n\n"
        + "\n".join(f"- {line}" for line in results["conclusions"]))
    say(f"\nwrote {out / 'results.md'}, {out / 'results.json'} and {len(results['plots'])} plots; "
        f"studies in {out / 'studies.db'} (epnas dashboard --storage sqlite:///{out / 'studies.db'})")
    return 0


def make_plan(args: argparse.Namespace, space: SearchSpace, data: DeviceData) -> Plan:
    kind = "micro" if isinstance(space, MicroSpace) else "macro"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return Plan(
        space=space, data=data, storage=optuna.storages.RDBStorage(f"sqlite:///{(out / 'studies.db').resolve()}"),
        out=out,
        budget=args.budget or planned_trials(space, args.k, args.iterations),
        search={"k": args.k, "iterations": args.iterations, "temperature": (args.tau_start, args.tau_end),
                "ensemble": args.ensemble, "epochs": args.epochs, "channels": args.channels,
                "batch_size": args.batch_size, "lr": args.lr},
        final={"epochs": args.final_epochs, "channels": args.final_channels or DEFAULT_CHANNELS[kind],
               "cells": args.final_cells if kind == "micro" else None, "dataset": args.dataset,
               "max_train": args.max_train, "data_seed": DATA_SEED, "device": str(data.device),
               "schedule": FINAL_SCHEDULE},
        top=args.top, quiet=args.quiet, max_train=args.max_train,
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
    test_images = len(plan.data.test_x)
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT, "command": command_line(args),
        "settings": {**{k: getattr(args, k) for k in SETTING_OPTIONS}, "space": plan.space.spec(),
                     "data_seed": DATA_SEED},  # "space": the space's full spec, not only its kind
        "final": plan.final, "device": str(plan.data.device), "budget": plan.budget,
        "test_images": test_images, "target": target, "target_rule": rule,
        "samplers": summary, "runs": runs,
        "ranking": None if ranked is None else {k: v for k, v in ranked.items() if k != "key"},
        "conclusions": conclusions(summary, target, rule, plan.budget, test_images, ranked),
    }
    results["plots"] = write_plots(plan.out, runs, args.samplers, target, studies, plan.space.max_level)
    return results


def write_plots(out: Path, runs: Sequence[dict[str, Any]], samplers: Sequence[str], target: float | None,
                studies: Sequence[optuna.Study], max_level: int) -> list[dict[str, str]]:
    """The PNG files, with what results.md says under each."""
    plots = [
        {"file": plot_best_so_far(runs, samplers, target, out / "best_so_far.png").name,
         "title": "best-so-far supernet accuracy",
         "caption": "Best full-size supernet validation accuracy so far against finished trials: the mean over "
                    "seeds, the band from the lowest to the highest seed. A progressive search measures full-size "
                    "architectures only at the last level of each iteration, so its line starts late."},
        {"file": plot_test_error(runs, samplers, out / "test_error.png").name,
         "title": "stand-alone test error",
         "caption": "Stand-alone test error of each run's chosen architecture: a point per seed, the mean ± std."},
    ]
    for sampler in samplers:
        study = next((s for s in studies if _sampler_of(s.study_name) == sampler
                      and best_so_far(s.get_trials(deepcopy=False), max_level)[-1:] != [None]), None)
        if study is None:
            continue
        shallow = (" A progressive run's shallower trials are left out, and its full-size trials are numbered "
                   "among themselves." if sampler in PROGRESSIVE else "")
        plots.append({"file": plot_history(study, max_level, out / f"history-{study.study_name}.png").name,
                      "title": f"optimization history of {study.study_name}",
                      "caption": f"Optuna's `plot_optimization_history` of {study.study_name}: the supernet accuracy "
                                 f"of each full-size trial and the best so far.{shallow}"})
    return plots
