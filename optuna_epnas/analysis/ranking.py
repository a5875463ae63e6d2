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
- :mod:`optuna_epnas.analysis.ranking_report` reports them (Markdown, files, the study note;
  ``epnas ranking``).

Correlations are Kendall's τ-b (ties, as in accuracies on small test sets, handled) and Spearman's
ρ from ``scipy.stats``. Undefined ones (fewer than 3 pairs, or one side constant) are NaN, not an
error: a long stand-alone training run must not be lost to a degenerate correlation at its end.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from optuna_epnas._checks import check_positive_int
from optuna_epnas.storage._storage import study_attrs
from optuna_epnas.data.device import DeviceData
from optuna_epnas.standalone.export import ModelSpec, build_seeded
from optuna_epnas.storage.keys import OBJECTIVE_ATTR
from optuna_epnas.settings import RANKING_EPOCHS
from optuna_epnas.spaces import SearchSpace
from optuna_epnas.standalone.train import train_final
from optuna_epnas.costs.values import accuracy_of, latest_per_arch

__all__ = [
    "RankCorrelation", "rank_correlation", "spread_trials", "supernet_vs_standalone", "standalone_correlations",
    "surrogate_heldout", "strength", "count_full_size",
]

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


def _latest_full_size(pairs: Sequence[tuple[str | None, FrozenTrial]], max_level: int
                      ) -> list[tuple[str | None, FrozenTrial]]:
    """One (label, trial) per distinct full-size architecture: its latest COMPLETE measurement."""
    label = {id(t): name for name, t in pairs}
    return [(label[id(t)], t) for t in latest_per_arch((t for _, t in pairs), max_level).values()]


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
    check_positive_int("n", n)
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


def count_full_size(trials: TrialSource, max_level: int) -> int:
    """Distinct full-size architectures measured (COMPLETE): what :func:`spread_trials` picks from."""
    return len(_latest_full_size(_labelled(trials), max_level))


# -- supernet accuracy vs stand-alone accuracy --------------------------------------------------------

def _search_channels(trials: TrialSource) -> int:
    spec = None
    if isinstance(trials, optuna.Study):
        spec = study_attrs(trials).get(OBJECTIVE_ATTR)
    if not isinstance(spec, dict) or "channels" not in spec:
        raise ValueError("pass channels=: the width to train the architectures at (the search's supernet width "
                         f"is only known from a single study's {OBJECTIVE_ATTR!r} attribute)")
    return int(spec["channels"])


def supernet_vs_standalone(
    trials: TrialSource, space: SearchSpace, data: DeviceData, n: int = 20, epochs: int = RANKING_EPOCHS,
    channels: int | None = None, cells: int | None = None, seed: int = 0,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> tuple[RankCorrelation, list[dict[str, Any]]]:
    """Train :func:`spread_trials` architectures from scratch; correlate with their supernet accuracy.

    Each network is built by ``ModelSpec(...).build()`` initialised from ``seed`` and trained by
    :func:`~optuna_epnas.standalone.train.train_final` for ``epochs`` with the same ``seed`` (same data order for
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
        result = train_final(build_seeded(spec, seed), data, epochs=epochs, seed=seed)
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
