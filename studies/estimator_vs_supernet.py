"""Issue 24: the zero-cost estimator's comparison against issue 10's supernet one, paired by seed.

Both comparisons ran the same proxy task, seeds 0-4, budget rule and stand-alone protocol
(studies/compare_equal_compute.sh main and zero-cost); only how a trial scores its architecture differs.

    python studies/estimator_vs_supernet.py   # -> studies/results/compare-equal-compute-fashion-zero-cost/vs-supernet.md
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from optuna_epnas.analysis.report import bootstrap_interval

RESULTS = Path(__file__).resolve().parent / "results"
SUPERNET = RESULTS / "compare-equal-compute-fashion" / "results.json"
ZERO_COST = RESULTS / "compare-equal-compute-fashion-zero-cost" / "results.json"


def _errors(path: Path) -> dict[str, dict[int, float]]:
    d = json.loads(path.read_text())
    return {name: dict(zip(s["seeds"], s["test_errors"])) for name, s in d["samplers"].items()}, {
        name: s["total_cost_mean"] for name, s in d["samplers"].items()}


def main() -> None:
    (sup, sup_cost), (zc, zc_cost) = _errors(SUPERNET), _errors(ZERO_COST)
    rows = [("epnas", "epnas"), ("random", "random"), ("tpe", "tpe"), ("epnas", "random")]
    lines = ["# The zero-cost estimator (jacob_cov) against the supernet, paired by seed", "",
             "Stand-alone test error (%) of the chosen network (mean of 2 training seeds), Fashion-MNIST proxy, "
             "seeds 0-4; left: `--estimator jacob_cov` (this folder), right: issue 10's supernet runs "
             "(`../compare-equal-compute-fashion`). Differences in points (negative: the zero-cost run lower), "
             "95 % bootstrap interval of the mean difference.", "",
             "| zero-cost sampler − supernet sampler | zero-cost mean | supernet mean | difference | interval | lower / higher | search compute, zero-cost / supernet |",
             "|---|---:|---:|---:|---|---|---|"]
    for a, b in rows:
        seeds = sorted(set(zc[a]) & set(sup[b]))
        d = [100 * (zc[a][s] - sup[b][s]) for s in seeds]
        iv = bootstrap_interval(d)
        lines.append(f"| {a} − {b} | {100 * np.mean([zc[a][s] for s in seeds]):.2f} | "
                     f"{100 * np.mean([sup[b][s] for s in seeds]):.2f} | {np.mean(d):+.2f} | "
                     f"{'–' if iv is None else f'[{iv[0]:+.2f}, {iv[1]:+.2f}]'} | "
                     f"{sum(x < 0 for x in d)} / {sum(x > 0 for x in d)} | "
                     f"{zc_cost[a]:.2g} / {sup_cost[b]:.2g} MACs |")
    out = ZERO_COST.parent / "vs-supernet.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
