"""The macro network: one class builds both the shared-weight supernet and a stand-alone network.

The supernet (``arch=None``) holds every op at every layer; a stand-alone network (``arch=...``)
holds only the path of one architecture. Both name their modules identically
(``layers.<l-1>.ops.<op>``), run the same ``forward`` and merge skips the same way, so a
supernet path and the stand-alone network of that architecture compute the same function and a
found architecture trains exactly as it was searched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optuna_epnas.nn.ops import ReLUConvBN, batch_norm, check_buildable, make_op, stem
from optuna_epnas.spaces.macro import MacroArch, MacroSpace


class MacroLayer(nn.Module):
    """The candidate ops of one layer, and the BN applied after skip inputs are summed in."""

    def __init__(self, op_names, channels: int, with_merge: bool, norm) -> None:
        super().__init__()
        self.ops = nn.ModuleDict({name: make_op(name, channels, 1, norm) for name in op_names})
        self.merge_bn = norm(channels) if with_merge else None


def _downsample(x: torch.Tensor, times: int) -> torch.Tensor:
    # Skip inputs from before a reduction are average-pooled to the current resolution: no weights,
    # and ceil_mode matches the strided 3x3 reduction's output size for odd sizes too (7 -> 4).
    for _ in range(times):
        x = F.avg_pool2d(x, 2, ceil_mode=True)
    return x


class MacroNet(nn.Module):
    """Stem conv -> L layers (resolution halved after ~1/3 and ~2/3 of them) -> global pool -> linear.

    Args:
        space: the macro search space (depth, op set, reduction positions).
        num_classes, in_channels: of the data set.
        channels: C, the fixed width of every layer (paper search setting: 24).
        arch: ``None`` builds the supernet; an architecture builds its stand-alone network.
    """

    def __init__(
        self, space: MacroSpace, num_classes: int, in_channels: int = 3, channels: int = 24,
        arch: MacroArch | None = None,
    ) -> None:
        super().__init__()
        check_buildable(space, arch)
        self.space, self.arch, self.channels = space, arch, channels
        self.num_classes, self.in_channels = num_classes, in_channels
        norm = batch_norm(track_running_stats=arch is not None)
        depth = space.num_layers if arch is None else arch.level
        self.stem = stem(in_channels, channels, norm)
        self.layers = nn.ModuleList(
            MacroLayer(
                space.ops if arch is None else (arch.ops[i],), channels,
                with_merge=arch is None or bool(arch.skips[i]), norm=norm,
            )
            for i in range(depth)
        )
        self.reductions = nn.ModuleDict(
            {str(p): ReLUConvBN(channels, channels, 3, 2, norm) for p in space.reduction_layers() if p < depth}
        )
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor, arch: MacroArch | None = None) -> torch.Tensor:
        arch = arch if arch is not None else self.arch
        if arch is None:
            raise ValueError("the supernet needs an architecture: call net(x, arch)")
        outputs, stages = [self.stem(x)], [0]
        h, stage = outputs[0], 0
        for i, (op, sources) in enumerate(zip(arch.ops, arch.skips)):
            if str(i) in self.reductions:  # a reduction after layer i feeds layer i+1
                h, stage = self.reductions[str(i)](h), stage + 1
            layer = self.layers[i]
            out = layer.ops[op](h)
            if sources:
                for s in sources:
                    out = out + _downsample(outputs[s], stage - stages[s])
                out = layer.merge_bn(out)
            outputs.append(out)
            stages.append(stage)
            h = out
        return self.classifier(F.adaptive_avg_pool2d(F.relu(h), 1).flatten(1))

    def path_parameters(self, arch: MacroArch) -> list[nn.Parameter]:
        """The parameters that ``arch`` uses in this network (those that training it changes)."""
        modules: list[nn.Module] = [self.stem, self.classifier]
        modules += [self.reductions[str(p)] for p in self.space.reduction_layers() if p < arch.level]
        for i, (op, sources) in enumerate(zip(arch.ops, arch.skips)):
            modules.append(self.layers[i].ops[op])
            if sources:
                modules.append(self.layers[i].merge_bn)
        return [p for m in modules for p in m.parameters()]

