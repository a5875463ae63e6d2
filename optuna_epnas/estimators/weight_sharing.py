"""Weight-sharing estimators: a supernet's score of each architecture, under different protocols.

One :class:`~optuna_epnas.supernet.trainer.SupernetTrainer` (the search's own training code) per estimate:

- ``pretrain``: warm-up epochs before any architecture is scored, with uniform single paths (SPOS) or
  strictly fair ones (FairNAS) -- :meth:`~optuna_epnas.supernet.trainer.SupernetTrainer.warm_up`;
- ``finetune_epochs``: each architecture's own training on its path before it is measured, either carried
  over from one architecture to the next in a random order (``sequential``: what a search does) or from
  the pre-trained weights afresh each time (restored after each measurement);
- the measurement: validation accuracy and mean validation loss (its negative is the score) of the path,
  in the split's order and in ``orders - 1`` shuffled orders (the supernet's BatchNorm uses batch
  statistics, so which images share a batch changes the answer), averaged;
- ``few_shot``: one sub-supernet per first unit (a macro network's first layer; Zhao et al. 2021 split
  on the first layer's op), each warmed up on the paths through it only; an architecture is measured on
  its own sub-supernet, so the warm-up is paid once per first unit.

Costs are multiply-adds (``optuna_epnas.costs.cost``): training ``TRAIN_FACTOR`` x forward per image, evaluation
forward per image.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from optuna_epnas.benchmarks.ranking import Estimate
from optuna_epnas.costs.cost import TRAIN_FACTOR
from optuna_epnas.data.device import DeviceData
from optuna_epnas.spaces.base import SearchSpace
from optuna_epnas.supernet.trainer import SupernetTrainer

__all__ = ["measure_path", "measure_orders", "warmup_curve", "shared_weights"]


def measure_path(trainer: SupernetTrainer, arch: Any, orders: int = 1, seed: int = 0) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the supernet path of ``arch`` on the validation split, averaged
    over the split's own batch order and ``orders - 1`` seeded shuffles of it."""
    per_order = measure_orders(trainer, arch, orders, seed)
    return float(np.mean([a for a, _ in per_order])), float(np.mean([l for _, l in per_order]))


@torch.no_grad()
def measure_orders(trainer: SupernetTrainer, arch: Any, orders: int = 1, seed: int = 0) -> list[tuple[float, float]]:
    """(accuracy, mean cross-entropy) per evaluation batch order: the split's own, then seeded shuffles
    (the supernet's BatchNorm uses batch statistics, so which images share a batch matters)."""
    net = trainer.net
    assert net is not None
    net.eval()
    data = trainer.data
    n = len(data.val_y)
    out = []
    for order in range(orders):
        perm = None if order == 0 else torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + order))
        correct, loss = 0, 0.0
        for start in range(0, n, trainer.eval_batch_size):
            idx = slice(start, start + trainer.eval_batch_size) if perm is None else perm[start:start + trainer.eval_batch_size]
            x, y = data.normalise(data.val_x[idx]), data.val_y[idx]
            with torch.autocast(data.device.type, torch.bfloat16, enabled=trainer.amp):
                logits = net(trainer._layout(x), arch)
            correct += int((logits.argmax(1) == y).sum())
            loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        out.append((correct / n, loss / n))
    return out


def _trainer(space: SearchSpace, data: DeviceData, channels: int, seed: int, pretrain: str | None,
             pretrain_epochs: int, epochs: int, **sgd: Any) -> SupernetTrainer:
    trainer = SupernetTrainer(space, data, epochs=max(epochs, 1), channels=channels, seed=seed,
                              warmup_epochs=pretrain_epochs if pretrain else 0,
                              warmup_paths="fair" if pretrain == "fairnas" else "uniform", **sgd)
    trainer.start()
    return trainer


def warmup_curve(space: SearchSpace, data: DeviceData, archs: Sequence[str], at: Sequence[int], *,
                 pretrain: str = "spos", channels: int = 16, seed: int = 0, orders: int = 1,
                 say: Callable[[str], None] = lambda s: None, **sgd: Any) -> dict[int, dict[str, Estimate]]:
    """Frozen-weight scores of ``archs`` after each epoch count in ``at`` of one warm-up (``pretrain``:
    ``"spos"`` or ``"fairnas"``), no fine-tune: ``{epochs: {"accuracy": .., "loss": .., "accuracy_1order": ..}}``
    (accuracy and loss averaged over ``orders`` batch orders; the first order's accuracy alone). One
    warm-up gives every row, each charged what the warm-up had cost by then plus its measurements."""
    parsed = [space.parse(a) for a in archs]
    trainer = _trainer(space, data, channels, seed, pretrain, max(at), 1, **sgd)
    eval_macs = float(sum(trainer._macs(a) for a in parsed) * len(data.val_y))
    out: dict[int, dict[str, Estimate]] = {}

    def on_epoch(epoch: int, cost: float) -> None:
        if epoch + 1 not in at:
            return
        rows = [measure_orders(trainer, a, orders, seed) for a in parsed]
        out[epoch + 1] = {
            "accuracy": Estimate([float(np.mean([acc for acc, _ in r])) for r in rows], cost + orders * eval_macs),
            "loss": Estimate([-float(np.mean([loss for _, loss in r])) for r in rows], cost + orders * eval_macs),
            "accuracy_1order": Estimate([r[0][0] for r in rows], cost + eval_macs),
        }
        say(f"  {pretrain} after {epoch + 1} epochs: {len(parsed)} paths measured")

    trainer.warm_up(on_epoch)
    return out


def shared_weights(space: SearchSpace, data: DeviceData, archs: Sequence[str], *, pretrain: str | None = None,
                   pretrain_epochs: int = 0, finetune_epochs: int = 3, sequential: bool = True,
                   channels: int = 16, seed: int = 0, orders: int = 1, few_shot: bool = False,
                   say: Callable[[str], None] = lambda s: None, **sgd: Any) -> Estimate:
    """Each architecture fine-tuned ``finetune_epochs`` on its path, then measured (accuracy; the loss
    and the frozen pre-fine-tune accuracy as variants). ``sequential``: the weights carry over from
    architecture to architecture, in a seeded random order, as in a search; else every architecture
    starts from the pre-trained weights."""
    parsed = [space.parse(a) for a in archs]
    groups = [space.key(_first_unit(space, a)) for a in parsed] if few_shot else [""] * len(parsed)
    scores, losses, frozen = [0.0] * len(parsed), [0.0] * len(parsed), [0.0] * len(parsed)
    cost = 0.0
    for g in sorted(set(groups)):
        members = [i for i, gi in enumerate(groups) if gi == g]
        trainer = _trainer(space, data, channels, seed, pretrain, pretrain_epochs, finetune_epochs, **sgd)
        if pretrain and pretrain_epochs:  # few-shot: this sub-supernet's paths share the first unit
            trainer.warm_up(prefix=_first_unit(space, parsed[members[0]]) if few_shot else None)
            cost += trainer.warmup_record["cost_macs"]
        base = copy.deepcopy(trainer.get_state())
        order = np.random.default_rng([seed, 24]).permutation(members) if sequential else members
        before = not sequential and finetune_epochs > 0  # a frozen score differs from the final one
        for step, i in enumerate(order):
            arch = parsed[i]
            if not sequential:
                trainer.set_state(base)
            if before:
                frozen[i] = measure_path(trainer, arch, 1, seed)[0]
            if finetune_epochs:
                trainer.train(arch, step=step, epochs=finetune_epochs)
                cost += TRAIN_FACTOR * trainer._macs(arch) * finetune_epochs * len(data.train_y)
            scores[i], loss = measure_path(trainer, arch, orders, seed)
            losses[i] = -loss
            cost += trainer._macs(arch) * len(data.val_y) * (orders + before)
            if (step + 1) % 10 == 0:
                say(f"  {step + 1}/{len(order)} measured")
    variants = {"loss": Estimate(losses, cost)}
    if not sequential and finetune_epochs:  # with no fine-tune the score is the frozen one
        variants["frozen"] = Estimate(frozen, cost)
    return Estimate(scores, cost, variants)


def _first_unit(space: SearchSpace, arch: Any) -> Any:
    """The one-unit architecture ``arch`` grows from."""
    first = space.distributions(1)
    return space.from_params({k: v for k, v in space.to_params(arch).items() if k in first})
