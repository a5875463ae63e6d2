"""``epnas benchmark nb201``: samplers at equal queries on NAS-Bench-201's CIFAR-10 table (no training).

Each (sampler, budget, seed) is its own search, recorded as it ends, so the command resumes where an
interrupted one stopped; then it writes the report (:mod:`optuna_epnas.analysis.tabular_report`)."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Any

from optuna_epnas.cli.args import positive_int


def _names(text: str) -> list[str]:
    from optuna_epnas.benchmarks.runner import SAMPLERS

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SAMPLERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown sampler(s) {unknown or text!r}; choose from {', '.join(SAMPLERS)}")
    return names


def _budgets(text: str) -> list[int]:
    try:
        budgets = sorted({int(b) for b in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"budgets must be comma-separated integers, got {text!r}") from None
    if not budgets or budgets[0] < 1:
        raise argparse.ArgumentTypeError(f"budgets must be positive, got {text!r}")
    return budgets


def add_benchmark_parser(commands: Any) -> argparse.ArgumentParser:
    from optuna_epnas.benchmarks.runner import DEFAULT_SAMPLERS, SAMPLERS
    from optuna_epnas.spaces.nb201 import NB201_OPS

    b = commands.add_parser(
        "benchmark", help="compare samplers at equal queries on a tabular benchmark (NAS-Bench-201)",
        description="Run every sampler for every budget and seed on NAS-Bench-201's CIFAR-10 table (12-epoch "
                    "accuracies, shipped with the package): each search is judged by the test accuracy of its "
                    "best-by-validation complete cell. Writes runs.jsonl (resumable), results.json, results.md "
                    "and anytime.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    b.add_argument("benchmark", choices=("nb201",), help="the tabular benchmark")
    b.add_argument("--samplers", type=_names, default=",".join(DEFAULT_SAMPLERS),
                   help=f"comma-separated, from {','.join(SAMPLERS)}")
    b.add_argument("--budgets", type=_budgets, default="100,200,390", help="queries per search, comma-separated")
    b.add_argument("--seeds", type=positive_int, default=20, help="seeds per sampler and budget")
    b.add_argument("--first-seed", type=int, default=0)
    b.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="processes running searches")
    b.add_argument("--order", default=None, metavar="I,I,...",
                   help="NB201Space's growth order (0-based edges), e.g. 0,1,2,3,4,5 for NB201's canonical one "
                        "(default: NB201Space's, 3,4,5,1,2,0)")
    b.add_argument("--ungrown", default=None, choices=NB201_OPS,
                   help="the op of an edge not yet grown (default: NB201Space's, nor_conv_1x1)")
    b.add_argument("--out", default="studies/results/nb201-cifar10", help="folder for the runs and the report")
    b.add_argument("--report-only", action="store_true", help="write the report from the runs recorded, run nothing")
    return b


def benchmark_command(args: argparse.Namespace) -> int:
    from optuna_epnas.analysis.tabular_report import write_report
    from optuna_epnas.benchmarks.nb201 import load_table
    from optuna_epnas.benchmarks.runner import read_runs, run_benchmark, RUNS_FILE
    from optuna_epnas.spaces.nb201 import NB201Space

    options: dict[str, Any] = {}
    if args.order is not None:
        try:
            options["order"] = [int(e) for e in args.order.split(",")]
        except ValueError:
            raise ValueError(f"--order must be comma-separated edge indices 0..5, got {args.order!r}") from None
    if args.ungrown is not None:
        options["ungrown"] = args.ungrown
    space = NB201Space(**options)
    out = Path(args.out)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    if args.report_only:
        runs = [r for r in read_runs(out / RUNS_FILE) if r.get("space") == space.spec()]
        if not runs:
            raise FileNotFoundError(f"no runs of {space!r} recorded in {out / RUNS_FILE}")
    else:
        runs = run_benchmark(out, args.samplers, args.budgets, seeds, space.spec(), workers=args.workers,
                             progress=lambda line: print(line, flush=True))
    table = load_table()
    ceiling = table.test[table.best_by_validation()]
    command = " ".join(["epnas benchmark nb201", "--samplers", ",".join(args.samplers), "--budgets",
                        ",".join(map(str, args.budgets)), "--seeds", str(args.seeds), "--first-seed", str(args.first_seed),
                        *(["--order", args.order] if args.order else []), *(["--ungrown", args.ungrown] if args.ungrown else []),
                        "--out", shlex.quote(args.out)])
    protocol = {
        "text": f"{space!r}; CIFAR-10 validation accuracy of the 12-epoch table as the objective, NB201's test "
                "accuracy of each search's best-by-validation complete cell reported; every budget its own search "
                "(EPNAS: its schedule fitted to the budget, recorded values reused on this deterministic table); "
                "REA: population 20, sample 5; TPE and random: Optuna's, default settings.",
        "command": command, "space": space.spec(), "seeds": list(seeds), "budgets": args.budgets,
    }
    result = write_report(runs, out, args.samplers, ceiling, protocol)
    for name, by_budget in result["samplers"].items():
        print(f"{name:16s} " + "  ".join(f"{b}: {'–' if v is None else f'{v:.2f}'}" for b, v in by_budget.items()))
    print(f"report: {out / 'results.md'}")
    return 0
