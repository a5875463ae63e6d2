"""What a user sees for each bad input or fault of issue 11: one ``epnas search`` per case, its exit
code and the last line it printed to stderr, as a Markdown table (and whether the study kept its trials).

    python studies/bad_inputs.py [--postgres postgresql://user:pw@127.0.0.1/db]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SEARCH = [sys.executable, "-m", "optuna_epnas.cli", "search", "--layers", "2", "--k", "2", "--iterations", "1",
          "--channels", "4", "--epochs", "1", "--max-train", "200", "--quiet"]


def epnas(*args: str) -> tuple[int, str]:
    done = subprocess.run([*SEARCH, *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return done.returncode, (lines[-1] if lines else "(nothing on stderr)") + (
        f"  [{len(lines)} stderr lines]" if len(lines) > 1 else "")


def complete(storage: str, name: str) -> int:
    import optuna

    return len(optuna.load_study(storage=storage, study_name=name).get_trials(
        states=(optuna.trial.TrialState.COMPLETE,)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--postgres", default=None)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        db = f"sqlite:///{d}/s.db"
        assert epnas("--storage", db, "--study-name", "s")[0] == 0
        n = complete(db, "s")

        def case(what: str, *argv: str, study: str = "s", storage: str = db) -> None:
            code, line = epnas(*argv)
            kept = "" if study is None else f"{complete(storage, study)}/{n} kept"
            rows.append((what, code, line.replace("|", "\\|"), kept))

        case("resume with other --epochs", "--storage", db, "--study-name", "s", "--epochs", "2")
        case("resume with other --lr", "--storage", db, "--study-name", "s", "--lr", "0.1")
        case("resume with other --batch-size", "--storage", db, "--study-name", "s", "--batch-size", "64")
        case("resume an EPNAS study with --sampler tpe", "--storage", db, "--study-name", "s", "--sampler", "tpe")
        case("--lr inf", "--storage", db, "--study-name", "s", "--lr", "inf")
        case("malformed --storage", "--storage", "sqlite:/nowhere", "--study-name", "x", study=None)
        case("unwritable --storage (no such folder)", "--storage", f"sqlite:///{d}/no/such/x.db", "--study-name", "x",
             study=None)
        ckpt = d / "s.db.s.supernet.pt"
        saved = ckpt.read_bytes()
        ckpt.write_bytes(saved[: len(saved) // 2])
        case("truncated (corrupt) checkpoint", "--storage", db, "--study-name", "s")
        ckpt.unlink()
        case("deleted checkpoint", "--storage", db, "--study-name", "s")
        assert epnas("--storage", db, "--study-name", "t")[0] == 0
        shutil.copy(d / "s.db.t.supernet.pt", ckpt)
        case("another study's checkpoint", "--storage", db, "--study-name", "s")
        ckpt.write_bytes(saved)
        case("--lr 1e6 (training diverges) on a new study", "--storage", db, "--study-name", "nan", "--lr", "1e6",
             study="nan")
        q = f"sqlite:///{d}/q.db?timeout=60"
        code, _ = epnas("--storage", q, "--study-name", "exp 1")
        code2, _ = epnas("--storage", q, "--study-name", "exp_1")
        files = sorted(p.name for p in d.glob("q.db*supernet.pt"))
        rows.append(("`?timeout=60` URL, study names `exp 1` and `exp_1`", f"{code}, {code2}",
                     "checkpoints: " + ", ".join(files), ""))
        if args.postgres:
            name = f"bad-{os.getpid()}"
            case("PostgreSQL without --checkpoint-dir", "--storage", args.postgres, "--study-name", name, study=None)
            code, _ = epnas("--storage", args.postgres, "--study-name", name, "--checkpoint-dir", str(d / "pg"))
            rows.append(("PostgreSQL with --checkpoint-dir", code, "files: " + ", ".join(
                sorted(p.name for p in (d / "pg").iterdir())), ""))
            bad = args.postgres.replace("@", "x@", 1)  # a wrong password
            case("PostgreSQL, wrong password", "--storage", bad, "--study-name", name, study=None)
    print("| case | exit | what the user sees (last stderr line) | trials |")
    print("| --- | ---: | --- | --- |")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
