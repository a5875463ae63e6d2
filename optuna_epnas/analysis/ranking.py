"""Ranking quality: do the search's numbers order architectures the way training them alone would?

A progressive search trusts two rankings: the supernet's weight-sharing validation accuracy (which
architecture is kept) and the LSTM surrogate's prediction (which candidates are measured at all).
Weight-sharing rankings can be nearly uncorrelated with stand-alone accuracy (Sciuto et al. 2019,
"Evaluating the search phase of neural architecture search"; Li & Talwalkar 2019), so this module
measures both instead of assuming them:

- :func:`supernet_vs_standalone`: train a spread of the search's full-size architectures from
  scratch and rank-correlate their stand-alone test accuracy with their supernet accuracy;
- :func:`surrogate_heldout`: rank-correlate the surrogate's prediction of each EPNAS/PNAS trial
  (made before it was measured) with the measured value, on architectures the surrogate was not
  trained on;
- :func:`ranking_markdown` and ``epnas ranking`` (:func:`add_ranking_parser`, :func:`ranking_command`)
  report them.

Correlations are Kendall's τ-b (ties, as in accuracies on small test sets, handled) and Spearman's
ρ from ``scipy.stats``. Undefined ones (fewer than 3 pairs, or one side constant) are NaN, not an
error: a long stand-alone training run must not be lost to a degenerate correlation at its end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np
import optuna
import optuna_dashboard
import torch
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from optuna_epnas.argtypes import add_data_arguments, load_data, positive_int
from optuna_epnas.checkpoint import safe_name
from optuna_epnas.analysis.dashboard import RANKING_MARKER
from optuna_epnas.data import DeviceData
from optuna_epnas.export import ModelSpec
from optuna_epnas.objective import OBJECTIVE_ATTR
from optuna_epnas.spaces import SearchSpace, space_from_spec
from optuna_epnas.storages import public_url
from optuna_epnas.train import load_search_study, train_final
from optuna_epnas.values import accuracy_of

__all__ = [
    "RankCorrelation", "rank_correlation", "spread_trials", "supernet_vs_standalone", "standalone_correlations",
    "surrogate_heldout", "ranking_markdown", "strength", "add_ranking_parser", "ranking_command",
    "append_to_study_note", "NOTE_MARKER",
]

REPORT_FORMAT = "optuna_epnas.analysis.ranking/1"
#: Starts the ranking section of a study note; everything after it is replaced when the report is rewritten.
NOTE_MARKER = RANKING_MARKER
#: Labels of |τ|: at least 0.5 strong, 0.3 moderate, 0.1 weak, below that none.
STRENGTHS: tuple[tuple[float, str], ...] = ((0.5, "strong"), (0.3, "moderate"), (0.1, "weak"), (0.0, "no"))

#: Where trials come from: a study, a mapping study name -> trials, or a sequence of trials and/or studies.
TrialSource = Union[optuna.Study, Mapping[str, Sequence[FrozenTrial]], Sequence[Union[FrozenTrial, optuna.Study]]]


# -- rank correlation ---------------------------------------------------------------------------------
@dataclass
class RankCorrelation:
    """Kendall τ-b and Spearman ρ of paired values, with two-sided p-values of "no correlation".

    The four statistics are NaN when the correlation is undefined; ``note`` then says why
    (e.g. "2 pairs, at least 3 are needed"), else it is "".
    """

    n: int
    kendall_tau: float
    kendall_p: float
    spearman_rho: float
    spearman_p: float
    note: str = ""

    @property
    def defined(self) -> bool:
        return not math.isnan(self.kendall_tau)

    def to_dict(self) -> dict[str, Any]:
        """As a dict, NaN as None (valid JSON)."""
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(self).items()}


def _undefined(n: int, why: str) -> RankCorrelation:
    nan = float("nan")
    return RankCorrelation(n, nan, nan, nan, nan, note=why)


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> RankCorrelation:
    """Kendall τ-b and Spearman ρ of ``x`` and ``y`` (``scipy.stats.kendalltau`` / ``spearmanr``).

    Fewer than 3 pairs, or a constant ``x`` or ``y``, give NaN statistics with a ``note`` (no
    ValueError: see the module docstring). Different lengths or non-finite values raise ValueError.
    """
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError("rank_correlation needs two 1-D sequences of equal length, "
                         f"got shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("rank_correlation got a NaN or infinite value")
    n = len(a)
    if n < 3:
        return _undefined(n, f"{n} pair{'s' * (n != 1)}, at least 3 are needed")
    for name, values in (("x", a), ("y", b)):
        if np.ptp(values) == 0:
            return _undefined(n, f"all {n} values of {name} are equal ({values[0]:.4g})")
    tau = stats.kendalltau(a, b)  # variant "b" (the default): corrected for ties
    rho = stats.spearmanr(a, b)
    return RankCorrelation(n, float(tau.statistic), float(tau.pvalue), float(rho.statistic), float(rho.pvalue))


def strength(tau: float) -> str:
    """``"strong"``, ``"moderate"``, ``"weak"`` or ``"no"`` by |τ| (thresholds in :data:`STRENGTHS`)."""
    return next(label for bound, label in STRENGTHS if abs(tau) >= bound)


# -- which architectures -----------------------------------------------------------------------------
def _labelled(trials: TrialSource) -> list[tuple[str | None, FrozenTrial]]:
    """(study name or None, trial) pairs, whatever form the trials came in."""
    if isinstance(trials, optuna.Study):
        return [(trials.study_name, t) for t in trials.get_trials(deepcopy=False)]
    if isinstance(trials, Mapping):
        return [(str(name), t) for name, ts in trials.items() for t in ts]
    pairs: list[tuple[str | None, FrozenTrial]] = []
    for item in trials:
        pairs += _labelled(item) if isinstance(item, optuna.Study) else [(None, item)]
    return pairs


def _when(trial: FrozenTrial) -> tuple[datetime.datetime, int]:
    """Order of measurement: completion time first, so trials pooled from several studies compare."""
    return trial.datetime_complete or trial.datetime_start or datetime.datetime.min, trial.number


def _latest_full_size(pairs: Sequence[tuple[str | None, FrozenTrial]], max_level: int
                      ) -> list[tuple[str | None, FrozenTrial]]:
    """One (label, trial) per distinct full-size architecture: its latest COMPLETE measurement."""
    latest: dict[str, tuple[str | None, FrozenTrial]] = {}
    for label, t in pairs:
        if (t.state != TrialState.COMPLETE or accuracy_of(t) is None or t.user_attrs.get("level") != max_level
                or "arch" not in t.user_attrs):
            continue
        key = t.user_attrs["arch"]
        if key not in latest or _when(t) >= _when(latest[key][1]):
            latest[key] = (label, t)
    return list(latest.values())


def _even_ranks(m: int, n: int) -> list[int]:
    """``n`` of the ranks 0..m-1, evenly spaced and including both ends (all of them when n >= m)."""
    if n >= m:
        return list(range(m))
    if n == 1:
        return [m - 1]
    # The step (m-1)/(n-1) is >= 1, so rounding half up keeps the ranks distinct.
    return [math.floor(i * (m - 1) / (n - 1) + 0.5) for i in range(n)]


def _spread(pairs: Sequence[tuple[str | None, FrozenTrial]], max_level: int, n: int
            ) -> list[tuple[str | None, FrozenTrial]]:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    full = sorted(_latest_full_size(pairs, max_level), key=lambda p: (accuracy_of(p[1]), p[1].user_attrs["arch"]))
    return [full[i] for i in _even_ranks(len(full), n)]


def spread_trials(trials: TrialSource, max_level: int, n: int = 20) -> list[FrozenTrial]:
    """At most ``n`` COMPLETE full-size trials (``level == max_level``), one per distinct ``arch``.

    Each architecture counts once, by its latest measurement (latest completion time, then trial
    number; trials may be pooled from several studies). The picks are evenly spaced in the ranks of
    their supernet accuracy, lowest and highest included, so a correlation sees the whole range
    rather than the top only. Returned in increasing supernet accuracy.
    """
    return [t for _, t in _spread(_labelled(trials), max_level, n)]


# -- supernet accuracy vs stand-alone accuracy --------------------------------------------------------
def _seeded_build(spec: ModelSpec, seed: int) -> torch.nn.Module:
    """The stand-alone network initialised from ``seed``, without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.build()


def _search_channels(trials: TrialSource) -> int:
    spec = None
    if isinstance(trials, optuna.Study):
        spec = trials._storage.get_study_system_attrs(trials._study_id).get(OBJECTIVE_ATTR)
    if not isinstance(spec, dict) or "channels" not in spec:
        raise ValueError("pass channels=: the width to train the architectures at (the search's supernet width "
                         f"is only known from a single study's {OBJECTIVE_ATTR!r} attribute)")
    return int(spec["channels"])


def supernet_vs_standalone(
    trials: TrialSource, space: SearchSpace, data: DeviceData, n: int = 20, epochs: int = 10,
    channels: int | None = None, cells: int | None = None, seed: int = 0,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> tuple[RankCorrelation, list[dict[str, Any]]]:
    """Train :func:`spread_trials` architectures from scratch; correlate with their supernet accuracy.

    Each network is built by ``ModelSpec(...).build()`` initialised from ``seed`` and trained by
    :func:`~optuna_epnas.train.train_final` for ``epochs`` with the same ``seed`` (same data order for
    all). ``channels``: the width (default: the search's supernet width, read from ``trials`` when it
    is a study); ``cells``: micro normal cells per stage (default: the space's, as in the search).
    ``progress(i, n, row)`` is called after each architecture (i from 1).

    Returns the correlation of supernet accuracy with stand-alone TEST accuracy, and one row per
    architecture, in increasing supernet accuracy: ``arch``, ``study``, ``trial``,
    ``supernet_accuracy``, ``standalone_val_accuracy``, ``standalone_test_accuracy``, ``params``,
    ``seconds``. :func:`standalone_correlations` gives the validation correlation from the rows.
    """
    channels = _search_channels(trials) if channels is None else channels
    picked = _spread(_labelled(trials), space.max_level, n)
    # All specs first: a bad channels/cells fails before any training.
    specs = [ModelSpec(space=space.spec(), arch=t.user_attrs["arch"], num_classes=data.num_classes,
                       in_channels=data.in_channels, channels=channels, cells=cells) for _, t in picked]
    rows: list[dict[str, Any]] = []
    for i, ((label, trial), spec) in enumerate(zip(picked, specs), start=1):
        result = train_final(_seeded_build(spec, seed), data, epochs=epochs, seed=seed)
        rows.append({
            "arch": spec.arch, "study": label, "trial": trial.number, "supernet_accuracy": float(accuracy_of(trial)),
            "standalone_val_accuracy": result.val_accuracy, "standalone_test_accuracy": result.test_accuracy,
            "params": result.params, "seconds": result.seconds,
        })
        if progress is not None:
            progress(i, len(picked), rows[-1])
    return standalone_correlations(rows)["test"], rows


def standalone_correlations(rows: Sequence[Mapping[str, Any]]) -> dict[str, RankCorrelation]:
    """Supernet accuracy vs stand-alone ``"test"`` and ``"val"`` accuracy, from :func:`supernet_vs_standalone` rows."""
    supernet = [r["supernet_accuracy"] for r in rows]
    return {split: rank_correlation(supernet, [r[f"standalone_{split}_accuracy"] for r in rows])
            for split in ("test", "val")}


# -- the surrogate on held-out architectures ----------------------------------------------------------
def _trials_of(study_or_trials: optuna.Study | Sequence[FrozenTrial]) -> list[FrozenTrial]:
    if isinstance(study_or_trials, optuna.Study):
        return study_or_trials.get_trials(deepcopy=False)
    return list(study_or_trials)


def _measured_by_stage(trials: Sequence[FrozenTrial]) -> dict[tuple[int, int], dict[str, FrozenTrial]]:
    """(iteration, level) -> arch -> its latest COMPLETE trial in that stage (a retried slot counts once)."""
    stages: dict[tuple[int, int], dict[str, FrozenTrial]] = {}
    for t in trials:
        a = t.user_attrs
        if t.state != TrialState.COMPLETE or accuracy_of(t) is None or not {"iteration", "level", "arch"} <= a.keys():
            continue  # enqueued trials have no stage: the sampler never trains its surrogate on them either
        stage = stages.setdefault((int(a["iteration"]), int(a["level"])), {})
        if a["arch"] not in stage or stage[a["arch"]].number < t.number:
            stage[a["arch"]] = t
    return stages


def _heldout_row(level: int, iteration: int | None, pairs: Sequence[tuple[float, float]], excluded: int
                 ) -> dict[str, Any]:
    corr = rank_correlation([p for p, _ in pairs], [v for _, v in pairs])
    return {"level": level, "iteration": iteration, "n": corr.n, "excluded": excluded,
            "kendall_tau": corr.to_dict()["kendall_tau"], "kendall_p": corr.to_dict()["kendall_p"]}


def surrogate_heldout(study_or_trials: optuna.Study | Sequence[FrozenTrial]) -> list[dict[str, Any]]:
    """Kendall τ of the surrogate's ``predicted_accuracy`` vs the measured value, on held-out architectures.

    For one EPNAS/PNAS study. A stage is (iteration, level); its predictions come from a surrogate
    fitted on every architecture measured (COMPLETE) in the stages before it, in the sampler's order
    (iteration, then level). An architecture of the stage that was among those is left out: the
    surrogate was trained on it, so agreeing with it says little about ranking unseen candidates.

    Rows, for each level with predictions (2 and up): the level pooled over iterations
    (``iteration`` None), then each of its stages: ``level``, ``iteration``, ``n`` (held-out pairs),
    ``excluded`` (trials left out as training rows), ``kendall_tau``, ``kendall_p`` -- those two
    None when undefined (n < 3, or constant predictions or values). Studies without predictions
    (TPE, random) give [].
    """
    stages = _measured_by_stage(_trials_of(study_or_trials))
    seen: set[str] = set()  # architectures measured in the stages before the current one
    heldout: dict[tuple[int, int], tuple[list[tuple[float, float]], int]] = {}
    for stage in sorted(stages):
        measured = stages[stage]
        predicted = {k: t for k, t in measured.items() if "predicted_accuracy" in t.user_attrs}
        if predicted:
            pairs = [(float(t.user_attrs["predicted_accuracy"]), float(accuracy_of(t)))
                     for k, t in predicted.items() if k not in seen]
            heldout[stage] = (pairs, len(predicted) - len(pairs))
        seen |= measured.keys()

    rows: list[dict[str, Any]] = []
    for level in sorted({level for _, level in heldout}):
        its = sorted(it for it, lv in heldout if lv == level)
        pooled = [p for it in its for p in heldout[(it, level)][0]]
        rows.append(_heldout_row(level, None, pooled, sum(heldout[(it, level)][1] for it in its)))
        rows += [_heldout_row(level, it, *heldout[(it, level)]) for it in its]
    return rows


# -- the report ---------------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


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
        lines.append(f"- vs stand-alone **{split}** accuracy: n = {c.n}, Kendall τ = {_fmt(c.kendall_tau, '+.3f')} "
                     f"(p = {_fmt(c.kendall_p, '.2g')}), Spearman ρ = {_fmt(c.spearman_rho, '+.3f')} "
                     f"(p = {_fmt(c.spearman_p, '.2g')})" + (f" -- undefined ({c.note})" if c.note else ""))
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
                     f"{_fmt(r['kendall_tau'], '+.3f')} | {_fmt(r['kendall_p'], '.2g')} |")
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


# -- `epnas ranking` ----------------------------------------------------------------------------------
def add_ranking_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``ranking`` to the subparsers object of the ``epnas`` parser; returns the subparser."""
    r = commands.add_parser(
        "ranking", help="measure how well the supernet and the surrogate rank architectures",
        description="Train a spread of a search's full-size architectures from scratch and rank-correlate their "
                    "stand-alone test accuracy with their supernet accuracy; rank-correlate the surrogate's "
                    "predictions with the measured accuracies on held-out architectures. Writes ranking.md and "
                    "ranking.json, and adds the report to the study's note in optuna-dashboard.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    r.add_argument("--study", required=True, metavar="NAME", help="a search study")
    r.add_argument("--storage", default="sqlite:///epnas.db", help="Optuna storage URL of --study")
    r.add_argument("--n", type=positive_int, default=20, help="full-size architectures to train stand-alone")
    r.add_argument("--epochs", type=positive_int, default=10, help="stand-alone training epochs each")
    r.add_argument("--channels", type=positive_int, default=None,
                   help="stand-alone width (default: the search's supernet width)")
    r.add_argument("--cells", type=positive_int, default=None,
                   help="micro: normal cells per stage (default: the search's)")
    r.add_argument("--seed", type=int, default=None,
                   help="initialisation, data order and validation split (default: the search's seed)")
    add_data_arguments(r, None, from_search=True)
    r.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    r.add_argument("--surrogate-only", action="store_true", help="skip the stand-alone training (seconds, not minutes)")
    r.add_argument("--no-note", action="store_true", help="leave the study's optuna-dashboard note alone")
    r.add_argument("--out", default=None,
                   help="folder for ranking.md and ranking.json (default: epnas-ranking/<study>)")
    r.add_argument("--quiet", action="store_true", help="no per-architecture progress lines")
    return r


def append_to_study_note(study: optuna.Study, markdown: str) -> str:
    """Put ``markdown`` at the end of the study's optuna-dashboard note, after :data:`NOTE_MARKER`.

    A ranking section written before is replaced, not repeated. ``DashboardRecorder.write_study_note``
    rebuilds the note from scratch, so a search resumed later drops the section again.
    """
    head = optuna_dashboard.get_note(study).split(NOTE_MARKER)[0].rstrip()
    body = (head + "\n\n" if head else "") + f"{NOTE_MARKER}\n{markdown}"
    optuna_dashboard.save_note(study, body)
    return body


def _progress_line(i: int, n: int, row: Mapping[str, Any]) -> None:
    print(f"  [{i}/{n}] trial {row['trial']:>4}  supernet {row['supernet_accuracy']:.4f}  stand-alone val "
          f"{row['standalone_val_accuracy']:.4f} test {row['standalone_test_accuracy']:.4f}  "
          f"{row['params']:,} params  {row['seconds']:.1f}s  {row['arch']}", flush=True)


def ranking_command(args: argparse.Namespace) -> int:
    """``epnas ranking``: see :func:`add_ranking_parser` for the options."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = load_search_study(args.study, args.storage)
    spec = study._storage.get_study_system_attrs(study._study_id).get(OBJECTIVE_ATTR)
    if not isinstance(spec, dict) or "space" not in spec:
        raise ValueError(f"study {args.study!r} has no {OBJECTIVE_ATTR!r} attribute: it was not made by an "
                         "optuna_epnas search (SupernetObjective / `epnas search`)")
    space = space_from_spec(spec["space"])
    out = Path(args.out) if args.out else Path("epnas-ranking") / safe_name(args.study)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")

    surrogate = surrogate_heldout(study)
    supernet, settings = None, None
    if not args.surrogate_only:
        seed = spec.get("seed", 0) if args.seed is None else args.seed
        channels = args.channels or int(spec["channels"])
        data = load_data(args, spec["dataset"], seed, search=spec)
        settings = {"epochs": args.epochs, "channels": channels, "cells": args.cells, "seed": seed,
                    "dataset": spec["dataset"], "max_train": args.max_train, "image_size": data.image_size,
                    "device": str(data.device)}
        available = len(_latest_full_size(_labelled(study), space.max_level))
        print(f"epnas ranking: study {args.study!r}: {available} distinct full-size architectures, training "
              f"{min(args.n, available)} from scratch ({args.epochs} epochs, {channels} channels, {spec['dataset']} "
              f"on {data.device})", flush=True)
        started = time.perf_counter()
        supernet = supernet_vs_standalone(study, space, data, n=args.n, epochs=args.epochs, channels=channels,
                                          cells=args.cells, seed=seed, progress=None if args.quiet else _progress_line)
        settings["seconds"] = round(time.perf_counter() - started, 1)

    markdown = ranking_markdown(supernet, surrogate, settings)
    report = {"format": REPORT_FORMAT, "study": study.study_name, "storage": public_url(args.storage),
              "settings": settings, "surrogate_heldout": surrogate, "supernet_vs_standalone": None}
    if supernet is not None:
        both = standalone_correlations(supernet[1])
        report["supernet_vs_standalone"] = {"test": supernet[0].to_dict(), "val": both["val"].to_dict(),
                                            "rows": supernet[1]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "ranking.md").write_text(markdown)
    (out / "ranking.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    print("\n" + markdown)
    if not args.no_note:
        append_to_study_note(study, markdown)
    print(f"wrote {out / 'ranking.md'} and {out / 'ranking.json'}"
          + ("" if args.no_note else "; added the report to the study's note (epnas dashboard shows it)"))
    return 0
