"""Kill a search with SIGKILL at random moments, re-run the same command each time, and check that it
ends with exactly the trials and the supernet of an uninterrupted run (issue 11).

Each kill is one of: a kill from outside at a random time (mostly mid-training), or a kill from
inside at a random call of the checkpoint write (right after it: trained and checkpointed, not yet
recorded by Optuna), of the file replace (during a write: new file written, not yet in place), of
a level's planning, or of the training (trained, not yet checkpointed).

    python studies/kill_resume.py                      # SQLite, 24 kills
    python studies/kill_resume.py --postgres postgresql://user:pw@127.0.0.1/db

Prints one line per kill and a summary: kills, mismatching searches (should be 0). Exit 1 on any
mismatch. ``--child`` is the search process itself (the kill points are patched into it).
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
POINTS = ("train", "save", "replace-before", "plan")


def child(argv: list[str]) -> int:
    """The search, with KILL_POINT / KILL_AT (comma-separated call counts) patched in."""
    from optuna_epnas import checkpoint, cli, objective, sampler

    point, at = os.environ.get("KILL_POINT", "none"), {int(n) for n in os.environ.get("KILL_AT", "0").split(",")}
    calls = 0

    def dying(original):
        def wrapped(*args, **kwargs):
            nonlocal calls
            calls += 1
            if point.endswith("-before") and calls in at:
                os.kill(os.getpid(), signal.SIGKILL)
            out = original(*args, **kwargs)
            if calls in at:
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        return wrapped

    if point == "train":  # trained, not yet checkpointed or recorded
        objective.SupernetObjective.train = dying(objective.SupernetObjective.train)
    elif point == "save":  # checkpointed with its value, not yet recorded (the warm-up is write 1)
        checkpoint.write = dying(checkpoint.write)
    elif point == "replace-before":  # mid-write: the new file written, not yet in place
        checkpoint.os.replace = dying(checkpoint.os.replace)
    elif point == "plan":  # while planning a level
        sampler.EPNASSampler._make_plan = dying(sampler.EPNASSampler._make_plan)
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

    from optuna_epnas.checkpoint import safe_name
    from optuna_epnas.sampler import STAGE_ATTR

    study = optuna.load_study(storage=storage, study_name=name)
    rows = sorted((tuple(t.system_attrs[STAGE_ATTR]), t.user_attrs["arch"], t.value)
                  for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    state = torch.load(checkpoints / f"{safe_name(name)}.supernet.pt", weights_only=True)
    return rows, state["model"]


def same(a, b) -> bool:
    import torch

    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--postgres", default=None, metavar="URL", help="run on this PostgreSQL database instead of SQLite")
    p.add_argument("--kills", type=int, default=24, help="kills in all")
    p.add_argument("--max-kills", type=int, default=8, help="kills per search at most")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
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
        while kills < args.kills:  # searches until enough kills landed; each killed until it ends on its own
            name, where = f"{tag}-{searches}", folder / f"s{searches}"
            where.mkdir()
            for _ in range(args.max_kills):
                how = rng.choice(("time",) + POINTS)
                if how == "time":
                    proc = subprocess.Popen(command(storage, name, where), env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    delay = rng.uniform(0.2, span)
                    try:
                        code = proc.wait(timeout=delay)
                    except subprocess.TimeoutExpired:
                        proc.send_signal(signal.SIGKILL)
                        code = proc.wait()
                    what = f"SIGKILL after {delay:.1f}s"
                else:
                    at = rng.randint(1, {"train": 12, "save": 12, "replace-before": 12, "plan": 3}[how])
                    every = "0" if how in ("save", "replace-before") else "60"
                    code = subprocess.run(command(storage, name, where, every), capture_output=True,
                                          env={**env, "KILL_POINT": how, "KILL_AT": str(at)}).returncode
                    what = f"at {how} call {at}"
                if code != -signal.SIGKILL:
                    print(f"  search {searches}: {what}: ended first (exit {code})", flush=True)
                    break
                kills += 1
                print(f"  search {searches}: {what}: killed", flush=True)
            final = subprocess.run(command(storage, name, where), capture_output=True, text=True, env=env)
            ok = final.returncode == 0 and same(outcome(storage, name, where), reference)
            mismatches += not ok
            print(f"search {searches}: resumed to the end: " + ("identical to the reference" if ok else
                  f"DIFFERENT (exit {final.returncode}) {final.stderr[-500:]}"), flush=True)
            searches += 1
        print(f"\n{kills} kills over {searches} searches; {mismatches} searches differ from the uninterrupted one")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
