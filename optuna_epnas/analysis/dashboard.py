"""A search as optuna-dashboard shows it: notes, architecture drawings, and ``epnas dashboard``.

:class:`DashboardRecorder` is an Optuna callback. After each finished trial that measured an
architecture it writes the trial's note (Markdown: architecture, where the schedule was, surrogate
prediction, measured accuracy, size, time) and attaches the drawing of the architecture as a trial
artifact (SVG, in ``<db>.artifacts/`` beside a SQLite study); every few trials it rewrites the study
note (best full-size architecture, progress, settings). :func:`record_study` does the same for a
study searched before. ``epnas dashboard`` serves the storage with that artifact folder.

Nothing here writes what the sampler reads: notes live in the study system attrs optuna-dashboard
uses for them (``dashboard:...``), drawings in the folder plus ``dashboard:artifacts:...`` attrs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import re
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from statistics import mean
from typing import Any, Sequence
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
import optuna_dashboard
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from optuna_dashboard._note import note_str_key_prefix, note_ver_key, split_body
from optuna_dashboard.artifact._backend import _dashboard_artifact_prefix

#: Where `epnas ranking` starts its section of the study note (kept when the note is rewritten).
RANKING_MARKER = "<!-- epnas:ranking -->"

from optuna_epnas.cost import PLAN_PREFIX, total_cost
from optuna_epnas.draw import draw_arch
from optuna_epnas.objective import OBJECTIVE_ATTR
from optuna_epnas.sampler.pareto import full_depth_front
from optuna_epnas.sampler.epnas import CONFIG_ATTR
from optuna_epnas.sampler.schedule import planned_trials
from optuna_epnas.values import accuracy_of
from optuna_epnas.spaces import MacroSpace, SearchSpace, space_from_spec
from optuna_epnas.storages import open_storage, storage_file

__all__ = ["DashboardRecorder", "record_study", "artifact_dir_for", "get_trial_note", "make_dashboard_server",
           "add_dashboard_parser", "dashboard_command"]

_logger = logging.getLogger(__name__)

WEIGHT_SHARING_NOTE = (
    "Accuracies are **weight-sharing estimates**: the validation accuracy of the architecture's path "
    "through the shared supernet after a few epochs, good for ranking architectures, not the accuracy "
    "of the network trained alone (`epnas train --study NAME` measures that).")


def artifact_dir_for(storage: str | BaseStorage) -> Path | None:
    """``<db>.artifacts/`` beside a SQLite storage (one folder for all its studies, as the dashboard
    serves one artifact store per storage); None for other storages."""
    db = storage_file(storage)
    return None if db is None else db.with_name(db.name + ".artifacts")


def drawing_name(trial: FrozenTrial) -> str:
    """The drawing's artifact file name: also how a re-run finds the artifact it made before."""
    return f"arch-trial-{trial.number:04d}.svg"


# -- what the notes are made of ------------------------------------------------------------------
@dataclass(frozen=True)
class SearchInfo:
    """What a study says about its search (read once: written before the first trial, never changed)."""

    space: SearchSpace | None
    config: dict[str, Any] | None  # the EPNAS/PNAS sampler's settings; None for TPE/random
    objective: dict[str, Any] | None

    @classmethod
    def of(cls, study: optuna.Study) -> "SearchInfo":
        # Optuna has no public getter for study system attrs; objective.py and train.py read them so too.
        attrs = study._storage.get_study_system_attrs(study._study_id)
        objective, config = attrs.get(OBJECTIVE_ATTR), attrs.get(CONFIG_ATTR)
        spec = (objective or config or {}).get("space")
        space = space_from_spec(spec) if spec else None
        return cls(space, config, objective)

    def planned(self) -> int | None:
        if self.space is None or self.config is None:
            return None
        return planned_trials(self.space, self.config["k"], self.config["iterations"])


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def trial_note(trial: FrozenTrial, info: SearchInfo, drawing_url: str | None = None) -> str:
    """The Markdown note of one trial (lists, not tables: architecture keys contain ``|``)."""
    a = trial.user_attrs
    lines = [f"### Trial {trial.number}: `{a['arch']}`", ""]
    where = []
    if "level" in a:
        where.append(f"level {a['level']}" + (f" of {info.space.max_level}" if info.space else ""))
    if "iteration" in a:
        of = f" of {info.config['iterations']}" if info.config else ""
        where.append(f"iteration {a['iteration']}{of}")
    if "temperature" in a:
        where.append(f"τ = {a['temperature']:.3g}")
    if where:
        lines.append("- " + " · ".join(where))
    if "predicted_accuracy" in a:
        lines.append(f"- surrogate prediction {a['predicted_accuracy']:.4f} · "
                     f"selection probability {_fmt(a.get('selection_probability'), '.3g')}")
    if trial.state == TrialState.COMPLETE and accuracy_of(trial) is not None:
        lines.append(f"- measured accuracy **{accuracy_of(trial):.4f}** (validation, supernet weights)")
    else:
        lines.append(f"- measured accuracy – (trial {trial.state.name})")
    if "params" in a:
        lines.append(f"- parameters (stand-alone) {a['params']:,}")
    if "train_seconds" in a:
        lines.append(f"- training {a['train_seconds']:.2f} s")
    if drawing_url:
        lines += ["", f"![architecture of trial {trial.number}]({drawing_url})"]
    return "\n".join(lines) + "\n"


def best_full_size(study: optuna.Study, info: SearchInfo, trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The best COMPLETE trial at the space's full depth (shallower levels are not comparable)."""
    if info.space is None:
        return None
    full = [t for t in trials if t.state == TrialState.COMPLETE and accuracy_of(t) is not None
            and t.user_attrs.get("level") == info.space.max_level and "arch" in t.user_attrs]
    if not full:
        return None
    if study._is_multi_objective():  # the most accurate member of the front (the cheapest of equals)
        front = full_depth_front(study, info.space.max_level)
        return front[-1] if front else None
    pick = max if study.direction == StudyDirection.MAXIMIZE else min
    return pick(full, key=accuracy_of)


def _settings_lines(info: SearchInfo) -> list[str]:
    lines = []
    if info.space is not None:
        space = info.space
        shape = (f"macro, {space.num_layers} layers" if isinstance(space, MacroSpace)
                 else f"micro, {space.max_level} blocks, {space.cells} normal cell{'s' * (space.cells != 1)} per stage")
        lines.append(f"- space: {shape}; ops {', '.join(space.ops)} ({space.cardinality():.3g} architectures)")
    c = info.config
    if c is not None:
        taus = " → ".join(f"{t:.3g}" for t in c["temperatures"])
        acquisition = {"mean": "s", "ucb": f"UCB (mean + {c.get('beta', 1.0):g}·std)", "ei": "EI"}[c.get("acquisition", "mean")]
        form = f"p ∝ exp(z({acquisition})/τ)" if c.get("score") == "z" else f"p ∝ {acquisition}^(1/τ)"
        selection = f"EPNAS (sampled, {form})" if c["selection"] == "epnas" else "PNAS (top K)"
        surrogate = c.get("surrogate", {})
        iterations = f"{c['iterations']} iteration{'s' * (c['iterations'] != 1)}"
        lines.append(f"- sampler: {selection}, K = {c['k']}, {iterations}, τ {taus}, "
                     f"seed {c['seed']}; surrogate {surrogate.get('steps')} steps × {surrogate.get('ensemble')}"
                     + ("; surrogate targets re-scored on the current weights before each level" if c.get("rescore") else ""))
    else:
        lines.append("- sampler: not EPNAS/PNAS (no `epnas:config`: a TPE or random baseline)")
    o = info.objective
    if o is not None:
        lines.append(f"- objective: {o.get('dataset')}, supernet {o.get('channels')} channels, seed {o.get('seed')}")
    return lines


def rescored_lines(study: optuna.Study, trials: Sequence[FrozenTrial], most: int = 12,
                   attrs: dict[str, Any] | None = None) -> list[str]:
    """The latest level's re-scored surrogate targets beside each architecture's measured accuracy
    (``attrs``: the study's system attrs, when the caller has read them)."""
    attrs = study._storage.get_study_system_attrs(study._study_id) if attrs is None else attrs
    plans = [(name, plan) for name, plan in attrs.items()
             if name.startswith(PLAN_PREFIX) and plan.get("rescored")]
    if not plans:
        return []
    name, plan = max(plans, key=lambda p: tuple(int(x) for x in p[0][len(PLAN_PREFIX):].split(":")))
    it, level = (int(x) for x in name[len(PLAN_PREFIX):].split(":"))
    measured = {t.user_attrs["arch"]: accuracy_of(t) for t in sorted(trials, key=lambda t: t.number)
                if t.state == TrialState.COMPLETE and "arch" in t.user_attrs}
    rows = sorted(zip(plan["rescored"]["keys"], plan["rescored"]["values"]), key=lambda kv: -kv[1])
    lines = ["", f"### Re-scored before iteration {it + 1}, level {level}", "",
             f"{len(rows)} architectures measured so far, evaluated again on the weights of that moment "
             "(the surrogate's targets; each trial keeps what it measured). Best re-scored first:", ""]
    lines += [f"- `{key}`: re-scored {value:.4f} · measured {_fmt(measured.get(key), '.4f')}"
              for key, value in rows[:most]]
    if len(rows) > most:
        lines.append(f"- … and {len(rows) - most} more (the plan `{name}` in the study's system attributes)")
    return lines


def _seconds(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def study_note(study: optuna.Study, info: SearchInfo, trials: Sequence[FrozenTrial],
               drawing_url: str | None = None, planned: int | None = None,
               attrs: dict[str, Any] | None = None) -> str:
    """The Markdown note of the whole search (the drawing last: a deep network's is tall). ``attrs``: the
    study's system attrs, when the caller has read them."""
    lines = [f"## Architecture search `{study.study_name}`", ""]
    best = best_full_size(study, info, trials)
    if best is not None:
        lines += [f"**Best full-size architecture** (trial {best.number}): `{best.user_attrs['arch']}`", "",
                  f"- validation accuracy **{accuracy_of(best):.4f}** (supernet weights)"]
        if "params" in best.user_attrs:
            lines.append(f"- parameters (stand-alone) {best.user_attrs['params']:,}")
    else:
        lines.append("No full-size architecture measured yet.")
    if best is not None and info.space is not None and study._is_multi_objective():
        front = full_depth_front(study, info.space.max_level)
        lines += ["", f"**Pareto front of the full-size networks** ({len(front)}, cheapest first; the Pareto-front "
                  "plot shows every trial, shallower levels included):", ""]
        lines += [f"- trial {t.number}: accuracy {t.values[0]:.4f} · cost {t.values[1]:,.0f} · `{t.user_attrs['arch']}`"
                  for t in front]

    finished = [t for t in trials if t.state.is_finished()]
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    full = [t for t in complete if info.space is not None and t.user_attrs.get("level") == info.space.max_level]
    planned = planned if planned is not None else info.planned()
    walls = [s for s in map(_seconds, complete) if s is not None]
    trains = [t.user_attrs["train_seconds"] for t in complete if "train_seconds" in t.user_attrs]
    lines += ["", "### Progress", "",
              f"- trials finished: {len(finished)}" + (f" of {planned} planned" if planned else "")
              + f" ({len(complete)} complete, {len(full)} at full depth, "
                f"{len(finished) - len(complete)} failed or pruned)"]
    if walls:
        lines.append(f"- time per trial: {mean(walls):.2f} s" + (f" (training {mean(trains):.2f} s)" if trains else ""))
    lines.append(f"- note updated {datetime.datetime.now().isoformat(sep=' ', timespec='seconds')}")
    lines.append(f"- compute spent: {total_cost(study, trials, attrs):.3g} multiply-adds (training, evaluation, warm-up, re-scoring)")
    lines += rescored_lines(study, trials, attrs=attrs)
    lines += ["", "### Settings", "", *_settings_lines(info), "", f"> {WEIGHT_SHARING_NOTE}"]
    if best is not None and drawing_url:
        lines += ["", f"### Best architecture (trial {best.number})", "",
                  f"![best architecture, trial {best.number}]({drawing_url})"]
    return "\n".join(lines) + "\n"


# -- writing to the storage ----------------------------------------------------------------------
@dataclass
class _NoteTarget:
    """What ``optuna_dashboard.save_note`` reads from a Trial. A finished trial cannot be wrapped in an
    ``optuna.Trial`` (its constructor calls the sampler's ``before_trial``, which writes to the trial)."""

    storage: BaseStorage
    study: optuna.Study
    _trial_id: int


_NOTE_KEY = re.compile(r"dashboard:(?:(\d+):)?note_(ver|str:\d+)$")


class NoteCache:
    """What optuna-dashboard's ``save_note`` would read of the notes (their versions and chunk counts),
    read once from the study's system attrs and then kept as notes are written. ``save_note`` reads all
    of a study's system attrs twice per note, and a search adds a few per trial: that made every trial
    slower than the one before. Notes edited in the dashboard while the search runs are overwritten
    (as before), at the version this cache expects."""

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.versions: dict[int | None, int] = {}
        self.chunks: dict[int | None, int] = {}
        for key, value in attrs.items():
            found = _NOTE_KEY.match(key)
            if found:
                owner = None if found[1] is None else int(found[1])
                if found[2] == "ver":
                    self.versions[owner] = int(value)
                else:
                    self.chunks[owner] = self.chunks.get(owner, 0) + 1
        body_keys = sorted((k for k in attrs if k.startswith(note_str_key_prefix(None))),
                           key=lambda k: int(k.rsplit(":", 1)[1]))
        self.study_note = "".join(attrs[k] for k in body_keys)

    def save(self, study: optuna.Study, trial_id: int | None, body: str) -> None:
        """``optuna_dashboard.save_note`` for the study (``trial_id=None``) or a trial, without reading."""
        storage, version = study._storage, self.versions.get(trial_id, 0) + 1
        chunks = split_body(body, trial_id)
        storage.set_study_system_attr(study._study_id, note_ver_key(trial_id), version)
        for key, text in chunks.items():
            storage.set_study_system_attr(study._study_id, key, text)
        for i in range(len(chunks), self.chunks.get(trial_id, 0)):  # blank a longer note's tail, as save_note does
            storage.set_study_system_attr(study._study_id, f"{note_str_key_prefix(trial_id)}{i}", "")
        self.versions[trial_id] = version
        self.chunks[trial_id] = max(len(chunks), self.chunks.get(trial_id, 0))
        if trial_id is None:
            self.study_note = body


def save_trial_note(study: optuna.Study, trial: FrozenTrial, body: str, notes: NoteCache | None = None) -> None:
    """``optuna_dashboard.save_note`` for a finished trial (through ``notes``: without reading first)."""
    if notes is not None:
        notes.save(study, trial._trial_id, body)
    else:
        optuna_dashboard.save_note(_NoteTarget(study._storage, study, trial._trial_id), body)  # type: ignore[arg-type]


def get_trial_note(study: optuna.Study, trial: FrozenTrial) -> str:
    """``optuna_dashboard.get_note`` for a finished trial ("" when it has none)."""
    return optuna_dashboard.get_note(_NoteTarget(study._storage, study, trial._trial_id))  # type: ignore[arg-type]


def trial_artifact_url(study: optuna.Study, trial: FrozenTrial, artifact_id: str) -> str:
    """Where the dashboard serves a trial artifact (the path its own note editor inserts)."""
    return f"/artifacts/{study._study_id}/{trial._trial_id}/{artifact_id}"


class Drawings:
    """Architecture drawings as trial artifacts: one rendering per distinct architecture, made on a
    background thread so that the search never waits for Graphviz.

    ``optuna.artifacts.upload_artifact`` writes a trial system attr, which Optuna refuses once the trial
    is finished (as it is in a callback). optuna-dashboard also lists a trial's artifacts from study
    system attrs ``dashboard:artifacts:<trial_id>:<artifact_id>`` (what its own uploads used to write),
    so each trial's meta goes there, naming the artifact of the first trial with its architecture. The
    file is written before the meta: the dashboard never lists a missing one. A trial drawn before keeps
    its drawing: re-runs add nothing.
    """

    def __init__(self, study: optuna.Study, store: FileSystemArtifactStore, attrs: dict[str, Any]) -> None:
        self.store = store
        self.by_trial: dict[int, str] = {}
        self.by_arch: dict[str, str] = {}
        trials = {t._trial_id: t for t in study.get_trials(deepcopy=False)}
        for key, value in attrs.items():
            found = re.match(r"dashboard:artifacts:(\d+):", key)
            trial = trials.get(int(found[1])) if found else None
            if trial is None:
                continue
            meta = json.loads(value)
            if meta.get("filename") == drawing_name(trial):
                self.by_trial[trial._trial_id] = meta["artifact_id"]
                if "arch" in trial.user_attrs:
                    self.by_arch.setdefault(trial.user_attrs["arch"], self.by_trial[trial._trial_id])
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="epnas-drawings")
        self._pending: list[Future] = []
        self._warned = False

    def artifact_for(self, study: optuna.Study, trial: FrozenTrial, space: SearchSpace) -> str:
        """The trial's artifact id now; its file and meta follow on the background thread."""
        if trial._trial_id in self.by_trial:
            return self.by_trial[trial._trial_id]
        key = trial.user_attrs["arch"]
        artifact_id = self.by_arch.get(key)
        new = artifact_id is None
        if new:
            artifact_id = self.by_arch[key] = str(uuid.uuid4())
        self.by_trial[trial._trial_id] = artifact_id
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._pool.submit(self._draw, study, trial, space, artifact_id, new))
        return artifact_id

    def _draw(self, study: optuna.Study, trial: FrozenTrial, space: SearchSpace, artifact_id: str, new: bool) -> None:
        try:
            if new:
                with tempfile.TemporaryDirectory() as tmp:
                    path = draw_arch(space.parse(trial.user_attrs["arch"]), Path(tmp) / drawing_name(trial), space=space)
                    with path.open("rb") as f:
                        self.store.write(artifact_id, f)
            meta = {"artifact_id": artifact_id, "filename": drawing_name(trial), "mimetype": "image/svg+xml",
                    "encoding": None}
            study._storage.set_study_system_attr(
                study._study_id, _dashboard_artifact_prefix(trial._trial_id) + artifact_id, json.dumps(meta))
        except Exception as err:  # a key of another space, a full disk: said once, the search goes on
            if new:
                self.by_arch.pop(trial.user_attrs["arch"], None)
            if not self._warned:
                _logger.warning("no drawing of trial %d in the dashboard: %s", trial.number, err)
                self._warned = True

    def wait(self) -> None:
        """Until every drawing asked for is written (the end of a search)."""
        for f in self._pending:
            f.result()
        self._pending.clear()


class DashboardRecorder:
    """Optuna callback: a note and a drawing per trial, and an up-to-date study note.

    Args:
        artifact_dir: folder of the drawings (a ``FileSystemArtifactStore``); ``None``: ``<db>.artifacts/``
            beside a SQLite storage, no drawings for other storages; ``False``: no drawings.
        study_note_every: rewrite the study note after this many trials (also after the first trial,
            on a new best full-size architecture, and when the planned trials are done) ...
        study_note_seconds: ... but not sooner than this after the last one (the note reads the whole
            study; :meth:`write_study_note` at the end of a search writes the final numbers).
        planned_trials: the trial budget shown in the study note (default: the EPNAS schedule's).

    Notes go where ``optuna_dashboard.save_note`` puts them: study system attrs ``dashboard:...``,
    which the sampler never reads. The study's system attrs are read once, when the recorder starts;
    after that a trial costs its writes only, however long the study. Rewriting replaces the notes this
    recorder wrote (and edits made to them). Drawings are made on a background thread, one per distinct
    architecture (:class:`Drawings`); :meth:`close` waits for them.
    """

    def __init__(self, artifact_dir: str | Path | None | bool = None, study_note_every: int = 10,
                 planned_trials: int | None = None, study_note_seconds: float = 10.0) -> None:
        if study_note_every < 1:
            raise ValueError(f"study_note_every must be >= 1, got {study_note_every!r}")
        self.artifact_dir, self.study_note_every, self.planned_trials = artifact_dir, study_note_every, planned_trials
        self.study_note_seconds = study_note_seconds
        self._info: SearchInfo | None = None
        self._store: FileSystemArtifactStore | None = None
        self._store_ready = False
        self._notes: NoteCache | None = None
        self._drawings: Drawings | None = None
        self._since_study_note: int | None = None  # None: no study note written by this recorder yet
        self._study_note_at = -math.inf
        self._best: float | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if "arch" not in trial.user_attrs:
            return  # not a trial of an architecture search (e.g. it failed before suggesting one)
        try:
            self.record_trial(study, trial)
            if self._study_note_due(study, trial):
                self.write_study_note(study)
        except Exception:  # a note is not worth a search: an exception in a callback ends study.optimize
            _logger.warning("could not record trial %d for the dashboard", trial.number, exc_info=True)

    # -- pieces, also used by record_study -------------------------------------------------------
    def info(self, study: optuna.Study) -> SearchInfo:
        if self._info is None or self._info.space is None:  # read again until the search has written it
            self._info = SearchInfo.of(study)
        return self._info

    def store(self, study: optuna.Study) -> FileSystemArtifactStore | None:
        if not self._store_ready:
            self._store_ready = True
            folder = artifact_dir_for(study._storage) if self.artifact_dir in (None, True) else self.artifact_dir
            if folder is not None and folder is not False:
                Path(folder).mkdir(parents=True, exist_ok=True)
                self._store = FileSystemArtifactStore(Path(folder))
        return self._store

    def _read_once(self, study: optuna.Study, study_attrs: dict[str, Any] | None) -> None:
        if self._notes is not None:
            return
        attrs = study._storage.get_study_system_attrs(study._study_id) if study_attrs is None else study_attrs
        self._notes = NoteCache(attrs)
        store = self.store(study)
        if store is not None:
            if shutil.which("dot") is None:  # said once; the notes go on without drawings
                _logger.warning("no architecture drawings in the dashboard: rendering them needs Graphviz's 'dot' "
                                "program, which is not on PATH (e.g. `apt-get install graphviz`)")
            else:
                self._drawings = Drawings(study, store, attrs)

    def record_trial(self, study: optuna.Study, trial: FrozenTrial, study_attrs: dict[str, Any] | None = None) -> None:
        info = self.info(study)
        self._read_once(study, study_attrs)
        url = None
        if self._drawings is not None and info.space is not None:
            url = trial_artifact_url(study, trial, self._drawings.artifact_for(study, trial, info.space))
        save_trial_note(study, trial, trial_note(trial, info, url), self._notes)

    def write_study_note(self, study: optuna.Study, final: bool = False) -> str:
        """Rewrite the study note now; returns the note. ``final`` (the end of a search; call it after
        ``study.optimize``): also waits for the drawings and re-reads what others wrote meanwhile (a
        ranking section)."""
        if final:
            self.close()
        attrs = study._storage.get_study_system_attrs(study._study_id)  # one read per study note
        self._read_once(study, attrs)
        if final:  # what others wrote since the recorder started (the drawings are kept)
            self._notes = NoteCache(attrs)
        assert self._notes is not None
        info = self.info(study)
        trials = study.get_trials(deepcopy=False)
        best = best_full_size(study, info, trials)
        drawing = None
        if best is not None and self._drawings is not None:
            drawing = self._drawings.by_trial.get(best._trial_id)
        url = trial_artifact_url(study, best, drawing) if best is not None and drawing else None
        body = study_note(study, info, trials, url, self.planned_trials, attrs)
        # Keep a ranking report that `epnas ranking` appended after its marker (a resumed search rewrites the rest).
        old = self._notes.study_note
        if RANKING_MARKER in old:
            body = body.rstrip() + "\n\n" + old[old.index(RANKING_MARKER):]
        self._notes.save(study, None, body)
        self._since_study_note = 0
        self._study_note_at = time.monotonic()
        self._best = accuracy_of(best) if best is not None else None
        return body

    def close(self) -> None:
        """Wait for the drawings still being made."""
        if self._drawings is not None:
            self._drawings.wait()

    def _study_note_due(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if self._since_study_note is None:
            return True
        self._since_study_note += 1
        if time.monotonic() - self._study_note_at < self.study_note_seconds:
            return False
        planned = self.planned_trials or self.info(study).planned()
        done = planned is not None and trial.number + 1 >= planned  # cheap test; the note counts exactly
        return self._improves(study, trial) or done or self._since_study_note >= self.study_note_every

    def _improves(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether the trial is a new best full-size architecture (worth a study note at once)."""
        space = self.info(study).space
        if trial.state != TrialState.COMPLETE or space is None or trial.user_attrs.get("level") != space.max_level:
            return False
        if self._best is None:
            return True
        value = accuracy_of(trial)
        return value > self._best if study.directions[0] == StudyDirection.MAXIMIZE else value < self._best


def record_study(study: optuna.Study, artifact_dir: str | Path | None | bool = None) -> DashboardRecorder:
    """(Re)write every note and drawing of a study, e.g. one searched before the recorder existed.

    Safe to run again: each trial keeps one drawing and one note (replaced).
    """
    recorder = DashboardRecorder(artifact_dir=artifact_dir)
    study_attrs = study._storage.get_study_system_attrs(study._study_id)  # read once, not per trial
    for trial in study.get_trials(deepcopy=False):
        if trial.state.is_finished() and "arch" in trial.user_attrs:
            recorder.record_trial(study, trial, study_attrs)
    recorder.write_study_note(study, final=True)
    return recorder


# -- `epnas dashboard` ---------------------------------------------------------------------------
class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # the page fires many API calls at once; a stuck one must not block exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- one line per request is noise
        pass


def make_dashboard_server(storage: str | BaseStorage, host: str = "127.0.0.1", port: int = 8080,
                          artifact_dir: str | Path | None = None) -> WSGIServer:
    """optuna-dashboard's app (``optuna_dashboard.wsgi``) on a threaded server, drawings wired in.

    ``port=0`` takes a free port (``server.server_port``). Call ``serve_forever()`` on the result.
    """
    folder = Path(artifact_dir) if artifact_dir is not None else artifact_dir_for(storage)
    store = None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        store = FileSystemArtifactStore(folder)
    app = optuna_dashboard.wsgi(storage, artifact_store=store)
    return make_server(host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)


def dashboard_url(server: WSGIServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/dashboard"


def add_dashboard_parser(commands: Any) -> argparse.ArgumentParser:
    """``epnas dashboard``: the subcommand's parser, added to ``commands`` (an argparse subparsers)."""
    d = commands.add_parser(
        "dashboard", help="look at searches in optuna-dashboard (notes and architecture drawings)",
        description="Serve optuna-dashboard on a study storage, with the architecture drawings that "
                    "`epnas search` attaches to trials (in <db>.artifacts/ beside a SQLite storage).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d.add_argument("--storage", default="sqlite:///epnas.db", help="Optuna storage URL")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    d.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free port)")
    d.add_argument("--artifact-dir", default=None,
                   help="folder of the drawings (default: <db>.artifacts beside a SQLite storage)")
    d.add_argument("--record", action="store_true",
                   help="first write notes and drawings for every study (searches run before they were recorded)")
    return d


def dashboard_command(args: argparse.Namespace) -> int:
    """Serve the dashboard until Ctrl-C."""
    # the dashboard would create an empty database where there is none
    storage = open_storage(args.storage, must_exist=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = storage.get_all_studies()
    if args.record:
        for s in studies:
            study = optuna.load_study(study_name=s.study_name, storage=storage)
            if SearchInfo.of(study).space is None:
                continue  # not an optuna_epnas search: leave its notes alone
            record_study(study, args.artifact_dir)
            print(f"recorded notes and drawings of study {s.study_name!r}", flush=True)
    try:
        server = make_dashboard_server(storage, args.host, args.port, args.artifact_dir)
    except OSError as err:  # e.g. the port is taken: say so, as the other commands' errors
        raise RuntimeError(f"cannot serve on {args.host}:{args.port}: {err}") from None
    url = dashboard_url(server)
    print(f"optuna-dashboard on {url}  (Ctrl-C to stop)", flush=True)
    for s in studies:
        print(f"  study {s.study_name!r}: {url}/studies/{s._study_id}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m optuna_epnas.analysis.dashboard`` (the same as ``epnas dashboard``)."""
    parser = argparse.ArgumentParser(prog="python -m optuna_epnas.analysis.dashboard")
    add_dashboard_parser(parser.add_subparsers(dest="command", required=True))
    return dashboard_command(parser.parse_args(["dashboard", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
