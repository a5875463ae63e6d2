"""A search as optuna-dashboard shows it: notes and architecture drawings, written to the study.

:class:`DashboardRecorder` is an Optuna callback. After each finished trial that measured an
architecture it writes the trial's note (Markdown, :mod:`optuna_epnas.analysis.notes`: architecture,
where the schedule was, surrogate prediction, measured accuracy, size, time) and attaches the drawing
of the architecture as a trial artifact (SVG, in ``<db>.artifacts/`` beside a SQLite study); every few
trials it rewrites the study note (best full-size architecture, progress, settings). :func:`record_study`
does the same for a study searched before. ``epnas dashboard``
(:mod:`optuna_epnas.analysis.dashboard_server`) serves the storage with that artifact folder.

Nothing here writes what the sampler reads: notes live in the study system attrs optuna-dashboard
uses for them (``dashboard:...``), drawings in the folder plus ``dashboard:artifacts:...`` attrs.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import shutil
import tempfile
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import optuna_dashboard
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from optuna_epnas.storage._storage import set_study_attr, storage_of, study_attrs, study_id, trial_id
from optuna_epnas.analysis.notes import SearchInfo, best_full_size, study_note, trial_note
from optuna_epnas.standalone.draw import draw_arch
from optuna_epnas.spaces import SearchSpace
from optuna_epnas.storage.storages import storage_file
from optuna_epnas.costs.values import accuracy_of, is_full_size

__all__ = ["DashboardRecorder", "record_study", "artifact_dir_for", "get_trial_note", "RANKING_MARKER"]

#: Where `epnas ranking` starts its section of the study note (kept when the note is rewritten).
RANKING_MARKER = "<!-- epnas:ranking -->"

_logger = logging.getLogger(__name__)


def artifact_dir_for(storage: str | BaseStorage) -> Path | None:
    """``<db>.artifacts/`` beside a SQLite storage (one folder for all its studies, as the dashboard
    serves one artifact store per storage); None for other storages."""
    db = storage_file(storage)
    return None if db is None else db.with_name(db.name + ".artifacts")


def drawing_name(trial: FrozenTrial) -> str:
    """The drawing's artifact file name: also how a re-run finds the artifact it made before."""
    return f"arch-trial-{trial.number:04d}.svg"


# -- writing to the storage ----------------------------------------------------------------------
@dataclass
class _NoteTarget:
    """What ``optuna_dashboard.save_note`` reads from a Trial. A finished trial cannot be wrapped in an
    ``optuna.Trial`` (its constructor calls the sampler's ``before_trial``, which writes to the trial)."""

    storage: BaseStorage
    study: optuna.Study
    _trial_id: int


#: optuna-dashboard lists a trial's artifacts from study system attrs ``<prefix><trial_id>:<artifact_id>``
#: too (how its own uploads kept them; read "for backward compatibility"). Optuna's public
#: ``optuna.artifacts.upload_artifact`` writes a trial system attr, which a finished trial refuses.
_DRAWING_META_PREFIX = "dashboard:artifacts:"


class _ProbeStorage:
    """The few storage calls ``optuna_dashboard.save_note``/``get_note`` make, on one study's system attrs
    in a dict (no Optuna storage: creating an in-memory study logs a line)."""

    def __init__(self) -> None:
        self.attrs: dict[str, Any] = {}

    def get_study_id_from_name(self, study_name: str) -> int:
        return 0

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return [StudyDirection.MINIMIZE]

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return dict(self.attrs)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.attrs[key] = value


@dataclass(frozen=True)
class _NoteLayout:
    """Where ``optuna_dashboard.save_note`` keeps a note, learned by watching it write (:func:`_note_layout`):
    a version key and numbered chunks of at most ``chunk`` characters. Keys of a trial's note are
    ``head + str(trial_id) + tail``; the study note's (``trial_id=None``) are fixed."""

    study_ver: str
    study_str: str  # the chunk keys' prefix; chunk i is prefix + str(i)
    trial_ver: tuple[str, str]
    trial_str: tuple[str, str]
    chunk: int

    def ver_key(self, trial_id: int | None) -> str:
        return self.study_ver if trial_id is None else f"{self.trial_ver[0]}{trial_id}{self.trial_ver[1]}"

    def str_prefix(self, trial_id: int | None) -> str:
        return self.study_str if trial_id is None else f"{self.trial_str[0]}{trial_id}{self.trial_str[1]}"

    def write(self, set_attr: Any, trial_id: int | None, version: int, body: str, had_chunks: int) -> int:
        """What ``save_note`` writes for version ``version``, given the note had ``had_chunks`` chunks
        (the tail of a longer note is blanked, as it does); returns the chunk count now kept."""
        prefix = self.str_prefix(trial_id)
        chunks = [body[i:i + self.chunk] for i in range(0, len(body), self.chunk)]
        set_attr(self.ver_key(trial_id), version)
        for i, text in enumerate(chunks):
            set_attr(f"{prefix}{i}", text)
        for i in range(len(chunks), had_chunks):
            set_attr(f"{prefix}{i}", "")
        return max(len(chunks), had_chunks)

    def parse(self, attrs: dict[str, Any]) -> tuple[dict[int | None, int], dict[int | None, int]]:
        """The notes' versions and chunk counts in a study's system attrs, by trial id (None: the study's)."""
        ver = re.compile(re.escape(self.trial_ver[0]) + r"(\d+)" + re.escape(self.trial_ver[1]) + "$")
        chunk = re.compile(re.escape(self.trial_str[0]) + r"(\d+)" + re.escape(self.trial_str[1]) + r"\d+$")
        versions: dict[int | None, int] = {}
        chunks: dict[int | None, int] = {}
        for key, value in attrs.items():
            if key == self.study_ver:
                versions[None] = int(value)
            elif key.startswith(self.study_str) and key[len(self.study_str):].isdigit():
                chunks[None] = chunks.get(None, 0) + 1
            elif found := ver.match(key):
                versions[int(found[1])] = int(value)
            elif found := chunk.match(key):
                chunks[int(found[1])] = chunks.get(int(found[1]), 0) + 1
        return versions, chunks


_PROBE_TRIAL = 908172635  # a trial id that appears nowhere else in the probe's keys


def _learn(trial_id: int | None) -> tuple[str, str, int]:
    """The version key, the chunk prefix and the chunk size of a note, from what ``save_note`` writes."""
    storage = _ProbeStorage()
    study = optuna.Study("probe", storage, sampler=optuna.samplers.RandomSampler())  # type: ignore[arg-type]
    body = "".join(f"<{i}>" for i in range(3000))  # long enough for several chunks; no chunk looks like another
    target = study if trial_id is None else _NoteTarget(storage, study, trial_id)  # type: ignore[arg-type]
    optuna_dashboard.save_note(target, body)  # type: ignore[arg-type]
    (ver,) = [k for k, v in storage.attrs.items() if not isinstance(v, str)]
    texts = {k: v for k, v in storage.attrs.items() if isinstance(v, str)}
    prefix = min(texts).rstrip("0123456789")
    _require(storage.attrs[ver] == 1 and all(k.startswith(prefix) for k in texts), "one version key, numbered chunks")
    ordered = [texts[f"{prefix}{i}"] for i in range(len(texts))]
    _require(len(ordered) > 1 and "".join(ordered) == body, "the chunks in order are the note")
    return ver, prefix, len(ordered[0])


def _require(holds: bool, what: str) -> None:
    """A check of the learned layout that ``python -O`` keeps (an ``assert`` would be skipped)."""
    if not holds:
        raise ValueError(f"optuna-dashboard's notes are not as expected: {what}")


def _split(key: str) -> tuple[str, str]:
    head, tail = key.split(str(_PROBE_TRIAL))
    return head, tail


@functools.cache
def _note_layout() -> _NoteLayout | None:
    """optuna-dashboard's note layout, learned once per process from its public ``save_note`` and checked:
    writing two notes (a longer, then a shorter one) through the layout must leave the storage exactly as
    ``save_note`` leaves it, and ``get_note`` must read them back. None (and a debug message) where that
    fails: the recorder then calls ``save_note`` for every note, reading the study's attrs each time."""
    try:
        study_ver, study_str, chunk = _learn(None)
        trial_ver, trial_str, trial_chunk = _learn(_PROBE_TRIAL)
        layout = _NoteLayout(study_ver, study_str, _split(trial_ver), _split(trial_str), chunk)
        _require(trial_chunk == chunk and str(_PROBE_TRIAL) not in study_ver + study_str,
                 "a trial's note is chunked as the study's, under keys of its id")
        bodies = ["x" * (3 * chunk + 5), "short note"]
        for owner in (None, 17):
            public, ours = _ProbeStorage(), _ProbeStorage()
            study = optuna.Study("probe", public, sampler=optuna.samplers.RandomSampler())  # type: ignore[arg-type]
            target = study if owner is None else _NoteTarget(public, study, owner)  # type: ignore[arg-type]
            had = 0
            for version, body in enumerate(bodies, start=1):
                optuna_dashboard.save_note(target, body)  # type: ignore[arg-type]
                had = layout.write(lambda key, value: ours.set_study_system_attr(0, key, value), owner, version,
                                   body, had)
                _require(ours.attrs == public.attrs and optuna_dashboard.get_note(target) == body,  # type: ignore[arg-type]
                         "writing through the layout leaves what save_note leaves, and get_note reads it")
            _require(layout.parse(ours.attrs) == ({owner: 2}, {owner: 4}), "the layout reads back its versions")
        return layout
    except Exception as err:  # another optuna-dashboard: its own save_note for every note
        _logger.debug("dashboard notes through optuna_dashboard.save_note, uncached (its note layout was not "
                      "recognised: %r)", err)
        return None


class NoteCache:
    """What optuna-dashboard's ``save_note`` would read of the notes (their versions and chunk counts),
    read once from the study's system attrs and then kept as notes are written. ``save_note`` reads all
    of a study's system attrs twice per note, and a search adds a few per trial: that made every trial
    slower than the one before (``benchmarks/bench_dashboard_notes.py``: ~50 ms a note at trial 1,000 in
    SQLite, against ~1.4 ms). The keys are those ``save_note`` was seen to write (:func:`_note_layout`);
    where they could not be learned, each note is written by ``save_note`` itself. Notes edited in the
    dashboard while the search runs are overwritten (as before), at the version this cache expects."""

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.layout = _note_layout()
        self.versions: dict[int | None, int] = {}
        self.chunks: dict[int | None, int] = {}
        self.study_note: str | None = None  # None: not known yet (read with get_note when first asked for)
        if self.layout is not None:
            self.versions, self.chunks = self.layout.parse(attrs)
            prefix = self.layout.str_prefix(None)
            self.study_note = "".join(attrs.get(f"{prefix}{i}", "") for i in range(self.chunks.get(None, 0)))

    def study_note_text(self, study: optuna.Study) -> str:
        """The study note as this cache last wrote or read it."""
        if self.study_note is None:
            self.study_note = optuna_dashboard.get_note(study)
        return self.study_note

    def save(self, study: optuna.Study, trial_id: int | None, body: str) -> None:
        """``optuna_dashboard.save_note`` for the study (``trial_id=None``) or a trial, without reading."""
        if self.layout is None:
            target = study if trial_id is None else _NoteTarget(storage_of(study), study, trial_id)
            optuna_dashboard.save_note(target, body)  # type: ignore[arg-type]
        else:
            version = self.versions.get(trial_id, 0) + 1
            self.chunks[trial_id] = self.layout.write(lambda key, value: set_study_attr(study, key, value),
                                                      trial_id, version, body, self.chunks.get(trial_id, 0))
            self.versions[trial_id] = version
        if trial_id is None:
            self.study_note = body


def save_trial_note(study: optuna.Study, trial: FrozenTrial, body: str, notes: NoteCache | None = None) -> None:
    """``optuna_dashboard.save_note`` for a finished trial (through ``notes``: without reading first)."""
    if notes is not None:
        notes.save(study, trial_id(trial), body)
    else:
        optuna_dashboard.save_note(_NoteTarget(storage_of(study), study, trial_id(trial)), body)  # type: ignore[arg-type]


def get_trial_note(study: optuna.Study, trial: FrozenTrial) -> str:
    """``optuna_dashboard.get_note`` for a finished trial ("" when it has none)."""
    return optuna_dashboard.get_note(_NoteTarget(storage_of(study), study, trial_id(trial)))  # type: ignore[arg-type]


def trial_artifact_url(study: optuna.Study, trial: FrozenTrial, artifact_id: str) -> str:
    """Where the dashboard serves a trial artifact (the path its own note editor inserts)."""
    return f"/artifacts/{study_id(study)}/{trial_id(trial)}/{artifact_id}"


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
        trials = {trial_id(t): t for t in study.get_trials(deepcopy=False)}
        for key, value in attrs.items():
            found = re.match(re.escape(_DRAWING_META_PREFIX) + r"(\d+):", key)
            trial = trials.get(int(found[1])) if found else None
            if trial is None:
                continue
            meta = json.loads(value)
            if meta.get("filename") == drawing_name(trial):
                self.by_trial[trial_id(trial)] = meta["artifact_id"]
                if "arch" in trial.user_attrs:
                    self.by_arch.setdefault(trial.user_attrs["arch"], self.by_trial[trial_id(trial)])
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="epnas-drawings")
        self._pending: list[Future] = []
        self._warned = False

    def artifact_for(self, study: optuna.Study, trial: FrozenTrial, space: SearchSpace) -> str:
        """The trial's artifact id now; its file and meta follow on the background thread."""
        if trial_id(trial) in self.by_trial:
            return self.by_trial[trial_id(trial)]
        key = trial.user_attrs["arch"]
        artifact_id = self.by_arch.get(key)
        new = artifact_id is None
        if new:
            artifact_id = self.by_arch[key] = str(uuid.uuid4())
        self.by_trial[trial_id(trial)] = artifact_id
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
            set_study_attr(study, f"{_DRAWING_META_PREFIX}{trial_id(trial)}:{artifact_id}", json.dumps(meta))
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
            folder = artifact_dir_for(storage_of(study)) if self.artifact_dir in (None, True) else self.artifact_dir
            if folder is not None and folder is not False:
                Path(folder).mkdir(parents=True, exist_ok=True)
                self._store = FileSystemArtifactStore(Path(folder))
        return self._store

    def _read_once(self, study: optuna.Study, known: dict[str, Any] | None) -> None:
        if self._notes is not None:
            return
        attrs = study_attrs(study) if known is None else known
        self._notes = NoteCache(attrs)
        store = self.store(study)
        if store is not None:
            if shutil.which("dot") is None:  # said once; the notes go on without drawings
                _logger.warning("no architecture drawings in the dashboard: rendering them needs Graphviz's 'dot' "
                                "program, which is not on PATH (e.g. `apt-get install graphviz`)")
            else:
                self._drawings = Drawings(study, store, attrs)

    def record_trial(self, study: optuna.Study, trial: FrozenTrial, known: dict[str, Any] | None = None) -> None:
        """The trial's note and drawing (``known``: the study's system attrs, when the caller has read them)."""
        info = self.info(study)
        self._read_once(study, known)
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
        attrs = study_attrs(study)  # one read per study note
        self._read_once(study, attrs)
        if final:  # what others wrote since the recorder started (the drawings are kept)
            self._notes = NoteCache(attrs)
        assert self._notes is not None
        info = self.info(study)
        trials = study.get_trials(deepcopy=False)
        best = best_full_size(study, info, trials)
        drawing = None
        if best is not None and self._drawings is not None:
            drawing = self._drawings.by_trial.get(trial_id(best))
        url = trial_artifact_url(study, best, drawing) if best is not None and drawing else None
        body = study_note(study, info, trials, url, self.planned_trials, attrs)
        # Keep a ranking report that `epnas ranking` appended after its marker (a resumed search rewrites the rest).
        old = self._notes.study_note_text(study)
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
        if space is None or not is_full_size(trial, space.max_level):
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
    known = study_attrs(study)  # read once, not per trial
    for trial in study.get_trials(deepcopy=False):
        if trial.state.is_finished() and "arch" in trial.user_attrs:
            recorder.record_trial(study, trial, known)
    recorder.write_study_note(study, final=True)
    return recorder
