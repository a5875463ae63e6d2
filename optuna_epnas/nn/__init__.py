"""Operations, shared-weight supernets and stand-alone networks, built by the same code."""

from __future__ import annotations

import torch
from torch import nn

from optuna_epnas.nn.macro_net import MacroNet
from optuna_epnas.nn.micro_net import MicroNet
from optuna_epnas.nn.ops import OPS, make_op
from optuna_epnas.spaces.macro import MacroSpace
from optuna_epnas.spaces.micro import MicroSpace

__all__ = ["OPS", "MacroNet", "MicroNet", "build_network", "count_parameters", "make_op"]


def build_network(space, num_classes: int, in_channels: int, channels: int, arch=None, cells: int | None = None) -> nn.Module:
    """The supernet of ``space`` (``arch=None``) or the stand-alone network of ``arch``.

    ``cells`` (micro space only): normal cells per stage, default ``space.cells``.
    """
    if isinstance(space, MicroSpace):
        return MicroNet(space, num_classes, in_channels, channels, arch=arch, cells=cells)
    if isinstance(space, MacroSpace):
        if cells is not None:
            raise ValueError("cells is a setting of the micro space; the macro space's depth is its number of layers")
        return MacroNet(space, num_classes, in_channels, channels, arch=arch)
    raise TypeError(f"no network for search space {space!r}")


def count_parameters(space, arch, num_classes: int, in_channels: int, channels: int, cells: int | None = None) -> int:
    """Parameters of the stand-alone network of ``arch`` (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        net = build_network(space, num_classes, in_channels, channels, arch=arch, cells=cells)
    return sum(p.numel() for p in net.parameters())
