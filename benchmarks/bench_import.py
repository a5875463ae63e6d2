"""What importing the package costs beside importing torch and optuna themselves (issue 13: the package
import must stay as cheap as theirs as it grows; plotting, Graphviz and the dashboard only where used).

    PYTHONPATH=. python benchmarks/bench_import.py            # 7 alternating runs of each, fresh interpreters

Prints the median wall time of each import and its ratio to ``import torch, optuna``, and which heavy
optional modules each one loads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report_load  # noqa: E402

HEAVY = ("matplotlib", "scipy", "graphviz", "optuna_dashboard", "sklearn", "optuna.visualization")
IMPORTS = {
    "torch, optuna": "import torch, optuna",
    "optuna_epnas": "import optuna_epnas",
    "optuna_epnas.cli (epnas)": "import optuna_epnas.cli",
}


def one(code: str) -> tuple[float, list[str]]:
    probe = f"{code}; import sys, json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True,
                         env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}).stdout
    return time.perf_counter() - started, json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    load = os.getloadavg()[0]
    one(IMPORTS["torch, optuna"])  # warm the file cache
    times: dict[str, list[float]] = {name: [] for name in IMPORTS}
    loaded: dict[str, list[str]] = {}
    for _ in range(args.reps):  # alternating, so that load changes hit every import alike
        for name, code in IMPORTS.items():
            seconds, loaded[name] = one(code)
            times[name].append(seconds)
    base = statistics.median(times["torch, optuna"])
    for name in IMPORTS:
        med = statistics.median(times[name])
        print(f"{name:<26} {med:6.2f} s  {med / base:5.2f}x torch+optuna   loads: {', '.join(loaded[name]) or '-'}")
    report_load(load)


if __name__ == "__main__":
    main()
