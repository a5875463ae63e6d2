"""The progressive schedule: stages (iteration, level), their sizes, and the temperature of each iteration."""

from __future__ import annotations

from typing import Callable, Sequence, Union

from optuna_epnas.spaces.base import SearchSpace

TemperatureSpec = Union[tuple[float, float], Sequence[float], Callable[[int], float]]


def temperature_schedule(spec: TemperatureSpec, iterations: int) -> Callable[[int], float]:
    """τ for each 0-based iteration.

    ``(start, end)``: geometric decay from start (first iteration) to end (last iteration) -- high τ
    makes the first pass near-uniform, and it reaches ``end`` quickly; end < 1 sharpens beyond the
    surrogate's own ranking. A sequence gives τ per iteration. A callable maps iteration -> τ.
    Iterations past the schedule keep the last value.
    """
    if callable(spec):
        fn = spec
    else:
        values = [float(v) for v in spec]
        if not values or any(not v > 0 for v in values):
            raise ValueError(f"temperature values must be positive numbers, got {values}")
        if len(values) == 2:  # (start, end); with iterations == 2 both readings agree
            start, end = values
            if iterations == 1:
                values = [end]
            else:
                values = [start * (end / start) ** (i / (iterations - 1)) for i in range(iterations)]

        fn = _PerIteration(values)

    for i in range(max(iterations, 1)):
        t = fn(i)
        if not t > 0:
            raise ValueError(f"temperature must be positive, iteration {i + 1} has τ={t}")
    return fn


class _PerIteration:
    """τ per iteration from a list (the last value repeats): a class, not a closure, so that a sampler
    holding it pickles."""

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def __call__(self, i: int) -> float:
        return self.values[min(i, len(self.values) - 1)]


def _representative_children(space: SearchSpace, level: int) -> int:
    # The schedule counts a level's candidates before any plan exists, so it takes one architecture's
    # number of children for its level's: the space contract (optuna_epnas.testing.check_space) holds
    # every space to "the number of children depends on the level only".
    arch = space.root()
    for _ in range(level - 1):
        arch = space.child(arch, 0)
    return space.num_children(arch)


def stage_sizes(space: SearchSpace, k: int) -> list[int]:
    """Trials per level of one iteration: every level-1 architecture, then up to K per level."""
    sizes = [len(space.initial())]
    for level in range(2, space.max_level + 1):
        sizes.append(min(k, sizes[-1] * _representative_children(space, level)))
    return sizes


def planned_trials(space: SearchSpace, k: int, iterations: int, reuse: bool = False) -> int:
    """Trials in a full schedule of ``iterations`` progressions (failed trials are retried on top).

    ``reuse``: an architecture measured before is not queried again, so only the first iteration
    queries level 1 (the count is then an upper bound: a later level with fewer than K candidates
    never measured queries fewer)."""
    sizes = stage_sizes(space, k)
    return sizes[0] + iterations * sum(sizes[1:]) if reuse else iterations * sum(sizes)


def fit_to_budget(space: SearchSpace, budget: int, k: int | None, iterations: int,
                  reuse: bool = False) -> tuple[int, int]:
    """``(k, iterations)`` of a schedule that ends within ``budget`` trials: the largest K with which
    ``iterations`` progressions fit (fewer iterations if even K=1 does not), or, with ``k`` given, the
    most iterations up to ``iterations`` that fit. ValueError if not even one progression fits."""
    for its in range(iterations, 0, -1):
        if k is not None:
            if planned_trials(space, k, its, reuse) <= budget:
                return k, its
            continue
        if planned_trials(space, 1, its, reuse) > budget:
            continue
        low, high = 1, max(1, budget)  # planned_trials grows with K: the largest K that fits
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if planned_trials(space, mid, its, reuse) <= budget else (low, mid - 1)
        return low, its
    need = planned_trials(space, 1 if k is None else k, 1, reuse)
    raise ValueError(f"n_trials={budget} is too few for one progression of {space.describe()}"
                     f"{'' if k is None else f' with k={k}'}: it needs at least {need} trials (every level-1 "
                     f"architecture, then {'one' if k is None else k} per level); raise n_trials"
                     f"{'' if k is None else ' or lower k'}")
