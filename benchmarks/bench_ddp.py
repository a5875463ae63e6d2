"""One search on one process vs the same search on N torch.distributed ranks (gloo on CPU, NCCL on GPU).

Runs ``epnas search`` (macro, digits by default) three ways, one after the other, and prints wall time
and trials/s: (a) one process, one thread; (b) one process with N threads (the same cores as (c));
(c) ``torchrun --nproc_per_node=N``, one thread per rank, each rank a shard of every batch. The ratio
(a)/(c) is the scaling; (b)/(c) says whether ranks beat threads on the same cores.

    PYTHONPATH=. python benchmarks/bench_ddp.py [--ranks 2] [--dataset digits] [--channels 16] [--layers 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from _common import report_load, timed_run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    load = os.getloadavg()[0]
    search = ["-m", "optuna_epnas.cli", "search", "--dataset", args.dataset, "--layers", str(args.layers),
              "--k", str(args.k), "--iterations", "1", "--channels", str(args.channels), "--epochs", str(args.epochs),
              "--warmup-epochs", "0", "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        def where(name: str) -> list[str]:
            return ["--storage", f"sqlite:///{tmp}/{name}.db", "--study-name", name]

        one = timed_run([sys.executable, *search, *where("one")], OMP_NUM_THREADS="1")
        threads = timed_run([sys.executable, *search, *where("threads")], OMP_NUM_THREADS=str(args.ranks))
        ranks = timed_run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={args.ranks}", *search, *where("ranks")], OMP_NUM_THREADS="1")
    print(f"epnas search, macro L={args.layers} C={args.channels} K={args.k}, {args.epochs} epochs/trial, {args.dataset}")
    print(f"(a) 1 process, 1 thread:            {one:7.1f} s")
    print(f"(b) 1 process, {args.ranks} threads:           {threads:7.1f} s")
    print(f"(c) {args.ranks} ranks (gloo), 1 thread each: {ranks:7.1f} s")
    print(f"ratios: (a)/(c) = {one / ranks:.2f}x, (b)/(c) = {threads / ranks:.2f}x  (> 1: the ranks are faster)")
    report_load(load)


if __name__ == "__main__":
    main()
