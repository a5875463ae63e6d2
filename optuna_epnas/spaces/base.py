"""What every search space offers the sampler, the objective and the surrogate.

An architecture grows one *unit* at a time (a layer in the macro space, a block in the micro space).
The sampler only ever needs: the one-unit architectures (children of the empty root), the children of
an architecture, a token per unit for the LSTM surrogate, and a canonical key for the hash table.
Children are addressed by index so that scoring ~300k candidates never builds 300k Python objects.

A new space subclasses :class:`SearchSpace` (the abstract methods, ``name``, ``spec_fields``) and is
registered with :func:`optuna_epnas.spaces.register_space` together with its network.
"""

from __future__ import annotations

import abc
import numbers
from typing import Any, ClassVar, Generic, Hashable, Sequence, TypeVar

import numpy as np
import optuna
from optuna.distributions import BaseDistribution

from optuna_epnas.spaces import registry

Arch = TypeVar("Arch", bound=Hashable)


def check_ops(ops: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """``ops`` as a tuple, after checking it is a non-empty, duplicate-free subset of ``allowed``."""
    if isinstance(ops, str):  # tuple() would split it into letters
        raise ValueError(f"ops must be a list of operation names, not the string {ops!r} (e.g. [{ops!r}])")
    ops = tuple(ops)
    if not ops:
        raise ValueError("ops must name at least one operation")
    unknown = [o for o in ops if o not in allowed]
    if unknown:
        raise ValueError(f"unknown op(s) {unknown}; choose from {list(allowed)}")
    if len(set(ops)) != len(ops):
        raise ValueError(f"ops must be distinct, got {list(ops)}")
    return ops


class _SpaceMeta(abc.ABCMeta):
    """Checks, as a space is made, the two sizes its ``__init__`` must set: the sampler sizes its
    schedule and the surrogate its input from them, far from the space's own code."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        space = super().__call__(*args, **kwargs)
        for attr in ("max_level", "token_dim"):
            value = getattr(space, attr, None)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise TypeError(f"{cls.__name__}.__init__ must set self.{attr} to a positive integer (the "
                                f"{'units of a complete architecture' if attr == 'max_level' else 'width of one unit token'}), "
                                f"got {value!r}")
        return space


class SearchSpace(Generic[Arch], metaclass=_SpaceMeta):
    """A progressive search space whose architectures are ordinary Optuna categorical parameters."""

    #: Registry key, and ``spec()["space"]``: ``"macro"``, ``"micro"``.
    name: ClassVar[str]
    #: Constructor arguments that :meth:`spec` records (in order) and :meth:`from_spec` passes back.
    spec_fields: ClassVar[tuple[str, ...]] = ()
    #: Plural noun of one unit, for messages: ``"layers"``, ``"blocks"``.
    units: ClassVar[str] = "units"
    #: Extra keyword arguments that the space's network takes in ``build_network`` (micro: ``cells``).
    network_options: ClassVar[tuple[str, ...]] = ()
    #: Default width of a found architecture's stand-alone (final) training.
    final_channels: ClassVar[int] = 36
    #: The architecture class, if it has its own (``build_model`` and ``arch_graph`` take one alone).
    arch_type: ClassVar[type | None] = None

    #: Number of units of a complete architecture.
    max_level: int
    #: Width of one unit's token vector (the surrogate's input size).
    token_dim: int

    # -- identity --------------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """JSON-able description of the space (checkpoints and studies check it on resume): ``name``
        and the :attr:`spec_fields` (tuples as lists)."""
        values = ((f, getattr(self, f)) for f in self.spec_fields)
        return {"space": self.name, **{f: list(v) if isinstance(v, tuple) else v for f, v in values}}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "SearchSpace":
        """Rebuild a space from :meth:`spec` (resuming, loading models): the registered space it names."""
        space_cls = registry.spec_class(spec)
        if not issubclass(space_cls, cls):
            raise ValueError(f"search space spec {spec} describes a {space_cls.name} space, not a {cls.__name__}")
        try:
            fields = {f: spec[f] for f in space_cls.spec_fields}
        except KeyError as err:
            raise ValueError(f"search space spec {spec} lacks {err.args[0]!r}") from None
        unknown = sorted(set(spec) - {"space", *space_cls.spec_fields})
        if unknown:  # a misspelt setting would otherwise be ignored, its default silently used
            raise ValueError(f"search space spec {spec} has unknown key(s) {unknown}; a {space_cls.name} space's spec "
                             f"has the keys space, {', '.join(space_cls.spec_fields)}")
        return space_cls(**fields)

    def describe(self) -> str:
        """Short human text, e.g. ``"macro, 12 layers"``."""
        return f"{self.name}, {self.max_level} {self.units}"

    @classmethod
    def smallest_holding(cls, arch: Any) -> "SearchSpace":
        """The smallest space of this kind holding ``arch`` at full depth, with the default ops (what
        ``build_model(arch)`` and ``arch_graph(arch)`` use when no space is given)."""
        raise TypeError(f"{cls.__name__} has no default space for an architecture: pass space=")

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

    def network_key(self, arch: Arch) -> str:
        """Key of the network ``arch`` is measured as: architectures with equal network keys give equal
        measurements of a deterministic objective (``EPNASSampler(reuse=True)`` queries one of them only).
        Default: :meth:`key` (every architecture its own network)."""
        return self.key(arch)

    @abc.abstractmethod
    def parse(self, key: str) -> Arch:
        """Inverse of :meth:`key`; raises ValueError on a malformed key."""

    @abc.abstractmethod
    def validate(self, arch: Arch) -> None:
        """Raise ValueError unless ``arch`` is an architecture of this space (at most :attr:`max_level`
        units, only the space's ops); TypeError if it is not of the space's kind. :meth:`parse`,
        :meth:`from_params`, the networks, ``ModelSpec`` and the drawings call it."""

    @abc.abstractmethod
    def num_children(self, arch: Arch) -> int:
        """How many one-unit-deeper architectures extend ``arch``: the same for every architecture of a
        level (the schedule counts a level's candidates before planning it; ``check_space`` checks it)."""

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
        (:func:`optuna_epnas.costs.cost.child_sizes`). None: the space has no such classes, and size
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

