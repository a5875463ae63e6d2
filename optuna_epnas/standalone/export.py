"""A found architecture as a plain ``torch.nn.Module``: ``build_model`` and the architecture JSON.

A :class:`ModelSpec` is everything needed to rebuild a stand-alone network: the search space's
settings, the architecture's canonical key and the network's sizes. It is what ``epnas train`` writes
beside the weights, so a trained model comes back with::

    model = build_model("arch.json")
    model.load_state_dict(torch.load("model.pt", weights_only=True))

:func:`build_seeded` is the one seeded build that final training and the ranking studies share.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from optuna_epnas._checks import check_positive_int
from optuna_epnas.nn import build_network
from optuna_epnas.spaces import SearchSpace, space_class, space_names
from optuna_epnas.spaces.registry import arch_types, space_holding

SPEC_FORMAT = "optuna_epnas.model/1"


@dataclass(frozen=True)
class ModelSpec:
    """A stand-alone network: search space settings, architecture key, sizes. Round-trips through JSON."""

    space: dict[str, Any]
    arch: str
    num_classes: int
    in_channels: int = 3
    channels: int = 36
    cells: int | None = None  # micro only: normal cells per stage (default: the space's)

    def __post_init__(self) -> None:
        for name in ("num_classes", "in_channels", "channels"):
            check_positive_int(name, getattr(self, name))
        if self.cells is not None and (isinstance(self.cells, bool) or not isinstance(self.cells, int) or self.cells < 1):
            raise ValueError(f"cells must be a positive integer or None, got {self.cells!r}")
        if not isinstance(self.space, dict):
            raise ValueError("space must be a search space spec, a dict such as {\"space\": \"macro\", "
                             f"\"num_layers\": 12, \"ops\": [...]}}, got {type(self.space).__name__} {self.space!r}")
        if not isinstance(self.arch, str):  # a number or a list would fail deep in parsing
            raise ValueError(f"arch must be an architecture key, a string such as \"conv3x3 | sep5x5[0]\", got "
                             f"{type(self.arch).__name__} {self.arch!r}")
        kind = self.space.get("space")
        if self.cells is not None and kind in space_names() and "cells" not in space_class(kind).network_options:
            raise ValueError(f"cells is a setting of the micro space; leave it out for a {kind} architecture")
        self.resolve()  # fail now, not when the model is built

    def resolve(self) -> tuple[SearchSpace, Any]:
        """The search space and the architecture object."""
        space = SearchSpace.from_spec(self.space)
        arch = space.parse(self.arch)
        if space.level(arch) == 0:
            raise ValueError("the architecture is empty: a model needs at least one layer or block")
        return space, arch

    @classmethod
    def from_arch(cls, arch: Any, space: SearchSpace | None = None, **sizes: Any) -> "ModelSpec":
        space = space or default_space(arch)
        space.validate(arch)
        return cls(space=space.spec(), arch=space.key(arch), **sizes)

    @property
    def options(self) -> dict[str, Any]:
        """The network settings given (``cells``), for ``build_network`` and the drawings."""
        return {} if self.cells is None else {"cells": self.cells}

    def to_dict(self) -> dict[str, Any]:
        return {"format": SPEC_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        if not isinstance(data, dict) or data.get("format") != SPEC_FORMAT:
            raise ValueError(f"not an optuna_epnas model description (expected format {SPEC_FORMAT!r})")
        fields = {k: v for k, v in data.items() if k != "format"}
        try:
            return cls(**fields)
        except TypeError as err:
            raise ValueError(f"malformed model description: {err}") from None

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ModelSpec":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not JSON: {err}") from None
        except ValueError as err:  # which file the bad field is in
            raise ValueError(f"{path}: {err}") from None

    def build(self) -> nn.Module:
        space, arch = self.resolve()
        return build_network(space, self.num_classes, self.in_channels, self.channels, arch=arch, **self.options)


def default_space(arch: Any) -> SearchSpace:
    """The smallest space holding ``arch`` at full depth (the network only depends on the depth):
    :meth:`~optuna_epnas.SearchSpace.smallest_holding` of the registered space of ``arch``'s type."""
    return space_holding(arch)


def seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with torch's CPU generator seeded by ``seed``, without touching the global random
    state (forked: a build on the CPU draws nothing on a GPU)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_seeded(spec: ModelSpec, seed: int) -> nn.Module:
    """The stand-alone network of ``spec`` initialised from ``seed`` (final training, ranking studies)."""
    return seeded(seed, spec.build)


def build_model(
    arch: ModelSpec | dict | str | os.PathLike | Any, num_classes: int | None = None,
    channels: int | None = None, in_channels: int | None = None, cells: int | None = None,
    space: SearchSpace | None = None,
) -> nn.Module:
    """A stand-alone network, freshly initialised, as a plain ``torch.nn.Module``.

    Args:
        arch: a :class:`ModelSpec`, its dict or JSON file (as written by ``epnas train``), an
            architecture object, or an architecture key (then ``space`` is needed).
        num_classes: the network's classes; given, it overrides the spec's (as do the next three).
        channels: its channels.
        in_channels: its input channels.
        cells: micro only, its normal cells per stage.
        space: the search space of an architecture object or key (default: the smallest that holds
            it, with the paper's ops and N=2).
    """
    sizes = {k: v for k, v in (("num_classes", num_classes), ("channels", channels), ("in_channels", in_channels),
                               ("cells", cells)) if v is not None}
    if isinstance(arch, arch_types()):
        if "num_classes" not in sizes:
            raise ValueError("build_model(arch) needs num_classes")
        spec = ModelSpec.from_arch(arch, space, **sizes)
    elif isinstance(arch, str) and space is not None:
        if "num_classes" not in sizes:
            raise ValueError("build_model(key, space=...) needs num_classes")
        spec = ModelSpec.from_arch(space.parse(arch), space, **sizes)
    else:
        if isinstance(arch, ModelSpec):
            spec = arch
        elif isinstance(arch, dict):
            spec = ModelSpec.from_dict(arch)
        elif isinstance(arch, (str, os.PathLike)):
            if not Path(arch).is_file():
                raise ValueError(f"{str(arch)!r} is neither a model description file nor, without space=, "
                                 "an architecture key: pass space=MacroSpace(...) or MicroSpace(...) with a key")
            spec = ModelSpec.load(arch)
        else:
            raise TypeError(f"cannot build a model from {type(arch).__name__}")
        spec = replace(spec, **sizes)
    return spec.build()


def require_onnx() -> None:
    """Raise, with what to install, where the ONNX exporter's packages are missing (check before training)."""
    try:
        import onnx  # noqa: F401 (torch's exporter needs both; its own error names neither package)
        import onnxscript  # noqa: F401
    except ImportError:
        raise ImportError("exporting to ONNX needs the onnx and onnxscript packages: pip install "
                          "'optuna_epnas[onnx]' (or pip install onnx onnxscript; onnxruntime checks the file)") from None


def export_onnx(model: nn.Module, path: str | os.PathLike, image_shape: tuple[int, int, int],
                check: bool = True) -> float | None:
    """Write ``model`` to ``path`` as ONNX: input ``images``, normalised ``N x C x H x W`` for any N (the
    normalisation is the training's, in ``result.json``); output ``logits``. With ``check`` and where
    onnxruntime is installed, the file is run on a random batch beside ``model``: returns the largest
    difference of their logits (None: not checked). Needs the ``onnx`` extra (onnx, onnxscript)."""
    import copy
    import logging
    import warnings

    require_onnx()
    model = copy.deepcopy(model).cpu().eval()  # the caller's model stays where it is
    example = torch.randn(2, *image_shape)
    quiet = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [logger.level for logger in quiet]
    try:
        for logger in quiet:  # the exporter logs every op it skips (torchvision's among them) as a warning
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["images"],
                              output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                              verbose=False)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    if not check:
        return None
    try:
        import onnxruntime
    except ImportError:
        return None
    batch = torch.randn(3, *image_shape)  # another batch size than the export's: the batch axis is free
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"images": batch.numpy()})[0])
    with torch.no_grad():
        return float((got - model(batch)).abs().max())
