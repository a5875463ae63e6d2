"""SupernetTrainer: a shared-weight supernet and its SGD -- train a sampled path, evaluate one.

What a search trains, without the study: :class:`~optuna_epnas.SupernetObjective` is built from a trainer,
adds the trials and keeps the weights in a checkpoint. Every random draw is seeded (the initialisation by ``seed``, each
training's data order by ``[seed, step]``), so seeded runs on the CPU are reproducible. Under
``torchrun`` rank 0 tells the other ranks (:func:`optuna_epnas.supernet.distributed.serve`) to train each path
with it, each on its shard of every batch.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from optuna_epnas._checks import check_int
from optuna_epnas.supernet import distributed
from optuna_epnas.costs.cost import TRAIN_FACTOR, NetworkSize
from optuna_epnas.data.device import DeviceData, make_generator
from optuna_epnas.nn import build_network
from optuna_epnas.settings import SUPERNET
from optuna_epnas.spaces.base import SearchSpace

#: The data-order seed word of the warm-up: one that no trial's ``step`` reaches.
WARMUP_STEP = 2**31 - 1
#: How a warm-up draws its paths (``SupernetTrainer(warmup_paths=...)``).
WARMUP_PATHS = ("uniform", "fair")


class SupernetTrainer:
    """The supernet of ``space`` on ``data``, and the SGD (Nesterov) that trains its paths.

    Args:
        space: the search space (the same object the sampler uses).
        data: a :class:`~optuna_epnas.data.device.DeviceData` from :func:`~optuna_epnas.load_dataset`.
        epochs: epochs of training per sampled architecture (paper: 3).
        channels: width C of the supernet (paper search setting: 24).
        batch_size: SGD (Nesterov) batch size, shared by all trials, as are the next four.
        lr: learning rate.
        momentum: Nesterov momentum (0: plain SGD).
        weight_decay: L2 weight decay.
        grad_clip: gradient-norm clipping (0: none).
        seed: seeds the supernet's initialisation and every training's data order.
        amp: bf16 autocast (default: on CUDA only).
        channels_last: the channels_last memory format (default: on CUDA only).
        eval_batch_size: images per evaluation batch.
        cuda_graphs: capture a trial's training step in one CUDA graph and replay it (default: on CUDA,
            in one process); the attribute of the same name can be changed later. See :class:`CapturedStep`.
        warmup_epochs: epochs of SPOS-style warm-up (:meth:`warm_up`) -- every batch trains a
            full-depth architecture drawn uniformly at random -- so that the first measurements are
            not made on random weights (in a search: before the first trial, charged to it).
        warmup_paths: how the warm-up draws its paths: ``"uniform"`` (SPOS: one uniformly drawn
            path per batch) or ``"fair"`` (FairNAS' strict fairness: per batch, as many paths as a
            unit has op groups, each group used once at every depth, gradients summed into one step;
            an epoch costs that many uniform epochs).
    """

    def __init__(
        self, space: SearchSpace, data: DeviceData, epochs: int = SUPERNET.epochs, channels: int = SUPERNET.channels,
        batch_size: int = SUPERNET.batch_size, lr: float = SUPERNET.lr, momentum: float = SUPERNET.momentum,
        weight_decay: float = SUPERNET.weight_decay, grad_clip: float = SUPERNET.grad_clip, seed: int = 0,
        amp: bool | None = None, channels_last: bool | None = None, eval_batch_size: int = SUPERNET.eval_batch_size,
        warmup_epochs: int = SUPERNET.warmup_epochs, warmup_paths: str = "uniform", cuda_graphs: bool | None = None,
    ) -> None:
        for name, value, low in (("epochs", epochs, 1), ("channels", channels, 1), ("batch_size", batch_size, 1),
                                 ("warmup_epochs", warmup_epochs, 0)):
            check_int(name, value, low)
        for name, value, low in (("lr", lr, None), ("momentum", momentum, 0.0), ("weight_decay", weight_decay, 0.0),
                                 ("grad_clip", grad_clip, 0.0)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 if low is None else value >= low)):
                raise ValueError(f"{name} must be a finite number {'> 0' if low is None else '>= 0'}, got {value!r}")
        self.space, self.data, self.epochs, self.channels = space, data, epochs, channels
        self.batch_size, self.lr, self.momentum = batch_size, lr, momentum
        self.weight_decay, self.grad_clip, self.seed, self.eval_batch_size = weight_decay, grad_clip, seed, eval_batch_size
        if warmup_paths not in WARMUP_PATHS:
            raise ValueError(f"warmup_paths must be one of {', '.join(map(repr, WARMUP_PATHS))}, got {warmup_paths!r}")
        self.warmup_epochs, self.warmup_paths = warmup_epochs, warmup_paths
        self.warmed_up = False
        cuda = data.device.type == "cuda"
        self.amp = cuda if amp is None else amp
        self.channels_last = cuda if channels_last is None else channels_last
        self.cuda_graphs = cuda if cuda_graphs is None else bool(cuda_graphs)
        self.net: torch.nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    @property
    def network_size(self) -> NetworkSize:
        """The network its trials train, as size limits and cost objectives count it (the network
        :class:`~optuna_epnas.costs.model.CostModel` counts in: the objective fills it in)."""
        return NetworkSize.of(self.data, self.channels)

    def _macs(self, arch: Any) -> int:
        return self.network_size.count(self.space, arch)[1]

    def training_spec(self) -> dict[str, Any]:
        """The SGD settings that change what training does (part of the objective's ``spec``)."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "momentum": self.momentum,
                "weight_decay": self.weight_decay, "grad_clip": self.grad_clip,
                "val_images": len(self.data.val_y)}

    def build(self) -> torch.nn.Module:
        """A fresh supernet, initialised from ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = build_network(self.space, self.data.num_classes, self.data.in_channels, self.channels)
        net = net.to(self.data.device)
        return net.to(memory_format=torch.channels_last) if self.channels_last else net

    def start(self) -> None:
        """A fresh supernet (:meth:`build`) and its optimizer."""
        self.net = self.build()
        self.optimizer = torch.optim.SGD(
            self.net.parameters(), lr=self.lr, momentum=self.momentum, nesterov=self.momentum > 0,
            weight_decay=self.weight_decay,
        )

    def _ensure_supernet(self) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """The supernet and its optimizer, made on first use (:meth:`start`; the objective attaches its
        study's before a trial trains)."""
        if self.net is None:
            self.start()
        assert self.net is not None and self.optimizer is not None
        return self.net, self.optimizer

    def train(self, arch: Any, step: int, on_epoch: Callable[[int], bool] | None = None,
              stoppable: bool = False, epochs: int | None = None) -> None:
        """Train the path of ``arch`` for ``epochs`` epochs (default: :attr:`epochs`); ``step`` seeds
        this trial's data order. ``on_epoch(epoch)`` after each epoch: True stops the training there (a
        pruned trial). ``stoppable``: another rank's trainer, told by rank 0 after each epoch whether to stop."""
        epochs = self.epochs if epochs is None else epochs
        if distributed.leads():  # every rank trains it with us
            distributed.command("train", self.space.key(arch), step, on_epoch is not None, epochs)
        self._fit(lambda images: arch, epochs, [self.seed, step], on_epoch, stoppable or on_epoch is not None,
                  captured=arch)

    def warm_up(self, on_epoch: Callable[[int, float], Any] | None = None, prefix: Any = None) -> None:
        """``warmup_epochs`` epochs on full-depth paths drawn as ``warmup_paths`` says (SPOS: one
        uniform path per batch; FairNAS: every op group once per depth per batch).

        ``on_epoch(epoch, cost_macs)`` after each epoch, with what the warm-up has cost so far (one
        process only: e.g. to measure the supernet as it warms up); what it returns is ignored.
        ``prefix``: only paths that extend this partial architecture (a few-shot sub-supernet's)."""
        if distributed.leads():
            distributed.command("warm_up")
        rng = np.random.default_rng([self.seed, WARMUP_STEP])
        cost = 0.0
        start = self.space.root() if prefix is None else prefix

        def paths(images: int) -> list[Any]:  # this batch's paths (_fit sums their gradients)
            nonlocal cost
            if self.warmup_paths == "fair":
                drawn = fair_draw(self.space, rng, start)
            else:
                arch = start
                for _ in range(self.space.level(start), self.space.max_level):
                    arch = self.space.child(arch, int(rng.integers(self.space.num_children(arch))))
                drawn = [arch]
            cost += sum(TRAIN_FACTOR * self._macs(a) * images for a in drawn)
            return drawn

        started = time.perf_counter()
        self._fit(paths, self.warmup_epochs, [self.seed, WARMUP_STEP],
                  None if on_epoch is None else (lambda epoch: on_epoch(epoch, cost) and False),
                  stoppable=on_epoch is not None)
        self.warmed_up = True
        self.warmup_record = {"epochs": self.warmup_epochs, "cost_macs": float(cost),
                              "seconds": round(time.perf_counter() - started, 3)}
        if self.warmup_paths != "uniform":
            self.warmup_record["paths"] = self.warmup_paths

    def _fit(self, pick_arch: Callable[[int], Any], epochs: int, seed_words: list[int],
             on_epoch: Callable[[int], bool] | None = None, stoppable: bool = False, captured: Any = None) -> None:
        """SGD over ``epochs`` epochs; each batch trains the path ``pick_arch(batch images)`` gives.
        ``stoppable``: after each epoch, ``on_epoch`` (rank 0) may stop it, on every rank. ``captured``:
        the one path every batch trains, whose step may be a CUDA graph (:attr:`cuda_graphs`)."""
        seed = int(np.random.SeedSequence(seed_words).generate_state(1)[0])
        gen = make_generator(self.data.device, seed)
        graphed = (CapturedStep(self, captured) if captured is not None and self.cuda_graphs and
                   distributed.rank_and_size()[1] == 1 and self.data.device.type == "cuda" else None)
        try:
            self._epochs(graphed, pick_arch, epochs, gen, on_epoch, stoppable)
        finally:
            if graphed is not None:
                graphed.release()

    def _epochs(self, graphed: "CapturedStep | None", pick_arch: Callable[[int], Any], epochs: int,
                gen: torch.Generator, on_epoch: Callable[[int], bool] | None, stoppable: bool) -> None:
        net, opt = self._ensure_supernet()
        rank, size = distributed.rank_and_size()
        params = list(net.parameters())
        net.train()
        finite = torch.ones((), dtype=torch.bool, device=self.data.device)
        for epoch in range(epochs):
            for x, y in self.data.train_batches(self.batch_size, gen):
                if graphed is not None:
                    graphed(x, y, finite)
                    continue
                picked = pick_arch(len(y))
                n = len(y)
                if size > 1:  # this rank's shard of the global batch (the same batches on every rank)
                    x, y = x[rank::size], y[rank::size]  # may be empty: zero gradients, still all-reduced
                self._sgd_step(x, y, picked if isinstance(picked, list) else [picked], n, size, params, finite)
            if not (bool(finite) if size == 1 else distributed.all_finite(finite)):
                raise FloatingPointError(f"the training loss became NaN or infinite in epoch {epoch + 1} (lr={self.lr})")
            if stoppable:
                stop = on_epoch(epoch) if on_epoch is not None else None
                if (distributed.command(stop)[0] if size > 1 else stop):
                    return
                net.train()  # the report evaluated in eval mode

    def _sgd_step(self, x: torch.Tensor, y: torch.Tensor, archs: list[Any], n: int, size: int,
              params: list[torch.nn.Parameter], finite: torch.Tensor, cache: bool = True) -> None:
        """One SGD step on a batch of ``n`` images (``x``, ``y``: this rank's shard of it, of ``size``
        ranks): the gradients of every path in ``archs`` summed, averaged over the ranks, clipped.
        ``finite`` (on the device) is and-ed in place with whether every loss was finite: checked once per
        epoch, no host sync per batch. ``cache``: autocast's weight cache (off inside a CUDA graph capture)."""
        net, opt = self._ensure_supernet()
        opt.zero_grad(set_to_none=True)  # None, not zero: untouched paths stay untouched
        for arch in archs:
            with torch.autocast(self.data.device.type, torch.bfloat16, enabled=self.amp, cache_enabled=cache):
                # shards: each rank's sum over the global count, so the all-reduced gradient is the mean
                loss = F.cross_entropy(net(self._layout(x), arch), y, reduction="mean" if size == 1 else "sum")
                loss = loss if size == 1 else loss / n
            finite &= torch.isfinite(loss.detach())
            loss.backward()
        if size > 1:
            distributed.average_gradients(params)
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        opt.step()

    @torch.no_grad()
    def evaluate(self, arch: Any, split: str = "val", limit: int | None = None) -> float:
        """Accuracy of the supernet path of ``arch`` on a split (search only ever uses ``val``), or on
        its first ``limit`` images."""
        net, _ = self._ensure_supernet()
        net.eval()  # the supernet's BN uses batch statistics in eval too (see nn.ops.batch_norm)
        correct = torch.zeros((), dtype=torch.int64, device=self.data.device)  # one host sync, at the end
        seen = 0
        for x, y in self.data.eval_batches(split, self.eval_batch_size, limit):
            with torch.autocast(self.data.device.type, torch.bfloat16, enabled=self.amp):
                correct += (net(self._layout(x), arch).argmax(1) == y).sum()
            seen += len(y)
        return int(correct) / seen

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def get_state(self) -> dict[str, Any]:
        assert self.net is not None and self.optimizer is not None
        return {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Take the weights and optimizer state of :meth:`get_state` (or a checkpoint)."""
        assert self.net is not None and self.optimizer is not None
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


def fair_draw(space: SearchSpace, rng: np.random.Generator, start: Any = None) -> list[Any]:
    """FairNAS' strictly fair draw of full-depth paths (extending ``start``, default the root): at every
    depth each group of children (:meth:`~optuna_epnas.SearchSpace.child_groups`: a macro layer's op) is
    used by exactly one path, in a random order; the child within its group (a macro layer's skips) is
    uniform. As many paths as the first grown unit has groups (cycled where a depth has fewer)."""
    start = space.root() if start is None else start
    m = len(np.unique(space.child_groups(start)))
    paths = [start] * m
    for _ in range(space.level(start), space.max_level):
        order = rng.permutation(m)
        for j in range(m):
            groups = space.child_groups(paths[j])
            ids = np.unique(groups)
            members = np.flatnonzero(groups == ids[order[j] % len(ids)])
            paths[j] = space.child(paths[j], int(members[rng.integers(len(members))]))
    return paths


class CapturedStep:
    """One path's training step -- forward, backward, clipping, SGD -- captured in one CUDA graph and
    replayed for every full batch of a trial (``SupernetTrainer.cuda_graphs``).

    The paths are small: eager, a step is ~20 ms of kernel launches against a 0.14 ms memory-traffic floor
    on an H200, and one graph per trial halved the projected paper-size search (85 -> 40 GPU-minutes,
    ``benchmarks/gpu_search.py --cuda-graphs``, where this capture was checked against eager). The first
    ``warmup`` steps run eagerly on a side stream (as capture requires: they also make SGD's momentum
    buffers), a last partial batch eagerly; gradients are set to None before the capture, so the captured
    backward writes them (as the eager step after ``zero_grad(set_to_none=True)``) and untouched paths
    stay untouched. Should a capture fail (an op that cannot be captured), the trainer warns once, trains
    eagerly from then on, and the batch is trained eagerly: nothing is lost.
    """

    def __init__(self, trainer: SupernetTrainer, arch: Any, warmup: int = 3) -> None:
        self.trainer, self.arch, self.warmup = trainer, arch, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None  # the batch the graph reads
        self.eager_steps = 0
        self.side = torch.cuda.Stream(trainer.data.device)

    def _step(self, x: torch.Tensor, y: torch.Tensor, finite: torch.Tensor, cache: bool = True) -> None:
        params = list(self.trainer._ensure_supernet()[0].parameters())
        self.trainer._sgd_step(x, y, [self.arch], len(y), 1, params, finite, cache=cache)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, finite: torch.Tensor) -> None:
        """Train on one batch; ``finite`` is and-ed with whether its loss was finite (on the device; the
        same tensor for every batch of the trial, which the graph updates in place)."""
        full = len(y) == self.trainer.batch_size
        if self.graph is not None and full:
            static_x, static_y = self.static
            static_x.copy_(x)
            static_y.copy_(y)
            self.graph.replay()
            return
        if full and self.eager_steps >= self.warmup and self.trainer.cuda_graphs and self._capture(x, y, finite):
            return
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            self._step(x, y, finite)
        torch.cuda.current_stream().wait_stream(self.side)
        self.eager_steps += 1

    def _capture(self, x: torch.Tensor, y: torch.Tensor, finite: torch.Tensor) -> bool:
        """Capture the step and train on this batch with it; False (nothing trained) if it cannot be."""
        self.trainer.optimizer.zero_grad(set_to_none=True)  # allocated inside the capture, then rewritten
        static_x, static_y = x.clone(), y.clone()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._step(static_x, static_y, finite, cache=False)
        except RuntimeError as err:  # an op that cannot be captured: this trainer trains eagerly from now on
            warnings.warn(f"a CUDA graph of the training step could not be captured ({err}); training eagerly "
                          "(SupernetTrainer.cuda_graphs set to False)", RuntimeWarning, stacklevel=2)
            self.trainer.cuda_graphs = False
            self.trainer.optimizer.zero_grad(set_to_none=True)
            return False
        self.graph, self.static = graph, (static_x, static_y)
        graph.replay()  # the capture only recorded: this trains on the batch
        return True

    def release(self) -> None:
        """Drop the graph, its static tensors and the gradients allocated in its memory pool."""
        self.graph = self.static = None
        if self.trainer.optimizer is not None:
            self.trainer.optimizer.zero_grad(set_to_none=True)
