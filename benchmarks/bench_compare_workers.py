"""``epnas compare --workers N`` against ``--workers 1``: the same comparison, wall time side by side.

Runs one small comparison (macro, digits; random and TPE at a fixed trial budget, each run's best
trained stand-alone for 2 epochs) twice into fresh folders, first with one worker (torch using every
core), then with N worker processes (each its share of the cores), and prints both wall times and their
ratio. The results of the
two must be the same runs (tests/test_compare.py checks that); here only the time is measured.

    PYTHONPATH=. python benchmarks/bench_compare_workers.py [--workers 2] [--seeds 2] [--budget 12]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from _common import report_load, timed_run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--budget", type=int, default=12)
    p.add_argument("--samplers", default="random,tpe")
    args = p.parse_args()
    load = os.getloadavg()[0]
    compare = [sys.executable, "-m", "optuna_epnas.cli", "compare", "--dataset", "digits", "--layers", "4",
               "--channels", "16", "--epochs", "2", "--warmup-epochs", "0", "--samplers", args.samplers,
               "--seeds", str(args.seeds), "--budget", str(args.budget), "--top", "1", "--final-epochs", "2",
               "--final-seeds", "1", "--final-channels", "16", "--ranking-n", "0", "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        times = {workers: timed_run([*compare, "--out", f"{tmp}/w{workers}", "--workers", str(workers)])
                 for workers in (1, args.workers)}
    runs = len(args.samplers.split(",")) * args.seeds
    print(f"epnas compare, {runs} runs ({args.samplers} x {args.seeds} seeds, {args.budget} trials each), "
          f"macro L=4 C=16, digits, {os.cpu_count()} CPUs")
    print(f"--workers 1:            {times[1]:7.1f} s")
    print(f"--workers {args.workers}:            {times[args.workers]:7.1f} s")
    print(f"ratio (1)/({args.workers}) = {times[1] / times[args.workers]:.2f}x  (> 1: the workers are faster)")
    report_load(load)


if __name__ == "__main__":
    main()
