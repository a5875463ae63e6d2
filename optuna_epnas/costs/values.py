"""What a search's trial values are: validation accuracy first, then the cost objective of a two-objective
search (``SupernetObjective(trainer, costs=CostModel(minimize="params"))``: ``("accuracy", "params")``)."""

from __future__ import annotations

import datetime
from typing import Iterable, Sequence

from optuna.trial import FrozenTrial, TrialState

#: Cost objectives: parameters and multiply-adds counted exactly (:class:`optuna_epnas.costs.cost.NetworkSize`),
#: latency estimated from a table measured on the device (:mod:`optuna_epnas.costs.latency`).
COSTS = ("params", "macs", "latency")
COST_NAMES = {"params": "parameters", "macs": "multiply-adds", "latency": "ms (estimated)"}


def check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    """``("accuracy",)`` or ``("accuracy", cost)``: the first value is what the surrogate learns."""
    objectives = tuple(objectives)
    if objectives[:1] != ("accuracy",) or len(objectives) > 2 or any(o not in COSTS for o in objectives[1:]):
        raise ValueError(f"objectives must be ('accuracy',) or ('accuracy', one of {tuple(COSTS)}), got {objectives!r}")
    return objectives


def accuracy_of(trial: FrozenTrial) -> float | None:
    """A trial's measured accuracy (its first value), None if it has none."""
    return trial.values[0] if trial.values else None


def is_full_size(trial: FrozenTrial, max_level: int) -> bool:
    """A COMPLETE measurement of a full-depth architecture: the trials whose accuracies compare
    (a shallower level is another network, a partial one of the progression)."""
    return (trial.state == TrialState.COMPLETE and accuracy_of(trial) is not None
            and trial.user_attrs.get("level") == max_level and "arch" in trial.user_attrs)


def full_size(trials: Iterable[FrozenTrial], max_level: int) -> list[FrozenTrial]:
    """The full-size measurements among ``trials`` (:func:`is_full_size`), in the order given."""
    return [t for t in trials if is_full_size(t, max_level)]


def measured_at(trial: FrozenTrial) -> tuple[datetime.datetime, int]:
    """Order of measurement: completion time first, so trials pooled from several studies compare."""
    return trial.datetime_complete or trial.datetime_start or datetime.datetime.min, trial.number


def latest_per_arch(trials: Iterable[FrozenTrial], max_level: int) -> dict[str, FrozenTrial]:
    """Each distinct full-size architecture's latest measurement, by its key: what the surrogate reads
    (the supernet's weights moved on since the earlier ones)."""
    latest: dict[str, FrozenTrial] = {}
    for t in full_size(trials, max_level):
        key = t.user_attrs["arch"]
        if key not in latest or measured_at(t) >= measured_at(latest[key]):
            latest[key] = t
    return latest
