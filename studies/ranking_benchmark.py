"""Issue 24's ranking benchmark: every estimator scored against the stand-alone ranking table.

    python studies/ranking_benchmark.py                     # all estimators, supernet seed 0 (~40 min, 2 cores)
    python studies/ranking_benchmark.py --seeds 0 1 --workers 2
    python studies/ranking_benchmark.py --report-only       # results.json / results.md from what is cached
    python studies/ranking_benchmark.py --proxy digits      # the second proxy task's table (ranking_table.py --proxy digits)

Table: ``studies/results/ranking-benchmark/table.json`` (``studies/ranking_table.py``): full-depth proxy
architectures (Fashion-MNIST, 5,000 training images at 14x14, macro space with 5 layers) with their
stand-alone test accuracy from 2 training seeds; estimators are judged against the mean.

Estimators run on the comparison's search settings (supernet of 16 channels, SGD lr 0.05, batch 128) and
are grouped by the run that produces them (one SPOS warm-up measured after 1, 5 and 20 epochs gives three
rows). Each group's scores are cached in ``studies/runs/ranking-benchmark/estimates/`` as it ends, so a
re-run only computes what is missing; the report is recomputed from the cache every time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ranking_table import PROXIES, results_dir  # noqa: E402  (the proxy tasks are the table's)

RESULTS = results_dir("fashion")
CACHE = Path("studies/runs/ranking-benchmark/estimates")
PROXY_NAME = "fashion"
PROXY = PROXIES[PROXY_NAME]


def _use(proxy: str) -> None:
    """Point the module at one proxy task's table, cache and results folder."""
    global RESULTS, CACHE, PROXY, PROXY_NAME
    PROXY_NAME, PROXY, RESULTS = proxy, PROXIES[proxy], results_dir(proxy)
    CACHE = Path("studies/runs") / RESULTS.name / "estimates"
CHANNELS = 16  # the comparison's search width
ORDERS = 3  # evaluation batch orders averaged by the frozen-weight rows
#: Supernet rows combined (rank average) with every zero-cost proxy.
COMBINE = ("epnas-protocol", "spos-5/frozen", "spos-20/frozen", "fairnas-20/frozen", "fairnas-40/frozen",
           "fairnas-60/frozen", "spos-5/finetune-3")
#: The estimator the package's default search uses (SupernetObjective / epnas search defaults).
DEFAULT = "epnas-protocol"
#: The row of ``--estimator jacob_cov`` (optuna_epnas.estimators.ZeroCost's defaults: 4 initialisations, width 16).
OPTION = "zc4-jacob_cov"


def _setup() -> tuple[Any, Any]:
    import torch
    from optuna_epnas import MacroSpace, load_dataset

    torch.set_num_threads(1)
    data = load_dataset(PROXY["dataset"], device="cpu", seed=PROXY["data_seed"], max_train=PROXY["max_train"],
                        image_size=PROXY["image_size"])
    return MacroSpace(num_layers=PROXY["layers"]), data


def _flatten(name: str, e: Any) -> dict[str, dict[str, Any]]:
    out = {name: {"scores": list(map(float, e.scores)), "cost_macs": e.cost_macs}}
    for k, v in e.variants.items():
        out.update(_flatten(f"{name}/{k}", v))
    return out


# -- the groups: each a run that yields one or more named estimates ---------------------------------
def g_epnas_protocol(space, data, archs, seed, say):
    """Today's search protocol: 1 epoch of SPOS warm-up (the default), then each architecture trains 3
    epochs on its path, the weights carried over in a random order, and is measured."""
    from optuna_epnas.estimators import shared_weights

    return _flatten("epnas-protocol", shared_weights(space, data, archs, pretrain="spos", pretrain_epochs=1,
                                                     finetune_epochs=3, sequential=True, channels=CHANNELS,
                                                     seed=seed, say=say))


def _gpu_batch(batch_size: int, lr: float) -> Callable:
    def run(space, data, archs, seed, say):
        from optuna_epnas.estimators import shared_weights

        return _flatten(f"epnas-protocol-b{batch_size}", shared_weights(
            space, data, archs, pretrain="spos", pretrain_epochs=1, finetune_epochs=3, sequential=True,
            channels=CHANNELS, seed=seed, say=say, batch_size=batch_size, lr=lr))
    run.__doc__ = (f"today's search protocol at batch {batch_size}, lr {lr:g} (the learning rate scaled linearly "
                   "from 0.05 at 128): does a GPU-sized batch keep the ranking? (issue 26)")
    return run


def _curve(kind: str, at: tuple[int, ...] = (1, 5, 20)) -> Callable:
    def run(space, data, archs, seed, say):
        from optuna_epnas.estimators import warmup_curve

        out = {}
        for epochs, row in warmup_curve(space, data, archs, at=at, pretrain=kind, channels=CHANNELS,
                                        seed=seed, orders=ORDERS, say=say).items():
            out.update(_flatten(f"{kind}-{epochs}/frozen", row["accuracy"]))
            out.update(_flatten(f"{kind}-{epochs}/frozen-loss", row["loss"]))
            out.update(_flatten(f"{kind}-{epochs}/frozen-1order", row["accuracy_1order"]))
        return out
    run.__doc__ = f"{kind} warm-up for {max(at)} epochs; every architecture measured on the frozen weights after {at}."
    return run


def _finetuned(kind: str, epochs: int) -> Callable:
    def run(space, data, archs, seed, say):
        from optuna_epnas.estimators import shared_weights

        return _flatten(f"{kind}-{epochs}/finetune-3", shared_weights(
            space, data, archs, pretrain=kind, pretrain_epochs=epochs, finetune_epochs=3, sequential=False,
            channels=CHANNELS, seed=seed, say=say))
    run.__doc__ = f"{kind} warm-up for {epochs} epochs, then each architecture fine-tuned 3 epochs from it, measured."
    return run


def _few_shot(epochs: int) -> Callable:
    def run(space, data, archs, seed, say):
        from optuna_epnas.estimators import shared_weights

        return _flatten(f"fewshot-spos-{epochs}", shared_weights(
            space, data, archs, pretrain="spos", pretrain_epochs=epochs, finetune_epochs=0, sequential=False,
            channels=CHANNELS, seed=seed, few_shot=True, say=say))
    run.__doc__ = f"one sub-supernet per first-layer op, each SPOS-warmed {epochs} epochs, measured frozen."
    return run


def _zero_cost(channels: int, prefix: str, repeats: int = 1) -> Callable:
    def run(space, data, archs, seed, say):
        from optuna_epnas.estimators import zero_cost

        out = {}
        for name, e in zero_cost(space, data, archs, channels=channels, seed=10 * seed, repeats=repeats).items():
            out.update(_flatten(f"{prefix}-{name}", e))
        return out
    run.__doc__ = (f"Zero-cost proxies at initialisation (one batch of 64, mean of {repeats} initialisations and "
                   f"batches) at width {channels}, and the parameter count.")
    return run


GROUPS: dict[str, Callable] = {
    "zero-cost": _zero_cost(CHANNELS, "zc"),
    "zero-cost-32": _zero_cost(32, "zc32"),  # at the stand-alone networks' width
    "zero-cost-x4": _zero_cost(CHANNELS, "zc4", repeats=4),  # the mean of 4 initialisations and batches
    "spos-curve": _curve("spos"),
    "fairnas-curve": _curve("fairnas"),
    "fairnas-long": _curve("fairnas", (40, 60)),  # does the fair warm-up's rising τ keep rising?
    "epnas-protocol": g_epnas_protocol,
    "epnas-protocol-b256": _gpu_batch(256, 0.1),  # epnas search's CUDA default (settings.GPU_TRAINING)
    "epnas-protocol-b1024": _gpu_batch(1024, 0.4),
    "spos-5-finetune": _finetuned("spos", 5),
    "fewshot-spos-5": _few_shot(5),
}


def _run_group(job: tuple[str, int, list[str], str]) -> tuple[str, int, dict, float]:
    name, seed, archs, proxy = job
    _use(proxy)
    if _cache_path(name, seed).exists():  # another process computed it meanwhile
        return name, seed, json.loads(_cache_path(name, seed).read_text())["rows"], -1.0
    space, data = _setup()
    started = time.perf_counter()
    rows = GROUPS[name](space, data, archs, seed, lambda s: print(f"[{name} seed {seed}] {s}", flush=True))
    return name, seed, rows, time.perf_counter() - started


def _cache_path(group: str, seed: int) -> Path:
    return CACHE / f"{group}-seed{seed}.json"


def compute(groups: list[str], seeds: list[int], archs: list[str], workers: int) -> None:
    jobs = [(g, s, archs, PROXY_NAME) for s in seeds for g in groups if not _cache_path(g, s).exists()]
    print(f"{len(jobs)} estimator runs to go: {', '.join(f'{g}/seed{s}' for g, s, _, _ in jobs) or 'none'}", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    with mp.get_context("spawn").Pool(workers) as pool:
        for name, seed, rows, seconds in pool.imap_unordered(_run_group, jobs):
            if seconds < 0:
                continue
            path = _cache_path(name, seed)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"archs": archs, "seconds": round(seconds, 1), "rows": rows}) + "\n")
            os.replace(tmp, path)
            print(f"{name} seed {seed}: done in {seconds:.0f}s", flush=True)


def combined(rows: dict[str, dict[str, Any]], supernet: str) -> dict[str, dict[str, Any]]:
    """Rank averages of a supernet estimate with each zero-cost proxy (costs added)."""
    from optuna_epnas.estimators import rank_average

    out = {}
    base = rows[supernet]
    for name, r in rows.items():
        if name.startswith("zc-"):
            out[f"{supernet} + {name}"] = {"scores": rank_average(base["scores"], r["scores"]),
                                           "cost_macs": (base["cost_macs"] or 0) + (r["cost_macs"] or 0)}
    return out


def report(table_path: Path, seeds: list[int]) -> dict[str, Any]:
    from optuna_epnas.benchmarks.ranking import load_ranking_table, score_estimate

    table = load_ranking_table(table_path)
    per_seed: dict[str, list[dict[str, Any]]] = {}
    seconds: dict[str, float] = {}
    for seed in seeds:
        rows: dict[str, dict[str, Any]] = {}
        for group in GROUPS:
            path = _cache_path(group, seed)
            if not path.exists():
                continue
            cached = json.loads(path.read_text())
            if cached["archs"] != list(table.archs):
                print(f"{path}: made for another table; delete it to recompute", file=sys.stderr)
                continue
            rows.update(cached["rows"])
            seconds[group] = seconds.get(group, 0) + cached["seconds"]
        for base in COMBINE:
            if base in rows:
                rows.update(combined(rows, base))
        for name, r in rows.items():
            per_seed.setdefault(name, []).append({**score_estimate(r["scores"], table), "cost_macs": r["cost_macs"],
                                                  "seed": seed})
    estimators = {}
    for name, runs in per_seed.items():
        first = runs[0]
        row = {k: first[k] for k in ("kendall_tau", "spearman", "top10_hit_rate", "cost_macs",
                                     "kendall_tau_interval", "spearman_interval", "top10_hit_rate_interval")}
        row["supernet_seeds"] = [r["seed"] for r in runs]
        if len(runs) > 1:
            taus = [r["kendall_tau"] for r in runs if r["kendall_tau"] is not None]
            row["kendall_tau_per_seed"] = taus
            row["kendall_tau_mean_over_seeds"] = float(np.mean(taus)) if taus else None
        estimators[name] = row
    # the noise ceiling: one training seed's ranking against the other's
    from scipy import stats

    ceiling = float(stats.kendalltau(table.test_accuracy[:, 0], table.test_accuracy[:, 1]).statistic)
    result = {"n_architectures": len(table), "default": DEFAULT, "estimators": estimators,
              "as_an_option": {OPTION: "epnas search --estimator jacob_cov; SupernetObjective(estimator=ZeroCost())"},
              "standalone_seed_agreement_tau": ceiling, "truth": "mean stand-alone test accuracy over 2 training seeds",
              "proxy": table.proxy, "search_channels": CHANNELS, "eval_orders": ORDERS,
              "group_seconds": seconds, "command": "python studies/ranking_benchmark.py"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "results.md").write_text(markdown(result))
    print(f"-> {RESULTS / 'results.json'}, results.md")
    return result


def _describe(proxy: dict[str, Any]) -> str:
    size = f"{proxy['image_size']}×{proxy['image_size']}" if proxy.get("image_size") else "native size"
    images = f"{proxy['max_train']:,} training images" if proxy.get("max_train") else "all training images"
    return f"{proxy['dataset']}, {images} at {size}"


def _fmt(x: float | None, signed: bool = True) -> str:
    return "–" if x is None else (f"{x:+.3f}" if signed else f"{x:.2f}")


def _iv(iv: list[float | None], signed: bool = True) -> str:
    return "–" if iv[0] is None else f"[{_fmt(iv[0], signed)}, {_fmt(iv[1], signed)}]"


def markdown(result: dict[str, Any]) -> str:
    est = result["estimators"]
    order = sorted(est, key=lambda n: -(est[n]["kendall_tau"] if est[n]["kendall_tau"] is not None else -9))
    lines = [
        "# Ranking benchmark: estimators against stand-alone training",
        "",
        f"{result['n_architectures']} full-depth architectures of a proxy task ({_describe(result['proxy'])}, "
        "macro space of 5 layers), each trained alone from scratch with 2 training seeds (8 epochs, 32 "
        "channels); truth: the mean stand-alone test accuracy. One training seed ranks the architectures against "
        f"the other at Kendall τ = {result['standalone_seed_agreement_tau']:+.3f} (the noise an estimator faces).",
        "",
        "τ: Kendall τ-b; ρ: Spearman; top-10 %: of the estimator's top 10 % (7 architectures), the share in the true "
        "top 10 %. Intervals: 95 % bootstrap over architectures (scipy.stats.bootstrap, 2,000 resamples). Cost: "
        "multiply-adds of everything the estimator ran (optuna_epnas.costs.cost's unit; one search trial of this "
        "proxy costs about 1e11). Supernet rows: seed 0 of the supernet; τ per seed where more were run.",
        "",
        f"Default of the package's search: **{result['default']}**; `--estimator jacob_cov` "
        f"(`ZeroCost()`): **{OPTION}**.",
        "",
        "| estimator | τ | τ interval | ρ | ρ interval | top-10 % | interval | cost (MACs) | τ per supernet seed |",
        "|---|---:|---|---:|---|---:|---|---:|---|",
    ]
    for n in order:
        r = est[n]
        per = " ".join(f"{t:+.2f}" for t in r.get("kendall_tau_per_seed", []))
        lines.append(f"| {'**' + n + '**' if n == result['default'] else n} | {_fmt(r['kendall_tau'])} | "
                     f"{_iv(r['kendall_tau_interval'])} | {_fmt(r['spearman'])} | {_iv(r['spearman_interval'])} | "
                     f"{_fmt(r['top10_hit_rate'], False)} | {_iv(r['top10_hit_rate_interval'], False)} | "
                     f"{'–' if r['cost_macs'] is None else format(r['cost_macs'], '.3g')} | {per} |")
    lines += ["", "Names: `epnas-protocol` — today's search: 1 epoch of uniform warm-up, then each architecture trains "
              "3 epochs on the shared weights (carried over, random order) and is measured; `spos-E`/`fairnas-E` — "
              "E epochs of uniform (SPOS) or strictly fair (FairNAS) single-path warm-up; `/frozen` — measured on "
              f"those weights without training (accuracy averaged over {result['eval_orders']} evaluation batch "
              "orders; `-1order` one order; `-loss` the negative validation loss); `/finetune-3` — each "
              "architecture trained 3 epochs from the warmed weights (restored after each) then measured; "
              "`fewshot-spos-E` — one sub-supernet per first-layer op; `zc-*` — zero-cost proxies on the untrained "
              "network (`zc-params`: the parameter count); `A + zc-X` — the mean of the two rankings.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--proxy", choices=list(PROXIES), default="fashion",
                   help="fashion: the comparison's Fashion-MNIST proxy; digits: the second proxy")
    p.add_argument("--table", type=Path, default=None, help="default: the proxy's results folder's table.json")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--planned", action="store_true",
                   help="compute on studies/ranking_table.py's architecture list while the table is still training")
    a = p.parse_args()
    _use(a.proxy)
    a.table = a.table or RESULTS / "table.json"
    from optuna_epnas.benchmarks.ranking import load_ranking_table

    if a.planned:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from ranking_table import architectures

        compute(a.groups, a.seeds, [k for k, _ in architectures()], a.workers)
        return
    table = load_ranking_table(a.table)
    if not a.report_only:
        compute(a.groups, a.seeds, list(table.archs), a.workers)
    report(a.table, a.seeds)


if __name__ == "__main__":
    main()
