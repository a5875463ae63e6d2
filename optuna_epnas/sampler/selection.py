"""Choosing K of a level's candidates from their scores.

The behaviour objects an :class:`~optuna_epnas.EPNASSampler` is given: an acquisition (:class:`Mean`,
:class:`UCB`, :class:`ExpectedImprovement`) turns the surrogate ensemble's predictions into one value per
candidate, and a selection (:class:`Softmax`: EPNAS, K drawn without replacement under τ; :class:`TopK`:
PNAS, the K best) draws the level from them. Below them, the functions they call: the selection
log-weights (acquisition, score scale, Pareto front) and the draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optuna_epnas.sampler.pareto import crowding, front_ranks
from optuna_epnas.settings import SAMPLER

SCORES = ("raw", "z")


# -- acquisitions ---------------------------------------------------------------------------------------
class Acquisition:
    """What a candidate is worth to draw, from the ensemble's mean and spread of predicted accuracy."""

    name: str = ""
    needs_spread = False  # an ensemble of >= 2 surrogates

    def __call__(self, mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
        raise NotImplementedError

    @property
    def beta(self) -> float:  # what a study records of every acquisition (the UCB's weight; 1 for the others)
        return 1.0


@dataclass(frozen=True)
class Mean(Acquisition):
    """The ensemble's mean predicted accuracy (the paper's: one LSTM's prediction)."""

    name = "mean"

    def __call__(self, mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
        return mean


@dataclass(frozen=True)
class UCB(Acquisition):
    """Mean + ``beta`` × the ensemble's standard deviation: optimism where its members disagree."""

    beta: float = SAMPLER.beta  # type: ignore[assignment]
    name = "ucb"
    needs_spread = True

    def __post_init__(self) -> None:
        if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta!r}")

    def __call__(self, mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
        return mean + self.beta * std


@dataclass(frozen=True)
class ExpectedImprovement(Acquisition):
    """Expected improvement over the best accuracy measured so far (normal, ensemble mean and std)."""

    name = "ei"
    needs_spread = True

    def __call__(self, mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
        return expected_improvement(mean, std, best)


ACQUISITIONS: dict[str, Any] = {"mean": Mean, "ucb": UCB, "ei": ExpectedImprovement}


def acquisition_named(name: str, beta: float = SAMPLER.beta) -> Acquisition:
    """The acquisition of a name as the command line and a study's settings give it."""
    if name not in ACQUISITIONS:
        raise ValueError(f"acquisition must be one of {tuple(ACQUISITIONS)}, got {name!r}")
    return UCB(beta) if name == "ucb" else ACQUISITIONS[name]()


# -- selections -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """How a level's K are drawn from its candidates' scores (:class:`Softmax` or :class:`TopK`).

    Args:
        acquisition: what a candidate's predictions are worth (:class:`UCB` by default; :class:`Mean` and
            :class:`ExpectedImprovement`). UCB and EI need a surrogate ensemble of >= 2.
        score: ``"raw"`` is the paper's p ∝ a^(1/τ) over the acquisition values a (whose meaning depends
            on the scale of the accuracies: a few points apart, τ=1 is near uniform); ``"z"``
            standardises a across the candidates of the level first, p ∝ exp(z/τ), so that τ means the
            same on every data set.
        parent_weight: adds ``parent_weight`` × the parent's measured accuracy (z-scored across the
            parents, or its log with ``score="raw"``) to each child's log-weight, so that children of the
            better-measured parents are drawn first (0: the surrogate alone, as the paper). The LSTM has
            never seen a sequence as long as the children it scores; the parent's measurement is what the
            progression has actually learned about them.
        diverse: draw the K children from distinct (parent, unit) groups first -- in the macro space a
            parent and the new layer's op, whatever its skips (``space.child_groups``) -- so that one
            parent's new layer is tried with several ops rather than one op with several skip patterns.
            False: the paper's draw over all candidates.
    """

    acquisition: Acquisition = field(default_factory=lambda: acquisition_named(SAMPLER.acquisition))
    score: str = SAMPLER.score
    parent_weight: float = SAMPLER.parent_weight
    diverse: bool = SAMPLER.diverse
    name = ""  # what a study records: "epnas" or "pnas"

    def __post_init__(self) -> None:
        if not isinstance(self.acquisition, Acquisition):
            raise TypeError(f"acquisition must be an Acquisition such as UCB(beta=1.0), Mean() or "
                            f"ExpectedImprovement(), got {self.acquisition!r}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        w = self.parent_weight
        if not (isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0):
            raise ValueError(f"parent_weight must be a finite number >= 0, got {w!r}")
        if not isinstance(self.diverse, bool):
            raise TypeError(f"diverse must be True or False, got {self.diverse!r}")

    def config(self) -> dict[str, Any]:
        """These settings as a study stores them (an option absent when off, as before it existed)."""
        return {"score": self.score, "acquisition": self.acquisition.name, "beta": float(self.acquisition.beta),
                **({"parent_weight": float(self.parent_weight)} if self.parent_weight else {}),
                **({"diverse": True} if self.diverse else {})}

    def draw(self, log_scores: np.ndarray, k: int, tau: float, rng: np.random.Generator,
             groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:func:`select` with this selection's draw."""
        return select(log_scores, k, self.name, tau, rng, groups)


@dataclass(frozen=True)
class Softmax(Selection):
    """EPNAS: K drawn without replacement with p ∝ exp(w/τ) over the candidates' log-weights w."""

    name = "epnas"


@dataclass(frozen=True)
class TopK(Selection):
    """PNAS: the K candidates of the highest log-weights (τ is recorded but draws nothing)."""

    name = "pnas"


SELECTIONS: dict[str, Any] = {"epnas": Softmax, "pnas": TopK}


def log_weights(each: np.ndarray, acquisition: Acquisition, score: str, best: float = 0.0) -> np.ndarray:
    """Selection log-weights w (p ∝ exp(w/τ)) from the ensemble's predictions ``each`` (members ×
    candidates): the acquisition a of their mean and spread (``best``: the best value measured so far,
    for expected improvement), then log a (``score="raw"``, the paper's p ∝ a^(1/τ)) or a's z-score
    across the candidates (``"z"``: the same τ means the same sharpness whatever the scale of the scores)."""
    return scaled(acquisition(each.mean(axis=0), each.std(axis=0), best), score)


def pareto_log_weights(gain: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Selection log-weights from the non-dominated front of (gain up, cost down) and the crowding
    distance inside it (a whole front counts more than any crowding), z-scored as ``score="z"``."""
    ranks = front_ranks(gain, cost)
    return scaled(-ranks + 0.5 * crowding(gain, cost, ranks), "z")


def scaled(value: np.ndarray, score: str) -> np.ndarray:
    """log(value) (``score="raw"``) or its z-score across the values (``"z"``)."""
    if score == "raw":
        return np.log(np.clip(value, 1e-300, None))
    spread = value.std()
    return (value - value.mean()) / spread if spread > 0 else np.zeros_like(value)


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """E[max(Y - best, 0)] for Y ~ N(mean, std²); where std is 0, max(mean - best, 0)."""
    from scipy.stats import norm

    safe = np.where(std > 0, std, 1.0)
    z = (mean - best) / safe
    ei = (mean - best) * norm.cdf(z) + safe * norm.pdf(z)
    return np.where(std > 0, np.maximum(ei, 0.0), np.maximum(mean - best, 0.0))


def select(
    log_scores: np.ndarray, k: int, selection: str, tau: float, rng: np.random.Generator,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the K chosen candidates (in draw order), and each candidate's probability p_i.

    Takes log-weights w_i (log s_i of the surrogate's log-sigmoid -- no underflow to ties at 0 -- or
    standardised scores). EPNAS draws K without replacement with p_i ∝ exp(w_i/τ) (= s_i^(1/τ)): adding
    Gumbel noise to log p and taking the top K is exactly that sequential draw, in one vectorised pass
    over ~300k candidates. PNAS takes the K best. The probability returned is that of being drawn first.

    ``groups`` (a group id per candidate): the diverse draw. Groups are drawn first, without
    replacement, each with the summed probability of its members (PNAS: by its best member), then one
    member within each (by its probability; PNAS: the best); when there are fewer groups than K the
    rest are drawn from the remaining candidates as without groups.
    """
    logits = log_scores / tau
    probability = np.exp(logits - logits.max())
    probability /= probability.sum()
    n = len(log_scores)
    if n <= k:
        return np.arange(n), probability
    perturbed = logits if selection == "pnas" else logits + rng.gumbel(size=n)
    if groups is not None:
        return _one_per_group(logits, perturbed, np.asarray(groups), k, selection, rng), probability
    if selection == "pnas":
        return np.argsort(-log_scores, kind="stable")[:k], probability
    top = np.argpartition(-perturbed, k - 1)[:k]
    return top[np.argsort(-perturbed[top], kind="stable")], probability


def _one_per_group(logits: np.ndarray, perturbed: np.ndarray, groups: np.ndarray, k: int, selection: str,
                   rng: np.random.Generator) -> np.ndarray:
    _, inverse = np.unique(groups, return_inverse=True)
    m = int(inverse.max()) + 1
    # each group's representative: its member with the highest (perturbed; PNAS: plain) value
    order = np.lexsort((-perturbed, inverse))
    first = order[np.r_[0, np.flatnonzero(np.diff(inverse[order])) + 1]]
    if selection == "pnas":
        group_value = logits[first]
    else:  # log of the group's summed probability, Gumbel-perturbed: a draw of groups without replacement
        peak = np.full(m, -np.inf)
        np.maximum.at(peak, inverse, logits)
        mass = np.log(np.bincount(inverse, weights=np.exp(logits - peak[inverse]), minlength=m)) + peak
        group_value = mass + rng.gumbel(size=m)
    picked = first[np.argsort(-group_value, kind="stable")[:k]]
    if len(picked) < k:
        rest = np.setdiff1d(np.arange(len(logits)), picked)
        more = rest[np.argsort(-perturbed[rest], kind="stable")[:k - len(picked)]]
        picked = np.concatenate([picked, more])
    return picked
