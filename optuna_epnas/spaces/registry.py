"""Search spaces by name: each registered space's class, and the network and drawing made for it.

The spec of a space (``space.spec()["space"]``) names its entry, so a study, checkpoint or model file
rebuilds its space through :meth:`SearchSpace.from_spec` without knowing the kinds there are. A
space's network and drawing live in modules that import torch and graphviz, which register them on
import (:mod:`optuna_epnas.nn`, :mod:`optuna_epnas.standalone.draw`): this module imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from optuna_epnas.spaces.base import SearchSpace


@dataclass
class _Entry:
    cls: type
    network: Callable[..., Any] | None = None
    drawing: Callable[..., Any] | None = None


_ENTRIES: dict[str, _Entry] = {}


def register_space(cls: type, network: Callable[..., Any] | None = None,
                   drawing: Callable[..., Any] | None = None) -> type:
    """Register ``cls`` (a :class:`SearchSpace` subclass) under ``cls.name``; returns ``cls``, so it also
    decorates a class.

    Args:
        network: ``network(space, num_classes, in_channels, channels, arch=None, **options)``, the
            supernet (``arch=None``) or stand-alone network :func:`optuna_epnas.nn.build_network`
            builds; ``options`` are the space's ``network_options``.
        drawing: ``drawing(space, arch, **options)``, a ``graphviz.Digraph`` for
            :func:`optuna_epnas.standalone.draw.arch_graph`.

    Registering a name again with the same class adds the parts given (the space registers itself,
    its network and drawing modules add theirs); with another class it replaces the entry.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} needs a class attribute name (the key of its spec), got {name!r}")
    entry = _ENTRIES.get(name)
    if entry is None or entry.cls is not cls:
        entry = _ENTRIES[name] = _Entry(cls)
    if network is not None:
        entry.network = network
    if drawing is not None:
        entry.drawing = drawing
    return cls


def space_names() -> tuple[str, ...]:
    """The registered spaces' names, in registration order (``("macro", "micro", ...)``)."""
    return tuple(_ENTRIES)


def _entry(name: Any, context: str = "") -> _Entry:
    try:
        return _ENTRIES[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name from a malformed spec
        known = ", ".join(repr(n) for n in _ENTRIES)
        raise ValueError(f"unknown search space {name!r}{context}; known: {known}") from None


def space_class(name: str) -> type[SearchSpace]:
    """The class registered under ``name``; ValueError naming the known ones if there is none."""
    return _entry(name).cls


def spec_class(spec: Any) -> type[SearchSpace]:
    """The class of the space that ``spec`` (a :meth:`SearchSpace.spec`) describes; ValueError if none."""
    return _entry(spec.get("space") if isinstance(spec, dict) else None, f" in spec {spec}").cls


def network_of(space: SearchSpace) -> Callable[..., Any]:
    """The network builder registered for ``space``'s kind (TypeError if it has none)."""
    entry = _ENTRIES.get(getattr(space, "name", None))  # type: ignore[arg-type]
    if entry is None or entry.network is None or not isinstance(space, entry.cls):
        raise TypeError(f"no network for search space {space!r}")
    return entry.network


def drawing_of(space: SearchSpace) -> Callable[..., Any]:
    """The drawing registered for ``space``'s kind (TypeError if it has none)."""
    entry = _ENTRIES.get(getattr(space, "name", None))  # type: ignore[arg-type]
    if entry is None or entry.drawing is None or not isinstance(space, entry.cls):
        raise TypeError(f"no drawing for search space {space!r}")
    return entry.drawing


def arch_types() -> tuple[type, ...]:
    """The architecture classes of the registered spaces that declare one (``arch_type``)."""
    return tuple(e.cls.arch_type for e in _ENTRIES.values() if getattr(e.cls, "arch_type", None) is not None)


def space_holding(arch: Any) -> SearchSpace:
    """The smallest space of the registered kind whose ``arch_type`` ``arch`` is, holding it at full depth."""
    for entry in _ENTRIES.values():
        arch_type = getattr(entry.cls, "arch_type", None)
        if arch_type is not None and isinstance(arch, arch_type):
            return entry.cls.smallest_holding(arch)
    names = [t.__name__ for t in arch_types()]
    expected = " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]
    raise TypeError(f"expected a {expected}, got {type(arch).__name__}")
