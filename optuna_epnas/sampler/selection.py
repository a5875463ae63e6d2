"""Choosing K of a level's candidates from their scores: the selection log-weights (acquisition, score
scale, Pareto front) and the draw (EPNAS: without replacement under τ; PNAS: the top K)."""

from __future__ import annotations

import numpy as np

from optuna_epnas.sampler.pareto import crowding, front_ranks


def log_weights(each: np.ndarray, acquisition: str, score: str, beta: float = 1.0, best: float = 0.0) -> np.ndarray:
    """Selection log-weights w (p ∝ exp(w/τ)) from the ensemble's predictions ``each`` (members ×
    candidates): the acquisition a -- mean, mean + β·std (``"ucb"``) or expected improvement over
    ``best`` (``"ei"``) -- then log a (``score="raw"``, the paper's p ∝ a^(1/τ)) or a's z-score across
    the candidates (``"z"``: the same τ means the same sharpness whatever the scale of the scores)."""
    mean, std = each.mean(axis=0), each.std(axis=0)
    if acquisition == "ucb":
        value = mean + beta * std
    elif acquisition == "ei":
        value = expected_improvement(mean, std, best)
    else:
        value = mean
    return scaled(value, score)


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
