"""Stop a search with SIGKILL, SIGINT (Ctrl-C) or SIGTERM at random moments, re-run the same command each
time, and check that it ends with exactly the trials and the supernet of an uninterrupted run (issues 11, 25).

Each interrupt is one of: a signal from outside at a random time (mostly mid-training), or one from
inside at a random call of a step of a trial (:data:`POINTS`: the architecture's sampling, its training,
its evaluation, the record of its training position, the checkpoint write and file replace, Optuna's
record of its result, before and after) or of a level's planning. The faults are drawn in turn from
``--faults`` (``raise``: an exception at that point).

    python studies/kill_resume.py                      # SQLite, 24 interrupts: SIGKILL, SIGINT, SIGTERM in turn
    python studies/kill_resume.py --postgres postgresql://user:pw@127.0.0.1/db
    python studies/kill_resume.py --matrix --faults kill,int,term,raise   # every step x every fault, once

Prints one line per interrupt and a summary: interrupts, mismatching searches (should be 0). Exit 1 on
any mismatch. ``--child`` is the search process itself (the fault points are patched into it);
tests/test_faults.py runs every point with every fault through :func:`inject`.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEARCH = ["search", "--layers", "3", "--k", "2", "--iterations", "2", "--channels", "4", "--epochs", "1",
          "--max-train", "200", "--quiet"]
#: Where a fault is injected: right after the call returns, or (``-before``) just before it is made.
POINTS = ("sample", "train", "evaluate", "record", "save", "replace-before", "append", "tell-before", "tell", "plan")
#: How: SIGKILL (nothing runs after it), SIGINT (Ctrl-C), SIGTERM, or an exception raised there.
FAULTS = ("kill", "int", "term", "raise")


class InjectedFault(RuntimeError):
    """The exception of fault ``raise``."""


def inject(point: str, at: set[int], fault: str = "kill") -> list[tuple[object, str, object]]:
    """Patch ``fault`` into the search at the ``at``-th calls (counted from 1) of ``point``; returns what
    was replaced, as (owner, name, original), for the caller to put back."""
    import optuna.study._optimize

    from optuna_epnas import sampler
    from optuna_epnas.supernet import checkpoint, objective, trainer
    from optuna_epnas.spaces.base import SearchSpace

    owner, name = {
        "sample": (SearchSpace, "suggest"),  # the trial asks for its architecture
        "train": (trainer.SupernetTrainer, "train"),  # trained, not yet measured, checkpointed or recorded
        "evaluate": (trainer.SupernetTrainer, "evaluate"),  # measured, not yet recorded
        "record": (objective, "set_trial_attr"),  # its training position recorded in the study
        "save": (checkpoint.CheckpointFile, "write"),  # checkpointed with its value, not yet told (warm-up: write 1)
        "replace": (checkpoint.os, "replace"),  # mid full write: the new file written, not yet in place
        "append": (checkpoint, "_append_bytes"),  # mid-append of the changes: half the record on disk
        "tell": (optuna.study._optimize, "_tell_with_warning"),  # Optuna records the trial's result
        "plan": (sampler.EPNASSampler, "_make_plan"),  # while planning a level
    }[point.removesuffix("-before")]
    original = getattr(owner, name)
    calls = 0

    def strike() -> None:
        if fault == "raise":
            raise InjectedFault(f"injected at {point} call {calls}")
        os.kill(os.getpid(), {"kill": signal.SIGKILL, "int": signal.SIGINT, "term": signal.SIGTERM}[fault])
        time.sleep(0.5)  # a signal's Python handler runs at the next instruction; SIGKILL never returns

    def wrapped(*args, **kwargs):
        nonlocal calls
        calls += 1
        if point == "append" and calls in at:
            original(*args[:2], args[2][: len(args[2]) // 2])  # a cut-off record, as a kill mid-write leaves it
            strike()
        if point.endswith("-before") and calls in at:
            strike()
        out = original(*args, **kwargs)
        if not point.endswith("-before") and calls in at:
            strike()
        return out

    setattr(owner, name, wrapped)
    return [(owner, name, original)]


def child(argv: list[str]) -> int:
    """The search, with KILL_POINT / KILL_AT (comma-separated call counts) / KILL_FAULT patched in."""
    from optuna_epnas import cli

    point = os.environ.get("KILL_POINT", "none")
    if point != "none":
        inject(point, {int(n) for n in os.environ.get("KILL_AT", "0").split(",")}, os.environ.get("KILL_FAULT", "kill"))
    return cli.main(argv)


def command(storage: str, name: str, checkpoints: Path, every: str = "60") -> list[str]:
    """The search; ``every``: seconds between checkpoints (0: after every trial, so that a kill at the
    checkpoint write lands; the default 60 leaves trials to replay)."""
    return [sys.executable, __file__, "--child"] + SEARCH + [
        "--storage", storage, "--study-name", name, "--checkpoint-dir", str(checkpoints), "--checkpoint-every", every]


def outcome(storage: str, name: str, checkpoints: Path):
    """(sorted (stage, arch, value) of the complete trials, the supernet's tensors)."""
    import optuna
    import torch

    from optuna_epnas.supernet.checkpoint import read, safe_name
    from optuna_epnas.sampler import STAGE_ATTR

    study = optuna.load_study(storage=storage, study_name=name)
    rows = sorted((tuple(t.system_attrs[STAGE_ATTR]), t.user_attrs["arch"], t.value)
                  for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    state = read(checkpoints / f"{safe_name(name)}.supernet.pt", torch.device("cpu"))
    return rows, state["model"]


def same(a, b) -> bool:
    import torch

    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


#: The exit code of a search stopped by each fault (``kill``: the signal itself).
STOPPED = {"kill": -signal.SIGKILL, "int": 130, "term": 143, "raise": 2}
#: Calls of each point a search makes (SEARCH, 20 trials): where a fault is drawn among.
CALLS = {"sample": 12, "train": 12, "evaluate": 12, "record": 12, "save": 12, "replace-before": 3, "append": 9,
         "tell-before": 12, "tell": 12, "plan": 3}
#: The call of each point the matrix and tests/test_faults.py strike at: mid-level 1 (plan: level 2's;
#: a full checkpoint write: the 2nd, as most writes after the warm-up's append only the changes).
MATRIX_AT = {"plan": 2, "replace-before": 2}


def matrix(storage_for, faults: list[str], folder: Path, env: dict[str, str]) -> int:
    """Every point of :data:`POINTS` (at its 4th call; :data:`MATRIX_AT` the exceptions) with every fault, each resumed once
    with the same command: a Markdown table of outcomes against the uninterrupted run."""
    ref_dir = folder / "ref"
    ref_dir.mkdir()
    subprocess.run(command(storage_for("ref"), "m-ref", ref_dir), check=True, capture_output=True, env=env)
    reference = outcome(storage_for("ref"), "m-ref", ref_dir)
    print(f"reference: {len(reference[0])} trials\n")
    print("| step | " + " | ".join(faults) + " |\n|---|" + "---|" * len(faults), flush=True)
    differ = 0
    for point in POINTS:
        cells = []
        for fault in faults:
            name, where = f"m-{point}-{fault}", folder / f"{point}-{fault}"
            where.mkdir()
            every = "0" if point in ("save", "replace-before", "append") else "60"
            stopped = subprocess.run(command(storage_for(name), name, where, every), capture_output=True, text=True,
                                     env={**env, "KILL_POINT": point, "KILL_AT": str(MATRIX_AT.get(point, 4)),
                                          "KILL_FAULT": fault})
            final = subprocess.run(command(storage_for(name), name, where, every), capture_output=True, text=True,
                                   env=env)
            ok = final.returncode == 0 and same(outcome(storage_for(name), name, where), reference)
            differ += not ok
            said = [line for line in stopped.stderr.splitlines() if line.strip()]
            cells.append(f"exit {stopped.returncode}" + (", traceback" if any("Traceback" in x for x in said) else "")
                         + (" → identical" if ok else f" → **DIFFERENT** (resume exit {final.returncode})"))
        print(f"| {point} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n{len(POINTS) * len(faults)} cases, {differ} differ from the uninterrupted run")
    return 1 if differ else 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--postgres", default=None, metavar="URL", help="run on this PostgreSQL database instead of SQLite")
    p.add_argument("--kills", type=int, default=24, help="interrupts in all")
    p.add_argument("--max-kills", type=int, default=8, help="interrupts per search at most")
    p.add_argument("--faults", default="kill,int,term", help=f"comma-separated, drawn in turn: {','.join(FAULTS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--matrix", action="store_true", help="instead: every step with every fault once (a table)")
    args = p.parse_args()
    faults = [f.strip() for f in args.faults.split(",")]
    if not faults or set(faults) - set(FAULTS):
        p.error(f"--faults: choose from {','.join(FAULTS)}")
    rng = random.Random(args.seed)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.matrix:  # one SQLite file per case: a case's trials never meet another's
            return matrix(lambda name: args.postgres or f"sqlite:///{folder}/{name}.db", faults, folder, env)
        storage = args.postgres or f"sqlite:///{folder}/kills.db"
        tag = f"kill{os.getpid()}"
        ref_dir = folder / "ref"
        ref_dir.mkdir()
        started = time.perf_counter()
        subprocess.run(command(storage, f"{tag}-ref", ref_dir), check=True, capture_output=True, env=env)
        span = time.perf_counter() - started
        reference = outcome(storage, f"{tag}-ref", ref_dir)
        print(f"reference: {len(reference[0])} trials in {span:.1f}s on {storage.split('@')[-1]}", flush=True)
        kills = mismatches = searches = 0
        landed = {f: 0 for f in faults}
        while kills < args.kills:  # searches until enough faults landed; each stopped until it ends on its own
            name, where = f"{tag}-{searches}", folder / f"s{searches}"
            where.mkdir()
            for _ in range(args.max_kills):
                fault = faults[kills % len(faults)]
                how = rng.choice(("time",) + POINTS)
                if how == "time":  # from outside, at a random moment (mostly mid-training)
                    proc = subprocess.Popen(command(storage, name, where), env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    delay = rng.uniform(0.2, span)
                    try:
                        code = proc.wait(timeout=delay)
                    except subprocess.TimeoutExpired:
                        proc.send_signal({"kill": signal.SIGKILL, "int": signal.SIGINT, "term": signal.SIGTERM,
                                          "raise": signal.SIGKILL}[fault])
                        code = proc.wait()
                    fault = "kill" if fault == "raise" else fault
                    what = f"{fault} after {delay:.1f}s"
                else:
                    at = rng.randint(1, CALLS[how])
                    every = "0" if how in ("save", "replace-before", "append") else "60"
                    code = subprocess.run(command(storage, name, where, every), capture_output=True, env={
                        **env, "KILL_POINT": how, "KILL_AT": str(at), "KILL_FAULT": fault}).returncode
                    what = f"{fault} at {how} call {at}"
                if code != STOPPED[fault]:
                    print(f"  search {searches}: {what}: ended first (exit {code})", flush=True)
                    break
                kills += 1
                landed[fault] += 1
                print(f"  search {searches}: {what}: stopped (exit {code})", flush=True)
            final = subprocess.run(command(storage, name, where), capture_output=True, text=True, env=env)
            ok = final.returncode == 0 and same(outcome(storage, name, where), reference)
            mismatches += not ok
            print(f"search {searches}: resumed to the end: " + ("identical to the reference" if ok else
                  f"DIFFERENT (exit {final.returncode}) {final.stderr[-500:]}"), flush=True)
            searches += 1
        print(f"\n{kills} interrupts ({', '.join(f'{n} {f}' for f, n in landed.items())}) over {searches} searches; "
              f"{mismatches} searches differ from the uninterrupted one")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
