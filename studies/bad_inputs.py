"""What a user sees for each bad input or fault of issues 11 and 25: one ``epnas`` command per case
(mostly ``epnas search``), its exit code and the last line it printed to stderr (or the stdout line
that matters), as a Markdown table (and whether the study kept its trials).

    python studies/bad_inputs.py [--postgres postgresql://user:pw@127.0.0.1/db] [--only issue25]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPNAS = [sys.executable, "-m", "optuna_epnas.cli"]
SEARCH = [*EPNAS, "search", "--layers", "2", "--k", "2", "--iterations", "1", "--channels", "4", "--epochs", "1",
          "--max-train", "200", "--quiet"]
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
#: `epnas` as if the graphviz package were not installed.
NO_GRAPHVIZ = [sys.executable, "-c", "import sys; sys.modules['graphviz'] = None; from optuna_epnas.cli import main; "
               "sys.exit(main(sys.argv[1:]))"]


def last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return (lines[-1] if lines else "(nothing on stderr)") + (
        f"  [{len(lines)} stderr lines]" if len(lines) > 1 else "")


def run(command: list[str]) -> tuple[int, str, str]:
    """Exit code, last stderr line and stdout of a command."""
    done = subprocess.run(command, capture_output=True, text=True, env=ENV)
    return done.returncode, last_line(done.stderr), done.stdout


def epnas(*args: str) -> tuple[int, str]:
    return run([*SEARCH, *args])[:2]


def said(stdout: str, start: str) -> str:
    return next((line for line in stdout.splitlines() if line.startswith(start)), f"(no {start!r} line)")


#: `epnas START ARGV`: a search that opens its storage at the time START (seconds since the epoch), not
#: earlier: two processes take unequal times to import and load their data.
AT = [sys.executable, "-c", "import sys, time, optuna_epnas.search as s; from optuna_epnas.cli import main; "
      "at, opened = float(sys.argv[1]), s.open_storage; "
      "s.open_storage = lambda *a, **k: (time.sleep(max(0, at - time.time())), opened(*a, **k))[1]; "
      "sys.exit(main(sys.argv[2:]))"]


def started_together(storage: str, names: tuple[str, ...]) -> tuple[list[int], str]:
    """Searches of ``names`` that open ``storage`` (a new database) at the same moment: their exit codes,
    and the last stderr line of a failed one (else the studies the storage has)."""
    start = str(time.time() + 15)  # after both have imported and loaded their data, even on a busy machine
    searches = [subprocess.Popen([*AT, start, *SEARCH[3:], "--storage", storage, "--study-name", name],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
                for name in names]
    errors = [p.communicate()[1] for p in searches]
    codes = [p.returncode for p in searches]
    failed = [last_line(e) for c, e in zip(codes, errors) if c]
    if failed:
        return codes, failed[0]
    import optuna

    return codes, "studies: " + ", ".join(sorted(optuna.get_all_study_names(storage)))


def complete(storage: str, name: str) -> int:
    import optuna

    return len(optuna.load_study(storage=storage, study_name=name).get_trials(
        states=(optuna.trial.TrialState.COMPLETE,)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--postgres", default=None)
    p.add_argument("--only", choices=("issue25",), default=None, help="only the rows added for issue 25")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        db = f"sqlite:///{d}/s.db"
        assert epnas("--storage", db, "--study-name", "s")[0] == 0
        n = complete(db, "s")

        def case(what: str, *argv: str, study: str | None = "s", storage: str = db,
                 command: list[str] = SEARCH) -> None:
            code, line, _ = run([*command, *argv])
            kept = "" if study is None else f"{complete(storage, study)}/{n} kept"
            rows.append((what, code, line.replace("|", "\\|"), kept))

        if args.only != "issue25":
            case("resume with other --epochs", "--storage", db, "--study-name", "s", "--epochs", "2")
            case("resume with other --lr", "--storage", db, "--study-name", "s", "--lr", "0.1")
            case("resume with other --batch-size", "--storage", db, "--study-name", "s", "--batch-size", "64")
            case("resume an EPNAS study with --sampler tpe", "--storage", db, "--study-name", "s", "--sampler", "tpe")
            case("--lr inf", "--storage", db, "--study-name", "s", "--lr", "inf")
            case("malformed --storage", "--storage", "sqlite:/nowhere", "--study-name", "x", study=None)
            case("unwritable --storage (no such folder)", "--storage", f"sqlite:///{d}/no/such/x.db",
                 "--study-name", "x", study=None)
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
                case("PostgreSQL without --checkpoint-dir", "--storage", args.postgres, "--study-name", name,
                     study=None)
                code, _ = epnas("--storage", args.postgres, "--study-name", name, "--checkpoint-dir", str(d / "pg"))
                rows.append(("PostgreSQL with --checkpoint-dir", code, "files: " + ", ".join(
                    sorted(p.name for p in (d / "pg").iterdir())), ""))
                bad = args.postgres.replace("@", "x@", 1)  # a wrong password
                case("PostgreSQL, wrong password", "--storage", bad, "--study-name", name, study=None)

        # issue 25
        results = [started_together(f"sqlite:///{d}/race{i}.db", ("a", "b")) for i in range(3)]
        rows.append(("two searches, other study names, started together on a new SQLite file (3 rounds)",
                     ", ".join(str(c) for codes, _ in results for c in codes), "; ".join(r[1] for r in results), ""))
        code, line, out = run([*SEARCH, "--storage", db, "--study-name", "s", "--k", "4"])
        rows.append(("resume the finished study with --k 4", code, line + (
            "  [stdout said 'resuming' first]" if "resuming" in out else "  [nothing on stdout]" if not out else ""),
            f"{complete(db, 's')}/{n} kept"))
        q = f"sqlite:///{d}/q25.db?timeout=60"
        code, _, out = run([*SEARCH, "--storage", q, "--study-name", "exp 1"])
        for start in ("train it from scratch with:", "look at it with:"):
            rows.append(("follow-up command after a `?timeout=60` URL, study `exp 1`", code, said(out, start), ""))
        ckpt = d / "s.db.s.supernet.pt"
        saved = ckpt.read_bytes()
        ckpt.write_bytes(os.urandom(40))
        case("a few random bytes as the checkpoint", "--storage", db, "--study-name", "s")
        ckpt.write_bytes(saved)
        case("epnas dashboard without the graphviz package", "dashboard", "--storage", db, study=None,
             command=NO_GRAPHVIZ)
        arch = d / "arch.json"
        arch.write_text(json.dumps({"format": "optuna_epnas.model/1", "arch": 3, "num_classes": 10,
                                    "space": {"space": "macro", "num_layers": 1, "ops": ["conv3x3"]}}))
        case('epnas draw of an arch.json whose "arch" is a number', "draw", str(arch), "--out", str(d / "a.svg"),
             study=None, command=EPNAS)
        arch.write_text(json.dumps({"format": "optuna_epnas.model/1", "arch": "conv3x3", "num_classes": 10,
                                    "space": {"space": "macro", "num_layers": 1, "ops": "conv3x3"}}))
        case('epnas draw of an arch.json whose "ops" is a string', "draw", str(arch), "--out", str(d / "a.svg"),
             study=None, command=EPNAS)

    print("| case | exit | what the user sees (last stderr line) | trials |")
    print("| --- | ---: | --- | --- |")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
