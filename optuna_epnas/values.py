"""What a search's trial values are: validation accuracy first, then the cost objectives of a
multi-objective search (``SupernetObjective(objectives=("accuracy", "params"))``), counted exactly."""

from __future__ import annotations

from typing import Sequence

from optuna.trial import FrozenTrial

#: Cost objectives, each an index into :meth:`optuna_epnas.cost.NetworkSize.count`'s (parameters, MACs).
COSTS = {"params": 0, "macs": 1}
COST_NAMES = {"params": "parameters", "macs": "multiply-adds"}


def check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    """``("accuracy",)`` or ``("accuracy", cost)``: the first value is what the surrogate learns."""
    objectives = tuple(objectives)
    if objectives[:1] != ("accuracy",) or len(objectives) > 2 or any(o not in COSTS for o in objectives[1:]):
        raise ValueError(f"objectives must be ('accuracy',) or ('accuracy', one of {tuple(COSTS)}), got {objectives!r}")
    return objectives


def accuracy_of(trial: FrozenTrial) -> float | None:
    """A trial's measured accuracy (its first value), None if it has none."""
    return trial.values[0] if trial.values else None
