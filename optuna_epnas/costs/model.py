"""What a search counts of a network, and what it allows: :class:`Limits` and the :class:`CostModel` that
the sampler and the objective share.

The objective knows the network its trials train (data and width), so it completes the model
(``SupernetObjective(costs=CostModel(...)).costs``) and the sampler takes that one
(``EPNASSampler(costs=objective.costs)``): both then count the same network, the objective to report
constraints and a cost objective, the sampler to drop candidates over a limit before scoring and to
order a two-objective level by its predicted front.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from optuna_epnas._checks import check_positive_int
from optuna_epnas.costs.cost import NetworkSize, child_sizes, completion_sizes, per_cost_class
from optuna_epnas.costs.latency import LatencyTable
from optuna_epnas.costs.values import COSTS


@dataclass(frozen=True)
class Limits:
    """Hard limits on the stand-alone network: parameters and forward multiply-adds per image, counted
    exactly in the cost model's network, and forward latency as its latency table estimates it.

    :class:`~optuna_epnas.EPNASSampler` never samples an architecture over a limit (a candidate whose
    cheapest full-depth completion is over one is dropped before the surrogate scores it, at every
    level); :class:`~optuna_epnas.SupernetObjective` reports each as an Optuna constraint
    (``count - limit``, feasible at <= 0) for the samplers that read them (TPE, NSGA-II).
    """

    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        check_positive_int("max_params", self.max_params, optional=True)
        check_positive_int("max_macs", self.max_macs, optional=True)
        ms = self.max_latency_ms
        if ms is not None and not (isinstance(ms, (int, float)) and not isinstance(ms, bool) and math.isfinite(ms)
                                   and ms > 0):
            raise ValueError(f"max_latency_ms must be a positive number, got {ms!r}")

    def __bool__(self) -> bool:
        return any(v is not None for v in dataclasses.astuple(self))

    @property
    def sizes(self) -> dict[str, int]:
        """The size limits that are set, by setting name (``max_params``, ``max_macs``)."""
        return {name: int(v) for name, v in (("max_params", self.max_params), ("max_macs", self.max_macs))
                if v is not None}

    @property
    def by_count(self) -> dict[str, float]:
        """Every limit that is set, by the count it limits (``params``, ``macs``, ``latency``)."""
        out: dict[str, float] = {name[4:]: value for name, value in self.sizes.items()}
        if self.max_latency_ms is not None:
            out["latency"] = float(self.max_latency_ms)
        return out

    def text(self) -> str:
        return " and ".join([f"{name}={value:,}" for name, value in self.sizes.items()]
                            + ([f"max_latency_ms={self.max_latency_ms:g}"] if self.max_latency_ms is not None else []))


@dataclass(frozen=True)
class CostModel:
    """How an architecture's cost is counted, which cost a two-objective search minimises, and its limits.

    Args:
        network: the network sizes are counted in (:class:`~optuna_epnas.costs.cost.NetworkSize`);
            :class:`~optuna_epnas.SupernetObjective` fills in the one it trains.
        latency: a :class:`~optuna_epnas.costs.latency.LatencyTable` measured on the device
            (``latency_table(space, trainer.network_size, device)``): what a latency limit or objective
            reads.
        minimize: the cost of a two-objective search -- ``"params"``, ``"macs"`` or ``"latency"``: its
            trials return (accuracy, cost), for a study with ``directions=["maximize", "minimize"]``;
            None: one objective, the accuracy.
        limits: :class:`Limits` on the network.
    """

    network: NetworkSize | None = None
    latency: LatencyTable | None = None
    minimize: str | None = None
    limits: Limits = Limits()

    def __post_init__(self) -> None:
        if self.minimize is not None and self.minimize not in COSTS:
            raise ValueError(f"minimize must be one of {COSTS} or None, got {self.minimize!r}")
        if not isinstance(self.limits, Limits):
            raise TypeError(f"limits must be a Limits(max_params, max_macs, max_latency_ms), got {self.limits!r}")
        if self.network is not None and not isinstance(self.network, NetworkSize):
            raise TypeError(f"network must be an optuna_epnas.costs.cost.NetworkSize, got {self.network!r}")
        if self.needs_latency and not isinstance(self.latency, LatencyTable):
            raise ValueError("a latency limit or objective needs the table it is estimated from: "
                             "latency=optuna_epnas.costs.latency.latency_table(space, trainer.network_size, device), "
                             f"got {self.latency!r}")

    @property
    def objectives(self) -> tuple[str, ...]:
        """What a trial returns: ``("accuracy",)``, or ``("accuracy", minimize)``."""
        return ("accuracy",) if self.minimize is None else ("accuracy", self.minimize)

    @property
    def needs_latency(self) -> bool:
        return self.limits.max_latency_ms is not None or self.minimize == "latency"

    @property
    def counts_sizes(self) -> bool:
        """Whether anything here is counted in the network (a size limit or a cost objective)."""
        return bool(self.limits.sizes) or self.minimize is not None

    def for_network(self, network: NetworkSize) -> "CostModel":
        """This model counted in ``network`` (an objective's); refused if it already names another."""
        if self.network is not None and self.network != network:
            raise ValueError(f"the cost model counts {self.network}, but the objective trains {network}: "
                             "leave network=None and the objective fills in its own")
        return dataclasses.replace(self, network=network)

    def check_space(self, space: Any) -> None:
        """Refuses a model the sampler cannot filter or order ``space``'s candidates with."""
        if not self.counts_sizes:
            return
        what = ", ".join([*self.limits.sizes, *([f"minimize={self.minimize!r}"] if self.minimize else [])])
        if self.network is None:
            raise ValueError(f"{what} is counted in a network of a given width and input: pass "
                             "costs=objective.costs (or a CostModel with network=NetworkSize(...))")
        if space.child_cost_classes(space.root()) is None:
            raise ValueError(f"{what}: sizes are counted for the macro space only; {space!r} has no exact per-child "
                             "count yet (each child's network would be built to count it)")

    # -- one architecture (the objective) ---------------------------------------------------------------
    def counts(self, space: Any, arch: Any) -> dict[str, float]:
        """``params``, ``macs`` and (with a latency table) ``latency`` of ``arch``'s network."""
        assert self.network is not None
        counts: dict[str, float] = dict(zip(("params", "macs"), self.network.count(space, arch)))
        if self.latency is not None:
            counts["latency"] = self.latency.network_ms(arch)
        return counts

    def constraints(self, counts: dict[str, float]) -> dict[str, float]:
        """Each limit's Optuna constraint: count - limit (feasible at <= 0)."""
        return {name: float(counts[name] - limit) for name, limit in self.limits.by_count.items()}

    def cost(self, space: Any, arch: Any) -> float:
        """The cost objective of ``arch``."""
        assert self.minimize is not None and self.network is not None
        if self.minimize == "latency":
            assert self.latency is not None
            return self.latency.network_ms(arch)
        return float(self.network.count(space, arch)[COSTS.index(self.minimize)])

    # -- every child of a parent (the sampler's candidates) -------------------------------------------
    def child_fits(self, space: Any, parent: Any) -> np.ndarray:
        """Per child of ``parent``: whether it and its cheapest full-depth completion are within every
        limit (a child that only fits as a partial network would leave the next level nothing to grow)."""
        fits = np.ones(space.num_children(parent), dtype=bool)
        if self.limits.sizes:
            params, macs = self._completed_sizes(space, parent)
            fits &= (params <= (self.limits.max_params or np.inf)) & (macs <= (self.limits.max_macs or np.inf))
        if self.limits.max_latency_ms is not None:
            fits &= self._completed_ms(space, parent) <= self.limits.max_latency_ms
        return fits

    def child_costs(self, space: Any, parent: Any) -> np.ndarray:
        """The cost objective of every child of ``parent``."""
        return per_cost_class(space, parent, lambda arch: self.cost(space, arch)).astype(np.float64)

    def smallest(self, space: Any, parent: Any) -> str:
        """The cheapest full-depth completion of ``parent``'s children, in the limited counts (for errors)."""
        if not self.limits.sizes:
            return f"{float(self._completed_ms(space, parent).min()):.3g} ms (estimated) at full depth"
        params, macs = self._completed_sizes(space, parent)
        return f"{int(params.min()):,} parameters and {int(macs.min()):,} multiply-adds at full depth"

    def _completed_ms(self, space: Any, parent: Any) -> np.ndarray:
        assert self.latency is not None
        return self.latency.child_ms(space, parent) + self.latency.completion_ms(space, space.level(parent) + 1)

    def _completed_sizes(self, space: Any, parent: Any) -> tuple[np.ndarray, np.ndarray]:
        params, macs = child_sizes(space, parent, self.network)
        more_params, more_macs = completion_sizes(space, space.level(parent) + 1, self.network)
        return params + more_params, macs + more_macs
