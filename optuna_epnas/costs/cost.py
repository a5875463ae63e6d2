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
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial
from torch.utils.flop_counter import FlopCounterMode

from optuna_epnas.storage._storage import study_attrs
from optuna_epnas.storage.keys import COST_ATTR, PLAN_PREFIX, WARMUP_ATTR  # noqa: F401 (their old home)
from optuna_epnas.nn import build_network
from optuna_epnas.spaces import SearchSpace

#: A training step is a forward and a backward pass; the backward costs about twice the forward.
TRAIN_FACTOR = 3


def forward_macs(space: Any, arch: Any, num_classes: int, in_channels: int, channels: int, image_size: int,
                 cells: int | None = None) -> int:
    """Multiply-adds of one forward pass of one image through the stand-alone network of ``arch``
    (the supernet path of ``arch`` computes the same function, so it costs the same)."""
    return NetworkSize(num_classes, in_channels, channels, image_size, cells).count(space, arch)[1]


@dataclass(frozen=True)
class NetworkSize:
    """The network an architecture's size is counted in: the data's classes, input channels and image
    size, and the width (micro: and cells per stage, default the space's). Parameters and multiply-adds
    both grow with the width, so a size limit means something only with the width it was set for;
    :attr:`optuna_epnas.SupernetObjective.network_size` is the one its search trains."""

    num_classes: int
    in_channels: int
    channels: int
    image_size: int
    cells: int | None = None

    @classmethod
    def of(cls, data: Any, channels: int) -> "NetworkSize":
        """The network a supernet of ``channels`` trains on ``data`` (a DeviceData)."""
        return cls(data.num_classes, data.in_channels, channels, data.image_size)

    def count(self, space: Any, arch: Any) -> tuple[int, int]:
        """(parameters, forward multiply-adds per image) of the stand-alone network of ``arch``.

        A space whose units cost the same wherever they grow (``space.size_terms``: the macro space)
        sums per-unit differences of a few canonical networks, each counted once; others build the
        network on the meta device (a few hundred ms each)."""
        spec = json.dumps(space.spec(), sort_keys=True)
        terms = getattr(space, "size_terms", None)
        if terms is None:
            return _count(spec, space.key(arch), self)
        params = macs = 0
        for with_unit, without in terms(arch):
            p, m = _count(spec, space.key(with_unit), self)
            if without is not None:
                p0, m0 = _count(spec, space.key(without), self)
                p, m = p - p0, m - m0
            params, macs = params + p, macs + m
        return params, macs


@functools.lru_cache(maxsize=65536)
def _count(space_spec: str, key: str, size: NetworkSize) -> tuple[int, int]:
    space = SearchSpace.from_spec(json.loads(space_spec))
    with torch.device("meta"):
        net = build_network(space, size.num_classes, size.in_channels, size.channels, arch=space.parse(key),
                            cells=size.cells)
        with FlopCounterMode(display=False) as counter:
            net(torch.empty(1, size.in_channels, size.image_size, size.image_size))
    # the counter counts a multiply-add as two FLOPs
    return sum(p.numel() for p in net.parameters()), counter.get_total_flops() // 2


def per_cost_class(space: Any, parent: Any, measure: Callable[[Any], Any]) -> np.ndarray:
    """``measure(child)`` for every child of ``parent`` (rows in child order), called once per cost class
    of the space (:meth:`~optuna_epnas.SearchSpace.child_cost_classes`), whose children all measure the same."""
    classes = np.asarray(space.child_cost_classes(parent))
    _, first, inverse = np.unique(classes, return_index=True, return_inverse=True)
    return np.array([measure(space.child(parent, int(i))) for i in first])[inverse.reshape(-1)]


def child_sizes(space: Any, parent: Any, size: NetworkSize) -> tuple[np.ndarray, np.ndarray]:
    """Parameters and multiply-adds of every child of ``parent`` (arrays in child order), exact."""
    counts = per_cost_class(space, parent, lambda child: size.count(space, child)).astype(np.int64).reshape(-1, 2)
    return counts[:, 0], counts[:, 1]


def trial_costs(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None,
                attrs: dict[str, Any] | None = None) -> dict[int, float]:
    """MACs per trial number: its own cost plus the re-scoring of the plan it made, failed trials
    included (the compute was spent); a warm-up before the first trial under number -1.
    ``trials``, ``attrs``: the study's trials and system attrs, when the caller has them already."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    attrs = study_attrs(study) if attrs is None else attrs
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


def total_cost(study: optuna.Study, trials: Sequence[FrozenTrial] | None = None,
               attrs: dict[str, Any] | None = None) -> float:
    """Everything a study's search has spent so far, in MACs (``trials``, ``attrs``: as for trial_costs)."""
    return float(sum(trial_costs(study, trials, attrs).values()))


def completion_sizes(space: Any, level: int, size: NetworkSize) -> tuple[int, int]:
    """The least parameters and multiply-adds that growing any architecture of ``level`` units to full
    depth adds: the cheapest child's growth, level after level. Exact for a space whose growth cost
    does not depend on the parent's units (the macro space: each layer's cost is its op, its merge BN
    and its position's resolution), which :meth:`SearchSpace.child_cost_classes` spaces must be."""
    return _completion_sizes(json.dumps(space.spec(), sort_keys=True), level, size)


@functools.lru_cache(maxsize=1024)
def _completion_sizes(space_spec: str, level: int, size: NetworkSize) -> tuple[int, int]:
    space = SearchSpace.from_spec(json.loads(space_spec))
    arch, counts = space.root(), [(0, 0)]
    while space.level(arch) < space.max_level:
        params, macs = child_sizes(space, arch, size)
        cheapest = int(np.lexsort((macs, params))[0])
        arch = space.child(arch, cheapest)
        counts.append((int(params[cheapest]), int(macs[cheapest])))
    return counts[-1][0] - counts[level][0], counts[-1][1] - counts[level][1]
