"""What a trial's undo copy costs (issue 25): the in-memory copy of the supernet's weights and optimizer
state taken before every trial, against one training step of a full-depth path, side by side.

    PYTHONPATH=. python benchmarks/bench_trial_undo.py [--device cuda]

Per space (macro L=12 and micro B=5, N=2, both C=24, the paper sizes): the state's size, the median
time of the copy and of the restore (``_undo``'s ``set_state``), and of one SGD step at batch 128 on a
random full-depth path; the ratio copy / step. A search trial is 3 epochs of such steps.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from _common import synced_seconds

from optuna_epnas.data.device import DeviceData
from optuna_epnas.supernet.objective import SupernetObjective
from optuna_epnas.supernet.trainer import SupernetTrainer
from optuna_epnas.spaces import MacroSpace, MicroSpace


def _median_seconds(fn, repeats: int, device: torch.device) -> float:
    return statistics.median(synced_seconds(fn, device)[0] for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    n = 256  # random CIFAR-sized images: the cost of a step does not depend on their content
    split = [torch.randn(n, 3, 32, 32, device=device), torch.randint(0, 10, (n,), device=device)]
    data = DeviceData("random", *split, *split, *split, num_classes=10, crop_padding=0, flip=False,
                      mean=(0.0,) * 3, std=(1.0,) * 3)
    print(f"{'space':<30} {'state MiB':>9} {'copy ms':>8} {'restore ms':>10} {'step ms':>8} {'copy/step':>9}")
    for space in (MacroSpace(12), MicroSpace(num_blocks=5, cells=2)):
        objective = SupernetObjective(SupernetTrainer(space, data, epochs=1, channels=24, batch_size=128),
                                      checkpoint=False)
        trainer = objective.trainer
        trainer.start()
        arch = space.root()
        for _ in range(space.max_level):
            arch = space.child(arch, int(rng.integers(space.num_children(arch))))
        trainer.train(arch, step=0)  # momentum buffers exist for this path, as in a search
        state = trainer.get_state()
        mib = sum(t.numel() * t.element_size() for t in state["model"].values()) / 2**20
        mib += sum(t.numel() * t.element_size() for s in state["optimizer"]["state"].values() for t in s.values()
                   if torch.is_tensor(t)) / 2**20
        copy = _median_seconds(objective._snapshot, args.repeats, device)
        before = objective._snapshot()
        restore = _median_seconds(lambda: trainer.set_state(before), args.repeats, device)
        step = _median_seconds(lambda: trainer.train(arch, step=1), args.repeats, device) / 2  # 256 images: 2 steps
        print(f"{type(space).__name__ + ' L/B=' + str(space.max_level):<30} {mib:9.1f} {copy * 1e3:8.1f} "
              f"{restore * 1e3:10.1f} {step * 1e3:8.1f} {copy / step:9.3f}", flush=True)


if __name__ == "__main__":
    main()
