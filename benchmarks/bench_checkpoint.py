"""What a search's checkpoint writes (issue 26, item 4): the whole supernet state every time, as before,
against the log of changes (``checkpoint.CheckpointFile``), side by side in one run.

    PYTHONPATH=. python benchmarks/bench_checkpoint.py [--space micro|macro] [--every 1 3] [--device cuda]

A supernet of the paper's size (micro: B=5, N=2; macro: L=12; C=24) is warmed up for an epoch of
FairNAS paths (every op trained, so every weight has its momentum buffer, as in a search's steady state), then trains one
random complete architecture per trial (the most a trial can touch) on random CIFAR-sized images.
Every ``--every`` trials the state is written both ways: ``torch.save`` of the whole state to one file
(what ``SupernetObjective.save`` did), and ``CheckpointFile.write`` to another. Printed per way: the
median bytes and milliseconds of a write, the total written over the run, and at the end the time to
read each file back (the log applies its records in order). Writes go to the page cache (no fsync):
on a slow or network disk the bytes matter more than these times. Nothing asserts on the numbers.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import synced_seconds

from optuna_epnas.supernet import checkpoint as ckpt
from optuna_epnas.data.device import DeviceData
from optuna_epnas.supernet.trainer import SupernetTrainer
from optuna_epnas.spaces import MacroSpace, MicroSpace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", choices=("micro", "macro"), default="micro")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--trials", type=int, default=24, help="trials trained after the warm-up")
    ap.add_argument("--every", type=int, nargs="+", default=[1, 4],
                    help="trials per checkpoint (a GPU trains several micro trials a minute)")
    ap.add_argument("--images", type=int, default=128, help="random 32x32 images per trial's epoch")
    ap.add_argument("--dir", default=None, help="where the files go (default: a temporary directory)")
    args = ap.parse_args()
    device = torch.device(args.device)
    n = args.images
    split = [torch.randn(n, 3, 32, 32, device=device), torch.randint(0, 10, (n,), device=device)]
    data = DeviceData("random", *split, *split, *split, num_classes=10, crop_padding=0, flip=False,
                      mean=(0.0,) * 3, std=(1.0,) * 3)
    space = MicroSpace(num_blocks=5, cells=2) if args.space == "micro" else MacroSpace(12)
    print(f"{type(space).__name__} (max level {space.max_level}), C=24, {args.trials} random complete architectures "
          f"after a warm-up epoch, on {device}")
    print(f"{'every':>5} {'way':<8} {'writes':>6} {'median MiB':>10} {'median ms':>9} {'total MiB':>9} "
          f"{'read ms':>8}")
    for every in args.every:
        rng = np.random.default_rng(0)
        # fair: every op group once per depth per batch: every weight trained
        trainer = SupernetTrainer(space, data, epochs=1, channels=24, batch_size=64, warmup_epochs=1,
                                  warmup_paths="fair")
        trainer.start()
        trainer.warm_up()
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            whole, log = Path(tmp) / "whole.pt", Path(tmp) / "log.pt"
            file = ckpt.CheckpointFile(log)
            sizes: dict[str, list[int]] = {"whole": [], "log": []}
            seconds: dict[str, list[float]] = {"whole": [], "log": []}

            def write_both() -> None:
                state = {"format": ckpt.FORMAT, **trainer.get_state()}
                s, _ = synced_seconds(lambda: torch.save(state, whole), device)
                sizes["whole"].append(whole.stat().st_size)
                seconds["whole"].append(s)
                s, written = synced_seconds(lambda: file.write(state), device)
                sizes["log"].append(written)
                seconds["log"].append(s)

            write_both()  # the warm-up's checkpoint: the log's first write is whole too
            for trial in range(args.trials):
                arch = space.root()
                while space.num_children(arch):
                    arch = space.child(arch, int(rng.integers(space.num_children(arch))))
                trainer.train(arch, step=trial)
                if (trial + 1) % every == 0:
                    write_both()
            read = {"whole": synced_seconds(lambda: torch.load(whole, map_location=device, weights_only=True), device)[0],
                    "log": synced_seconds(lambda: ckpt.read(log, device), device)[0]}
            for way in ("whole", "log"):
                later = sizes[way][1:]  # the writes after the warm-up's
                print(f"{every:>5} {way:<8} {len(later):>6} {statistics.median(later) / 2**20:>10.2f} "
                      f"{1e3 * statistics.median(seconds[way][1:]):>9.1f} {sum(later) / 2**20:>9.1f} "
                      f"{1e3 * read[way]:>8.0f}")
            print(f"{'':>5} log/whole bytes over the run: {sum(sizes['log'][1:]) / sum(sizes['whole'][1:]):.3f}; "
                  f"log file now {log.stat().st_size / 2**20:.1f} MiB", flush=True)


if __name__ == "__main__":
    main()
