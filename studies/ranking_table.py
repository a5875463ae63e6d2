"""Issue 24's ranking table: stand-alone accuracy of >= 60 full-depth proxy architectures, 2 training seeds each.

The proxy is the equal-compute comparison's (studies/compare_equal_compute.sh): Fashion-MNIST, 5,000 training
images at 14x14, the macro space with 5 layers; each network is trained alone as the comparison trains its
chosen ones (8 epochs, 32 channels, ``train_final``'s schedule) with training seeds 0 and 1000.

Architectures: the 30 the comparison's ablation already trained (spread over its runs' supernet accuracy),
the six one-op networks without skips, and 30 drawn at random with skip densities 0, 0.2, 0.5 and 0.8 in turn
(seeded), so ops, skips and quality are spread. Every training is appended to ``trainings.jsonl`` as it ends,
so a killed run resumes; ``--workers 2`` trains two at once (one thread each).

    python studies/ranking_table.py --workers 2     # ~1.5 h on the 2-core machine
    python studies/ranking_table.py --write         # table.json from what is trained (no training)
    python studies/ranking_table.py --proxy digits --workers 2   # the second proxy (digits, 8x8): minutes
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent / "results"
ABLATION = Path(__file__).resolve().parent / "results" / "compare-equal-compute-fashion" / "ablation" / "results.json"
SEEDS = (0, 1000)
#: The proxy tasks: the comparison's (default) and a second one, scikit-learn's digits at 8x8 (all 1,294
#: training images), to check that what ranks well on one ranks well on another.
PROXIES = {
    "fashion": {"dataset": "fashion-mnist", "max_train": 5000, "image_size": 14, "data_seed": 0, "layers": 5},
    "digits": {"dataset": "digits", "max_train": None, "image_size": None, "data_seed": 0, "layers": 5},
}
PROXY = PROXIES["fashion"]


def results_dir(proxy: str) -> Path:
    return ROOT / ("ranking-benchmark" if proxy == "fashion" else f"ranking-benchmark-{proxy}")
FINAL = {"epochs": 8, "channels": 32, "cells": None}
SKIP_DENSITIES = (0.0, 0.2, 0.5, 0.8)


def architectures() -> list[tuple[str, str]]:
    """(key, where it comes from), in a fixed order."""
    from optuna_epnas import MacroSpace
    from optuna_epnas.spaces.macro import MacroArch

    space = MacroSpace(num_layers=PROXY["layers"])
    rows = json.loads(ABLATION.read_text())["ranking"]["supernet"]["rows"]
    out = [(r["arch"], f"comparison ablation ({r['study']}#{r['trial']})") for r in rows]
    L = PROXY["layers"]
    for op in space.ops:
        out.append((MacroArch((op,) * L, ((),) * L).key, "one op, no skips"))
    rng = np.random.RandomState(24)
    seen = {k for k, _ in out}
    i = 0
    while len(out) < len(rows) + len(space.ops) + 30:
        p = SKIP_DENSITIES[i % len(SKIP_DENSITIES)]
        ops = tuple(space.ops[j] for j in rng.randint(len(space.ops), size=L))
        skips = tuple(tuple(s for s in range(layer - 1) if rng.rand() < p) for layer in range(1, L + 1))
        key = MacroArch(ops, skips).key
        if key not in seen:
            seen.add(key)
            out.append((key, f"random, skip density {p}"))
            i += 1
    return out


def _known(path: Path) -> dict[tuple[str, int], dict]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                e = json.loads(line)
                done[(e["arch"], e["seed"])] = e
    return done


_DATA: dict = {}


def load_proxy(proxy: str):
    from optuna_epnas import load_dataset

    if proxy not in _DATA:
        p = PROXIES[proxy]
        _DATA[proxy] = load_dataset(p["dataset"], device="cpu", seed=p["data_seed"], max_train=p["max_train"],
                                    image_size=p["image_size"])
    return _DATA[proxy]


def _train(job: tuple[str, int, str]) -> dict:
    import torch
    from optuna_epnas import MacroSpace
    from optuna_epnas.analysis.retest import train_standalone

    torch.set_num_threads(1)
    arch, seed, proxy = job
    result = train_standalone(MacroSpace(num_layers=PROXIES[proxy]["layers"]), arch, load_proxy(proxy),
                              {**FINAL, "seed": seed})
    return {"arch": arch, "seed": seed, **result, "torch": torch.__version__}


def seed_zero_from_ablation() -> dict[str, dict]:
    """The ablation's stand-alone results (training seed 0, the same proxy and schedule)."""
    rows = json.loads(ABLATION.read_text())["ranking"]["supernet"]["rows"]
    return {r["arch"]: {"arch": r["arch"], "seed": 0, "val_accuracy": r["standalone_val_accuracy"],
                        "test_accuracy": r["standalone_test_accuracy"], "params": r["params"],
                        "seconds": r["seconds"], "from": "compare-equal-compute-fashion/ablation"} for r in rows}


def train(workers: int, path: Path, proxy: str) -> None:
    done = _known(path)
    reused = seed_zero_from_ablation() if proxy == "fashion" else {}
    jobs = [(a, s) for a, _ in architectures() for s in SEEDS if (a, s) not in done and not (s == 0 and a in reused)]
    # two of the reused seed-0 trainings again, last: does this machine reproduce them bit for bit?
    checks = [(a, 0) for a in list(reused)[:2] if (a, 0) not in done]
    print(f"{len(jobs)} trainings to go, then {len(checks)} reproduction checks; results -> {path}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    todo = [(a, s, proxy) for a, s in jobs + checks]
    with mp.get_context("spawn").Pool(workers) as pool, path.open("a") as f:
        for n, entry in enumerate(pool.imap(_train, todo), 1):
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
            print(f"[{n}/{len(todo)}] seed {entry['seed']}: val {entry['val_accuracy']:.4f} test "
                  f"{entry['test_accuracy']:.4f} ({entry['seconds']:.0f}s)  {entry['arch']}", flush=True)


def write_table(path: Path, proxy: str) -> dict:
    trained = _known(path)
    reused = seed_zero_from_ablation() if proxy == "fashion" else {}
    rows = []
    for arch, source in architectures():
        runs = [reused[arch] if s == 0 and arch in reused else trained.get((arch, s)) for s in SEEDS]
        if any(r is None for r in runs):
            continue
        rows.append({"arch": arch, "source": source, "params": runs[0]["params"],
                     "val_accuracy": [r["val_accuracy"] for r in runs],
                     "test_accuracy": [r["test_accuracy"] for r in runs],
                     "seeds": list(SEEDS)})
    # a seed-0 training of a reused architecture is a reproduction check (the table keeps the recorded value)
    checks = [{"arch": e["arch"], "recorded_test": reused[e["arch"]]["test_accuracy"], "again_test": e["test_accuracy"],
               "recorded_val": reused[e["arch"]]["val_accuracy"], "again_val": e["val_accuracy"]}
              for (arch, seed), e in trained.items() if seed == 0 and arch in reused]
    table = {"proxy": PROXIES[proxy], "final": FINAL, "schedule": "optuna_epnas.settings.FINAL", "seeds": list(SEEDS),
             "reproduction_checks": checks, "architectures": rows}
    out = results_dir(proxy) / "table.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{len(rows)} architectures with {len(SEEDS)} seeds -> {out}")
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--write", action="store_true", help="only write table.json from the trainings so far")
    p.add_argument("--proxy", choices=list(PROXIES), default="fashion")
    p.add_argument("--log", type=Path, default=None, help="default: studies/runs/<results folder>/trainings.jsonl")
    a = p.parse_args()
    log = a.log or Path("studies/runs") / results_dir(a.proxy).name / "trainings.jsonl"
    if not a.write:
        train(a.workers, log, a.proxy)
    write_table(log, a.proxy)


if __name__ == "__main__":
    main()
