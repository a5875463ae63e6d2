"""The ranking benchmark: how well does an estimator order architectures the way training them alone does?

A *ranking table* holds architectures of one proxy task with their stand-alone validation and test
accuracy, each from several training seeds (``studies/ranking_table.py`` makes the Fashion-MNIST proxy's;
``studies/results/ranking-benchmark/table.json``). An *estimator* is a plug-in: a function from a list of
architecture keys to one score each (higher: better), optionally with what it cost in multiply-adds
(:class:`Estimate`). :func:`score_estimate` compares the scores with the table's mean stand-alone test
accuracy -- Kendall τ-b, Spearman ρ and the top-10 % hit rate, each with a bootstrap interval over the
architectures (``scipy.stats.bootstrap``, paired) -- and :func:`run_benchmark` does it for many estimators.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import stats

__all__ = ["RankingTable", "Estimate", "Estimator", "load_ranking_table", "top_hit_rate", "score_estimate",
           "run_benchmark"]


@dataclass(frozen=True)
class RankingTable:
    """Architectures (keys) with their stand-alone accuracies, one column per training seed."""

    archs: tuple[str, ...]
    val_accuracy: np.ndarray  # (n, seeds)
    test_accuracy: np.ndarray  # (n, seeds)
    proxy: dict[str, Any] = field(default_factory=dict)

    @property
    def truth(self) -> np.ndarray:
        """What estimators are judged against: the mean stand-alone test accuracy over training seeds."""
        return self.test_accuracy.mean(axis=1)

    def __len__(self) -> int:
        return len(self.archs)


def load_ranking_table(path: str | Path) -> RankingTable:
    """The table written by ``studies/ranking_table.py``; checked whole (every row every seed, finite
    accuracies in [0, 1], no architecture twice), with one error naming what is wrong."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        rows = raw["architectures"]
        seeds = len(raw["seeds"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a ranking table (expected the JSON studies/ranking_table.py writes): {e}") from None
    archs = [r["arch"] for r in rows]
    if len(set(archs)) != len(archs):
        raise ValueError(f"{path}: an architecture appears twice; re-write the table with studies/ranking_table.py --write")
    columns = {}
    for name in ("val_accuracy", "test_accuracy"):
        bad = [r["arch"] for r in rows if not (isinstance(r.get(name), list) and len(r[name]) == seeds
                                               and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in r[name]))]
        if bad:
            raise ValueError(f"{path}: {name} must be {seeds} accuracies in [0, 1] per architecture (one per "
                             f"training seed); not so for {bad[:3]}")
        columns[name] = np.array([r[name] for r in rows], dtype=float)
    val, test = columns["val_accuracy"], columns["test_accuracy"]
    if len(rows) < 3:
        raise ValueError(f"{path}: {len(rows)} architectures; a rank correlation needs at least 3")
    return RankingTable(tuple(archs), val, test, {**raw.get("proxy", {}), "final": raw.get("final")})


@dataclass
class Estimate:
    """An estimator's answer: one score per architecture (higher: predicted better), what it cost in
    multiply-adds (``optuna_epnas.costs.cost``'s unit; None: not counted) and, optionally, named alternative
    scores it produced on the way (e.g. the validation loss beside the accuracy) -- each is judged too."""

    scores: Sequence[float]
    cost_macs: float | None = None
    variants: dict[str, "Estimate"] = field(default_factory=dict)


#: A plug-in estimator: architecture keys in, an :class:`Estimate` (or plain scores) out.
Estimator = Callable[[Sequence[str]], "Estimate | Sequence[float]"]


def top_hit_rate(scores: Sequence[float], truth: Sequence[float], fraction: float = 0.1) -> float:
    """Of the estimator's top ``fraction`` (at least one architecture), the share that is in the true top
    ``fraction``. Ties in ``scores`` are broken by position (stable sort), as a sampler taking the first
    k would."""
    scores, truth = np.asarray(scores, float), np.asarray(truth, float)
    k = max(1, int(math.ceil(fraction * len(scores))))
    predicted = np.argsort(-scores, kind="stable")[:k]
    true = np.argsort(-truth, kind="stable")[:k]
    return len(set(predicted.tolist()) & set(true.tolist())) / k


def _tau(s: np.ndarray, t: np.ndarray) -> float:
    return float(stats.kendalltau(s, t).statistic)


def _rho(s: np.ndarray, t: np.ndarray) -> float:
    return float(stats.spearmanr(s, t).statistic)


def _interval(statistic: Callable[[np.ndarray, np.ndarray], float], s: np.ndarray, t: np.ndarray,
              resamples: int, seed: int) -> list[float | None]:
    """95 % percentile bootstrap interval over architectures (pairs resampled together)."""
    if np.ptp(s) == 0:
        return [None, None]
    with np.errstate(invalid="ignore"):
        res = stats.bootstrap((s, t), statistic, paired=True, vectorized=False, n_resamples=resamples,
                              method="percentile", random_state=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return [None if not math.isfinite(v) else float(v) for v in (lo, hi)]


def score_estimate(scores: Sequence[float], table: RankingTable, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Kendall τ-b, Spearman ρ and top-10 % hit rate of ``scores`` against the table's truth, each with
    its 95 % bootstrap interval (``<name>_interval``). A constant estimator has τ and ρ None (undefined)."""
    s = np.asarray(scores, dtype=float)
    t = table.truth
    if s.shape != t.shape:
        raise ValueError(f"the estimator gave {s.size} scores for {t.size} architectures: one per architecture, in order")
    if not np.all(np.isfinite(s)):
        bad = [table.archs[i] for i in np.flatnonzero(~np.isfinite(s))[:3]]
        raise ValueError(f"the estimator gave non-finite scores, e.g. for {bad}: map failures to a low finite score")
    constant = np.ptp(s) == 0
    out: dict[str, Any] = {
        "kendall_tau": None if constant else _tau(s, t),
        "spearman": None if constant else _rho(s, t),
        "top10_hit_rate": top_hit_rate(s, t),
    }
    out["kendall_tau_interval"] = _interval(_tau, s, t, resamples, seed)
    out["spearman_interval"] = _interval(_rho, s, t, resamples, seed)
    out["top10_hit_rate_interval"] = _interval(top_hit_rate, s, t, resamples, seed)
    return out


def _as_estimate(value: Any) -> Estimate:
    return value if isinstance(value, Estimate) else Estimate(list(value))


def run_benchmark(estimators: Mapping[str, Estimator], table: RankingTable, resamples: int = 2000,
                  say: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Each estimator on the table's architectures, scored (plus its variants, named ``<name>/<variant>``),
    with its cost and the seconds it took on this machine."""
    results: dict[str, dict[str, Any]] = {}
    for name, estimator in estimators.items():
        started = time.perf_counter()
        estimate = _as_estimate(estimator(list(table.archs)))
        seconds = time.perf_counter() - started
        for label, e in [(name, estimate), *((f"{name}/{k}", _as_estimate(v)) for k, v in estimate.variants.items())]:
            row = {**score_estimate(e.scores, table, resamples), "cost_macs": e.cost_macs,
                   "scores": [float(x) for x in e.scores]}
            if label == name:
                row["seconds"] = round(seconds, 1)
            results[label] = row
            tau = row["kendall_tau"]
            say(f"{label}: τ {'undefined' if tau is None else f'{tau:+.3f}'}, top-10 % hit "
                f"{row['top10_hit_rate']:.2f}, cost {e.cost_macs if e.cost_macs is None else f'{e.cost_macs:.3g}'} MACs")
    return results
