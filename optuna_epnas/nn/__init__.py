"""Operations, shared-weight supernets and stand-alone networks, built by the same code."""

from __future__ import annotations

import torch
from torch import nn

from optuna_epnas.nn.macro_net import MacroNet
from optuna_epnas.nn.micro_net import MicroNet
from optuna_epnas.nn.ops import OPS, make_op
from optuna_epnas.spaces.macro import MacroSpace
from optuna_epnas.spaces.micro import MicroSpace
from optuna_epnas.spaces.registry import network_of, register_space, space_class, space_names

__all__ = ["OPS", "MacroNet", "MicroNet", "build_network", "count_parameters", "make_op"]

register_space(MacroSpace, network=MacroNet)
register_space(MicroSpace, network=MicroNet)


def build_network(space, num_classes: int, in_channels: int, channels: int, arch=None, **options) -> nn.Module:
    """The supernet of ``space`` (``arch=None``) or the stand-alone network of ``arch``.

    ``options``: the settings of the space's network (``space.network_options``; micro: ``cells``,
    normal cells per stage, default ``space.cells``). One left at None is the network's default.
    """
    network = network_of(space)
    for name, value in list(options.items()):
        if name in space.network_options:
            continue
        if value is not None:
            raise ValueError(_not_an_option(space, name))
        del options[name]
    return network(space, num_classes, in_channels, channels, arch=arch, **options)


def _not_an_option(space, name: str) -> str:
    owners = [n for n in space_names() if name in space_class(n).network_options]
    if not owners:
        return (f"{name} is not a setting of the {space.name} space's network "
                f"(its settings: {', '.join(space.network_options) or 'none'})")
    return (f"{name} is a setting of the {' and '.join(owners)} space; "
            f"the {space.name} space's depth is its number of {space.units}")


def count_parameters(space, arch, num_classes: int, in_channels: int, channels: int, **options) -> int:
    """Parameters of the stand-alone network of ``arch`` (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        net = build_network(space, num_classes, in_channels, channels, arch=arch, **options)
    return sum(p.numel() for p in net.parameters())
