"""A paper-size EPNAS macro search end to end (issue 26 item 1): the real ``epnas search`` loop --
sampler, storage, planning, training, evaluation, checkpoint, dashboard notes, progress lines -- run for
its first ``--levels`` levels, every call timed by category, and the whole search projected from them.

Paper size: ``MacroSpace(12)``, C=24, 3 epochs per trial, K=25, 3 iterations, on CIFAR-10-shaped data
(45,000 train / 5,000 validation images: CIFAR-10 under ``--data-root`` if there, else synthetic uint8
pixels of its shape, as ``gpu_search.py``), with the settings ``epnas search`` picks for the device
(batch 256 and lr 0.1 on CUDA) and its default warm-up epoch. The categories are those of
``bench_trial_overhead.py`` (exclusive times; training and evaluation end with a device synchronisation,
so theirs is the device's time), plus the warm-up. "device idle" is the share of the wall time outside
training, evaluation and warm-up: the host working (sampler, planning, storage, checkpoint, notes) while
the device waits.

Projection: every level l = 1..L of the full schedule (``stage_sizes`` x iterations trials) at the
measured median training + evaluation seconds of its depth, linear in depth beyond the levels run
(``gpu_search.interpolate``); the rest of a trial (everything but training, evaluation and planning) at
its measured median per trial; one plan per level and iteration at the measured median plan (at paper
size a plan's cost grows little with the level: ``bench_planning.py`` times level 12); the warm-up once.

    PYTHONPATH=. python benchmarks/bench_search_end_to_end.py --device cuda                  # paper size
    PYTHONPATH=. python benchmarks/bench_search_end_to_end.py --layers 4 --k 4 --train-images 512 \\
        --val-images 256 --levels 3                                                           # a CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report_load  # noqa: E402
from bench_trial_overhead import CATEGORIES, Clock, instrument  # noqa: E402
from gpu_search import interpolate, make_data  # noqa: E402

from optuna_epnas.cli import build_parser  # noqa: E402
from optuna_epnas.cli.search import settings_from_args  # noqa: E402
from optuna_epnas.sampler.schedule import planned_trials, stage_sizes  # noqa: E402
from optuna_epnas.cli.progress import Progress, dashboard_recorder  # noqa: E402
from optuna_epnas.search import open_search  # noqa: E402
from optuna_epnas.settings import resolve_settings  # noqa: E402
from optuna_epnas.spaces import MacroSpace  # noqa: E402

ALL = (*CATEGORIES, "warm-up")
DEVICE_WORK = ("training", "evaluation", "warm-up")  # ends with a device synchronisation: the device's time


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--channels", type=int, default=24)
    ap.add_argument("--k", type=int, default=25)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--levels", type=int, default=4, help="levels of the first iteration to run")
    ap.add_argument("--warmup-epochs", type=int, default=None, help="default: epnas search's")
    ap.add_argument("--batch-size", type=int, default=None, help="default: epnas search's for the device")
    ap.add_argument("--train-images", type=int, default=45000)
    ap.add_argument("--val-images", type=int, default=5000)
    ap.add_argument("--data-root", default="./data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default=None, help="SQLite file and checkpoint (default: a temp dir)")
    args = ap.parse_args(argv)
    args.storage = "uint8-train"  # make_data's image storage: the training split as uint8 on the device
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    load = os.getloadavg()[0]
    device = torch.device(args.device)
    data, source = make_data(args, device)
    space = MacroSpace(num_layers=args.layers)
    cli = ["search", "--k", str(args.k), "--iterations", str(args.iterations), "--epochs", str(args.epochs),
           "--channels", str(args.channels)]
    for flag, value in (("--warmup-epochs", args.warmup_epochs), ("--batch-size", args.batch_size)):
        if value is not None:
            cli += [flag, str(value)]
    settings = resolve_settings("epnas", settings_from_args(build_parser().parse_args(cli), device))
    sizes = stage_sizes(space, args.k)
    budget = sum(sizes[:args.levels])
    folder = Path(args.dir or tempfile.mkdtemp(prefix="epnas-e2e-"))
    folder.mkdir(parents=True, exist_ok=True)
    opened = time.perf_counter()
    search = open_search(space, data, "epnas", f"sqlite:///{folder / 'e2e.db'}", f"e2e-{time.time_ns()}",
                         settings=settings, seed=args.seed, budget=budget, checkpoint=folder)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    open_seconds = time.perf_counter() - opened  # the warm-up runs here, when the supernet is attached
    warm = float((getattr(search.objective.trainer, "warmup_record", None) or {}).get("seconds", 0.0))
    clock = Clock()
    instrument(clock, search, train=True)
    rows: list[dict] = []
    last = [time.perf_counter()]

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        now = time.perf_counter()
        row = clock.take()
        row["wall"], row["depth"] = now - last[0], space.parse(trial.user_attrs["arch"]).level
        rows.append(row)
        last[0] = now
        print(f"  trial {trial.number}: depth {row['depth']}, {row['wall']:.2f} s "
              f"(training {row.get('training', 0):.2f}, planning {row.get('planning', 0):.2f})", file=sys.stderr)

    print(f"{space!r}, C={args.channels}, K={args.k}, {args.iterations} iterations, {args.epochs} epochs, "
          f"batch {settings.batch_size}, lr {settings.lr}, warm-up {settings.warmup_epochs} epoch(s), on {device}; "
          f"{len(data.train_y):,} train / {len(data.val_y):,} val images ({source}); "
          f"running levels 1-{args.levels} of iteration 1 ({budget} trials)")
    progress = Progress(search.study, space, search.budget, search.sampler, quiet=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        search.run([progress, record], recorder=dashboard_recorder(search.budget))
    wall = time.perf_counter() - started

    total = {c: sum(r.get(c, 0.0) for r in rows) for c in ALL}
    total["warm-up"] = warm
    wall += open_seconds
    other = wall - sum(total.values())
    print(f"\nopening the search {open_seconds:.1f} s (warm-up {warm:.1f} s); {len(rows)} trials in "
          f"{wall - open_seconds:.1f} s; where it went (exclusive seconds, share of the wall):")
    for c in (*ALL, "other"):
        seconds = other if c == "other" else total[c]
        print(f"  {c:>11} {seconds:9.2f} s  {100 * seconds / wall:5.1f} %")
    idle = wall - sum(total[c] for c in DEVICE_WORK)
    print(f"  device idle (host-only time): {idle:.2f} s = {100 * idle / wall:.1f} % of the wall")

    # -- projection ----------------------------------------------------------------------------------------
    depths = sorted({r["depth"] for r in rows})
    per_trial = {d: statistics.median(r.get("training", 0) + r.get("evaluation", 0) for r in rows if r["depth"] == d)
                 for d in depths}
    rest = statistics.median(r["wall"] - sum(r.get(c, 0) for c in (*DEVICE_WORK, "planning")) for r in rows)
    plans = [r["planning"] for r in rows if r.get("planning", 0) > 0]
    plan = statistics.median(plans) if plans else 0.0
    n_trials = planned_trials(space, args.k, args.iterations)
    device_s = sum(args.iterations * n * interpolate(depths, [per_trial[d] for d in depths], level)
                   for level, n in enumerate(sizes, start=1))
    plan_s = plan * args.iterations * (len(sizes) - 1)
    rest_s = rest * n_trials
    projected = device_s + plan_s + rest_s + total["warm-up"]
    print(f"\nprojected full search ({n_trials} trials, per iteration {sizes}): {projected / 60:.1f} minutes on {device} "
          f"= training+evaluation {device_s / 60:.1f} + planning {plan_s / 60:.1f} ({len(sizes) - 1} x {args.iterations} "
          f"plans at {plan:.2f} s) + the rest of each trial {rest_s / 60:.1f} ({rest * 1e3:.0f} ms/trial) + "
          f"warm-up {total['warm-up'] / 60:.1f}; training+evaluation per trial by depth: "
          + ", ".join(f"{d}: {per_trial[d]:.2f} s" for d in depths))
    report_load(load)
    return {"projected_minutes": projected / 60, "wall": wall, "totals": total, "idle_share": idle / wall}


if __name__ == "__main__":
    main()
