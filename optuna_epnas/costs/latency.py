"""Forward latency of a macro network on a device, estimated from a table of its parts measured once.

A network's latency is estimated as the sum of its parts, each timed alone on the device at its input
shape: the stem, each layer's op at that layer's position, the merge BN of a layer with skips, each
reduction the network includes, and the head (pool + classifier) at the network's depth. The estimate is
exact with respect to the table, so a limit on it filters candidates exactly; it is an approximation of
running the whole network (a launch overhead per part adds, cache effects do not). The table is cached
per (space, network size, device, batch, torch version), so one machine measures it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from optuna_epnas.costs.cost import NetworkSize, per_cost_class
from optuna_epnas.nn import build_network
from optuna_epnas.spaces.macro import MacroArch, MacroSpace


@dataclass(frozen=True)
class LatencyTable:
    """Milliseconds per part of a macro network (see the module docstring), measured on ``device``."""

    device: str
    batch: int
    stem: float
    ops: list[dict[str, float]]  # per layer position: op -> ms
    merge: list[float]  # per layer position: its merge BN
    reductions: dict[str, float]  # reduction after layer p (str(p)) -> ms
    heads: list[float]  # per depth 1..L: pool + classifier at that depth's output

    def network_ms(self, arch: MacroArch) -> float:
        depth = arch.level
        total = self.stem + self.heads[depth - 1]
        total += sum(self.ops[i][op] + (self.merge[i] if skips else 0.0)
                     for i, (op, skips) in enumerate(zip(arch.ops, arch.skips)))
        return total + sum(ms for p, ms in self.reductions.items() if int(p) < depth)

    def child_ms(self, space: MacroSpace, parent: MacroArch) -> np.ndarray:
        """The estimate of every child of ``parent``: one sum per cost class (their parts are the same)."""
        return per_cost_class(space, parent, self.network_ms).astype(np.float64)

    def completion_ms(self, space: MacroSpace, level: int) -> float:
        """The least that growing any architecture of ``level`` layers to full depth adds (each later
        layer's fastest op, no skips: parts do not depend on the parent)."""
        fastest = tuple(min(self.ops[i], key=self.ops[i].get) for i in range(space.num_layers))
        full = MacroArch(fastest, ((),) * space.num_layers)
        prefix = MacroArch(fastest[:level], ((),) * level)
        return self.network_ms(full) - (self.network_ms(prefix) if level else 0.0)

    @property
    def digest(self) -> str:
        """Identifies the table's numbers (a study records it: a resume with another table is refused)."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _time_ms(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """The median of ``repeats`` timed calls after warm-up calls (CUDA: synchronised)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


@torch.no_grad()
def measure_latency(space: MacroSpace, size: NetworkSize, device: str | torch.device = "cpu", batch: int = 1,
                    repeats: int = 30) -> LatencyTable:
    """Time every part of ``space``'s networks at ``size`` on ``device`` (the supernet holds them all)."""
    if not isinstance(space, MacroSpace):
        raise ValueError(f"latency is estimated for the macro space only, got {space!r}")
    device = torch.device(device)
    net = build_network(space, size.num_classes, size.in_channels, size.channels).to(device).eval()
    shapes: dict[int, torch.Size] = {}  # layer position -> its op's input shape
    hooks = [net.layers[i].ops[space.ops[0]].register_forward_pre_hook(
        lambda m, args, i=i: shapes.__setitem__(i, args[0].shape)) for i in range(space.num_layers)]
    image = torch.randn(batch, size.in_channels, size.image_size, size.image_size, device=device)
    net(image, MacroArch((space.ops[0],) * space.num_layers, ((),) * space.num_layers))
    for h in hooks:
        h.remove()
    x = {i: torch.randn(shapes[i], device=device) for i in range(space.num_layers)}

    def head(h: torch.Tensor) -> torch.Tensor:
        return net.classifier(F.adaptive_avg_pool2d(F.relu(h), 1).flatten(1))

    reductions = {p: net.reductions[p] for p in net.reductions}
    return LatencyTable(
        device=_device_name(device), batch=batch,
        stem=_time_ms(lambda: net.stem(image), device, repeats),
        ops=[{op: _time_ms(lambda op=op, i=i: net.layers[i].ops[op](x[i]), device, repeats) for op in space.ops}
             for i in range(space.num_layers)],
        merge=[_time_ms(lambda i=i: net.layers[i].merge_bn(x[i] + x[i]), device, repeats)
               for i in range(space.num_layers)],
        reductions={p: _time_ms(lambda m=m, p=p: m(x[int(p) - 1]), device, repeats) for p, m in reductions.items()},
        heads=[_time_ms(lambda i=i: head(x[i]), device, repeats) for i in range(space.num_layers)],
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.processor() or platform.machine()} × {torch.get_num_threads()} threads"


def latency_table(space: MacroSpace, size: NetworkSize, device: str | torch.device = "cpu", batch: int = 1,
                  cache_dir: str | os.PathLike | None = None) -> LatencyTable:
    """The cached table for these settings on this device, measured (and cached) the first time."""
    device = torch.device(device)
    folder = Path(cache_dir or os.environ.get("EPNAS_CACHE") or Path.home() / ".cache" / "optuna_epnas") / "latency"
    key = hashlib.sha1(json.dumps([space.spec(), asdict(size), _device_name(device), batch, torch.__version__],
                                  sort_keys=True).encode()).hexdigest()[:16]
    path = folder / f"{key}.json"
    if path.exists():
        return LatencyTable(**json.loads(path.read_text()))
    table = measure_latency(space, size, device, batch)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(table), indent=1))
    os.replace(tmp, path)
    return table
