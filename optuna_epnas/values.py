"""What a search's trial values are: validation accuracy first, then the cost objective of a two-objective
search (``SupernetObjective(objectives=("accuracy", "params"))``)."""

from __future__ import annotations

from typing import Sequence

from optuna.trial import FrozenTrial

#: Cost objectives: parameters and multiply-adds counted exactly (:class:`optuna_epnas.cost.NetworkSize`),
#: latency estimated from a table measured on the device (:mod:`optuna_epnas.latency`).
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
