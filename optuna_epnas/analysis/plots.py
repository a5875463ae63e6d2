"""The PNG plots of an ``epnas compare`` run (what ``results.md`` shows under each): best-so-far curves
against trials and compute, the stand-alone test errors, and Optuna's history plot of each run.
matplotlib is imported inside the functions only: the rest of the comparison does not need it."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import optuna

from optuna_epnas.analysis.report import best_so_far, mean_std, sampler_label, sampler_of
from optuna_epnas.supernet.checkpoint import safe_name
from optuna_epnas.settings import PROGRESSIVE, SAMPLER_NAMES
from optuna_epnas.costs.values import full_size


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
        ax.plot(xs[seen], mean, color=_color(sampler), label=f"{sampler_label(sampler)} (mean of {len(mine)})")
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
        mean, std = mean_std(errors)
        ax.errorbar([i + 0.3], [mean], yerr=[[std or 0.0], [std or 0.0]], fmt="_", markersize=18, capsize=4,
                    color="black", zorder=4, label="mean ± std" if i == 0 else None)
    ax.set_xticks(range(len(samplers)), [sampler_label(s) for s in samplers])
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

    full = full_size(study.get_trials(), max_level)
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
                    "re-scoring included; optuna_epnas.costs.cost): a progressive search's shallow trials are cheap."},
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
        plots.append({"file": plot_history(study, max_level, out / f"history-{safe_name(study.study_name)}.png").name,
                      "title": f"optimization history of {study.study_name}",
                      "caption": f"Optuna's `plot_optimization_history` of {study.study_name}: the supernet accuracy "
                                 f"of each full-size trial and the best so far.{shallow}"})
    return plots
