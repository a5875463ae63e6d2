"""The NAS-Bench-201 benchmark's report: by budget, the mean test accuracy of each sampler's
best-by-validation complete cell, the default EPNAS paired with every other sampler by seed (mean
difference, 95% bootstrap interval), anytime curves (table and plot), ``results.json`` and ``results.md``."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from optuna_epnas.analysis.formatting import fmt
from optuna_epnas.analysis.report import bootstrap_interval

REFERENCE = "epnas"
CURVE_POINTS = (10, 25, 50, 75, 100, 150, 200, 300, 390)


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """sampler -> budget (str) -> {mean, std, n, seeds: {seed: test accuracy}, complete, distinct}."""
    grouped: dict[str, dict[str, dict[int, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for r in runs:
        grouped[r["sampler"]][str(r["budget"])][r["seed"]] = r
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for sampler, budgets in grouped.items():
        out[sampler] = {}
        for budget, by_seed in sorted(budgets.items(), key=lambda kv: int(kv[0])):
            acc = [r["test_accuracy"] for r in by_seed.values() if r["test_accuracy"] is not None]
            out[sampler][budget] = {
                "mean": float(np.mean(acc)) if acc else None, "std": float(np.std(acc)) if acc else None,
                "n": len(by_seed), "without_complete_cell": len(by_seed) - len(acc),
                "seeds": {seed: r["test_accuracy"] for seed, r in sorted(by_seed.items())},
                "complete_queries": float(np.mean([r["complete_queries"] for r in by_seed.values()])),
                "distinct_cells": float(np.mean([r["distinct_cells"] for r in by_seed.values()])),
                "seconds": float(np.mean([r["seconds"] for r in by_seed.values()])),
            }
    return out


def paired(summary: dict[str, dict[str, dict[str, Any]]], budget: str, other: str,
           reference: str = REFERENCE) -> dict[str, Any] | None:
    """``reference`` minus ``other`` at ``budget``, paired by seed (points of test accuracy)."""
    a, b = summary.get(reference, {}).get(budget), summary.get(other, {}).get(budget)
    if a is None or b is None:
        return None
    diffs = [x - b["seeds"][s] for s, x in a["seeds"].items()
             if x is not None and b["seeds"].get(s) is not None]
    if not diffs:
        return None
    return {"n": len(diffs), "mean": float(np.mean(diffs)), "ci95": bootstrap_interval(diffs),
            "ahead": sum(d > 0 for d in diffs), "behind": sum(d < 0 for d in diffs)}


def curves(runs: Sequence[dict[str, Any]], budget: int) -> dict[str, np.ndarray]:
    """sampler -> (seeds × queries) test accuracy of the best-by-validation complete cell so far (NaN
    before the first), from the runs of ``budget`` queries."""
    by_sampler: dict[str, list[list[float]]] = defaultdict(list)
    for r in runs:
        if r["budget"] == budget:  # a run made `budget` queries: one entry each
            by_sampler[r["sampler"]].append([np.nan if v is None else v for v in r["anytime"]])
    return {s: np.array(rows, dtype=float) for s, rows in by_sampler.items()}


def write_report(runs: Sequence[dict[str, Any]], out: Path, samplers: Sequence[str], ceiling: float,
                 protocol: dict[str, Any]) -> dict[str, Any]:
    """Write ``results.json``, ``results.md`` and ``anytime.png`` under ``out``; returns the JSON."""
    summary = summarise(runs)
    samplers = [s for s in samplers if s in summary]
    budgets = sorted({int(b) for s in samplers for b in summary[s]})
    differences = {b: {s: paired(summary, str(b), s) for s in samplers if s != REFERENCE} for b in budgets}
    longest = max(budgets) if budgets else 0
    anytime = curves(runs, longest)
    result = {
        "samplers": {s: {str(b): summary[s].get(str(b), {}).get("mean") for b in budgets} for s in samplers},
        "std": {s: {str(b): summary[s].get(str(b), {}).get("std") for b in budgets} for s in samplers},
        "seeds": {s: {str(b): summary[s].get(str(b), {}).get("n") for b in budgets} for s in samplers},
        "paired_vs_epnas": {str(b): {s: d for s, d in ds.items() if d is not None} for b, ds in differences.items()},
        "anytime": {s: {str(q): _nanmean(c[:, q - 1]) for q in CURVE_POINTS if q <= longest}
                    for s, c in anytime.items()},
        "best_validation_cell_test_accuracy": ceiling,
        "protocol": protocol,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    _plot(anytime, summary, samplers, budgets, ceiling, out / "anytime.png")
    (out / "results.md").write_text("\n".join(_markdown(summary, samplers, budgets, differences, anytime, longest,
                                                        ceiling, protocol)) + "\n")
    return result


def _nanmean(column: np.ndarray) -> float | None:
    finite = column[np.isfinite(column)]
    return float(finite.mean()) if len(finite) else None


def _markdown(summary, samplers, budgets, differences, anytime, longest, ceiling, protocol) -> list[str]:
    lines = ["# NAS-Bench-201, CIFAR-10 (12-epoch table): samplers at equal queries", "",
             f"Protocol: {protocol['text']}", "",
             f"Command: `{protocol['command']}`", "",
             "## Test accuracy (%) of the best-by-validation complete cell, mean ± std over seeds", "",
             "| sampler | " + " | ".join(f"{b} queries" for b in budgets) + " |",
             "|---|" + "---:|" * len(budgets)]
    for s in samplers:
        cells = []
        for b in budgets:
            x = summary[s].get(str(b))
            cells.append("–" if x is None or x["mean"] is None else
                         f"{x['mean']:.2f} ± {x['std']:.2f} (n={x['n']}{_none_note(x)})")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", f"Ceiling: the test accuracy of the table's best-by-validation cell is {ceiling:.2f}.", "",
              "## Default EPNAS minus each sampler, paired by seed (points)", "",
              "| budget | sampler | seeds | mean | 95% bootstrap interval | EPNAS ahead / behind |",
              "|---:|---|---:|---:|---|---|"]
    for b in budgets:
        for s, d in differences[b].items():
            if d is not None:
                ci = fmt(None) if d["ci95"] is None else f"[{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]"
                lines.append(f"| {b} | {s} | {d['n']} | {d['mean']:+.2f} | {ci} | {d['ahead']} / {d['behind']} |")
    points = [q for q in CURVE_POINTS if q <= longest]
    lines += ["", f"## Anytime: the {longest}-query searches after q queries (mean over seeds; – before any complete cell)",
              "", "| sampler | " + " | ".join(f"q={q}" for q in points) + " |", "|---|" + "---:|" * len(points)]
    for s in samplers:
        if s in anytime:
            lines.append(f"| {s} | " + " | ".join(fmt(_nanmean(anytime[s][:, q - 1]), ".2f") for q in points) + " |")
    lines += ["", "## How the searches spent their queries (mean per run)", "",
              "| sampler | budget | complete cells queried | distinct cells | seconds |", "|---|---:|---:|---:|---:|"]
    for s in samplers:
        for b in budgets:
            x = summary[s].get(str(b))
            if x is not None:
                lines.append(f"| {s} | {b} | {x['complete_queries']:.1f} | {x['distinct_cells']:.1f} | {x['seconds']:.1f} |")
    lines += ["", "![anytime curves](anytime.png)"]
    return lines


def _none_note(x: dict[str, Any]) -> str:
    return f", {x['without_complete_cell']} without a complete cell" if x["without_complete_cell"] else ""


def _plot(anytime, summary, samplers, budgets, ceiling, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, s in enumerate(samplers):
        color = f"C{i}"
        if s in anytime:
            mean = np.array([_nanmean(column) for column in anytime[s].T], dtype=float)  # None -> NaN: no line
            ax.plot(np.arange(1, len(mean) + 1), mean, color=color, label=s)
        xs = [b for b in budgets if summary[s].get(str(b), {}).get("mean") is not None]
        ax.plot(xs, [summary[s][str(b)]["mean"] for b in xs], "o", color=color,
                label=None if s in anytime else f"{s} (no {max(budgets)}-query runs)")
    ax.axhline(ceiling, color="grey", linestyle=":", label="best-by-validation cell")
    ax.set_xlabel("queries")
    ax.set_ylabel("test accuracy (%) of the best-by-validation cell")
    ax.set_title("NAS-Bench-201 CIFAR-10: lines, the longest searches' anytime means;\n"
                 "dots, the searches fitted to each budget", fontsize=9)
    ax.set_ylim(ceiling - 4.0, ceiling + 0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
