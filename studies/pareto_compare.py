"""Issue 12's two-objective study: EPNAS against Optuna's TPE and NSGA-II on accuracy × parameters, at
equal compute, each run with its own fresh supernet.

Per seed, EPNAS runs its schedule first; TPE and NSGA-II then run (on the same space, objective and data)
until they have spent the multiply-adds EPNAS spent with that seed (optuna_epnas.costs.cost). Each run's
full-depth Pareto front (supernet validation accuracy × parameters at the search width) is scored by its
hypervolume; up to --members of its front members, spread from cheapest to dearest, are trained stand-alone
and the front of (test accuracy × stand-alone parameters) is scored the same way. Hypervolumes are
normalised by their reference box: accuracy 0 to 1, parameters 0 to those of the largest full-depth
network of the space at that width (so 1 would be a perfect network of no size).

    python studies/pareto_compare.py                    # Fashion-MNIST proxy, 3 seeds, ~2 h on 2 cores
    python studies/pareto_compare.py --dataset digits --seeds 1 --samplers epnas --out studies/runs/pareto-digits

Re-running resumes: finished searches are skipped, stand-alone trainings are cached in OUT/standalone.json.
Writes OUT/results.md, OUT/results.json and OUT/*.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

from optuna_epnas import MacroSpace, load_dataset
from optuna_epnas.analysis.retest import train_standalone
from optuna_epnas.costs.cost import NetworkSize, child_sizes, total_cost
from optuna_epnas.sampler.pareto import front_ranks, full_depth_front, hypervolume
from optuna_epnas.cli.progress import dashboard_recorder
from optuna_epnas.search import finished_trials, open_search
from optuna_epnas.settings import resolve_settings
from optuna_epnas.storage.storages import open_storage

PROXY = {"fashion-mnist": {"max_train": 5000, "image_size": 14}, "digits": {"max_train": None, "image_size": None}}


def largest_params(space, size: NetworkSize) -> int:
    """Parameters of the largest full-depth network (the dearest child, level after level: macro costs add)."""
    arch = space.root()
    while space.level(arch) < space.max_level:
        params, _ = child_sizes(space, arch, size)
        arch = space.child(arch, int(np.argmax(params)))
    return size.count(space, arch)[0]


def spread(front: list, most: int) -> list:
    """Up to ``most`` members, evenly from the cheapest to the dearest."""
    if len(front) <= most:
        return front
    return [front[i] for i in sorted({round(j * (len(front) - 1) / (most - 1)) for j in range(most)})]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--samplers", default="epnas,tpe,nsga2")
    p.add_argument("--objectives", default="accuracy,params")
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--members", type=int, default=4, help="front members per run trained stand-alone")
    p.add_argument("--final-epochs", type=int, default=8)
    p.add_argument("--final-channels", type=int, default=32)
    p.add_argument("--out", default="studies/runs/pareto-fashion")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samplers = [s.strip() for s in args.samplers.split(",")]
    objectives = tuple(o.strip() for o in args.objectives.split(","))
    if samplers[0] != "epnas":
        raise SystemExit("the first sampler sets every seed's compute budget: start --samplers with epnas")
    space = MacroSpace(args.layers)
    data = load_dataset(args.dataset, seed=0, **PROXY[args.dataset])
    given = {"k": args.k, "iterations": args.iterations, "channels": args.channels, "objectives": objectives}
    storage = open_storage(f"sqlite:///{out}/studies.db")
    cache_path = out / "standalone.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    final = {"epochs": args.final_epochs, "channels": args.final_channels, "cells": None}
    search_size = NetworkSize(data.num_classes, data.in_channels, args.channels, data.image_size)
    final_size = NetworkSize(data.num_classes, data.in_channels, args.final_channels, data.image_size)
    refs = {"search": largest_params(space, search_size), "standalone": largest_params(space, final_size)}
    runs = []
    for seed in range(args.seeds):
        budget = None
        for sampler in samplers:
            name = f"{sampler}-seed{seed}"
            started = time.perf_counter()
            search = open_search(space, data, sampler, storage, name, settings=resolve_settings(sampler, given),
                                 seed=seed, budget=None if sampler == "epnas" else 20 * planned(space, args),
                                 cost_budget=budget)
            if not search.is_done():
                print(f"run {name}: searching" + (f" until {budget:.3g} MACs" if budget else ""), flush=True)
                search.run(recorder=dashboard_recorder(search.budget))
            if sampler == "epnas":
                budget = total_cost(search.study)
            front = full_depth_front(search.study, space.max_level)
            measured_hv = hypervolume([t.values[0] for t in front], [t.values[1] for t in front], 0.0, refs["search"])
            members = []
            for t in spread(front, args.members):
                key = f"{t.user_attrs['arch']}|{json.dumps(final, sort_keys=True)}|seed{seed}"
                if key not in cache:
                    cache[key] = train_standalone(space, t.user_attrs["arch"], data, {**final, "seed": seed})
                    tmp = cache_path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(cache, indent=1))
                    os.replace(tmp, cache_path)
                members.append({"trial": t.number, "arch": t.user_attrs["arch"], "supernet_accuracy": t.values[0],
                                "search_params": t.values[1], **cache[key]})
            test, params = [m["test_accuracy"] for m in members], [m["params"] for m in members]
            keep = front_ranks(test, params) == 0 if members else []
            standalone_hv = hypervolume([a for a, k in zip(test, keep) if k], [c for c, k in zip(params, keep) if k],
                                        0.0, refs["standalone"])
            run = {"run": name, "sampler": sampler, "seed": seed, "trials": len(finished_trials(search.study)),
                   "cost_macs": total_cost(search.study), "front": len(front),
                   "hv_measured": measured_hv / refs["search"], "hv_standalone": standalone_hv / refs["standalone"],
                   "members": members}
            runs.append(run)
            print(f"run {name}: {run['trials']} trials, {run['cost_macs']:.3g} MACs, front of {len(front)}, "
                  f"hypervolume measured {run['hv_measured']:.4f}, stand-alone {run['hv_standalone']:.4f} "
                  f"({time.perf_counter() - started:.0f}s)", flush=True)
    write_results(out, runs, samplers, refs, args, storage)
    return 0


def planned(space, args) -> int:
    from optuna_epnas.sampler.schedule import planned_trials

    return planned_trials(space, args.k, args.iterations)


def write_results(out: Path, runs: list[dict], samplers: list[str], refs: dict, args, storage) -> None:
    rows = []
    for s in samplers:
        mine = [r for r in runs if r["sampler"] == s]
        cell = lambda k: f"{np.mean([r[k] for r in mine]):.4f} ± {np.std([r[k] for r in mine], ddof=1) if len(mine) > 1 else 0:.4f}"  # noqa: E731
        rows.append(f"| {s} | {len(mine)} | {np.mean([r['trials'] for r in mine]):.0f} | "
                    f"{np.mean([r['cost_macs'] for r in mine]):.3g} | {np.mean([r['front'] for r in mine]):.1f} | "
                    f"{cell('hv_measured')} | {cell('hv_standalone')} |")
    lines = [
        "# Two-objective search: accuracy × parameters at equal compute", "",
        f"Command: `python studies/pareto_compare.py {' '.join(sys.argv[1:])}`", "",
        f"{args.dataset}, macro space with {args.layers} layers, K={args.k}, {args.iterations} iterations, supernet "
        f"{args.channels} channels; stand-alone {args.final_epochs} epochs at {args.final_channels} channels. "
        "Hypervolume normalised by accuracy 0-1 × parameters 0 to the largest full-depth network "
        f"({refs['search']:,} parameters at the search width, {refs['standalone']:,} stand-alone). Mean ± sample "
        "std over seeds.", "",
        "| sampler | runs | trials | MACs | front size | hypervolume, measured front | hypervolume, stand-alone front |",
        "|---|---|---|---|---|---|---|", *rows, "",
        "Paired by seed (same data, same supernet initialisation), the first sampler minus each other, per seed:", "",
    ]
    first = samplers[0]
    for other in samplers[1:]:
        for kind in ("hv_measured", "hv_standalone"):
            diffs = [a[kind] - b[kind] for a in runs for b in runs
                     if a["sampler"] == first and b["sampler"] == other and a["seed"] == b["seed"]]
            lines.append(f"- {first} − {other}, {kind.replace('hv_', 'hypervolume ')}: "
                         f"{' '.join(f'{d:+.4f}' for d in diffs)} (mean {np.mean(diffs):+.4f}; "
                         f"{first} higher on {sum(d > 0 for d in diffs)} of {len(diffs)})")
    full = {r["run"]: sum(1 for t in optuna.load_study(study_name=r["run"], storage=storage).trials
                          if t.user_attrs.get("level") == args.layers) for r in runs}
    lines += ["", "Full-depth trials per run (the fronts are made of these): "
              + ", ".join(f"{name} {n}" for name, n in full.items()) + ".", "", "## Runs", ""]
    for r in runs:
        lines.append(f"- {r['run']}: {r['trials']} trials, front of {r['front']}, hypervolume measured "
                     f"{r['hv_measured']:.4f}, stand-alone {r['hv_standalone']:.4f}")
        lines += [f"  - trial {m['trial']}: supernet {m['supernet_accuracy']:.4f} at {m['search_params']:,.0f} "
                  f"parameters -> test {m['test_accuracy']:.4f} at {m['params']:,} (`{m['arch']}`)" for m in r["members"]]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"runs": runs, "refs": refs, "args": vars(args)}, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    for s in samplers:  # Optuna's own plot of one run: every trial, the front highlighted
        study = optuna.load_study(study_name=f"{s}-seed0", storage=storage)
        ax = optuna.visualization.matplotlib.plot_pareto_front(study, target_names=["validation accuracy (supernet)",
                                                                                    "parameters"])
        ax.set_title(f"{s}, seed 0: every trial (levels 1-{args.layers}); front of all levels")
        ax.figure.savefig(out / f"pareto-{s}-seed0.png", dpi=110, bbox_inches="tight")
        plt.close(ax.figure)


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sys.exit(main())
