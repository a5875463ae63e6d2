"""The Markdown of an ``epnas compare`` run: ``results.md`` and its tables (samplers, runs, candidates,
surrogate, ranking by mechanism), from the summaries of :mod:`optuna_epnas.analysis.report`."""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

import numpy as np

from optuna_epnas.analysis import ranking
from optuna_epnas.settings import PROGRESSIVE
from optuna_epnas.analysis.formatting import MISSING, fmt
from optuna_epnas.analysis.report import (
    fmt_macs, paired_table, pct, sampler_label, sampler_of,
)


# -- results.md ---------------------------------------------------------------------------------------
def _pm(mean: float | None, std: float | None, fmt: Callable[[float | None], str]) -> str:
    return fmt(mean) + ("" if std is None else f" ± {fmt(std)}")


def fmt_acc(value: float | None) -> str:
    return fmt(value, ".4f")


def _secs(value: float | None) -> str:
    return fmt(value, ".0f")


def sampler_table(summary: dict[str, dict[str, Any]], budget: int) -> list[str]:
    lines = ["| sampler | runs | stand-alone test error (%), mean ± std | per seed | trials, mean | compute (MACs), "
             "mean | trials to reach target (per seed; – not reached) | search time (s), mean ± std | "
             "best full-size supernet accuracy, mean ± std |",
             "|---|---:|---:|---|---:|---:|---|---:|---:|"]
    for s, v in summary.items():
        per_seed = " ".join(pct(e) for e in v["test_errors"])
        reach = " ".join(fmt(t) for t in v["trials_to_target"])
        lines.append(f"| {sampler_label(s)} | {v['runs']} | {_pm(v['test_error_mean'], v['test_error_std'], pct)} | "
                     f"{per_seed} | {np.mean(v['trials']):.0f} | {fmt_macs(v['total_cost_mean'])} | "
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
        lines.append(f"| {sampler_label(s)} | {e['trials']} | {_pm(e['test_error_mean'], e['test_error_std'], pct)} | "
                     f"{' '.join(pct(x) for x in e['test_errors'])} | {fmt_macs(e['cost_mean'])} | "
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
            + (f"#{c['rank']} of {len(r['candidates'])} | {fmt_acc(c['val_accuracy'])} | {pct(r['test_error'])} | "
               f"{' '.join(pct(e) for e in r.get('test_errors') or [c['test_error']])} | "
               f"{fmt_macs(r.get('total_cost_macs'))} | {c['params']:,} | {_code(c['arch'])} |"
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
                         f"{pct(c['test_error'])} | {chosen} | {_code(c['arch'])} |")
    return lines


def results_markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    defaults = next(iter(results["search_settings"].values()))
    estimator = defaults.get("estimator", "supernet")  # absent: a supernet (runs made before the option)
    space = s["space"]
    shape = (f"{space.get('num_layers')} layers" if space.get("space") == "macro"
             else f"{space.get('num_blocks')} blocks, {space.get('cells')} cells per stage")
    lines = [
        f"# {', '.join(sampler_label(x) for x in s['samplers'])} on the {space.get('space')} space ({shape}), "
        f"{s['dataset']}",
        "",
        (f"Each sampler: {s['seeds']} seeds × {results['budget']} trials" if s.get("budget_kind") != "compute" else
         f"Each sampler: {s['seeds']} seeds at equal compute (EPNAS/PNAS variants run their schedule; TPE and random "
         f"search run until they have spent what {sampler_label(results['compute_reference'])} spent with the same "
         "seed)")
        + (f" on its own fresh supernet ({defaults['epochs']} epochs per trial, {defaults['channels']} channels); "
           "random search shares weights too (the hard baseline)." if estimator == "supernet" else
           f", every trial scored by the zero-cost estimator `{estimator}` on the untrained network "
           f"({defaults['channels']} channels; no supernet), every sampler alike. \"Supernet accuracy\" below is "
           "that estimator's score.")
        + f" Per run, the top {s['top']} distinct full-size architectures by supernet accuracy were trained "
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
    lines += [f"| {run} | {r['level']} | {r['n']} | {fmt(r['kendall_tau'], '+.3f')} | {fmt(r['kendall_p'], '.2g')} |"
              for run, r in rows]
    return "\n".join(lines + [""])


def mechanism_ranking_table(final: dict[str, dict[str, Any]], rows: Sequence[dict[str, Any]],
                            surrogate: dict[str, list[dict[str, Any]]], settings: dict[str, Any]) -> str:
    """Ranking quality per sampler, i.e. with and without warm-up and re-scoring.

    ``final``: :func:`~optuna_epnas.analysis.compare.final_weight_rankings`; ``rows``: the ranking report's
    stand-alone rows (each from one run's trial, its ``supernet_accuracy`` as measured then);
    ``surrogate``: run -> :func:`~optuna_epnas.analysis.ranking.surrogate_heldout` rows; ``settings``:
    sampler -> its :class:`~optuna_epnas.settings.SearchSettings`.
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
                          for lv, rs in sorted(by_level.items())) or MISSING
        final_tau = (f"{np.mean(taus):+.3f} ± {np.std(taus, ddof=1) if len(taus) > 1 else 0:.3f}" if taus else MISSING)
        rescore = "yes" if s.rescore and sampler in PROGRESSIVE else "no"
        lines.append(f"| {sampler} | {s.warmup_epochs} | {rescore} | {len(taus)} | {final_tau} | "
                     f"{fmt(measured.to_dict()['kendall_tau'], '+.3f')} ({measured.n}) | {levels} |")
    return "\n".join(lines + [""])
