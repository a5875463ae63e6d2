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
- **Behind by a few trials**: checkpoints are written on an interval, so the study may hold trials
  the weights lack. Each records its place in the training order, its architecture and its epochs:
  :func:`behind` lists them and the objective replays them (same data order) before any new trial.
- **One holder**: one process trains a study's supernet; a second one is refused while the first
  is alive (two processes would train two diverging copies and overwrite each other's file).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from optuna_epnas._storage import backend, set_study_attr, storage_of, study_attrs
from optuna_epnas.owner import is_gone, on_this_host, process_mark
from optuna_epnas.storages import storage_file

#: Study system attrs: ``{"token": ..., "path": ...}``, and the mark of the process holding the supernet.
SUPERNET_ATTR = "epnas:supernet"
HOLDER_ATTR = "epnas:supernet_holder"
#: Trial system attr: the trial's position in the supernet's training order (set before the checkpoint
#: that holds its training is written).
TRAINED_ATTR = "epnas:trained"
FORMAT = 3
_READABLE = (2, 3)  # format 2: no token, no trial values


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


def write(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a kill mid-write leaves the previous checkpoint intact."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a full disk or a read-only folder as RuntimeError
        with contextlib.suppress(OSError):  # a read-only folder refuses this too: the error above is the one to say
            tmp.unlink(missing_ok=True)
        reason = str(err).rsplit("strerror: ", 1)[-1]  # torch's "[enforce fail at ...] ... strerror: <the OS's>"
        raise RuntimeError(
            f"could not write the supernet checkpoint {path} ({reason}); free space or fix its permissions (or give "
            "a writable --checkpoint-dir) and run the same command again: the search resumes from the last "
            "checkpoint written") from err


def read(path: Path, device: torch.device) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except OSError as err:  # permissions, a folder: the system's words say what is wrong
        raise RuntimeError(f"the supernet checkpoint {path} cannot be read ({err})") from None
    except Exception:  # truncated, not a torch file: torch's words (use weights_only=False) would mislead
        state = None
    if not isinstance(state, dict) or "format" not in state:
        raise RuntimeError(
            f"{path} is not a supernet checkpoint (it is damaged, or another file is in its place): restore the "
            "study's checkpoint from a backup, or search again under a new study name (the study's trials were "
            "trained on the weights it held)")
    if state["format"] not in _READABLE:
        raise RuntimeError(f"{path} is not a supernet checkpoint of this version of optuna_epnas "
                           f"(format {state['format']!r}, expected {FORMAT})")
    return state


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
                system_attrs={k: v for k, v in t.system_attrs.items() if not k.startswith("epnas:objective")},
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
