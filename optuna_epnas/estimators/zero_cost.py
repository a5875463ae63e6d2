"""Zero-cost proxies: a score of each architecture from its untrained network and one batch.

Each is computed on the stand-alone network (the one code path, :func:`~optuna_epnas.standalone.export.build_seeded`)
at initialisation, as in Abdelfattah et al. 2021 ("Zero-cost proxies for lightweight NAS") and Mellor et al.
2021 ("Neural architecture search without training"):

- ``grad_norm``: the summed L2 norms of the conv/linear weight gradients of the cross-entropy;
- ``snip``: Σ |w ⊙ ∂L/∂w| over conv/linear weights (connection sensitivity);
- ``synflow``: Σ w ⊙ ∂R/∂w with every weight made positive, BatchNorm as identity (eval mode at
  initialisation), a one-image all-ones input and R the summed output, in float64 (data-free);
- ``jacob_cov``: Mellor et al.'s first score, from the correlations of the per-image input Jacobians;
- ``naswot``: Mellor et al.'s second score, log |K| of the ReLU activation-pattern kernel of the batch;
- ``params``: the parameter count, the trivial baseline every proxy must beat.

Costs: forward multiply-adds per image × images (× ``TRAIN_FACTOR`` where a backward pass is taken).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optuna_epnas.benchmarks.ranking import Estimate
from optuna_epnas.costs.cost import TRAIN_FACTOR, NetworkSize
from optuna_epnas.data.device import DeviceData, make_generator
from optuna_epnas.standalone.export import ModelSpec, build_seeded
from optuna_epnas.spaces.base import SearchSpace

__all__ = ["PROXIES", "ZeroCost", "zero_cost", "rank_average"]


def _weights(net: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _grad_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    with torch.no_grad():
        return float(sum(w.grad.norm() for w in _weights(net) if w.grad is not None))


def _snip(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    with torch.no_grad():
        return float(sum((w.grad * w).abs().sum() for w in _weights(net) if w.grad is not None))


def _synflow(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net = net.double().eval()  # eval: BatchNorm with its initial running statistics is the identity
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad()
    net(torch.ones_like(x[:1], dtype=torch.float64)).sum().backward()
    with torch.no_grad():
        return float(sum((w.grad * w).sum() for w in _weights(net) if w.grad is not None))


def _jacob_cov(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    x = x.clone().requires_grad_(True)
    net.zero_grad()
    net(x).sum().backward()
    jac = x.grad.reshape(len(x), -1).double().numpy()
    corr = np.corrcoef(jac)
    if not np.all(np.isfinite(corr)):
        return -1e9  # a constant Jacobian row (a dead network): the lowest score
    v = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def _naswot(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    codes: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        codes.append((inputs[0].detach().reshape(len(x), -1) > 0).double())

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    if not codes:
        return -1e9  # no ReLU at all: no activation pattern to tell images apart
    c = torch.cat(codes, dim=1)
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    sign, logdet = np.linalg.slogdet(kernel.numpy())
    return float(logdet) if sign > 0 else -1e9


#: name -> (score function, forward passes per image counted as a training step?, images used)
PROXIES: dict[str, tuple[Callable[[nn.Module, torch.Tensor, torch.Tensor], float], bool, int | None]] = {
    "grad_norm": (_grad_norm, True, None),
    "snip": (_snip, True, None),
    "synflow": (_synflow, True, 1),
    "jacob_cov": (_jacob_cov, True, None),
    "naswot": (_naswot, False, None),
}


def _batches(data: DeviceData, batch_size: int, seed: int, repeats: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [next(iter(data.train_batches(batch_size, make_generator(data.device, seed + r)))) for r in range(repeats)]


def _score(space: SearchSpace, key: str, data: DeviceData, proxy: str, channels: int, seed: int,
           batches: Sequence[tuple[torch.Tensor, torch.Tensor]], cells: int | None, macs: int) -> tuple[float, float]:
    """The mean of ``proxy`` over the networks initialised from ``seed``, ``seed + 1``, ... (one per batch)
    and its cost in multiply-adds."""
    fn, backward, images = PROXIES[proxy]
    spec = ModelSpec(space=space.spec(), arch=key, num_classes=data.num_classes, in_channels=data.in_channels,
                     channels=channels, cells=cells)
    values, cost = [], 0.0
    for r, (x, y) in enumerate(batches):
        net = build_seeded(spec, seed + r).to(data.device).train()
        n = images or len(y)
        values.append(fn(net, x[:n], y[:n]))
        cost += (TRAIN_FACTOR if backward else 1) * macs * n
    return float(np.mean(values)), cost


def _check_proxies(proxies: Sequence[str]) -> None:
    unknown = sorted(set(proxies) - set(PROXIES))
    if unknown:
        raise ValueError(f"unknown zero-cost prox{'y' if len(unknown) == 1 else 'ies'} {unknown}; known: {sorted(PROXIES)}")


def zero_cost(space: SearchSpace, data: DeviceData, archs: Sequence[str], proxies: Sequence[str] = tuple(PROXIES),
              channels: int = 16, batch_size: int = 64, seed: int = 0, cells: int | None = None,
              repeats: int = 1) -> dict[str, Estimate]:
    """Every proxy in ``proxies`` (and ``params``) for each architecture: its network of width ``channels``
    initialised from ``seed``, one batch of ``batch_size`` training images drawn with ``seed``; with
    ``repeats`` > 1 the mean over initialisations and batches ``seed``, ``seed + 1``, ... (each costs)."""
    _check_proxies(proxies)
    batches = _batches(data, batch_size, seed, repeats)
    size = NetworkSize.of(data, channels)
    scores: dict[str, list[float]] = {name: [] for name in (*proxies, "params")}
    cost = dict.fromkeys(scores, 0.0)
    for key in archs:
        params, macs = size.count(space, space.parse(key))
        scores["params"].append(float(params))
        for name in proxies:
            value, spent = _score(space, key, data, name, channels, seed, batches, cells, macs)
            scores[name].append(value)
            cost[name] += spent
    return {name: Estimate(values, cost[name]) for name, values in scores.items()}


class ZeroCost:
    """A zero-cost proxy as a search's estimator: ``SupernetObjective(..., estimator=ZeroCost())`` scores
    each trial's architecture with ``proxy`` on its untrained stand-alone network (the search's width,
    initialisations ``seed``.. ``seed + repeats - 1``, one batch of ``batch_size`` training images each)
    instead of training a supernet path. Deterministic on the CPU; a trial costs a few forward-backward
    passes of one batch.

    Args:
        proxy: one of :data:`PROXIES` (default ``"jacob_cov"``: the best ranker on the Fashion-MNIST
            proxy's ranking benchmark, τ 0.54 / 0.55 over two seeds; on the digits proxy only 0.27 / 0.16,
            below the supernet's 0.42 / 0.32 -- check it on your task).
        repeats: initialisations (and batches) averaged; one alone is noisier (Fashion-MNIST proxy: τ
            0.57 / 0.41 with one, 0.54 / 0.55 with 4).
        batch_size: images per batch.
    """

    def __init__(self, proxy: str = "jacob_cov", repeats: int = 4, batch_size: int = 64) -> None:
        _check_proxies([proxy])
        for name, value in (("repeats", repeats), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "batch_size" else 1):
                raise ValueError(f"{name} must be an integer >= {2 if name == 'batch_size' else 1}, got {value!r}")
        self.proxy, self.repeats, self.batch_size = proxy, repeats, batch_size
        self._drawn: tuple[Any, int, list] | None = None  # (data, seed, batches): drawn once per search

    def __repr__(self) -> str:
        return f"ZeroCost({self.proxy!r}, repeats={self.repeats}, batch_size={self.batch_size})"

    def spec(self) -> dict[str, Any]:
        """What it is, as a study records it (a resume with another estimator is refused)."""
        return {"kind": "zero-cost", "proxy": self.proxy, "repeats": self.repeats, "batch_size": self.batch_size}

    def score(self, space: SearchSpace, arch: Any, data: DeviceData, channels: int, seed: int,
              macs: int) -> tuple[float, float]:
        """(score, cost in multiply-adds) of ``arch``; ``macs``: its forward multiply-adds per image."""
        if self._drawn is None or self._drawn[0] is not data or self._drawn[1] != seed:
            self._drawn = (data, seed, _batches(data, self.batch_size, seed, self.repeats))
        batches = self._drawn[2]
        return _score(space, space.key(arch), data, self.proxy, channels, seed, batches, None, macs)


def rank_average(*score_lists: Sequence[float]) -> list[float]:
    """The mean of each architecture's ranks under several estimators (higher: better): how a
    zero-cost proxy and a supernet score are combined without a common scale."""
    from scipy.stats import rankdata

    return np.mean([rankdata(s) for s in score_lists], axis=0).tolist()

