"""Operations, shared-weight supernets and stand-alone networks, built by the same code."""

from optuna_epnas.nn.macro_net import MacroNet, count_parameters
from optuna_epnas.nn.ops import OPS, make_op

__all__ = ["OPS", "MacroNet", "build_network", "count_parameters", "make_op"]


def build_network(space, num_classes: int, in_channels: int, channels: int, arch=None):
    """The supernet of ``space`` (``arch=None``) or the stand-alone network of ``arch``."""
    from optuna_epnas.spaces.macro import MacroSpace

    if isinstance(space, MacroSpace):
        return MacroNet(space, num_classes, in_channels, channels, arch=arch)
    raise TypeError(f"no network for search space {space!r}")
