"""What ``batched_writes`` saves a trial (issue 27 item 3): the writes a supernet trial makes before it
trains (a full-depth architecture's parameters, its key, level, size and constraints) and after (its
cost and bookkeeping), then its ``tell``, on a real storage, batched (one transaction per block, as
``SupernetObjective`` writes them) and unbatched (one commit per write), alternating trial by trial in
two studies of the same storage. Training is left out: the question is how many milliseconds per trial
the batching is worth beside a trial's training (1-4 s on a GPU, issue 26).

    PYTHONPATH=. python benchmarks/bench_batched_writes.py                       # SQLite, MacroSpace(12)
    PYTHONPATH=. python benchmarks/bench_batched_writes.py --storage postgresql://...
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report_load  # noqa: E402

from optuna_epnas.spaces import MacroSpace  # noqa: E402
from optuna_epnas.storage._storage import batched_writes, trial_id  # noqa: E402
from optuna_epnas.storage.storages import open_storage  # noqa: E402


def random_full_depth(space: MacroSpace, rng: np.random.Generator) -> dict:
    """A uniformly grown full-depth architecture's parameters."""
    arch = space.root()
    while space.level(arch) < space.max_level:
        arch = space.child(arch, int(rng.integers(space.num_children(arch))))
    return space.to_params(arch)


def one_trial(study: optuna.Study, space: MacroSpace, params: dict, batched: bool) -> float:
    """Seconds of one trial's writes (as the objective makes them) and its tell."""
    study.enqueue_trial(params)  # the architecture a sampler would hand out, asked for by space.suggest
    trial = study.ask()
    block = (lambda: batched_writes(trial.storage, trial_id(trial))) if batched else contextlib.nullcontext
    started = time.perf_counter()
    with block():
        space.suggest(trial)
        trial.set_user_attr("arch", "x" * 120)
        trial.set_user_attr("level", space.max_level)
        trial.set_user_attr("params", 123456)
        trial.set_constraint("params", -1.0)
    with block():
        trial.set_user_attr("train_seconds", 1.234)
        trial.set_user_attr("cost_macs", 1.0e12)
    study.tell(trial, 0.5)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=300, help="trials of each way")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--storage", default=None, help="default: a fresh SQLite file in a temp dir")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        url = args.storage or f"sqlite:///{tmp}/b.db"
        storage = open_storage(url)
        space = MacroSpace(args.layers)
        rng = np.random.default_rng(0)
        archs = [random_full_depth(space, rng) for _ in range(args.trials)]
        suffix = time.time_ns()
        studies = {way: optuna.create_study(storage=storage, study_name=f"{way}-{suffix}", direction="maximize")
                   for way in ("batched", "unbatched")}
        seconds: dict[str, list[float]] = {way: [] for way in studies}
        for i, params in enumerate(archs):
            for way in (("batched", "unbatched") if i % 2 == 0 else ("unbatched", "batched")):
                seconds[way].append(one_trial(studies[way], space, params, way == "batched"))
    print(f"`{' '.join(['python benchmarks/bench_batched_writes.py', *sys.argv[1:]])}`")
    print(f"optuna {optuna.__version__}, {url.split('://')[0]}, MacroSpace({args.layers}): "
          f"{len(archs[0])} parameters a trial, {args.trials} trials each way, alternating")
    print(f"{'way':<10} {'median ms':>10} {'p90 ms':>8} {'last 10% ms':>12}")
    for way, s in seconds.items():
        tail = s[-max(1, len(s) // 10):]
        print(f"{way:<10} {1e3 * statistics.median(s):>10.1f} {1e3 * float(np.percentile(s, 90)):>8.1f} "
              f"{1e3 * statistics.median(tail):>12.1f}")
    saved = statistics.median(seconds["unbatched"]) - statistics.median(seconds["batched"])
    ratio = statistics.median(seconds["unbatched"]) / statistics.median(seconds["batched"])
    print(f"unbatched / batched (medians): {ratio:.2f}; saved per trial: {1e3 * saved:.1f} ms = "
          f"{100 * saved / 1.0:.1f} % of a 1 s trial, {100 * saved / 4.0:.1f} % of a 4 s one")
    report_load(load)


if __name__ == "__main__":
    main()
