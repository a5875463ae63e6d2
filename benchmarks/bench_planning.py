"""The time to plan one paper-size level (issue 26 item 3): what ``Planner.next_level`` spends on its
surrogate ensemble when it grows K=25 level-11 parents of ``MacroSpace(12)`` to level 12.

Today's planning, step by step: five ``LSTMSurrogate`` members (seeds spawned as the planner spawns them)
each fitted with 500 Adam steps on the level's training rows (default ~300: random architectures of
levels 1-11 with random targets; the fit's cost does not depend on the values), one after another; then
every child of the K parents (6 ops x 2^11 skip subsets = 12,288 each, 307,200 in all) scored by every
member with ``predict_children``. Printed: seconds per member fit, for the scoring, and the level's total.
A batched ensemble (one grouped model, early stopping) is to be timed beside it here.

    PYTHONPATH=. python benchmarks/bench_planning.py [--rows 300] [--parents 25] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from optuna_epnas.sampler.surrogate import LSTMSurrogate
from optuna_epnas.spaces import MacroSpace


def _random_arch(space: MacroSpace, level: int, rng: np.random.Generator):
    arch = space.root()
    for _ in range(level):
        arch = space.child(arch, int(rng.integers(space.num_children(arch))))
    return arch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--rows", type=int, default=300, help="training rows of the level's surrogate fit")
    ap.add_argument("--parents", type=int, default=25, help="K: parents expanded")
    ap.add_argument("--ensemble", type=int, default=5)
    ap.add_argument("--steps", type=int, default=500, help="Adam steps per member (the sampler's default)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    space, rng = MacroSpace(args.layers), np.random.default_rng(0)
    rows = [_random_arch(space, int(rng.integers(1, args.layers)), rng) for _ in range(args.rows)]
    tokens = [space.tokens(a) for a in rows]
    targets = rng.uniform(0.5, 0.9, len(rows)).tolist()
    parents = [_random_arch(space, args.layers - 1, rng) for _ in range(args.parents)]
    prefixes, children = [space.tokens(p) for p in parents], [space.child_tokens(p) for p in parents]
    n_children = sum(len(c) for c in children)
    seeds = np.random.SeedSequence([0, 1, args.layers]).spawn(1 + args.ensemble)[1:]

    def sync() -> None:
        if torch.device(args.device).type == "cuda":
            torch.cuda.synchronize()

    started = time.perf_counter()
    members, fit_seconds = [], []
    for s in seeds:
        t = time.perf_counter()
        members.append(LSTMSurrogate(space.token_dim, steps=args.steps, seed=int(s.generate_state(1)[0] % 2**31),
                                     device=args.device).fit(tokens, targets))
        sync()
        fit_seconds.append(time.perf_counter() - t)
    t = time.perf_counter()
    for m in members:
        m.predict_children(prefixes, children)
    sync()
    score_seconds = time.perf_counter() - t
    total = time.perf_counter() - started
    print(f"MacroSpace({args.layers}), {args.rows} rows, {args.parents} parents -> {n_children:,} candidates, "
          f"{args.ensemble} members x {args.steps} Adam steps, on {args.device} ({torch.get_num_threads()} threads)")
    print(f"today:  fit {sum(fit_seconds):6.2f} s (per member {', '.join(f'{x:.2f}' for x in fit_seconds)})  "
          f"score {score_seconds:6.2f} s  ({n_children * args.ensemble / score_seconds:,.0f} member-scores/s)  "
          f"level {total:6.2f} s")


if __name__ == "__main__":
    main()
