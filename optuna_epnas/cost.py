"""Compute accounting in a deterministic unit: multiply-adds (MACs), counted analytically.

A trial's cost is what its supernet path did: ``TRAIN_FACTOR`` × forward MACs per image × images
trained on (epochs × training images), plus forward MACs × validation images for its score. A
re-scoring pass (the sampler re-evaluating measured architectures on the current weights) costs the
same way; it is stored in the level's plan and charged to the trial that made the plan. A supernet
warm-up is charged before the first trial. Seconds
depend on the machine and on what else runs on it; this count does not, so equal-compute comparisons
mean the same everywhere. Forward MACs are counted by ``torch.utils.flop_counter`` on the meta
device (convolutions and matmuls: no memory, no time spent computing), once per architecture.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Sequence

import optuna
import torch
from optuna.trial import FrozenTrial
from torch.utils.flop_counter import FlopCounterMode

from optuna_epnas.nn import build_network
from optuna_epnas.spaces import space_from_spec

#: A training step is a forward and a backward pass; the backward costs about twice the forward.
TRAIN_FACTOR = 3
COST_ATTR = "cost_macs"  # trial user attribute: what the trial's own training and evaluation cost
PLAN_PREFIX = "epnas:plan:"  # study system attributes: the sampler's stored plans (sampler.plan_attr)
WARMUP_ATTR = "epnas:warmup"  # study system attribute: the supernet warm-up before the first trial, and its cost


def forward_macs(space: Any, arch: Any, num_classes: int, in_channels: int, channels: int, image_size: int,
                 cells: int | None = None) -> int:
    """Multiply-adds of one forward pass of one image through the stand-alone network of ``arch``
    (the supernet path of ``arch`` computes the same function, so it costs the same)."""
    return _forward_macs(json.dumps(space.spec(), sort_keys=True), space.key(arch), num_classes, in_channels,
                         channels, image_size, cells)


@functools.lru_cache(maxsize=65536)
def _forward_macs(space_spec: str, key: str, num_classes: int, in_channels: int, channels: int, image_size: int,
                  cells: int | None) -> int:
    space = space_from_spec(json.loads(space_spec))
    with torch.device("meta"):
        net = build_network(space, num_classes, in_channels, channels, arch=space.parse(key), cells=cells)
        with FlopCounterMode(display=False) as counter:
            net(torch.empty(1, in_channels, image_size, image_size))
    return counter.get_total_flops() // 2  # the counter counts a multiply-add as two FLOPs


def trial_costs(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None) -> dict[int, float]:
    """MACs per trial number: its own cost plus the re-scoring of the plan it made, failed trials
    included (the compute was spent); a warm-up before the first trial under number -1.
    ``trials``: the study's trials, when the caller has them already."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    attrs = study._storage.get_study_system_attrs(study._study_id)
    costs = {t.number: float(t.user_attrs.get(COST_ATTR, 0.0)) for t in trials}
    if WARMUP_ATTR in attrs:
        costs[-1] = float(attrs[WARMUP_ATTR]["cost_macs"])
    for name, plan in attrs.items():
        if name.startswith(PLAN_PREFIX) and plan.get("rescored") and plan.get("planned_by") is not None:
            number = int(plan["planned_by"])
            costs[number] = costs.get(number, 0.0) + float(plan["rescored"]["cost_macs"])
    return costs


def cumulative_cost(study: optuna.Study, finished: Sequence[FrozenTrial]) -> list[float]:
    """Per finished trial (in the order given): MACs spent by every trial up to its number."""
    costs = trial_costs(study)
    numbers = sorted(costs)
    out, total, i = [], 0.0, 0
    for t in finished:
        while i < len(numbers) and numbers[i] <= t.number:
            total += costs[numbers[i]]
            i += 1
        out.append(total)
    return out


def total_cost(study: optuna.Study) -> float:
    """Everything a study's search has spent so far, in MACs."""
    return float(sum(trial_costs(study).values()))
