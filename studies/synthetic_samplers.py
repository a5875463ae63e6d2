"""EPNAS (two τ schedules), PNAS, random and TPE on a synthetic architecture score with a known best.

No training, so it runs in minutes on a CPU. Same trial budget for every sampler (the trials of the
EPNAS schedule); the number reported is the best score of a complete architecture (1.0 = the target).

    python studies/synthetic_samplers.py --layers 8 --k 8 --iterations 3 --kind separable --ensemble 5
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import optuna

from optuna_epnas import EPNASSampler, MacroSpace
from optuna_epnas.synthetic import KINDS, SyntheticScore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--kind", choices=KINDS, default="separable")
    parser.add_argument("--ensemble", type=int, default=1, help="surrogate ensemble size")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    space = MacroSpace(args.layers)
    budget = EPNASSampler.planned_trials(space, args.k, args.iterations)
    common = dict(k=args.k, iterations=args.iterations, surrogate_ensemble=args.ensemble)
    samplers = {
        "epnas τ 10→1": lambda s: EPNASSampler(space, seed=s, temperature=(10.0, 1.0), **common),
        "epnas τ 10→0.05": lambda s: EPNASSampler(space, seed=s, temperature=(10.0, 0.05), **common),
        "pnas (top-K)": lambda s: EPNASSampler(space, seed=s, selection="pnas", **common),
        "random": lambda s: optuna.samplers.RandomSampler(seed=s),
        "tpe": lambda s: optuna.samplers.TPESampler(seed=s),
    }
    print(f"{args.kind} score, MacroSpace({args.layers}), K={args.k}, {args.iterations} iterations, "
          f"ensemble {args.ensemble}: {budget} trials per search, seeds 0..{args.seeds - 1}")
    print("| sampler | best complete score, mean ± std | per seed | seconds |\n|---|---|---|---|")
    for name, make in samplers.items():
        started, best = time.perf_counter(), []
        for seed in range(args.seeds):
            score = SyntheticScore(space, seed=100 + seed, kind=args.kind)
            study = optuna.create_study(direction="maximize", sampler=make(seed))
            study.optimize(score, n_trials=budget)
            best.append(max(t.value for t in study.trials if t.user_attrs["level"] == args.layers))
        print(f"| {name} | {np.mean(best):.3f} ± {np.std(best):.3f} | {' '.join(f'{b:.3f}' for b in best)} "
              f"| {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
