"""Where a study's supernet is kept, and the rules that keep weights and trial results together.

- **Where**: beside a SQLite or journal file by default; anywhere with ``checkpoint=`` /
  ``--checkpoint-dir`` (required for server storages such as PostgreSQL). The path a search used
  is recorded in the study, so a resume finds it whatever the working directory.
- **Whose**: the study records a token its checkpoint carries, and every trial whose training the
  weights hold is marked; on resume the checkpoint and the study must agree both ways, or the
  search stops with an error that says why (it never goes on from fresh or foreign weights).
- **Atomic trials**: a trial's value is written into the checkpoint with its training. A process
  killed after the checkpoint write but before Optuna stored the value gets that trial completed
  from the checkpoint on resume (not trained twice).
- **Only what changed**: the file is a log (:class:`CheckpointFile`): a full state, then per write the
  tensors that differ from the last one (a trial trains only its path), rewritten whole when the
  changes outgrow it. Read it with :func:`read`.
- **Behind by a few trials**: checkpoints are written on an interval, so the study may hold trials
  the weights lack. Each records its place in the training order, its architecture and its epochs:
  :func:`behind` lists them and the objective replays them (same data order) before any new trial.
- **One holder**: one process trains a study's supernet; a second one is refused while the first
  is alive (two processes would train two diverging copies and overwrite each other's file).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import struct
import uuid
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import optuna
import torch
from optuna.trial import TrialState

from optuna_epnas.storage._storage import backend, set_study_attr, storage_of, study_attrs
from optuna_epnas.storage.owner import is_gone, on_this_host, process_mark
from optuna_epnas.storage.keys import HOLDER_ATTR, OBJECTIVE_ATTR, SUPERNET_ATTR, TRAINED_ATTR
from optuna_epnas.storage.storages import storage_file

FORMAT = 4
_READABLE = (2, 3, 4)  # format 2: no token, no trial values; 4: a log of changes (CheckpointFile)


def safe_name(name: str) -> str:
    """A file-name part for ``name``; names that had to be changed get a hash, so that ``exp 1`` and
    ``exp_1`` do not share a file."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return safe if safe == name else f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def default_path(storage: Any, study_name: str) -> Path | None:
    """``<file>.<study>.supernet.pt`` beside a SQLite or journal file; None for other storages."""
    file = storage_file(storage)
    return None if file is None else file.with_name(f"{file.name}.{safe_name(study_name)}.supernet.pt")


def is_in_memory(storage: Any) -> bool:
    return isinstance(backend(storage), optuna.storages.InMemoryStorage)


def resolve_path(study: optuna.Study | None, given: str | os.PathLike | bool | None) -> Path | None:
    """The checkpoint of ``study``: ``given`` (a file, or an existing directory to put it in), else the
    path recorded in the study, else beside its storage file. None: an in-memory study (weights
    live in the process), ``given=False`` (never checkpointed), or no study and no file given.
    Server storages without a recorded path need ``given``; ``True`` is as ``None``."""
    if given is False:
        return None
    given = None if given is True else given
    if study is None:
        return None if given is None else Path(given)
    if given is not None:
        path = Path(given)
        return (path / f"{safe_name(study.study_name)}.supernet.pt") if path.is_dir() else path
    recorded = study_attrs(study).get(SUPERNET_ATTR, {}).get("path")
    if recorded:
        return Path(recorded)
    path = default_path(storage_of(study), study.study_name)
    if path is None and not is_in_memory(storage_of(study)):
        raise ValueError(
            f"study {study.study_name!r} is in a storage without a file to keep its supernet beside: give a "
            "checkpoint location (epnas search --checkpoint-dir DIR; SupernetObjective(checkpoint=...))")
    return path


def hold(study: optuna.Study, path: Path | None, takeover: bool = False) -> str:
    """Make this process the one that trains the study's supernet and record where it is kept;
    returns the study's token. Refused while another live process holds it."""
    attrs = study_attrs(study)
    holder = attrs.get(HOLDER_ATTR)
    me = process_mark()
    if holder and holder != me and not takeover and not is_gone(holder):
        where = "this machine" if on_this_host(holder) else "another machine"
        raise RuntimeError(
            f"the supernet of study {study.study_name!r} is being trained by another process ({holder}, on {where}): "
            "a second process would train a second copy of it. Run one search per study (for several devices "
            "or CPU ranks on one search: torchrun --nproc_per_node=N epnas search ...), or use another "
            "--study-name" + ("" if on_this_host(holder) else "; if that process is gone, re-run with --takeover"))
    record = dict(attrs.get(SUPERNET_ATTR) or {})
    record.setdefault("token", uuid.uuid4().hex)
    if path is not None:
        record["path"] = str(path.resolve())
    if record != attrs.get(SUPERNET_ATTR):
        set_study_attr(study, SUPERNET_ATTR, record)
    set_study_attr(study, HOLDER_ATTR, me)
    return record["token"]


def release(study: optuna.Study) -> None:
    """Give up holding the supernet (a search that ends; a killed one is recognised as gone)."""
    if study_attrs(study).get(HOLDER_ATTR) == process_mark():
        set_study_attr(study, HOLDER_ATTR, None)


_MAGIC = b"optuna_epnas supernet checkpoint log\n"
_RECORD = struct.Struct("<QI")  # each record: its length and CRC-32, then a torch.save'd dict (see CheckpointFile)
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}  # compare bits: -0.0 is not 0.0, NaN is NaN


class CheckpointFile:
    """One study's checkpoint, kept as a log in one file: a full state, then records that hold only the
    tensors changed since the record before, since a trial trains only its own path's weights (the
    micro supernet's full state is ~200 MiB; a trial changes a fraction). Reading applies the records
    in order. The file is rewritten in full, atomically, when the records after the full state
    outgrow it, on the first write of a process, and when the file is not as this object left it.

    A record is ``{"meta": ..., "layout": ..., "tensors": ...}``: the state's top-level entries that hold
    no tensor (trials, values: small), whole; for each entry that holds tensors (weights, optimizer),
    its layout -- the entry with None where its tensors are, and their places -- only when it differs
    from the record before (a full record: always), and its changed tensors by index into the layout.

    A kill mid-append leaves a cut-off last record, which reading ignores: the state before it, the
    previous checkpoint, is intact (as with a kill during a full write, which goes to a temporary
    file). One file, so copying it copies the whole checkpoint.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # what the file holds, per top-level entry with tensors: its layout, and a copy of each tensor by place
        self._layouts: dict[str, tuple[Any, list[tuple]]] = {}
        self._held: dict[str, dict[tuple, torch.Tensor]] | None = None
        self._full_bytes = self._added_bytes = 0
        self._stat: tuple[int, int, int] | None = None  # (inode, size, mtime) as this object left the file

    def write(self, state: dict[str, Any]) -> int:
        """Write ``state`` (only what changed, when the file allows); returns the bytes written."""
        meta = {k: v for k, v in state.items() if next(_tensors(v), None) is None}
        parts = {k: dict(_tensors(v)) for k, v in state.items() if k not in meta}
        layouts = {k: (_emptied(state[k], list(tensors)), list(tensors)) for k, tensors in parts.items()}
        whole = (self._held is None or self._stat is None or self._stat != self._file_stat()
                 or self._added_bytes >= self._full_bytes or set(parts) != set(self._held))
        changed = {k: set(tensors) if whole else self._changed(tensors, self._held[k]) for k, tensors in parts.items()}
        record = {"meta": meta,
                  "layout": {k: layout for k, layout in layouts.items() if whole or layout != self._layouts[k]},
                  "tensors": {k: {i: parts[k][place] for i, place in enumerate(layouts[k][1]) if place in changed[k]}
                              for k in parts}}
        written = self._write_full(record) if whole else self._append(record)
        # a copy of each tensor that changed: training updates the state's in place
        self._held = {k: {place: t.detach().clone() if whole or place in changed[k] else self._held[k][place]
                          for place, t in tensors.items()} for k, tensors in parts.items()}
        self._layouts = layouts
        return written

    def read(self, device: torch.device) -> dict[str, Any]:
        """The state the file holds (a checkpoint from before this format: as torch saved it)."""
        self._held = self._stat = None
        try:
            raw = self.path.read_bytes()
        except OSError as err:  # permissions, a folder: the system's words say what is wrong
            raise RuntimeError(f"the supernet checkpoint {self.path} cannot be read ({err})") from None
        if not raw.startswith(_MAGIC):
            return _checked(self.path, _load(raw, device))
        meta, layouts, held, offset, sizes = None, {}, {}, len(_MAGIC), []
        while offset + _RECORD.size <= len(raw):
            length, crc = _RECORD.unpack_from(raw, offset)
            payload = raw[offset + _RECORD.size: offset + _RECORD.size + length]
            if len(payload) < length or zlib.crc32(payload) != crc:
                break
            record = _load(payload, device)
            if not isinstance(record, dict) or not {"meta", "layout", "tensors"} <= set(record):
                break
            meta = record["meta"]
            layouts.update(record["layout"])
            held = {k: {place: written[i] if i in written else held[k][place]
                        for written in [record["tensors"][k]] for i, place in enumerate(layouts[k][1])}
                    for k in record["tensors"]}
            offset += _RECORD.size + length
            sizes.append(_RECORD.size + length)
        state = None if meta is None else {**meta, **{k: _filled(*layouts[k], held[k]) for k in held}}
        state = _checked(self.path, state)
        if offset < len(raw):
            warnings.warn(f"the last write to the supernet checkpoint {self.path} was cut off (a kill or a full disk "
                          "during a checkpoint): resuming from the checkpoint before it")
        else:  # the next write may append; copies, as the optimizer may take the state's tensors as its own
            self._held = {k: {place: t.clone() for place, t in tensors.items()} for k, tensors in held.items()}
            self._layouts = {k: (_emptied(state[k], places), places) for k, (_, places) in layouts.items()}
            self._full_bytes, self._added_bytes = len(_MAGIC) + sizes[0], sum(sizes[1:])
            self._stat = self._file_stat()
        return state

    @staticmethod
    def _changed(tensors: dict[tuple, torch.Tensor], held: dict[tuple, torch.Tensor]) -> set[tuple]:
        """The places whose tensors differ, bit for bit, from what the file holds (or are new)."""
        same = [k for k, t in tensors.items() if (h := held.get(k)) is not None and h.shape == t.shape
                and h.dtype == t.dtype and h.device == t.device and t.element_size() in _BITS]
        flags: dict[torch.device, list[torch.Tensor]] = {}
        for k in same:  # one reduction per tensor, one synchronisation per device
            t, h = tensors[k], held[k]
            bits = _BITS[t.element_size()]
            flags.setdefault(t.device, []).append(torch.ne(t.detach().view(bits), h.view(bits)).any())
        differs = {device: iter(torch.stack(f).tolist()) for device, f in flags.items()}
        return set(tensors) - {k for k in same if not next(differs[tensors[k].device])}

    def _write_full(self, record: dict[str, Any]) -> int:
        data = _MAGIC + _framed(record)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
        except (OSError, RuntimeError) as err:
            self._held = self._stat = None
            with contextlib.suppress(OSError):  # a read-only folder refuses this too: the error above is the one to say
                tmp.unlink(missing_ok=True)
            raise self._error(err) from err
        self._full_bytes, self._added_bytes = len(data), 0
        self._stat = self._file_stat()
        return self._full_bytes

    def _append(self, record: dict[str, Any]) -> int:
        data = _framed(record)
        size = self._stat[1]  # the file as this object left it (else write() writes it whole)
        try:
            _append_bytes(self.path, size, data)
        except OSError as err:
            self._held = self._stat = None  # whatever part was written is cut off at reading; the next write is whole
            with contextlib.suppress(OSError):
                os.truncate(self.path, size)
            raise self._error(err) from err
        self._added_bytes += len(data)
        self._stat = self._file_stat()
        return len(data)

    def _file_stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _error(self, err: BaseException) -> RuntimeError:
        reason = str(err).rsplit("strerror: ", 1)[-1]  # torch's "[enforce fail at ...] ... strerror: <the OS's>"
        return RuntimeError(
            f"could not write the supernet checkpoint {self.path} ({reason}); free space or fix its permissions (or "
            "give a writable --checkpoint-dir) and run the same command again: the search resumes from the last "
            "checkpoint written")


def write(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` in full, atomically: a kill mid-write leaves the previous checkpoint intact."""
    CheckpointFile(path).write(state)


def read(path: Path, device: torch.device) -> dict[str, Any]:
    return CheckpointFile(path).read(device)


def _append_bytes(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _framed(record: dict[str, Any]) -> bytes:
    """One record as the log holds it: its length and CRC-32 (so that a cut-off one is known), then it."""
    buffer = io.BytesIO()
    torch.save(record, buffer)
    payload = buffer.getvalue()
    return _RECORD.pack(len(payload), zlib.crc32(payload)) + payload


def _load(raw: bytes, device: torch.device) -> Any:
    try:
        return torch.load(io.BytesIO(raw), map_location=device, weights_only=True)
    except Exception:  # truncated, not a torch file: torch's words (use weights_only=False) would mislead
        return None


def _checked(path: Path, state: Any) -> dict[str, Any]:
    if not isinstance(state, dict) or "format" not in state:
        raise RuntimeError(
            f"{path} is not a supernet checkpoint (it is damaged, or another file is in its place): restore the "
            "study's checkpoint from a backup, or search again under a new study name (the study's trials were "
            "trained on the weights it held)")
    if state["format"] not in _READABLE:
        raise RuntimeError(f"{path} is not a supernet checkpoint of this version of optuna_epnas "
                           f"(format {state['format']!r}, expected {FORMAT})")
    return state


def _tensors(obj: Any, place: tuple = ()) -> Iterator[tuple[tuple, torch.Tensor]]:
    """Every tensor in a state of nested dicts and lists, with its place (the keys leading to it)."""
    if isinstance(obj, torch.Tensor):
        yield place, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, (*place, k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, (*place, i))


def _emptied(state: Any, places: Sequence[tuple]) -> Any:
    """A copy of ``state`` with None at ``places`` (the containers copied, tuples as lists so that
    :func:`_filled` can put the tensors back; the other tensors shared)."""
    if () in places:
        return None
    out = copy.copy(state)  # keeps a state dict's metadata
    by_first: dict[Any, list[tuple]] = {}
    for place in places:
        by_first.setdefault(place[0], []).append(place[1:])
    if isinstance(out, tuple):
        out = list(out)
    for k, rest in by_first.items():
        out[k] = None if () in rest else _emptied(out[k], rest)
    return out


def _filled(layout: Any, places: Sequence[tuple], tensors: dict[tuple, torch.Tensor]) -> Any:
    """``layout`` (a state entry with None at ``places``) with the tensors put back, in place."""
    for place in places:
        if not place:
            return tensors[place]
        owner = layout
        for k in place[:-1]:
            owner = owner[k]
        owner[place[-1]] = tensors[place]
    return layout


_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # a pruned trial trained too (part of its epochs)


def trained_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE and PRUNED trials whose training a supernet checkpoint must hold."""
    return [t for t in study.get_trials(deepcopy=False, states=_FINISHED)
            if TRAINED_ATTR in t.system_attrs or "train_seconds" in t.user_attrs]


def require_none_trained(study: optuna.Study, path: Path) -> None:
    """No checkpoint: refused if the study has trials whose training it should hold."""
    trained = trained_trials(study)
    if trained:
        raise RuntimeError(
            f"study {study.study_name!r} has {len(trained)} trial(s) trained on its supernet, but the checkpoint "
            f"{path} is missing: restore it (or point --checkpoint-dir at it), or search again under a new study "
            "name. Going on from fresh weights would give different values for the same architectures")


def reconcile(study: optuna.Study, path: Path, state: dict[str, Any], token: str) -> list[int]:
    """Check that the checkpoint belongs to ``study`` and complete, from it, the trials whose training
    and value it holds but the study does not record (killed in between). Returns the trained
    trial numbers, in training order (a copy replaces a trial that was already marked failed)."""
    if state["format"] < 3:
        complete = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
        extra = [n for n in state["trained"] if n not in complete]
        if extra:
            warnings.warn(f"the supernet checkpoint contains training of trial(s) {extra} that the study "
                          "does not record as complete (killed between checkpoint and result)")
    if state.get("token") not in (None, token):
        raise RuntimeError(f"the supernet checkpoint {path} belongs to another study (token {state['token']}, "
                           f"study {study.study_name!r} has {token}); point --checkpoint-dir at this study's")
    trained = list(state["trained"])
    values = {int(n): v for n, v in (state.get("values") or {}).items()}
    pruned = set(state.get("pruned", ()))
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    replay = {t.number for t in behind(study, len(trained))}
    missing = [t.number for t in trained_trials(study) if t.number not in trained and t.number not in replay]
    if missing and state["format"] >= 3:
        raise RuntimeError(
            f"the supernet checkpoint {path} lacks the training of trial(s) {missing[:10]} that study "
            f"{study.study_name!r} records as complete: it is older than the study (another process overwrote "
            "it?) or another study's. Restore the right one, or search again under a new study name")
    for i, number in enumerate(trained):
        t = by_number.get(number)
        if t is not None and t.state in _FINISHED:
            continue
        if number not in values or t is None:
            if state["format"] >= 3:
                raise RuntimeError(f"the supernet checkpoint {path} holds training of trial {number}, which study "
                                   f"{study.study_name!r} does not have: it is another study's checkpoint")
            continue  # format 2: no values to complete from (the old warning's case)
        if t.state == TrialState.RUNNING:
            tell_trained(study, number, values[number], number in pruned)
        else:  # already failed as a dead process's trial: a complete (or pruned) copy takes its place
            copy = optuna.trial.create_trial(
                params=t.params, distributions=t.distributions, value=values[number], user_attrs=t.user_attrs,
                system_attrs={k: v for k, v in t.system_attrs.items() if not k.startswith(OBJECTIVE_ATTR)},
                intermediate_values=t.intermediate_values,
                state=TrialState.PRUNED if number in pruned else TrialState.COMPLETE)
            study.add_trial(copy)
            trained[i] = max(tr.number for tr in study.get_trials(deepcopy=False))
    return trained


def tell_trained(study: optuna.Study, number: int, value: Any, pruned: bool) -> None:
    """Record a RUNNING trial whose training the supernet holds as the objective finished it: its value
    (a float or, with several objectives, a sequence), or PRUNED at its last report."""
    if pruned:
        study.tell(number, state=TrialState.PRUNED)
    else:
        study.tell(number, value)


def behind(study: optuna.Study, held: int) -> list[optuna.trial.FrozenTrial]:
    """The finished trials whose training came after the ``held`` that a checkpoint holds, in training
    order: at training positions ``held``, ``held + 1``, ... without a gap (a gap: none are). A failed
    trial's training is never kept (the objective undoes it), so a retry may hold its position."""
    later = {}
    for t in study.get_trials(deepcopy=False, states=_FINISHED):
        position = t.system_attrs.get(TRAINED_ATTR)
        if position is not None and position >= held and "arch" in t.user_attrs:
            later[int(position)] = t
    out = []
    while held + len(out) in later:
        out.append(later[held + len(out)])
    return out


def spec_mismatch(stored: dict[str, Any] | None, spec: dict[str, Any], optional: Any = ()) -> str | None:
    """None if ``stored`` (a study's or a checkpoint's record) matches the objective's ``spec``, else
    what differs. Keys in ``optional`` that ``stored`` lacks (settings recorded only since they were
    added) are not held against it."""
    spec = json.loads(json.dumps(spec))  # as a storage gives it back (tuples -> lists)
    if stored is not None:
        added = set(optional) - set(stored)
        if {k: v for k, v in spec.items() if k not in added} == json.loads(json.dumps(stored)):
            return None
    stored = stored or {}
    names = [k for k in stored if stored[k] != spec.get(k)]
    return "; ".join(f"{k}: study has {stored.get(k)!r}, now {spec.get(k)!r}" for k in names) or "?"
