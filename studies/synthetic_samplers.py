"""Samplers at equal *compute* on synthetic architecture scores with a known best (no training).

Protocol (``optuna_epnas.testing.synthetic``): every trial records what training its path would cost
(``cost_macs``: 3 × forward multiply-adds of one image, a relative unit), so a progressive search's
shallow trials are cheap, as in a real search. Per seed, the default EPNAS runs its full schedule
(``n_trials=sampler.n_trials``); its total cost is the budget. Every other sampler runs until it has
spent that budget (``StopAtCost``; the trial that crosses it completes, so ``compute`` -- MACs used /
budget -- is a little over 1): TPE and random search on complete architectures, the other
progressive ones (paper, PNAS, variants) stopped inside their schedule if it costs more, or going on
into a further iteration (shallow, cheap trials first) if it costs less. The number reported is the
best score of a *complete* architecture (1.0 = the target). Seed s searches the score with hidden
target seed 100 + s, every sampler seeded with s.

Samplers: ``epnas`` (the defaults, ``EPNASSampler(space, k, iterations, seed)``), ``epnas-paper``
(``EPNASSampler.paper``), ``pnas`` (top-K, the other defaults), ``tpe``, ``random``, plus any
``--variant``: EPNAS with the defaults overridden, e.g.

    --variant "temperature=0.5,0.1"  --variant "acquisition=mean score=raw"  --variant "ensemble=3 beta=2"

(keys: temperature (start,end or one value per iteration), score, acquisition, beta, ensemble, selection,
parent_weight, diverse, reuse (true/false)).
``--defaults SPEC`` (same syntax) changes what ``epnas`` (the reference), ``pnas`` and the variants
start from: the settings a default is about to get, measured before the code has them.

    python studies/synthetic_samplers.py --layers 8 --k 8 --iterations 3 --kinds prefix separable --seeds 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import warnings
from typing import Any, Callable

import numpy as np
import optuna

from optuna_epnas import EPNASSampler, MacroSpace
from optuna_epnas.sampler.presets import sampler_options
from optuna_epnas.settings import resolve_settings
from optuna_epnas.testing.synthetic import KINDS, SyntheticScore, run_at_equal_compute, run_search

BASE_SAMPLERS = ("epnas", "epnas-paper", "pnas", "tpe", "random")
#: What a variant may change: SearchSettings' names (selection: "epnas" or "pnas").
VARIANT_KEYS = ("temperature", "score", "acquisition", "beta", "ensemble", "selection", "parent_weight", "diverse",
                "reuse")


def parse_variant(text: str) -> dict[str, Any]:
    """``"temperature=0.5,0.1 acquisition=mean"`` -> changes to the default settings."""
    overrides: dict[str, Any] = {}
    for item in text.replace(";", " ").split():
        key, sep, value = item.partition("=")
        if not sep or key not in VARIANT_KEYS:
            raise argparse.ArgumentTypeError(f"variant items are key=value with key in {list(VARIANT_KEYS)}, got {item!r}")
        if key == "temperature":
            overrides["temperature"] = tuple(float(v) for v in value.split(","))
        elif key in ("beta", "parent_weight"):
            overrides[key] = float(value)
        elif key in ("diverse", "reuse"):
            overrides[key] = value.lower() in ("1", "true", "yes", "on")
        elif key == "ensemble":
            overrides["ensemble"] = int(value)
        else:
            overrides[key] = value
    if not overrides:
        raise argparse.ArgumentTypeError("an empty variant")
    return overrides


def variant_name(overrides: dict[str, Any]) -> str:
    parts = []
    for key, value in overrides.items():
        if key == "temperature":
            parts.append("τ " + "→".join(f"{v:g}" for v in value))
        elif key == "ensemble":
            parts.append(f"ens {value}")
        elif key == "beta":
            parts.append(f"β {value:g}")
        elif key == "parent_weight":
            parts.append(f"parent weight {value:g}")
        elif key == "diverse":
            parts.append("diverse" if value else "not diverse")
        elif key == "reuse":
            parts.append("reuse" if value else "re-measure")
        else:
            parts.append(str(value))
    return "epnas " + ", ".join(parts)


def make_epnas(space: MacroSpace, seed: int | None, k: int, iterations: int, steps: int, pnas: bool = False,
               paper: bool = False, **overrides: Any) -> EPNASSampler:
    """EPNASSampler with the defaults (or the paper's settings) changed by ``overrides`` (settings' names),
    K, iterations and the surrogate's Adam steps."""
    settings = resolve_settings("epnas-paper" if paper else "epnas", {"k": k, "iterations": iterations})
    pnas = pnas or overrides.pop("selection", "epnas") == "pnas"
    options = sampler_options(dataclasses.replace(settings, **overrides), pnas=pnas)
    options["surrogate"] = dataclasses.replace(options["surrogate"], steps=steps)
    return EPNASSampler(space, seed=seed, **options)


def fmt_diff(diffs: np.ndarray) -> str:
    wins, losses = int((diffs > 1e-12).sum()), int((diffs < -1e-12).sum())
    return f"{diffs.mean():+.3f} | {wins}/{losses}/{len(diffs) - wins - losses}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=["prefix", "separable"])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    parser.add_argument("--samplers", nargs="+", choices=BASE_SAMPLERS, default=list(BASE_SAMPLERS),
                        help="which of the base samplers to run (the reference epnas always runs: it sets the budget)")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help='EPNAS with some defaults overridden, e.g. "temperature=0.5,0.1 acquisition=mean"')
    parser.add_argument("--defaults", type=parse_variant, default={},
                        help="override EPNASSampler's defaults for epnas, pnas and the variants (same syntax)")
    parser.add_argument("--surrogate-steps", type=int, default=500, help="Adam steps per surrogate fit (every EPNAS/PNAS)")
    parser.add_argument("--json", help="also write the per-seed results to this file")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    space = MacroSpace(args.layers)
    common = dict(k=args.k, iterations=args.iterations, steps=args.surrogate_steps, **args.defaults)
    samplers: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
        "epnas": lambda s: make_epnas(space, s, **common),
        "epnas-paper": lambda s: make_epnas(space, s, args.k, args.iterations, args.surrogate_steps, paper=True),
        "pnas": lambda s: make_epnas(space, s, **common, pnas=True),
        "tpe": lambda s: optuna.samplers.TPESampler(seed=s),
        "random": lambda s: optuna.samplers.RandomSampler(seed=s),
    }
    samplers = {name: make for name, make in samplers.items() if name == "epnas" or name in args.samplers}
    for overrides in args.variant:
        samplers[variant_name(overrides)] = lambda s, o=overrides: make_epnas(space, s, **{**common, **o})
    default = make_epnas(space, None, **common)
    seeds = list(range(args.seeds))

    print(f"`python studies/synthetic_samplers.py {shlex.join(sys.argv[1:])}`\n")
    if args.defaults:
        print(f"Defaults overridden for epnas, pnas and the variants: {variant_name(args.defaults)[6:]}\n")
    selection = default.selection
    print(f"MacroSpace({args.layers}), K={args.k}, {args.iterations} iterations ({default.n_trials} trials per "
          f"schedule), surrogate steps {args.surrogate_steps}, seeds {seeds[0]}..{seeds[-1]}. Default EPNAS: "
          f"τ {default.temperature(0):g}→{default.temperature(args.iterations - 1):g}, score {selection.score}, "
          f"acquisition {selection.acquisition.name}, β {selection.acquisition.beta:g}, "
          f"ensemble {default.surrogate.members}, parent weight {selection.parent_weight:g}, "
          f"diverse draw {'on' if selection.diverse else 'off'}. "
          "Budget per seed: the default EPNAS's full schedule; compute = MACs used / budget.\n", flush=True)
    everything: dict[str, Any] = {"command": sys.argv, "kinds": {}}
    for kind in args.kinds:
        results: dict[str, list] = {name: [] for name in samplers}
        budgets = []
        for seed in seeds:
            score = SyntheticScore(space, seed=100 + seed, kind=kind)
            for name, make in samplers.items():
                sampler = make(seed)
                if name == "epnas":
                    r = run_search(sampler, score)
                    budgets.append(r.cost_macs)
                else:
                    r = run_at_equal_compute(sampler, score, budgets[-1], max_trials=100 * default.n_trials)
                results[name].append(r)
                print(f"{kind} seed {seed} {name}: best {r.best:.3f}, {r.trials} trials, "
                      f"{r.cost_macs / budgets[-1]:.2f} of the budget, {r.seconds:.0f} s", file=sys.stderr, flush=True)
                r.study = None  # free it
        best = {name: np.array([r.best for r in rs]) for name, rs in results.items()}
        print(f"### {kind}\n\nbudget per seed (MMACs): {' '.join(f'{b / 1e6:.0f}' for b in budgets)}\n")
        print("| sampler | best complete score, mean ± std | per seed | trials, mean | compute | seconds |\n"
              "|---|---|---|---|---|---|")
        for name, rs in results.items():
            compute = np.mean([r.cost_macs / b for r, b in zip(rs, budgets)])
            print(f"| {name} | {best[name].mean():.3f} ± {best[name].std():.3f} | "
                  f"{' '.join(f'{b:.3f}' for b in best[name])} | {np.mean([r.trials for r in rs]):.0f} | "
                  f"{compute:.2f} | {sum(r.seconds for r in rs):.0f} |")
        refs = [r for r in ("random", "tpe") if r in best]
        if refs:
            print(f"\npaired differences per seed (sampler − reference): mean | wins/losses/ties over {len(seeds)} seeds\n")
            print("| sampler | " + " | ".join(f"vs {r} | w/l/t" for r in refs) + " |\n|---|"
                  + "---|---|" * len(refs))
            for name in best:
                if name in refs:
                    continue
                print(f"| {name} | " + " | ".join(fmt_diff(best[name] - best[r]) for r in refs) + " |")
        print(flush=True)
        everything["kinds"][kind] = {"budgets": budgets, "samplers": {
            name: [{"best": r.best, "trials": r.trials, "cost_macs": r.cost_macs, "seconds": r.seconds} for r in rs]
            for name, rs in results.items()}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=1)


if __name__ == "__main__":
    main()
