"""The operation set shared by every search space (DARTS-style ReLU -> conv -> BN ordering).

Every op maps C channels to C channels, so one weight shape per (position, op) serves every
architecture that uses that op at that position: the basis of weight sharing.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

#: Makes a BatchNorm2d for C channels. The supernet uses batch statistics only (running statistics
#: would mix every architecture that passed through the layer); a stand-alone network tracks them.
NormFactory = Callable[[int], nn.Module]


def batch_norm(track_running_stats: bool) -> NormFactory:
    if track_running_stats:
        return lambda c: nn.BatchNorm2d(c)
    return lambda c: GlobalBatchNorm2d(c, track_running_stats=False)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks, differentiable: every rank's loss depends on the sum, so each rank's
    gradient is the sum of theirs (torch.distributed.nn's all_reduce, without its deprecation warning
    on every call)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """The supernet's BatchNorm2d: batch statistics only; when ranks of ``torch.distributed`` each
    train a shard of one batch, the statistics of the whole batch (an autograd all-reduce of the
    channel sums), so that N ranks train the same function as one process. The same state dict as
    BatchNorm2d; plain BatchNorm2d's forward everywhere else."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        xf = x.float()
        c = xf.shape[1]
        count = torch.full((1,), xf.numel() / c if c else 0.0, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count]))
        n = sums[-1]
        mean = sums[:c] / n
        var = (sums[c:2 * c] / n - mean * mean).clamp_min(0)
        scale = torch.rsqrt(var + self.eps) * self.weight
        return xf * scale[None, :, None, None] + (self.bias - mean * scale)[None, :, None, None]


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: NormFactory) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            norm(c_out),
        )


class SepConv(nn.Sequential):
    """Depthwise-separable convolution: depthwise k x k, then pointwise 1 x 1."""

    def __init__(self, c: int, kernel: int, stride: int, norm: NormFactory) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, kernel, stride, kernel // 2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            norm(c),
        )


def _op_factories() -> dict[str, Callable[[int, int, NormFactory], nn.Module]]:
    return {
        "conv3x3": lambda c, s, n: ReLUConvBN(c, c, 3, s, n),
        "conv5x5": lambda c, s, n: ReLUConvBN(c, c, 5, s, n),
        "sep3x3": lambda c, s, n: SepConv(c, 3, s, n),
        "sep5x5": lambda c, s, n: SepConv(c, 5, s, n),
        "max3x3": lambda c, s, n: nn.MaxPool2d(3, s, 1),
        "avg3x3": lambda c, s, n: nn.AvgPool2d(3, s, 1, count_include_pad=False),
        # identity with stride 2 must still halve the resolution: a strided 1x1 conv (micro space)
        "identity": lambda c, s, n: nn.Identity() if s == 1 else ReLUConvBN(c, c, 1, s, n),
    }


OPS = _op_factories()


def make_op(name: str, channels: int, stride: int, norm: NormFactory) -> nn.Module:
    try:
        return OPS[name](channels, stride, norm)
    except KeyError:
        raise ValueError(f"unknown op {name!r}; known ops: {sorted(OPS)}") from None


def stem(in_channels: int, channels: int, norm: NormFactory) -> nn.Sequential:
    """The image -> C channels convolution both networks start with (not searched)."""
    return nn.Sequential(nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False), norm(channels))


def check_buildable(space, arch) -> None:
    """A stand-alone network needs a non-empty architecture of ``space`` (``None`` = the supernet)."""
    if arch is not None:
        space.validate(arch)
        if space.level(arch) == 0:
            raise ValueError("cannot build a network for the empty architecture")
