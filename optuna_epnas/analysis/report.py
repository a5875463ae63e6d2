"""What an ``epnas compare`` run measured and how the comparison is shown: best-so-far curves, the
architectures to train stand-alone and the one chosen, summaries over seeds, conclusions, plots, and
``results.md``. Pure functions of the studies and the runs' records (the plots write their PNG files)."""

from __future__ import annotations

import json
import statistics
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_epnas.analysis import ranking
from optuna_epnas.search import PROGRESSIVE, SAMPLER_NAMES


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
        equal = [r["equal_trials"] for r in mine if r.get("equal_trials")]
        summary[sampler] = {
            "runs": len(mine), "seeds": [r["seed"] for r in mine],
            "test_errors": [r["test_error"] for r in mine],
            **dict(zip(("test_error_mean", "test_error_std"), _mean_std(errors))),
            "trials": [r["trials"] for r in mine],
            "total_costs": [r.get("total_cost_macs") for r in mine],
            "total_cost_mean": _mean_std([r["total_cost_macs"] for r in mine if r.get("total_cost_macs")])[0],
            "trials_to_target": [r["trials_to_target"] for r in mine], "reached_target": len(reached),
            "trials_to_target_mean": _mean_std(reached)[0],
            **dict(zip(("search_seconds_mean", "search_seconds_std"), _mean_std([r["search_seconds"] for r in mine]))),
            **dict(zip(("best_supernet_mean", "best_supernet_std"), _mean_std(bests))),
        }
        if equal:
            e_errors = [e["test_error"] for e in equal if e["test_error"] is not None]
            e_bests = [e["best_supernet_accuracy"] for e in equal if e["best_supernet_accuracy"] is not None]
            summary[sampler]["equal_trials"] = {
                "trials": equal[0]["trials"], "test_errors": [e["test_error"] for e in equal],
                **dict(zip(("test_error_mean", "test_error_std"), _mean_std(e_errors))),
                **dict(zip(("best_supernet_mean", "best_supernet_std"), _mean_std(e_bests))),
                "cost_mean": _mean_std([e["cost_macs"] for e in equal])[0],
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

        boot = stats.bootstrap((np.asarray(diffs),), np.mean, confidence_level=0.95, n_resamples=10_000,
                               method="percentile", rng=np.random.default_rng(0))
        out["ci95"] = [float(boot.confidence_interval.low), float(boot.confidence_interval.high)]
        out["wilcoxon_p"] = float(stats.wilcoxon(diffs).pvalue)
    return out


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
        ci = "–" if d["ci95"] is None else f"[{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]"
        mean = "–" if d["mean"] is None else f"{100 * d['mean']:+.2f}"
        lines.append(f"| {'equal trials' if d['view'] == 'equal_trials' else 'budget'} | {_label(d['a'])} − "
                     f"{_label(d['b'])} | {d['n']} | {mean} | {ci} | {_num(d['wilcoxon_p'], '.3g')} | "
                     f"{d['a_lower_on']} / {d['a_higher_on']} |")
    return lines


def _label(sampler: str) -> str:
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
        f"{_label(s)} {v['search_seconds_mean']:.0f} s" for s, v in summary.items()) + "; trials per run, mean: "
        + ", ".join(f"{_label(s)} {np.mean(v['trials']):.0f}" for s, v in summary.items())
        + "; compute per run, mean: " + ", ".join(f"{_label(s)} {_macs(v['total_cost_mean'])}"
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


# -- plots --------------------------------------------------------------------------------------------
def _color(sampler: str) -> str:
    return f"C{SAMPLER_NAMES.index(sampler) if sampler in SAMPLER_NAMES else len(SAMPLER_NAMES)}"


def plot_best_so_far(runs: Sequence[dict[str, Any]], samplers: Sequence[str], target: float | None,
                     path: Path, against: str = "trials") -> Path:
    """Best-so-far full-size supernet accuracy vs finished trials (``against="trials"``) or vs compute
    spent (``"compute"``, MACs): mean over seeds, band min to max."""
    from matplotlib.figure import Figure  # a Figure, not pyplot: no global state, no display needed
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    for sampler in samplers:
        mine = [r for r in runs if r["sampler"] == sampler and r["curve"]]
        if not mine:
            continue
        if against == "compute":  # step functions of cost, read on one grid
            grid = np.linspace(0.0, max(r["cost_curve"][-1] for r in mine), 400)
            values = np.full((len(mine), len(grid)), np.nan)
            for i, r in enumerate(mine):
                seen = np.searchsorted(np.asarray(r["cost_curve"]), grid, side="right") - 1
                curve = np.array([np.nan if v is None else v for v in r["curve"]])
                ok = (seen >= 0) & (grid <= r["cost_curve"][-1])
                values[i, ok] = curve[seen[ok]]
            xs = grid
        else:
            width = max(len(r["curve"]) for r in mine)
            values = np.full((len(mine), width), np.nan)
            for i, r in enumerate(mine):
                values[i, :len(r["curve"])] = [np.nan if v is None else v for v in r["curve"]]
            xs = np.arange(1, width + 1)
        seen = ~np.isnan(values).all(axis=0)  # before any run measured a full-size architecture: blank
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # columns where some runs have ended
            mean = np.nanmean(values[:, seen], axis=0)
        ax.plot(xs[seen], mean, color=_color(sampler), label=f"{_label(sampler)} (mean of {len(mine)})")
        ax.fill_between(xs[seen], np.nanmin(values[:, seen], axis=0), np.nanmax(values[:, seen], axis=0),
                        color=_color(sampler), alpha=0.2, linewidth=0)
    if target is not None:
        ax.axhline(target, color="0.4", linestyle="--", linewidth=1, label=f"target {target:.4f}")
    ax.set_xlabel("finished trials" if against == "trials" else "compute spent (multiply-adds)")
    ax.set_ylabel("best full-size supernet val accuracy so far")
    ax.set_title("Search progress (band: min to max over seeds)")
    if against == "trials":
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


def write_plots(out: Path, runs: Sequence[dict[str, Any]], samplers: Sequence[str], target: float | None,
                studies: Sequence[optuna.Study], max_level: int) -> list[dict[str, str]]:
    """The PNG files, with what results.md says under each."""
    plots = [
        {"file": plot_best_so_far(runs, samplers, target, out / "best_so_far.png").name,
         "title": "best-so-far supernet accuracy",
         "caption": "Best full-size supernet validation accuracy so far against finished trials: the mean over "
                    "seeds, the band from the lowest to the highest seed. A progressive search measures full-size "
                    "architectures only at the last level of each iteration, so its line starts late."},
        {"file": plot_best_so_far(runs, samplers, target, out / "best_so_far_compute.png", against="compute").name,
         "title": "best-so-far supernet accuracy against compute",
         "caption": "The same against the compute spent (multiply-adds of training and evaluation, warm-up and "
                    "re-scoring included; optuna_epnas.cost): a progressive search's shallow trials are cheap."},
        {"file": plot_test_error(runs, samplers, out / "test_error.png").name,
         "title": "stand-alone test error",
         "caption": "Stand-alone test error of each run's chosen architecture: a point per seed, the mean ± std."},
    ]
    for sampler in samplers:
        study = next((s for s in studies if sampler_of(s.study_name) == sampler
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


# -- results.md ---------------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _pm(mean: float | None, std: float | None, fmt: Callable[[float | None], str]) -> str:
    return fmt(mean) + ("" if std is None else f" ± {fmt(std)}")


def fmt_acc(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _secs(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _macs(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def sampler_table(summary: dict[str, dict[str, Any]], budget: int) -> list[str]:
    lines = ["| sampler | runs | stand-alone test error (%), mean ± std | per seed | trials, mean | compute (MACs), "
             "mean | trials to reach target (per seed; – not reached) | search time (s), mean ± std | "
             "best full-size supernet accuracy, mean ± std |",
             "|---|---:|---:|---|---:|---:|---|---:|---:|"]
    for s, v in summary.items():
        per_seed = " ".join(_pct(e) for e in v["test_errors"])
        reach = " ".join("–" if t is None else str(t) for t in v["trials_to_target"])
        lines.append(f"| {_label(s)} | {v['runs']} | {_pm(v['test_error_mean'], v['test_error_std'], _pct)} | "
                     f"{per_seed} | {np.mean(v['trials']):.0f} | {_macs(v['total_cost_mean'])} | "
                     f"{reach} ({v['reached_target']}/{v['runs']}) | "
                     f"{_pm(v['search_seconds_mean'], v['search_seconds_std'], _secs)} | "
                     f"{_pm(v['best_supernet_mean'], v['best_supernet_std'], fmt_acc)} |")
    return lines


def equal_trials_table(summary: dict[str, dict[str, Any]]) -> list[str]:
    """Each run judged at the equal-trial budget (the first N trials of a longer run)."""
    rows = [(s, v["equal_trials"]) for s, v in summary.items() if "equal_trials" in v]
    if not rows:
        return []
    lines = ["| sampler | trials | stand-alone test error (%), mean ± std | per seed | compute (MACs), mean | "
             "best full-size supernet accuracy, mean ± std |", "|---|---:|---:|---|---:|---:|"]
    for s, e in rows:
        lines.append(f"| {_label(s)} | {e['trials']} | {_pm(e['test_error_mean'], e['test_error_std'], _pct)} | "
                     f"{' '.join(_pct(x) for x in e['test_errors'])} | {_macs(e['cost_mean'])} | "
                     f"{_pm(e['best_supernet_mean'], e['best_supernet_std'], fmt_acc)} |")
    return lines


def _code(arch: str) -> str:
    return "`" + arch.replace("|", "\\|") + "`"  # GFM tables: an escaped pipe, also inside code


def run_table(runs: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| run | trials | best supernet acc | trials to target | search (s) | chosen (supernet rank) | "
             "stand-alone val | stand-alone test error (%), mean over training seeds | per training seed | "
             "compute (MACs) | parameters | architecture |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    for r in runs:
        c = next((c for c in r["candidates"] if c["rank"] == r["chosen"]), None)
        lines.append(
            f"| {r['run']} | {r['trials']} | {fmt_acc(r['best_supernet_accuracy'])} | "
            f"{'–' if r['trials_to_target'] is None else r['trials_to_target']} | {_secs(r['search_seconds'])} | "
            + (f"#{c['rank']} of {len(r['candidates'])} | {fmt_acc(c['val_accuracy'])} | {_pct(r['test_error'])} | "
               f"{' '.join(_pct(e) for e in r.get('test_errors') or [c['test_error']])} | "
               f"{_macs(r.get('total_cost_macs'))} | {c['params']:,} | {_code(c['arch'])} |"
               if c else "– | – | – | – | – | – | – |"))
    return lines


def candidate_table(runs: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| run | supernet rank | supernet acc | stand-alone val | stand-alone test error (%) | chosen | "
             "architecture |",
             "|---|---:|---:|---:|---:|:---:|---|"]
    for r in runs:
        for c in r["candidates"]:
            chosen = "✓" if c["rank"] == r["chosen"] else ""
            lines.append(f"| {r['run']} | {c['rank']} | {fmt_acc(c['supernet_accuracy'])} | {fmt_acc(c['val_accuracy'])} | "
                         f"{_pct(c['test_error'])} | {chosen} | {_code(c['arch'])} |")
    return lines


def results_markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    defaults = next(iter(results["search_settings"].values()))
    space = s["space"]
    shape = (f"{space.get('num_layers')} layers" if space.get("space") == "macro"
             else f"{space.get('num_blocks')} blocks, {space.get('cells')} cells per stage")
    lines = [
        f"# {', '.join(_label(x) for x in s['samplers'])} on the {space.get('space')} space ({shape}), {s['dataset']}",
        "",
        (f"Each sampler: {s['seeds']} seeds × {results['budget']} trials" if s.get("budget_kind") != "compute" else
         f"Each sampler: {s['seeds']} seeds at equal compute (EPNAS/PNAS variants run their schedule; TPE and random "
         f"search run until they have spent what {_label(results['compute_reference'])} spent with the same seed)")
        + f" on its own fresh supernet ({defaults['epochs']} epochs per trial, {defaults['channels']} channels); "
        f"random search shares weights too (the hard "
        f"baseline). Per run, the top {s['top']} distinct full-size architectures by supernet accuracy were trained "
        f"stand-alone from scratch ({results['final']['epochs']} epochs, {results['final']['channels']} channels); "
        "the **chosen** one has the best stand-alone *validation* accuracy, and its *test* error is reported"
        f" (mean over {s.get('final_seeds', 1)} training seeds). "
        f"Every run sees the same train/validation split (seed {s['data_seed']}); "
        f"test split: {results['test_images']} images, never used to choose.",
        "",
        f"Supernet accuracy target: **{fmt_acc(results['target'])}** ({results['target_rule']}).",
        "",
        f"## Per sampler ({'equal compute' if s.get('budget_kind') == 'compute' else 'equal trials'})",
        "",
        *sampler_table(results["samplers"], results["budget"]),
        "",
        *(["## At equal trials", "", f"The same runs judged after their first {results['budget']} trials (a "
           "seeded run's first trials are the run that budget would have made; stand-alone choice and retests "
           "as above).", "", *equal_trials_table(results["samplers"]), ""]
          if equal_trials_table(results["samplers"]) else []),
        *(["## Paired by seed", "", "Stand-alone test error differences (percentage points; negative: EPNAS "
           "lower), each seed's runs sharing the data subset and the supernet initialisation.", "",
           *paired_table(results["paired"]), ""] if results.get("paired") else []),
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
            ("data", {k: s.get(k) for k in ("dataset", "data_root", "max_train", "image_size", "data_seed")}),
            ("runs", {"samplers": s["samplers"], "seeds": s["seeds"], "budget": results["budget"],
                      "budget_kind": s.get("budget_kind", "trials")}),
            *((f"search settings of {x}", v) for x, v in results.get("search_settings", {}).items()),
            ("stand-alone", {"top": s["top"], **results["final"]}),
            ("device", results["device"]))],
        "",
    ]
    return "\n".join(lines)


def surrogate_table(surrogate: dict[str, list[dict[str, Any]]]) -> str:
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


def _num(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def sampler_of(run: str) -> str:
    return run.rsplit("-seed", 1)[0]


def mechanism_ranking_table(final: dict[str, dict[str, Any]], rows: Sequence[dict[str, Any]],
                            surrogate: dict[str, list[dict[str, Any]]], settings: dict[str, Any]) -> str:
    """Ranking quality per sampler, i.e. with and without warm-up and re-scoring.

    ``final``: :func:`~optuna_epnas.analysis.compare.final_weight_rankings`; ``rows``: the ranking report's
    stand-alone rows (each from one run's trial, its ``supernet_accuracy`` as measured then);
    ``surrogate``: run -> :func:`~optuna_epnas.analysis.ranking.surrogate_heldout` rows; ``settings``:
    sampler -> its :class:`~optuna_epnas.search.SearchSettings`.
    """
    lines = ["", "### Ranking by mechanism", "",
             f"The {len(rows)} architectures above, evaluated on each run's supernet as its search left it (the "
             "re-scoring subset of the validation split): Kendall τ against their stand-alone test accuracy, "
             "mean ± std over the sampler's runs. \"As measured\": the architectures of the list that this "
             "sampler's runs measured, at the accuracy their trial reported then (pooled over its runs). "
             "Surrogate: the held-out τ of each level (pooled over iterations), mean over the sampler's runs "
             "(n: held-out architectures, summed).", "",
             "| sampler | warm-up epochs | re-scoring | runs | τ, final weights | τ as measured (n) | "
             "surrogate τ by level (n) |", "|---|---:|---|---:|---:|---:|---|"]
    test = {r["arch"]: r["standalone_test_accuracy"] for r in rows}
    for sampler, s in settings.items():
        taus = [v["kendall_tau"] for v in final.values() if v["sampler"] == sampler and v["kendall_tau"] is not None]
        mine = [r for r in rows if r.get("study") and sampler_of(r["study"]) == sampler]
        measured = ranking.rank_correlation([r["supernet_accuracy"] for r in mine], [test[r["arch"]] for r in mine])
        by_level: dict[int, list[dict[str, Any]]] = {}
        for run, rs in surrogate.items():
            if sampler_of(run) == sampler:
                for r in rs:
                    if r["iteration"] is None and r["kendall_tau"] is not None:
                        by_level.setdefault(r["level"], []).append(r)
        levels = " ".join(f"L{lv} {np.mean([r['kendall_tau'] for r in rs]):+.2f} ({sum(r['n'] for r in rs)})"
                          for lv, rs in sorted(by_level.items())) or "–"
        final_tau = (f"{np.mean(taus):+.3f} ± {np.std(taus, ddof=1) if len(taus) > 1 else 0:.3f}" if taus else "–")
        rescore = "yes" if s.rescore and sampler in PROGRESSIVE else "no"
        lines.append(f"| {sampler} | {s.warmup_epochs} | {rescore} | {len(taus)} | {final_tau} | "
                     f"{_num(measured.to_dict()['kendall_tau'], '+.3f')} ({measured.n}) | {levels} |")
    return "\n".join(lines + [""])
