"""A comparison's stand-alone retesting: each run's top architectures trained alone and the one it
chooses by validation (:func:`choose_and_retest`), cached per run; the pooled ranking report
(:func:`ranking_report`) and every run's final supernet on its architectures (:func:`final_weight_rankings`).
Stand-alone networks get ``train_final``'s schedule (:data:`~optuna_epnas.settings.FINAL`), as
``epnas train`` and the ranking report's networks do."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from optuna_epnas.analysis import ranking
from optuna_epnas.analysis.ranking_report import ranking_markdown
from optuna_epnas.analysis.report import choose_by_validation, sampler_of, top_architectures
from optuna_epnas.analysis.tables import surrogate_table
from optuna_epnas.data.device import DeviceData
from optuna_epnas.standalone.export import ModelSpec, build_seeded
from optuna_epnas.supernet.checkpoint import default_path as checkpoint_path_for
from optuna_epnas.search import make_objective
from optuna_epnas.settings import PROGRESSIVE
from optuna_epnas.spaces import SearchSpace
from optuna_epnas.standalone.train import train_final
from optuna_epnas.costs.values import full_size

if TYPE_CHECKING:
    from optuna_epnas.analysis.compare import Plan


def train_standalone(space: SearchSpace, arch: str, data: DeviceData, settings: dict[str, Any]) -> dict[str, Any]:
    """Train ``arch`` as a stand-alone network from scratch: seeded init and data order, and
    ``train_final``'s schedule, the one the ranking report's stand-alone networks get too."""
    spec = ModelSpec(space=space.spec(), arch=arch, num_classes=data.num_classes, in_channels=data.in_channels,
                     channels=settings["channels"], cells=settings["cells"])
    model = build_seeded(spec, settings["seed"])
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


# -- the ranking report (optuna_epnas.analysis.ranking), cached ---------------------------------------
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
    full = {s.study_name: full_size(s.get_trials(deepcopy=False), space.max_level) for s in studies}
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
        "markdown": ranking_markdown(supernet, None, {k: settings[k] for k in ("epochs", "channels", "seed")})
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
