"""Surrogate scoring throughput for one full EPNAS expansion step.

K seeded random level-(L-1) parents of MacroSpace(L) (defaults: K=25, L=12) are expanded to all their
children (6 ops x 2^(L-1) skip subsets = 12,288 each, 307,200 in all), and every child is scored by an
``OneLSTM`` fitted (untimed, few steps) on a few hundred random rows. Timed, side by side:

  (i)   building the tokens: ``space.tokens(parent)`` and ``space.child_tokens(parent)`` per parent
        (what ``EPNASSampler`` does before scoring);
  (ii)  ``surrogate.predict_children(prefixes, child_tokens, log=True)``, exactly as ``EPNASSampler``
        calls it (log-sigmoid scores): the parent prefix run once, one LSTM step per child; also
        with ``log=False`` (probabilities), which is what the naive comparison checks against;
  naive ``surrogate.predict`` on the children's full token sequences, for a random subset (default
        20k candidates), extrapolated to candidates/s, and the max |difference| from (ii) on that subset;
  select  ``optuna_epnas.sampler.selection.select(log_scores, K, "epnas", 1.0, rng)`` on all the (log) scores, as the
        sampler calls it (and "pnas").

Target: (ii) >= 100k candidates/s on 2 CPU cores. Nothing here asserts on timings.

    PYTHONPATH=. python benchmarks/bench_surrogate.py
    PYTHONPATH=. python benchmarks/bench_surrogate.py --parents 25 --layers 12 --reps 5 --naive 20000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from optuna_epnas.sampler.selection import select  # noqa: E402
from optuna_epnas.spaces.macro import MacroArch, MacroSpace  # noqa: E402
from optuna_epnas.sampler.surrogate import OneLSTM  # noqa: E402
from _common import report_load  # benchmarks/ is on sys.path when a script here runs


def random_arch(space: MacroSpace, level: int, rng: np.random.Generator) -> MacroArch:
    ops = tuple(space.ops[int(rng.integers(len(space.ops)))] for _ in range(level))
    skips = tuple(tuple(s for s in range(layer - 1) if rng.random() < 0.5) for layer in range(1, level + 1))
    return MacroArch(ops, skips)


def timed(fn, reps: int):
    """(median seconds, all seconds, last result) of ``reps`` calls of ``fn``."""
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--layers", type=int, default=12, help="L of MacroSpace(L); parents have L-1 layers")
    ap.add_argument("--parents", type=int, default=25, help="K, parents expanded")
    ap.add_argument("--fit-rows", type=int, default=300, help="random rows the surrogate is fitted on (untimed)")
    ap.add_argument("--fit-steps", type=int, default=50, help="Adam steps of that fit")
    ap.add_argument("--hidden", type=int, default=100, help="LSTM width (paper: 100)")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions of each step")
    ap.add_argument("--naive", type=int, default=20000, help="candidates scored by full-sequence predict")
    ap.add_argument("--naive-reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    load0 = os.getloadavg()[0]
    print(f"torch {torch.__version__} | numpy {np.__version__} | python {platform.python_version()} | "
          f"device cpu | threads {torch.get_num_threads()}")
    space = MacroSpace(num_layers=args.layers)
    rng = np.random.default_rng(args.seed)
    parents = [random_arch(space, args.layers - 1, rng) for _ in range(args.parents)]
    n_children = [space.num_children(p) for p in parents]
    total = sum(n_children)
    print(f"space MacroSpace({args.layers}), token_dim {space.token_dim} | {args.parents} parents of level "
          f"{args.layers - 1} x {n_children[0]:,} children = {total:,} candidates")

    # -- fit (untimed) -----------------------------------------------------------------------------
    rows = [random_arch(space, int(rng.integers(1, args.layers)), rng) for _ in range(args.fit_rows)]
    targets = rng.uniform(0.1, 0.9, size=len(rows))
    t0 = time.perf_counter()
    surrogate = OneLSTM(space.token_dim, hidden=args.hidden, steps=args.fit_steps, seed=args.seed)
    surrogate.fit([space.tokens(a) for a in rows], targets.tolist())
    print(f"fit: {len(rows)} rows (levels 1..{args.layers - 1}), {args.fit_steps} steps, "
          f"{time.perf_counter() - t0:.2f} s (untimed)")

    # -- (i) tokens, (ii) predict_children -----------------------------------------------------------
    def build_tokens():
        return [space.tokens(p) for p in parents], [space.child_tokens(p) for p in parents]

    t_tok, _, (prefixes, child_tokens) = timed(build_tokens, args.reps)
    # the whole-expansion scorers, one repetition of each in turn (a, b, c, a, b, c, ...), so that load
    # from other processes that starts or stops mid-run hits all of them alike
    scorers = {
        "log": lambda: surrogate.predict_children(prefixes, child_tokens, log=True),
        "prob": lambda: surrogate.predict_children(prefixes, child_tokens),
    }
    times: dict[str, list[float]] = {name: [] for name in scorers}
    results: dict[str, np.ndarray] = {}
    for name, fn in scorers.items():  # warm-up
        fn()
    for _ in range(args.reps):
        for name, fn in scorers.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    t_pc, pc_times, log_scores = statistics.median(times["log"]), times["log"], results["log"]
    t_pc_p, scores = statistics.median(times["prob"]), results["prob"]
    assert len(scores) == len(log_scores) == total
    diff_log = float(np.abs(np.exp(log_scores.astype(np.float64)) - scores).max())

    # -- naive full-sequence predict on a subset -------------------------------------------------------
    n_naive = min(args.naive, total)
    offsets = np.cumsum([0] + n_children)
    subset = np.sort(rng.choice(total, size=n_naive, replace=False))
    owner = np.searchsorted(offsets, subset, side="right") - 1
    t0 = time.perf_counter()
    sequences = [np.concatenate([prefixes[o], child_tokens[o][j - offsets[o]][None]]) for o, j in zip(owner, subset)]
    t_seq = time.perf_counter() - t0
    t_naive, _, naive_scores = timed(lambda: surrogate.predict(sequences), args.naive_reps)
    diff = float(np.abs(naive_scores - scores[subset]).max())
    # check also that the sequences really are the children (tokens of space.child(parent, index))
    spot = [space.tokens(space.child(parents[o], int(j - offsets[o]))) for o, j in zip(owner[:50], subset[:50])]
    same_tokens = all(np.array_equal(a, b) for a, b in zip(spot, sequences[:50]))

    # -- selection -------------------------------------------------------------------------------------
    log64 = log_scores.astype(np.float64)  # the sampler's .astype(np.float64)
    sel_rng = np.random.default_rng(args.seed)
    t_sel, _, (chosen, prob) = timed(lambda: select(log64, args.parents, "epnas", 1.0, sel_rng), max(args.reps, 10))
    t_sel_p, _, _ = timed(lambda: select(log64, args.parents, "pnas", 1.0, sel_rng), max(args.reps, 10))

    # -- report ----------------------------------------------------------------------------------------
    def row(name, seconds, n=total, note=""):
        print(f"{name:<46} {seconds * 1e3:>10.1f} {n / seconds:>14,.0f}  {note}")

    print(f"\nmedian of {args.reps} repetitions (log and probability scoring interleaved; naive: {args.naive_reps}); "
          "candidates/s = candidates / time")
    print(f"{'step':<46} {'ms':>10} {'candidates/s':>14}")
    row(f"(i)  tokens + child_tokens ({args.parents} parents)", t_tok)
    row("(ii) predict_children(..., log=True)", t_pc,
        note=f"min {min(pc_times) * 1e3:.1f} ms, max {max(pc_times) * 1e3:.1f} ms")
    row("(i)+(ii) tokens and scores", t_tok + t_pc)
    row("     predict_children(..., log=False)", t_pc_p, note=f"max |exp(log) - probability| {diff_log:.1e}")
    row(f"naive predict, {n_naive:,} full sequences", t_naive, n=n_naive,
        note=f"(+ {t_seq * 1e3:.0f} ms building the sequences, untimed)")
    row(f"select(log_scores, {args.parents}, 'epnas', 1.0, rng)", t_sel)
    row(f"select(log_scores, {args.parents}, 'pnas', 1.0, rng)", t_sel_p)

    speed = total / t_pc
    print(f"\npredict_children(log=True): {speed:,.0f} candidates/s (target >= 100,000: "
          f"{'met' if speed >= 1e5 else 'NOT met'}); with token building: {total / (t_tok + t_pc):,.0f}/s")
    print(f"speed-up of predict_children(log=False) over naive predict: {(total / t_pc_p) / (n_naive / t_naive):.1f}x")
    print(f"max |predict_children(log=False) - predict| on the {n_naive:,} subset: {diff:.2e} "
          f"(sequences match space.child tokens: {same_tokens})")
    print(f"select chose {len(chosen)} distinct: {len(set(chosen.tolist())) == len(chosen)}; "
          f"probabilities sum to {prob.sum():.6f}")
    report_load(load0)


if __name__ == "__main__":
    main()
