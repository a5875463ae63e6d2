"""Final training: a network trained alone, from scratch, and the plain CNN it is compared with.

:func:`train_final` is the schedule every stand-alone network gets (``epnas train``, ``epnas compare``,
``epnas ranking``; its defaults are :data:`~optuna_epnas.settings.FINAL`'s); :func:`baseline_cnn` a
plain CNN of the same size. :mod:`optuna_epnas.standalone.retrain` picks the architecture and saves the run.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optuna_epnas.supernet import distributed
from optuna_epnas.data.device import DeviceData, make_generator
from optuna_epnas.settings import FINAL

#: Final-training widths that train on a CPU in minutes on digits (the paper: macro 200-512, micro 96-128).


# -- training ------------------------------------------------------------------------------------
@dataclass
class EpochRecord:
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float  # on augmented batches, with the weights as they were during the epoch
    val_accuracy: float
    lr: float  # learning rate at the end of the epoch (0 after the last one)
    seconds: float


@dataclass
class TrainResult:
    history: list[EpochRecord]
    test_accuracy: float
    val_accuracy: float  # of the final weights
    params: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def evaluate(
    model: nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, batch_size: int = 1000,
    amp: bool | None = None, channels_last: bool | None = None,
) -> float:
    """Accuracy of ``model`` (in eval mode: BN running statistics) on ``x_all``/``y_all``."""
    cuda = x_all.device.type == "cuda"
    amp = cuda if amp is None else amp
    channels_last = cuda if channels_last is None else channels_last
    model.eval()
    correct = 0
    for i in range(0, len(x_all), batch_size):
        with torch.autocast(x_all.device.type, torch.bfloat16, enabled=amp):
            logits = model(_layout(x_all[i:i + batch_size], channels_last))
        correct += int((logits.argmax(1) == y_all[i:i + batch_size]).sum())
    return correct / len(x_all)


def train_final(
    model: nn.Module, data: DeviceData, epochs: int, lr: float = FINAL.lr, batch_size: int = FINAL.batch_size,
    momentum: float = FINAL.momentum, weight_decay: float = FINAL.weight_decay, seed: int = 0,
    progress: Callable[[EpochRecord], None] | None = None, amp: bool | None = None,
    channels_last: bool | None = None,
) -> TrainResult:
    """Train ``model`` on ``data``'s train split; report validation per epoch and test at the end.

    SGD with Nesterov momentum, the learning rate decayed by a cosine to 0 over all steps, the data
    set's augmentation. ``seed`` fixes the data order and augmentation (initialise the model
    seeded yourself): on the CPU two runs give the same numbers. bf16 autocast and channels_last
    default to on for CUDA only. The model is moved to the data's device and trained in place.
    The test split is evaluated once, at the end; nothing here chooses anything by it.
    Under ``torchrun`` each rank trains its shard of every batch (PyTorch's DDP: gradients averaged,
    BN running statistics from rank 0); every rank ends with the same weights and numbers.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    device = data.device
    cuda = device.type == "cuda"
    amp = cuda if amp is None else amp
    channels_last = cuda if channels_last is None else channels_last
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0,
                                weight_decay=weight_decay)
    rank, size = distributed.rank_and_size()
    trained = model if size == 1 else torch.nn.parallel.DistributedDataParallel(model)
    steps = epochs * math.ceil(len(data.train_x) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=0.0)
    generator = make_generator(device, seed)
    history: list[EpochRecord] = []
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        # Sums stay on the device: one synchronisation per epoch, not per step.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for x, y in data.train_batches(batch_size, generator):
            if size > 1:  # this rank's shard (the same batches on every rank); a batch too small for
                if len(y) < size:  # every rank to get an image is skipped by all of them
                    schedule.step()
                    continue
                x, y = x[rank::size], y[rank::size]
            with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                logits = trained(_layout(x, channels_last))
                loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach().float() * len(y)
            correct += (logits.argmax(1) == y).sum()
        if size > 1:
            torch.distributed.all_reduce(loss_sum)
            torch.distributed.all_reduce(correct)
        n = len(data.train_x)
        train_loss = loss_sum.item() / n
        if not math.isfinite(train_loss):
            raise RuntimeError(f"training diverged in epoch {epoch} (loss {train_loss}); try a smaller --lr")
        record = EpochRecord(
            epoch=epoch, epochs=epochs, train_loss=train_loss, train_accuracy=correct.item() / n,
            val_accuracy=evaluate(model, data.images("val"), data.val_y, amp=amp, channels_last=channels_last),
            lr=schedule.get_last_lr()[0], seconds=round(time.perf_counter() - epoch_started, 3),
        )
        history.append(record)
        if progress is not None:
            progress(record)
    if size > 1:
        for buffer in model.buffers():  # BN running statistics: rank 0's, as DDP's next forward would take
            torch.distributed.broadcast(buffer, 0)
        distributed.check_identical(model, optimizer)  # DDP keeps them so; a bug would not pass silently
    test_accuracy = evaluate(model, data.images("test"), data.test_y, amp=amp, channels_last=channels_last)
    return TrainResult(
        history=history, test_accuracy=test_accuracy, val_accuracy=history[-1].val_accuracy,
        params=sum(p.numel() for p in model.parameters()), seconds=round(time.perf_counter() - started, 3),
    )


# -- the plain baseline ----------------------------------------------------------------------------
class PlainCNN(nn.Sequential):
    """Three stages of ``depth`` conv3x3-BN-ReLU layers at a constant ``width``, max-pooled by 2
    between stages, then global average pooling and a linear classifier.

    Constant width as in the macro network, so "same size" means same width and depth budget, not
    a different shape; the searched network's ops and skips are what differs.
    """

    def __init__(self, num_classes: int, in_channels: int, width: int, depth: int = 2) -> None:
        layers: list[nn.Module] = []
        c_in = in_channels
        for stage in range(3):
            if stage:  # ceil_mode: odd sizes halve without dropping a row (28 -> 14 -> 7, 7 -> 4)
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            for _ in range(depth):
                layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                c_in = width
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
        self.width, self.depth = width, depth


def _plain_params(num_classes: int, in_channels: int, width: int, depth: int) -> int:
    with torch.device("meta"):  # counted without allocating
        return sum(p.numel() for p in PlainCNN(num_classes, in_channels, width, depth).parameters())


def baseline_cnn(num_classes: int, in_channels: int, target_params: int, depth: int = 2) -> PlainCNN:
    """A :class:`PlainCNN` whose width makes its parameter count closest to ``target_params``.

    The count is a quadratic in the width, so three counts give it exactly and the width is its
    root, rounded to the nearer integer. Rounding errs by at most about 1/width relative: within
    10% once the width is 10 or more (about 5k parameters and up with the default depth).
    """
    if isinstance(target_params, bool) or not isinstance(target_params, (int, np.integer)) or target_params < 1:
        raise ValueError(f"target_params must be a positive integer, got {target_params!r}")
    widths = np.array([1.0, 2.0, 3.0])
    a, b, c = np.polyfit(widths, [_plain_params(num_classes, in_channels, int(w), depth) for w in widths], 2)
    root = (-b + math.sqrt(b * b - 4 * a * (c - target_params))) / (2 * a)
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    width = min(candidates, key=lambda w: abs(_plain_params(num_classes, in_channels, w, depth) - target_params))
    return PlainCNN(num_classes, in_channels, width, depth)


