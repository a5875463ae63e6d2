"""Final training of a search's best architecture next to a plain CNN of the same size, over seeds.

Runs ``epnas train --baseline`` once per seed (the seed sets initialisation, data order, augmentation)
and writes a Markdown table of test accuracy (mean ± std, and every seed) to ``<out>/results.md``.
Any option after ``--`` goes to ``epnas train`` unchanged, e.g.::

    python studies/train_vs_baseline.py --study macro-digits-epnas --storage sqlite:///epnas.db \\
        --seeds 3 --out studies/results/train-macro-digits -- --epochs 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from optuna_epnas.cli import main as epnas


def _fmt(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f} ({' '.join(f'{v:.4f}' for v in values)})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", required=True)
    ap.add_argument("--storage", default="sqlite:///epnas.db")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", required=True, help="folder for one run per seed and results.md")
    args = ap.parse_args(own)
    out = Path(args.out)
    results = []
    for seed in range(args.seeds):
        run = out / f"seed{seed}"
        code = epnas(["train", "--study", args.study, "--storage", args.storage, "--baseline", "--quiet",
                      "--seed", str(seed), "--out", str(run), *extra])
        if code:
            return code
        results.append(json.loads((run / "result.json").read_text()))
    first = results[0]
    found = [r["test_accuracy"] for r in results]
    plain = [r["baseline"]["test_accuracy"] for r in results]
    table = "\n".join([
        f"# `{args.study}`: found architecture vs plain CNN, trained from scratch",
        "",
        f"architecture: `{first['arch']}` (search trial {first['source']['trial']}, supernet val "
        f"{first['source']['supernet_val_accuracy']:.4f})",
        f"settings: {json.dumps(first['settings'])}",
        f"command: `python studies/train_vs_baseline.py {' '.join(argv)}`",
        "",
        "| network | parameters | test accuracy, mean ± std (per seed) | seconds per run |",
        "| --- | --- | --- | --- |",
        f"| found architecture | {first['params']:,} | {_fmt(found)} | "
        f"{statistics.mean(r['seconds'] for r in results):.0f} |",
        f"| plain CNN (width {first['baseline']['width']}) | {first['baseline']['params']:,} | {_fmt(plain)} | "
        f"{statistics.mean(r['baseline']['seconds'] for r in results):.0f} |",
        "",
        f"test images: the data set's untouched test split; seeds {list(range(args.seeds))}; "
        f"found better on {sum(f > p for f, p in zip(found, plain))} of {len(found)} seeds, "
        f"tied on {sum(f == p for f, p in zip(found, plain))}.",
        "",
    ])
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table)
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
