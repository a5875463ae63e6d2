"""How much of a comparison's stand-alone result is training noise? Retrain with other seeds.

Reads an ``epnas compare`` results folder and trains, with the comparison's own stand-alone settings:
  1. each run's chosen architecture again with ``--seeds`` more seeds, so every sampler's test error is
     also given averaged over training seeds (the comparison trains each architecture once);
  2. the pooled ranking architectures with one more seed: the seed-to-seed Kendall τ of stand-alone
     accuracy is the ceiling any supernet ranking can reach on this task.
Writes ``retest.md`` and ``retest.json`` into the folder; trained networks are cached in
``retest-cache.json`` there, so re-running resumes.

    python studies/retest_standalone.py studies/runs/compare-macro-fashion --seeds 100,101
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from optuna_epnas.analysis.retest import _read_json, _write_json, train_standalone
from optuna_epnas.data.device import load_dataset
from optuna_epnas.analysis.ranking import rank_correlation
from optuna_epnas.spaces import space_from_spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="an epnas compare --out folder (with results.json)")
    ap.add_argument("--seeds", default="100,101", help="extra training seeds for the chosen architectures")
    ap.add_argument("--ranking-seed", type=int, default=1, help="the second seed for the pooled ranking networks")
    args = ap.parse_args()
    results = json.loads((args.folder / "results.json").read_text())
    s, final = results["settings"], results["final"]
    space = space_from_spec(s["space"])
    data = load_dataset(s["dataset"], root=s.get("data_root"), device=final["device"], seed=final["data_seed"],
                        max_train=s.get("max_train"), image_size=final.get("image_size"))
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    cache_path = args.folder / "retest-cache.json"
    cache = _read_json(cache_path, {})

    def test_accuracy(arch: str, seed: int) -> float:
        key = f"{seed} {arch}"
        if key not in cache:
            settings = {k: final[k] for k in ("epochs", "channels", "cells")} | {"seed": seed}
            cache[key] = train_standalone(space, arch, data, settings)
            _write_json(cache_path, cache)
            print(f"  seed {seed}: test error {100 * cache[key]['test_error']:.2f}%  {arch}", flush=True)
        return cache[key]["test_accuracy"]

    per_sampler: dict[str, list[float]] = {}
    lines = [f"# Stand-alone retest of `{args.folder.name}`", "",
             f"Same stand-alone settings as the comparison ({final['epochs']} epochs, {final['channels']} channels, "
             f"{s['dataset']}, {len(data.train_y)} training images at {data.image_size}×{data.image_size}); "
             f"command: `python studies/retest_standalone.py {args.folder} --seeds {args.seeds} "
             f"--ranking-seed {args.ranking_seed}`", "",
             "## Chosen architectures, trained with more seeds", "",
             f"| run | comparison's seed: test error (%) | seeds {', '.join(map(str, seeds))}: test error (%) "
             "| mean over all seeds (%) | architecture |", "|---|---:|---:|---:|---|"]
    for run in results["runs"]:
        chosen = next(c for c in run["candidates"] if c["rank"] == run["chosen"])  # "chosen": a supernet rank
        errors = [chosen["test_error"]] + [1 - test_accuracy(chosen["arch"], seed) for seed in seeds]
        mean = statistics.fmean(errors)
        per_sampler.setdefault(run["sampler"], []).append(mean)
        arch = chosen["arch"].replace("|", "\\|")
        lines.append(f"| {run['run']} | {100 * errors[0]:.2f} | {' '.join(f'{100 * e:.2f}' for e in errors[1:])} "
                     f"| {100 * mean:.2f} | `{arch}` |")
    lines += ["", "| sampler | test error averaged over training seeds (%), mean ± std over search seeds |",
              "|---|---:|"]
    for sampler, means in per_sampler.items():
        std = statistics.stdev(means) if len(means) > 1 else 0.0
        lines.append(f"| {sampler} | {100 * statistics.fmean(means):.2f} ± {100 * std:.2f} |")

    rows = results["ranking"]["supernet"]["rows"] if results.get("ranking") else []
    retest = None
    if rows:
        first = [r["standalone_test_accuracy"] for r in rows]
        second = [test_accuracy(r["arch"], args.ranking_seed) for r in rows]
        supernet = [r["supernet_accuracy"] for r in rows]
        retest = {"seed_vs_seed": dataclasses.asdict(rank_correlation(first, second)),
                  "supernet_vs_second_seed": dataclasses.asdict(rank_correlation(supernet, second))}
        a, b = retest["seed_vs_seed"], retest["supernet_vs_second_seed"]
        lines += ["", f"## The pooled ranking networks, trained again (seed {args.ranking_seed})", "",
                  f"- stand-alone test accuracy, seed 0 vs seed {args.ranking_seed}: n = {a['n']}, "
                  f"Kendall τ = {a['kendall_tau']:+.3f} (p = {a['kendall_p']:.2g})",
                  f"- supernet accuracy vs stand-alone test accuracy with seed {args.ranking_seed}: n = {b['n']}, "
                  f"Kendall τ = {b['kendall_tau']:+.3f} (p = {b['kendall_p']:.2g})",
                  "", "The first line is how well one stand-alone training ranks these networks against another: "
                  "the most any cheaper ranking (the supernet's) could be expected to agree with one."]
    (args.folder / "retest.md").write_text("\n".join(lines) + "\n")
    _write_json(args.folder / "retest.json", {"per_sampler_mean_test_error": per_sampler, "ranking": retest})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
