"""Dashboard notes (issue 27 item 3): what the recorder's note cache saves over optuna-dashboard's public
``save_note``, side by side in one process.

    PYTHONPATH=. python benchmarks/bench_dashboard_notes.py [--trials 100 300 1000] [--storages sqlite memory]

A search's :class:`~optuna_epnas.analysis.dashboard.DashboardRecorder` writes, per finished trial, the
trial's note (``dashboard:<trial_id>:note_ver`` and ``...:note_str:0``) and its drawing's meta (one more
study system attr); the sampler adds a level's plan (~4 KB) every K=25 trials. ``optuna_dashboard.save_note``
reads all of the study's system attrs twice per note (for the version, then to blank a longer note's
tail): a cost that grows with the trials. The recorder's ``NoteCache`` reads them once and then only writes.

For each storage (a SQLite file opened as ``epnas search`` opens it, in WAL mode; Optuna's in-memory
storage) and each N, two fresh studies of N finished trials get the same writes, trial after trial,
interleaved (cache study, public study, cache study, ...): the timed part is the note only (the drawing
meta and the plans are written untimed, so that both studies grow as a search's does). Printed: ms per
note over the first and the last 10% of the trials, the total, and the ratio save_note / cache. Each
study's notes are read back with ``optuna_dashboard.get_note`` and compared (they must be equal).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import optuna_dashboard
from _common import report_load
from optuna.trial import TrialState, create_trial

from optuna_epnas.analysis import dashboard
from optuna_epnas.storage._storage import set_study_attr, study_attrs, trial_id
from optuna_epnas.storage.storages import open_storage

ARCH = "sep3x3 | conv5x5[0] | avg3x3 | conv3x3[1,2] | max3x3 | sep5x5[0,3] | conv3x3 | avg3x3[4] | conv5x5 | " \
       "sep3x3[2,5,7] | max3x3 | conv3x3[0,9]"


def _note(number: int) -> str:
    """A trial note of a paper-size macro trial's length (~450 characters, one chunk)."""
    return (f"### Trial {number}: `{ARCH}`\n\n- level 12 of 12 · iteration 2 of 3 · τ = 0.5\n"
            f"- surrogate prediction 0.9132 · selection probability 0.0412\n"
            f"- measured accuracy **0.{9000 + number % 999:04d}** (validation, supernet weights)\n"
            f"- parameters (stand-alone) 1,234,567\n- training 812.34 s\n\n"
            f"![architecture of trial {number}](/artifacts/1/{number}/{uuid.uuid4()})\n")


def _plan(level: int) -> dict:
    return {"level": level, "archs": [ARCH] * 25, "predicted": [0.9] * 25, "probability": [0.04] * 25}


def _study(kind: str, folder: Path, name: str, n: int) -> optuna.Study:
    storage = open_storage(f"sqlite:///{folder}/{name}.db") if kind == "sqlite" else None
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    study.add_trials([create_trial(state=TrialState.COMPLETE, value=0.5) for _ in range(n)])
    return study


def _public(study: optuna.Study, trial: optuna.trial.FrozenTrial, body: str) -> None:
    dashboard.save_trial_note(study, trial, body)  # optuna_dashboard.save_note, through the recorder's target


def run(kind: str, n: int, folder: Path) -> dict:
    cached, public = _study(kind, folder, f"cache-{n}", n), _study(kind, folder, f"public-{n}", n)
    seconds: dict[str, list[float]] = {"cache": [], "public": []}
    started = time.perf_counter()
    notes = dashboard.NoteCache(study_attrs(cached))  # the recorder reads once, at its first trial
    seconds["cache"].append(time.perf_counter() - started)
    trials = {"cache": cached.get_trials(deepcopy=False), "public": public.get_trials(deepcopy=False)}
    bodies = [_note(i) for i in range(n)]
    for i in range(n):
        for name, study in (("cache", cached), ("public", public)):
            trial = trials[name][i]
            if i % 25 == 0:
                set_study_attr(study, f"bench:plan:{i // 25}", _plan(i // 25))
            started = time.perf_counter()
            if name == "cache":
                notes.save(study, trial_id(trial), bodies[i])
            else:
                _public(study, trial, bodies[i])
            took = time.perf_counter() - started
            if name == "cache" and i == 0:
                seconds[name][0] += took  # the first note includes the cache's one read
            else:
                seconds[name].append(took)
            meta = {"artifact_id": str(uuid.uuid4()), "filename": f"arch-trial-{i:04d}.svg",
                    "mimetype": "image/svg+xml", "encoding": None}
            set_study_attr(study, f"dashboard:artifacts:{trial_id(trial)}:{meta['artifact_id']}", json.dumps(meta))
    for name, study in (("cache", cached), ("public", public)):  # what the dashboard reads back
        for i in (0, n // 2, n - 1):
            assert dashboard.get_trial_note(study, trials[name][i]) == bodies[i], (name, i)
    tenth = max(1, n // 10)
    result = {"kind": kind, "n": n, "attrs": len(study_attrs(public))}
    for name, s in seconds.items():
        result[name] = {"first": statistics.median(s[:tenth]) * 1e3, "last": statistics.median(s[-tenth:]) * 1e3,
                        "total": sum(s)}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--storages", nargs="+", choices=["sqlite", "memory"], default=["sqlite", "memory"])
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load = os.getloadavg()[0]
    learned = getattr(dashboard.NoteCache({}), "layout", True) is not None  # (the cache before issue 27: private keys)
    print(f"optuna {optuna.__version__}, optuna-dashboard {optuna_dashboard.__version__}; cache: "
          f"{dashboard.NoteCache.__module__}.NoteCache"
          + ("" if learned else " -- NOT caching: the note layout was not recognised, both columns are save_note"))
    print(f"{'storage':<8} {'N':>5} {'attrs':>6} | {'cache ms/note':>22} {'total s':>8} | "
          f"{'save_note ms/note':>22} {'total s':>8} | {'ratio last':>10} {'ratio total':>11}")
    print(f"{'':<8} {'':>5} {'':>6} | {'first 10%':>11}{'last 10%':>11} {'':>8} | {'first 10%':>11}{'last 10%':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.storages:
            for n in args.trials:
                r = run(kind, n, Path(tmp))
                c, p = r["cache"], r["public"]
                print(f"{kind:<8} {n:>5} {r['attrs']:>6} | {c['first']:>11.3f}{c['last']:>11.3f} {c['total']:>8.2f} | "
                      f"{p['first']:>11.3f}{p['last']:>11.3f} {p['total']:>8.2f} | "
                      f"{p['last'] / c['last']:>10.1f} {p['total'] / c['total']:>11.1f}", flush=True)
    report_load(load)


if __name__ == "__main__":
    main()
