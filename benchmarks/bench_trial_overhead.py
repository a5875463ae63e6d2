"""Per-trial overhead of a search: where a trial's wall time goes when training costs nothing.

Runs ``epnas search``'s own loop (:func:`optuna_epnas.search.open_search` + ``Search.run``, with the
dashboard recorder and the progress lines) on a real storage, with the supernet's training and
evaluation replaced by no-ops (evaluation returns a fixed pseudo-random accuracy per architecture, so
the sampler still plans on a signal). Every call into the sampler, the storage, the recorder, the
drawing, the checkpoint and the search loop is timed *exclusively* (a storage read made by the sampler
counts as storage, not sampler), per trial; the table shows the medians over a window of trials around
trial 10, 100 and 1,000. Target (issue 13): non-training overhead <= 20 ms per trial at trial 1,000,
flat in the number of trials; planning a level <= 5 % of the level's training at paper size.

    PYTHONPATH=. python benchmarks/bench_trial_overhead.py --space macro            # L=12, ~1,100 trials
    PYTHONPATH=. python benchmarks/bench_trial_overhead.py --space micro            # B=5
    PYTHONPATH=. python benchmarks/bench_trial_overhead.py --storage postgresql://...
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report_load  # noqa: E402

from optuna_epnas.standalone import draw
from optuna_epnas.storage import storages as storages_module
from optuna_epnas.analysis import dashboard  # noqa: E402
from optuna_epnas.data.device import load_dataset  # noqa: E402
from optuna_epnas.cli.progress import Progress, dashboard_recorder  # noqa: E402
from optuna_epnas.search import Search, open_search  # noqa: E402
from optuna_epnas.settings import resolve_settings  # noqa: E402
from optuna_epnas.spaces import MacroSpace, MicroSpace  # noqa: E402

CATEGORIES = ("sampler", "planning", "storage", "notes", "drawing", "checkpoint", "loop", "training", "evaluation")


class Clock:
    """Exclusive time per category: a call's time minus the timed calls it made."""

    def __init__(self) -> None:
        self.stack: list[list[float]] = []  # per open call: [time spent in nested timed calls]
        self.now: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)  # storage calls by method, all trials
        self.call_seconds: dict[str, float] = defaultdict(float)
        self.background: dict[str, float] = defaultdict(float)  # seconds on other threads, all trials

    def wrap(self, category: str, fn, count: str | None = None):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():  # off the trial's path (drawings)
                started = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.background[category] += time.perf_counter() - started
            if count:
                self.calls[count] += 1
            self.stack.append([0.0])
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                nested = self.stack.pop()[0]
                self.now[category] += spent - nested
                if count:
                    self.call_seconds[count] += spent - nested
                if self.stack:
                    self.stack[-1][0] += spent
        return timed

    def take(self) -> dict[str, float]:
        out, self.now = dict(self.now), defaultdict(float)
        return out


def patch(clock: Clock, owner, name: str, category: str) -> None:
    setattr(owner, name, clock.wrap(category, getattr(owner, name)))


STORAGE_METHODS = [n for n in dir(optuna.storages.BaseStorage) if not n.startswith("_")]


def instrument(clock: Clock, search: Search, train: bool = False) -> None:
    """Time every call of the search loop by category. ``train``: keep the real training and evaluation
    (each ends with a device synchronisation, so their time is the device's), else make them no-ops."""
    storage = search.study._storage
    for name in STORAGE_METHODS:
        if callable(getattr(storage, name, None)):
            setattr(storage, name, clock.wrap("storage", getattr(storage, name), count=name))
    batches = getattr(storages_module, "_Batches", None)  # later versions: trial writes in one commit
    if batches is not None and not getattr(batches.flush, "timed", False):
        batches.flush = clock.wrap("storage", batches.flush, count="flush (one commit)")
        batches.flush.timed = True
    s = search.sampler
    for name in ("sample_relative", "infer_relative_search_space", "before_trial", "after_trial",
                 "sample_independent", "claim_architecture"):
        setattr(s, name, clock.wrap("sampler", getattr(s, name)))
    s._make_plan = clock.wrap("planning", s._make_plan)
    s.is_finished = clock.wrap("loop", s.is_finished)
    patch(clock, dashboard.DashboardRecorder, "__call__", "notes")
    patch(clock, dashboard.DashboardRecorder, "write_study_note", "notes")
    dashboard.draw_arch = clock.wrap("drawing", draw.draw_arch)
    obj = search.objective
    obj.save = clock.wrap("checkpoint", obj.save)
    trainer = obj.trainer

    def no_training(arch, step, on_epoch=None, stoppable=False):
        return None

    def fixed_accuracy(arch, split="val", limit=None):  # a stable score per architecture
        digest = hashlib.sha1(obj.space.key(arch).encode()).digest()
        return 0.5 + 0.4 * digest[0] / 255

    if train:
        def synced(fn):
            @functools.wraps(fn)
            def call(*args, **kwargs):
                try:
                    return fn(*args, **kwargs)
                finally:
                    if trainer.data.device.type == "cuda":
                        torch.cuda.synchronize(trainer.data.device)
            return call

        trainer.train = clock.wrap("training", synced(trainer.train))
        trainer.evaluate = clock.wrap("evaluation", synced(trainer.evaluate))
    else:
        trainer.train = clock.wrap("training", no_training)
        trainer.evaluate = clock.wrap("evaluation", fixed_accuracy)
    obj._run = clock.wrap("loop", obj._run)  # the objective's own bookkeeping (user attrs, counts)
    patch(clock, Progress, "__call__", "loop")


def summarise(rows: list[dict[str, float]], at: list[int], window: int) -> None:
    print(f"\nmedian ms per trial over trials [n - {window // 2}, n + {window // 2}) "
          "(exclusive time; 'other' = wall - the categories: Optuna's own trial loop and untimed code)")
    cols = [*CATEGORIES, "other", "overhead", "wall"]
    print(f"{'trial':>6} " + " ".join(f"{c:>10}" for c in cols))
    for n in at:
        lo, hi = max(0, n - window // 2), min(len(rows), n + window // 2)
        if lo >= len(rows):
            continue
        chunk = rows[lo:hi]
        med = {c: statistics.median(r.get(c, 0.0) for r in chunk) * 1e3 for c in cols}
        print(f"{n:>6} " + " ".join(f"{med[c]:>10.1f}" for c in cols))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", choices=("macro", "micro"), default="macro")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--k", type=int, default=25)
    p.add_argument("--iterations", type=int, default=None, help="default: enough for 1,000 trials")
    p.add_argument("--trials", type=int, default=1010, help="stop after this many trials")
    p.add_argument("--at", default="10,100,1000", help="trial numbers the table shows")
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--storage", default=None, help="default: a fresh SQLite file in a temp dir")
    p.add_argument("--channels", type=int, default=24)
    p.add_argument("--dir", default=None, help="where the SQLite file, checkpoint and drawings go (default: temp)")
    args = p.parse_args()

    load = os.getloadavg()[0]
    space = MacroSpace(num_layers=args.layers) if args.space == "macro" else MicroSpace(num_blocks=args.blocks)
    iterations = args.iterations or next(i for i in range(1, 50) if
                                         optuna_epnas_planned(space, args.k, i) >= args.trials)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="epnas-overhead-"))
    folder.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{folder / 'overhead.db'}"
    name = f"overhead-{args.space}-{time.time_ns()}"
    settings = resolve_settings("epnas", {"k": args.k, "iterations": iterations, "warmup_epochs": 0,
                                          "channels": args.channels})
    data = load_dataset("digits", seed=0)
    search = open_search(space, data, "epnas", storage, name, settings=settings, seed=0, budget=args.trials,
                         checkpoint=folder)
    clock = Clock()
    instrument(clock, search)
    rows: list[dict[str, float]] = []
    last = [time.perf_counter()]

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:  # the last callback of a trial
        now = time.perf_counter()
        row = clock.take()
        row["wall"] = now - last[0]
        row["other"] = row["wall"] - sum(row.get(c, 0.0) for c in CATEGORIES)
        row["overhead"] = row["wall"] - row.get("training", 0.0) - row.get("evaluation", 0.0)
        rows.append(row)
        last[0] = now
        if len(rows) % 100 == 0:
            print(f"  {len(rows)} trials, last {row['wall'] * 1e3:.0f} ms", file=sys.stderr, flush=True)

    progress = Progress(search.study, space, search.budget, search.sampler, quiet=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"{space!r}, K={args.k}, {iterations} iterations, {args.trials} trials, storage "
          f"{storage.split('://')[0]}, checkpoint {search.checkpoint}")
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the progress lines are built (and timed), not shown
        search.run([progress, record], recorder=dashboard_recorder(search.budget))
    wall = time.perf_counter() - started
    print(f"{len(rows)} trials in {wall:.0f} s")
    summarise(rows, [int(a) for a in args.at.split(",")], args.window)
    plans = [r.get("planning", 0.0) for r in rows if r.get("planning", 0.0) > 0]
    if plans:
        print(f"\nplanning a level: {len(plans)} plans, median {statistics.median(plans):.2f} s, "
              f"max {max(plans):.2f} s (compare with a level's training: K trials × seconds per trial)")
    print("\nstorage calls per trial, mean over all trials (and ms per trial): " + ", ".join(
        f"{n} {c / len(rows):.1f} ({clock.call_seconds[n] / len(rows) * 1e3:.1f})"
        for n, c in sorted(clock.calls.items(), key=lambda kv: -clock.call_seconds[kv[0]])))
    if clock.background:
        print("on a background thread, not in the table (mean ms per trial): " + ", ".join(
            f"{c} {v / len(rows) * 1e3:.1f}" for c, v in clock.background.items()))
    ckpt = search.checkpoint
    if ckpt is not None and ckpt.exists():
        print(f"checkpoint {ckpt.stat().st_size / 2**20:.1f} MiB")
    report_load(load)


def optuna_epnas_planned(space, k: int, iterations: int) -> int:
    from optuna_epnas.sampler.schedule import planned_trials

    return planned_trials(space, k, iterations)


if __name__ == "__main__":
    main()
