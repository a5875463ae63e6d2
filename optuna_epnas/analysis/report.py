"""What an ``epnas compare`` run measured and how the comparison is shown: best-so-far curves, the
architectures to train stand-alone and the one chosen, summaries over seeds, and conclusions.
Pure functions of the studies and the runs' records; ``results.md`` is :mod:`optuna_epnas.analysis.tables`,
the plots :mod:`optuna_epnas.analysis.plots`."""

from __future__ import annotations

import statistics
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from optuna_epnas.analysis import ranking
from optuna_epnas.costs.values import is_full_size, latest_per_arch
from optuna_epnas.analysis.formatting import MISSING, fmt


def pct(value: float | None) -> str:
    return fmt(None if value is None else 100 * value, ".2f")


def fmt_macs(value: float | None) -> str:
    return fmt(value, ".3g")


# -- what a run measured -----------------------------------------------------------------------------
def best_so_far(trials: Sequence[FrozenTrial], max_level: int) -> list[float | None]:
    """Per finished trial: the best full-size supernet accuracy up to it (None before the first)."""
    best: float | None = None
    curve: list[float | None] = []
    for t in trials:
        if is_full_size(t, max_level):
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
    latest = latest_per_arch(sorted(trials, key=lambda t: t.number), max_level)
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


# -- numbers over seeds, and what they say -----------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
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
        equal = [r["equal_trials"] for r in mine if r.get("equal_trials")]
        summary[sampler] = {
            "runs": len(mine), "seeds": [r["seed"] for r in mine],
            "test_errors": [r["test_error"] for r in mine],
            **dict(zip(("test_error_mean", "test_error_std"), mean_std(errors))),
            "trials": [r["trials"] for r in mine],
            "total_costs": [r.get("total_cost_macs") for r in mine],
            "total_cost_mean": mean_std([r["total_cost_macs"] for r in mine if r.get("total_cost_macs")])[0],
            "trials_to_target": [r["trials_to_target"] for r in mine], "reached_target": len(reached),
            "trials_to_target_mean": mean_std(reached)[0],
            **dict(zip(("search_seconds_mean", "search_seconds_std"), mean_std([r["search_seconds"] for r in mine]))),
            **dict(zip(("best_supernet_mean", "best_supernet_std"), mean_std(bests))),
        }
        if equal:
            e_errors = [e["test_error"] for e in equal if e["test_error"] is not None]
            e_bests = [e["best_supernet_accuracy"] for e in equal if e["best_supernet_accuracy"] is not None]
            summary[sampler]["equal_trials"] = {
                "trials": equal[0]["trials"], "test_errors": [e["test_error"] for e in equal],
                **dict(zip(("test_error_mean", "test_error_std"), mean_std(e_errors))),
                **dict(zip(("best_supernet_mean", "best_supernet_std"), mean_std(e_bests))),
                "cost_mean": mean_std([e["cost_macs"] for e in equal])[0],
            }
    return summary


def paired_difference(summary: dict[str, dict[str, Any]], a: str, b: str, view: str | None = None) -> dict[str, Any] | None:
    """Stand-alone test error of ``a`` minus ``b``, paired by seed (same data subset, same supernet
    initialisation): the mean difference, a 95% bootstrap interval of it (scipy.stats.bootstrap,
    percentile, 10,000 resamples, seeded) and the Wilcoxon signed-rank p-value. ``view``:
    ``"equal_trials"`` for the runs judged at the equal-trial budget."""
    sa, sb = (summary[a].get(view) if view else summary[a]), (summary[b].get(view) if view else summary[b])
    if sa is None or sb is None:
        return None
    by_seed = dict(zip(summary[b]["seeds"], sb["test_errors"]))
    diffs = [x - by_seed[seed] for seed, x in zip(summary[a]["seeds"], sa["test_errors"])
             if x is not None and by_seed.get(seed) is not None]
    out: dict[str, Any] = {"a": a, "b": b, "view": view or "budget", "n": len(diffs), "differences": diffs,
                           "mean": float(np.mean(diffs)) if diffs else None, "ci95": None, "wilcoxon_p": None,
                           "a_lower_on": sum(d < 0 for d in diffs), "a_higher_on": sum(d > 0 for d in diffs)}
    if len(diffs) >= 2 and len(set(diffs)) > 1:
        from scipy import stats

        out["ci95"] = bootstrap_interval(diffs)
        out["wilcoxon_p"] = float(stats.wilcoxon(diffs).pvalue)
    return out


def bootstrap_interval(values: Sequence[float]) -> list[float] | None:
    """A 95% bootstrap interval of the mean of ``values`` (scipy.stats.bootstrap, percentile, 10,000
    resamples, seeded); None for fewer than two values or when they are all equal (no spread to resample)."""
    if len(values) < 2 or len(set(values)) == 1:
        return None
    from scipy import stats

    boot = stats.bootstrap((np.asarray(values, dtype=float),), np.mean, confidence_level=0.95, n_resamples=10_000,
                           method="percentile", rng=np.random.default_rng(0))
    return [float(boot.confidence_interval.low), float(boot.confidence_interval.high)]


def paired_differences(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``epnas`` against each other sampler, at the comparison's budget and (compute budgets) at equal trials."""
    if "epnas" not in summary:
        return []
    out = []
    for view in (None, "equal_trials"):
        for other in summary:
            if other != "epnas" and (d := paired_difference(summary, "epnas", other, view)) is not None:
                out.append(d)
    return out


def paired_table(paired: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| view | difference | seeds | mean (points) | 95% bootstrap interval | Wilcoxon p | EPNAS lower / higher |",
             "|---|---|---:|---:|---|---:|---|"]
    for d in paired:
        ci = MISSING if d["ci95"] is None else f"[{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]"
        mean = fmt(None if d["mean"] is None else 100 * d["mean"], "+.2f")
        lines.append(f"| {'equal trials' if d['view'] == 'equal_trials' else 'budget'} | {sampler_label(d['a'])} − "
                     f"{sampler_label(d['b'])} | {d['n']} | {mean} | {ci} | {fmt(d['wilcoxon_p'], '.3g')} | "
                     f"{d['a_lower_on']} / {d['a_higher_on']} |")
    return lines


def sampler_label(sampler: str) -> str:
    return {"epnas": "EPNAS", "epnas-paper": "EPNAS (paper)", "pnas": "PNAS", "tpe": "TPE",
            "random": "random"}.get(sampler, sampler)


def _pair_line(a: str, b: str, summary: dict[str, dict[str, Any]], test_images: int) -> str | None:
    sa, sb = summary[a], summary[b]
    if sa["test_error_mean"] is None or sb["test_error_mean"] is None:
        return None
    diff = 100 * (sa["test_error_mean"] - sb["test_error_mean"])
    word = "higher than" if diff > 0 else "lower than" if diff < 0 else "equal to"
    images = abs(diff) / 100 * test_images
    count = f"{images:.0f}" if images >= 10 else f"{images:.1f}"  # a mean over seeds: tenths only when few
    by = f" by {abs(diff):.2f} points (≈{count} of the {test_images:,} test images)" if diff else ""
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
    std = ", ".join(f"{sampler_label(s)} {pct(summary[s]['test_error_std'])}" for s in (a, b))
    return (f"{sampler_label(a)}'s mean stand-alone test error is {word} {sampler_label(b)}'s{by}{seeds}. "
            f"Spread over seeds (std, points): {std}; {verdict}.")


def conclusions(summary: dict[str, dict[str, Any]], target: float | None, target_rule: str, budget: int,
                test_images: int, ranking_result: dict[str, Any] | None) -> list[str]:
    """Plain sentences computed from the numbers; nothing they do not show."""
    lines = []
    with_error = sorted((s for s in summary if summary[s]["test_error_mean"] is not None),
                        key=lambda s: summary[s]["test_error_mean"])
    if with_error:
        lines.append("Mean stand-alone test error of the chosen architecture, lowest first: " + ", ".join(
            f"{sampler_label(s)} {100 * summary[s]['test_error_mean']:.2f}%" for s in with_error)
            + f" (one test image is {100 / test_images:.2f} points).")
    for s in summary:
        if summary[s]["test_error_mean"] is None:
            lines.append(f"{sampler_label(s)}: no run found a full-size architecture within {budget} trials.")
    reference = "random" if "random" in summary else next(iter(summary))
    pairs = [(s, reference) for s in summary if s != reference]
    if "epnas" in summary and "pnas" in summary and reference not in ("epnas", "pnas"):
        pairs.append(("epnas", "pnas"))
    lines += [line for a, b in pairs if (line := _pair_line(a, b, summary, test_images))]
    if target is not None:
        lines.append(f"Supernet accuracy target {target:.4f} ({target_rule}): " + "; ".join(
            f"{sampler_label(s)} reached it in {v['reached_target']} of {v['runs']} runs"
            + (f" (after {', '.join(str(t) for t in v['trials_to_target'] if t is not None)} trials)"
               if v["reached_target"] else "") for s, v in summary.items()) + f", of {budget} each.")
    by_supernet = max((s for s in summary if summary[s]["best_supernet_mean"] is not None),
                      key=lambda s: summary[s]["best_supernet_mean"], default=None)
    if by_supernet is not None and with_error and by_supernet != with_error[0]:
        lines.append(f"The best mean supernet accuracy ({sampler_label(by_supernet)}, "
                     f"{summary[by_supernet]['best_supernet_mean']:.4f}) did not give the lowest stand-alone test "
                     f"error ({sampler_label(with_error[0])}): the higher supernet accuracy did not carry over to "
                     "stand-alone training here.")
    lines.append("Search time per run (sum of trial durations), mean: " + ", ".join(
        f"{sampler_label(s)} {v['search_seconds_mean']:.0f} s" for s, v in summary.items()) + "; trials per run, mean: "
        + ", ".join(f"{sampler_label(s)} {np.mean(v['trials']):.0f}" for s, v in summary.items())
        + "; compute per run, mean: " + ", ".join(f"{sampler_label(s)} {fmt_macs(v['total_cost_mean'])}"
                                                  for s, v in summary.items()) + ".")
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


def sampler_of(run: str) -> str:
    return run.rsplit("-seed", 1)[0]
