"""Non-dominated ranks of two-objective points, fast enough for every candidate of a level.

A level of the macro space can have ~300k candidates; Optuna's non-dominated sort compares every pair.
With two objectives one sort and a binary search per point give every point's front exactly: points
are visited best-first on the first objective, and a point belongs to the first front none of whose
members so far is at least as good on the second.
"""

from __future__ import annotations

import bisect
from typing import Sequence

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState


def front_ranks(gain: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Front index per point (0: non-dominated) for ``gain`` to maximise and ``cost`` to minimise.

    A point is dominated by one with gain >= and cost <= that differs; exact duplicates share a front.
    """
    gain, cost = np.asarray(gain, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    order = np.lexsort((cost, -gain))  # best gain first; among equal gains, the cheapest first
    ranks = np.empty(len(gain), dtype=np.int64)
    tails: list[float] = []  # per front: the lowest cost among its points visited so far (non-decreasing)
    last = None
    gains, costs = gain.tolist(), cost.tolist()
    for i in order.tolist():
        g, c = gains[i], costs[i]
        if last is not None and gains[last] == g and costs[last] == c:
            ranks[i] = ranks[last]  # a duplicate: what dominates one dominates the other
            continue
        front = bisect.bisect_right(tails, c)  # the first front whose cheapest is dearer than c
        if front == len(tails):
            tails.append(c)
        else:
            tails[front] = c
        ranks[i], last = front, i
    return ranks


def crowding(gain: np.ndarray, cost: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance inside each front, scaled to [0, 1] (a front's ends: 1): how
    alone a point is on its front, the tie-break that spreads a front's picks along it."""
    gain, cost = np.asarray(gain, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    out = np.zeros(len(gain))
    for values in (gain, cost):
        spread = np.ptp(values) if len(values) else 0.0
        if not spread > 0:
            continue
        order = np.lexsort((values, ranks))
        v, r = values[order], ranks[order]
        gap = np.full(len(v), np.inf)
        inner = (r[:-2] == r[1:-1]) & (r[1:-1] == r[2:])
        gap[1:-1] = np.where(inner, (v[2:] - v[:-2]) / spread, np.inf)
        out[order] += gap
    return np.where(np.isfinite(out), out / 2.0, 1.0).clip(0.0, 1.0)


def full_depth_front(study: optuna.Study, max_level: int) -> list[FrozenTrial]:
    """The complete full-depth trials of a two-objective search (accuracy, cost) that no other one
    dominates, cheapest first: the networks the search found (shallower ones are steps on the way)."""
    full = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("level") == max_level and t.values is not None and len(t.values) == 2]
    if not full:
        return []
    sign = 1.0 if study.directions[0] == StudyDirection.MAXIMIZE else -1.0
    ranks = front_ranks([sign * t.values[0] for t in full], [t.values[1] for t in full])
    return sorted((t for t, r in zip(full, ranks) if r == 0), key=lambda t: (t.values[1], t.number))


def hypervolume(gain: Sequence[float], cost: Sequence[float], ref_gain: float, ref_cost: float) -> float:
    """The area that the points dominate, bounded by the reference point (``ref_gain`` below every gain
    that counts, ``ref_cost`` above every cost): larger is a better front. Points beyond it add nothing."""
    pts = sorted((c, g) for g, c in zip(gain, cost) if g > ref_gain and c < ref_cost)
    area, best = 0.0, ref_gain
    for i, (c, g) in enumerate(pts):  # cheapest first: each point adds the strip up to the next cost
        best = max(best, g)
        right = pts[i + 1][0] if i + 1 < len(pts) else ref_cost
        area += (right - c) * (best - ref_gain)
    return area
