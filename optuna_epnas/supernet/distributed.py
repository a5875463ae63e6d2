"""One supernet trained by several processes: ``torchrun --nproc_per_node=N epnas search ...``.

Rank 0 owns the study and the sampler and runs the search as one process would; every other rank
holds an identical copy of the supernet and serves rank 0's commands (:func:`serve`): train this
path with this data order, warm up, take these weights. Each rank trains on its shard of every
global batch (the same batches on every rank: the data order is seeded), gradients are averaged
with an all-reduce (gloo on CPU, NCCL on GPU), so every rank takes the same step and the weights
stay identical -- checked after every trial (:func:`check_identical`). Rank 0 alone evaluates,
checkpoints and writes to the storage. Batch norm uses the whole batch's statistics
(:class:`~optuna_epnas.nn.ops.GlobalBatchNorm2d`), so N ranks train what one process would, up to
floating-point rounding.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from optuna_epnas.supernet.objective import SupernetObjective
    from optuna_epnas.supernet.trainer import SupernetTrainer


def rank_and_size() -> tuple[int, int]:
    """(this process's rank, the number of ranks); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def leads() -> bool:
    """Whether this is rank 0 of several: it sends the other ranks their commands."""
    rank, size = rank_and_size()
    return size > 1 and rank == 0


def stop() -> None:
    """Rank 0, at the end of a search: the other ranks return from :func:`serve`."""
    if leads():
        command("stop")


def shutdown() -> None:
    """Every rank, at its end: wait for the others, then leave the process group. A rank that exits
    while its peer's gloo connection is still open can be aborted (SIGABRT) by the peer's teardown."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def init_from_env(device: str) -> str:
    """Join the process group that ``torchrun`` describes in the environment (a no-op without one);
    returns the device this rank uses (``cuda`` becomes this rank's GPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    return f"cuda:{local}" if cuda else ("cpu" if device == "auto" else device)


def command(*cmd: Any) -> Any:
    """Rank 0 sends ``cmd`` to every rank (None: receive); returns it on every rank."""
    box = [cmd if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum the gradients of the parameters that have one over the ranks (every rank trains the same
    path, so the same ones have one; each rank's loss is its shard's sum over the global batch size,
    so the sum is the global batch's mean gradient)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def all_finite(flag: torch.Tensor) -> bool:
    """Whether ``flag`` is true on every rank (so all ranks stop a diverging trial together)."""
    value = flag.to(torch.int32).reshape(1)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def weights_digest(module: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> str:
    """A hash of every weight and buffer of ``module`` (and the optimizer's momentum)."""
    h = hashlib.sha1()
    tensors = list(module.state_dict().values())
    if optimizer is not None:
        tensors += [t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
    for t in tensors:
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_identical(module: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> list[str]:
    """Every rank's weights digest (gathered on every rank); raises if they differ."""
    digests: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, weights_digest(module, optimizer))
    if len(set(digests)) != 1:
        raise RuntimeError(f"the model copies of the ranks differ ({digests}): stopping rather than "
                           "training diverging copies")
    return digests


def serve(worker: "SupernetObjective | SupernetTrainer") -> None:
    """A rank other than 0: do what rank 0 says until it says stop. ``worker``: this rank's objective
    (its trainer trains; it never checkpoints: rank 0 does) or trainer."""
    trainer = getattr(worker, "trainer", worker)
    trainer.start()  # the same seeded initial weights as rank 0's; rank 0 says when to warm up
    while True:
        cmd = command()
        op = cmd[0]
        if op == "stop":
            return
        try:
            if op == "train":
                trainer.train(trainer.space.parse(cmd[1]), step=cmd[2], stoppable=bool(cmd[3:4] and cmd[3]),
                              epochs=cmd[4] if len(cmd) > 4 else None)
            elif op == "warm_up":
                trainer.warm_up()
            elif op == "state":
                trainer.set_state(cmd[1])
            elif op == "check":
                check_identical(trainer.net, trainer.optimizer)
        except FloatingPointError:
            pass  # rank 0 fails the trial and sends the weights to roll back to
