"""What every search space offers the sampler, the objective and the surrogate.

An architecture grows one *unit* at a time (a layer in the macro space, a block in the micro space).
The sampler only ever needs: the one-unit architectures (children of the empty root), the children of
an architecture, a token per unit for the LSTM surrogate, and a canonical key for the hash table.
Children are addressed by index so that scoring ~300k candidates never builds 300k Python objects.
"""

from __future__ import annotations

import abc
from typing import Any, Generic, Hashable, Sequence, TypeVar

import numpy as np
import optuna
from optuna.distributions import BaseDistribution

Arch = TypeVar("Arch", bound=Hashable)


def check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_ops(ops: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """``ops`` as a tuple, after checking it is a non-empty, duplicate-free subset of ``allowed``."""
    ops = tuple(ops)
    if not ops:
        raise ValueError("ops must name at least one operation")
    unknown = [o for o in ops if o not in allowed]
    if unknown:
        raise ValueError(f"unknown op(s) {unknown}; choose from {list(allowed)}")
    if len(set(ops)) != len(ops):
        raise ValueError(f"ops must be distinct, got {list(ops)}")
    return ops


class SearchSpace(abc.ABC, Generic[Arch]):
    """A progressive search space whose architectures are ordinary Optuna categorical parameters."""

    #: Number of units of a complete architecture.
    max_level: int
    #: Width of one unit's token vector (the surrogate's input size).
    token_dim: int

    # -- architectures -------------------------------------------------------------------------
    @abc.abstractmethod
    def root(self) -> Arch:
        """The empty architecture (level 0): its children are the level-1 architectures."""

    @abc.abstractmethod
    def level(self, arch: Arch) -> int:
        """Number of units in ``arch``."""

    @abc.abstractmethod
    def key(self, arch: Arch) -> str:
        """Canonical, human-readable string: equal architectures have equal keys."""

    @abc.abstractmethod
    def parse(self, key: str) -> Arch:
        """Inverse of :meth:`key`; raises ValueError on a malformed key."""

    @abc.abstractmethod
    def num_children(self, arch: Arch) -> int:
        """How many one-unit-deeper architectures extend ``arch``."""

    @abc.abstractmethod
    def child(self, arch: Arch, index: int) -> Arch:
        """The ``index``-th one-unit-deeper extension of ``arch`` (0 <= index < num_children)."""

    def child_groups(self, arch: Arch) -> np.ndarray:
        """A group id per child of ``arch`` (shape (num_children,)): children that differ only in
        details of the added unit (e.g. a macro layer's skip sources) share one. The sampler's
        ``diverse`` selection draws at most one child per group until every group has one. Default:
        every child its own group."""
        return np.arange(self.num_children(arch))

    def child_cost_classes(self, arch: Arch) -> np.ndarray | None:
        """A class id per child of ``arch``: children with one id have networks of exactly the same
        parameters and multiply-adds, so a size limit counts one network per class
        (:func:`optuna_epnas.cost.child_sizes`). None: the space has no such classes, and size
        limits are refused (counting every child of every parent would take minutes per level)."""
        return None

    @abc.abstractmethod
    def child_tokens(self, arch: Arch) -> np.ndarray:
        """Token of the added unit for every child of ``arch``, shape (num_children, token_dim)."""

    @abc.abstractmethod
    def tokens(self, arch: Arch) -> np.ndarray:
        """One token per unit, shape (level, token_dim), float32: the surrogate reads this sequence."""

    @abc.abstractmethod
    def cardinality(self, level: int | None = None) -> int:
        """Exact number of distinct architectures with ``level`` units (default: max_level)."""

    def children(self, arch: Arch) -> list[Arch]:
        return [self.child(arch, i) for i in range(self.num_children(arch))]

    def initial(self) -> list[Arch]:
        """Every one-unit architecture: level 1 of the progression evaluates all of them."""
        return self.children(self.root())

    # -- Optuna parameters ---------------------------------------------------------------------
    @abc.abstractmethod
    def distributions(self, level: int | None = None) -> dict[str, BaseDistribution]:
        """Optuna distributions of every parameter of an architecture with ``level`` units."""

    @abc.abstractmethod
    def to_params(self, arch: Arch) -> dict[str, Any]:
        """Optuna parameter values describing ``arch``."""

    @abc.abstractmethod
    def from_params(self, params: dict[str, Any]) -> Arch:
        """The architecture that ``params`` describe (a trial's params; extra names are ignored)."""

    @abc.abstractmethod
    def unit_param(self, unit: int) -> str:
        """Name of a parameter that every architecture with at least ``unit`` units has."""

    @abc.abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-able description of the space (checkpoints and studies check it on resume)."""

    def suggest(self, trial: optuna.trial.BaseTrial) -> Arch:
        """Ask ``trial`` for an architecture through this space's parameters.

        Samplers that grow architectures (EPNASSampler) decide how many units the trial has; any
        other sampler (TPE, random, ...) searches complete architectures.
        """
        depth = self.planned_level(trial)
        params = {
            name: trial.suggest_categorical(name, dist.choices)  # type: ignore[attr-defined]
            for name, dist in self.distributions(depth).items()
        }
        return self.from_params(params)

    def planned_level(self, trial: optuna.trial.BaseTrial) -> int:
        """Units the sampler planned for ``trial``; a complete architecture unless it planned fewer."""
        claim = getattr(getattr(getattr(trial, "study", None), "sampler", None), "claim_architecture", None)
        if claim is None:  # not a growing sampler: its relative parameters may lack some (NSGA-II's mutation
            return self.max_level  # leaves a parameter to independent sampling), which is no shorter plan
        planned = getattr(trial, "relative_params", None)  # optuna.Trial: runs relative sampling now
        if planned is not None and self.unit_param(1) not in planned:
            # A study's first trial to ask for an architecture (its sampling ran before the sampler
            # knew): a growing sampler claims the trial's slot now and serves these values.
            planned = claim(trial)
        if not planned:
            return self.max_level
        depth = 0
        while depth < self.max_level and self.unit_param(depth + 1) in planned:
            depth += 1
        return depth or self.max_level

