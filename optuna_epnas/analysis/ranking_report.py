"""The ranking report: Markdown of :mod:`optuna_epnas.analysis.ranking`'s correlations
(:func:`ranking_markdown`), the section it adds to a study's optuna-dashboard note, and the files
``epnas ranking`` writes (:func:`write_ranking`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
import optuna_dashboard

from optuna_epnas.analysis.dashboard import RANKING_MARKER
from optuna_epnas.analysis.ranking import (
    STRENGTHS, RankCorrelation, count_full_size, standalone_correlations, strength, supernet_vs_standalone,
    surrogate_heldout,
)
from optuna_epnas.data.device import DeviceData
from optuna_epnas.settings import RANKING_EPOCHS
from optuna_epnas.spaces import SearchSpace
from optuna_epnas.analysis.formatting import fmt

__all__ = ["ranking_markdown", "append_to_study_note", "write_ranking", "NOTE_MARKER", "REPORT_FORMAT"]

REPORT_FORMAT = "optuna_epnas.analysis.ranking/1"
#: Starts the ranking section of a study note; everything after it is replaced when the report is rewritten.
NOTE_MARKER = RANKING_MARKER


def _verdict(tau: float, p: float, n: int) -> str:
    """e.g. "weak agreement (τ = +0.22, n = 16); at this n not distinguishable from chance (p = 0.25)"."""
    if tau < 0 and strength(tau) != "no":
        words = f"{strength(tau)} disagreement, the order inverted"
    else:
        words = f"{strength(tau)} agreement"
    chance = "" if p < 0.05 else f"; at this n not distinguishable from chance (p = {p:.2g})"
    return f"{words} (Kendall τ = {tau:+.2f}, n = {n}){chance}"


def _supernet_section(corr: RankCorrelation, rows: Sequence[Mapping[str, Any]],
                      settings: Mapping[str, Any] | None) -> list[str]:
    both = standalone_correlations(rows) if rows else {"test": corr, "val": corr}
    lines = ["### Supernet accuracy vs stand-alone accuracy", ""]
    if settings:
        lines += ["Stand-alone training: " + ", ".join(f"{k} {v}" for k, v in settings.items() if v is not None) + ".",
                  ""]
    for split, c in (("test", corr), ("val", both["val"])):
        lines.append(f"- vs stand-alone **{split}** accuracy: n = {c.n}, Kendall τ = {fmt(c.kendall_tau, '+.3f')} "
                     f"(p = {fmt(c.kendall_p, '.2g')}), Spearman ρ = {fmt(c.spearman_rho, '+.3f')} "
                     f"(p = {fmt(c.spearman_p, '.2g')})" + (f" -- undefined ({c.note})" if c.note else ""))
    lines.append("")
    if corr.defined:
        lines.append("The supernet's weight-sharing accuracy ranks these full-size architectures against their "
                     f"stand-alone test accuracy with {_verdict(corr.kendall_tau, corr.kendall_p, corr.n)}.")
    else:
        lines.append(f"No verdict on the supernet's ranking: the correlation is undefined ({corr.note}).")
    if rows:
        lines += ["", "| supernet | stand-alone val | stand-alone test | params | trial | architecture |",
                  "|---:|---:|---:|---:|---:|---|"]
        for r in sorted(rows, key=lambda r: -r["supernet_accuracy"]):
            trial = f"{r['study']}#{r['trial']}" if r.get("study") else f"#{r['trial']}"
            arch = str(r["arch"]).replace("|", "\\|")  # GFM tables: an escaped pipe, also inside code
            lines.append(f"| {r['supernet_accuracy']:.4f} | {r['standalone_val_accuracy']:.4f} | "
                         f"{r['standalone_test_accuracy']:.4f} | {r['params']:,} | {trial} | `{arch}` |")
    return lines


def _surrogate_section(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["### Surrogate predictions on held-out architectures", ""]
    if not rows:
        return lines + ["No surrogate predictions: not an EPNAS/PNAS search (or no level past the first measured)."]
    lines += ["Kendall τ of the LSTM's prediction (made before the trial) and the measured supernet accuracy, over "
              "the architectures of a stage that the surrogate was not trained on.", "",
              "| level | iteration | n | left out (training rows) | Kendall τ | p |",
              "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        it = "all" if r["iteration"] is None else r["iteration"]
        lines.append(f"| {r['level']} | {it} | {r['n']} | {r.get('excluded', '–')} | "
                     f"{fmt(r['kendall_tau'], '+.3f')} | {fmt(r['kendall_p'], '.2g')} |")
    lines.append("")
    for r in rows:
        if r["iteration"] is not None:
            continue
        if r["kendall_tau"] is None:
            lines.append(f"- Level {r['level']} (all iterations): no verdict, {r['n']} held-out pairs "
                         "(at least 3 with varying values are needed).")
        else:
            lines.append(f"- Level {r['level']} (all iterations): the surrogate ranks unseen candidates with "
                         f"{_verdict(r['kendall_tau'], r['kendall_p'], r['n'])}.")
    return lines


def ranking_markdown(supernet: tuple[RankCorrelation, list[dict[str, Any]]] | None,
                     surrogate: list[dict[str, Any]] | None, settings: Mapping[str, Any] | None = None) -> str:
    """A Markdown section "Ranking quality" with whichever of the two results is given.

    ``settings`` (optional): the stand-alone training settings, shown as one line.
    """
    bounds = ", ".join(f"{label} ≥ {bound}" for bound, label in STRENGTHS[:-1])
    lines = ["## Ranking quality", "",
             f"Strength of agreement by |Kendall τ|: {bounds}, below {STRENGTHS[-2][0]} none. p: two-sided test "
             "of τ = 0 (scipy), not adjusted for the number of comparisons.", ""]
    if supernet is not None:
        lines += _supernet_section(*supernet, settings) + [""]
    if surrogate is not None:
        lines += _surrogate_section(surrogate) + [""]
    return "\n".join(lines).rstrip() + "\n"


def append_to_study_note(study: optuna.Study, markdown: str) -> str:
    """Put ``markdown`` at the end of the study's optuna-dashboard note, after :data:`NOTE_MARKER`.

    A ranking section written before is replaced, not repeated. When a resumed search rewrites its study
    note (``DashboardRecorder.write_study_note``), it rebuilds the part before the marker and keeps this
    section as it is.
    """
    head = optuna_dashboard.get_note(study).split(NOTE_MARKER)[0].rstrip()
    body = (head + "\n\n" if head else "") + f"{NOTE_MARKER}\n{markdown}"
    optuna_dashboard.save_note(study, body)
    return body


# -- `epnas ranking`'s files ---------------------------------------------------------------------------
def _progress_line(i: int, n: int, row: Mapping[str, Any]) -> None:
    print(f"  [{i}/{n}] trial {row['trial']:>4}  supernet {row['supernet_accuracy']:.4f}  stand-alone val "
          f"{row['standalone_val_accuracy']:.4f} test {row['standalone_test_accuracy']:.4f}  "
          f"{row['params']:,} params  {row['seconds']:.1f}s  {row['arch']}", flush=True)


def write_ranking(study: optuna.Study, space: SearchSpace, out: Path, storage_url: str,
                  data: DeviceData | None = None, dataset: str | None = None, n: int = 20,
                  epochs: int = RANKING_EPOCHS, channels: int | None = None, cells: int | None = None, seed: int = 0,
                  max_train: int | None = None, note: bool = True, quiet: bool = False) -> int:
    """The surrogate's held-out correlations and, given ``data`` (of ``dataset``), the supernet's against ``n``
    architectures trained alone (``epochs``, ``channels``, ``cells``, ``seed``): ``ranking.md`` and
    ``ranking.json`` in ``out``, printed, and (``note``) appended to the study's note."""
    surrogate = surrogate_heldout(study)
    supernet, settings = None, None
    if data is not None:
        settings = {"epochs": epochs, "channels": channels, "cells": cells, "seed": seed,
                    "dataset": dataset, "max_train": max_train, "image_size": data.image_size,
                    "device": str(data.device)}
        available = count_full_size(study, space.max_level)
        print(f"epnas ranking: study {study.study_name!r}: {available} distinct full-size architectures, training "
              f"{min(n, available)} from scratch ({epochs} epochs, {channels} channels, {dataset} "
              f"on {data.device})", flush=True)
        started = time.perf_counter()
        supernet = supernet_vs_standalone(study, space, data, n=n, epochs=epochs, channels=channels,
                                          cells=cells, seed=seed, progress=None if quiet else _progress_line)
        settings["seconds"] = round(time.perf_counter() - started, 1)

    markdown = ranking_markdown(supernet, surrogate, settings)
    report = {"format": REPORT_FORMAT, "study": study.study_name, "storage": storage_url,
              "settings": settings, "surrogate_heldout": surrogate, "supernet_vs_standalone": None}
    if supernet is not None:
        both = standalone_correlations(supernet[1])
        report["supernet_vs_standalone"] = {"test": supernet[0].to_dict(), "val": both["val"].to_dict(),
                                            "rows": supernet[1]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "ranking.md").write_text(markdown)
    (out / "ranking.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    print("\n" + markdown)
    if note:
        append_to_study_note(study, markdown)
    print(f"wrote {out / 'ranking.md'} and {out / 'ranking.json'}"
          + ("" if not note else "; added the report to the study's note (epnas dashboard shows it)"))
    return 0
