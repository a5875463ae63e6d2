"""A search's supernet checkpoint over the search's life (:class:`CheckpointStore`): where it is, holding
the study's supernet while this process trains it, the file it is written through, and when a write is
due. What a checkpoint holds, and the rules that keep it the study's: :mod:`optuna_epnas.supernet.checkpoint`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from optuna_epnas.settings import SUPERNET
from optuna_epnas.supernet.checkpoint import CheckpointFile, hold, release, resolve_path


class CheckpointStore:
    """Where and when :class:`~optuna_epnas.SupernetObjective` keeps its supernet
    (``SupernetObjective(trainer, checkpoint=CheckpointStore(...))``; a path, None or False given as
    ``checkpoint`` is ``CheckpointStore(that)``). The objective builds what a checkpoint holds (the
    weights with the values of the trials they trained); the store resolves the path, holds the study's
    supernet and writes through one :class:`~optuna_epnas.supernet.checkpoint.CheckpointFile`, which
    remembers what the file holds so that a write appends only what changed.

    Args:
        path: where to keep the supernet: a file, or a directory to put ``<study>.supernet.pt`` in
            (needed for server storages such as PostgreSQL); ``None`` puts it beside a SQLite or
            journal file (``<db>.<study>.supernet.pt``), or where the study recorded it; in-memory
            studies keep it in memory only; ``False``: never.
        every: seconds between checkpoint writes (also written when the search ends, and at attach
            after a warm-up or a replay); 0: after every trial. A kill loses at most that much
            training, which the next run replays (a write appends only the tensors that changed: for
            the micro supernet at C=24, ~14 MiB of its ~200 MiB after a trial).
        takeover: hold the study's supernet even if another process on another machine is recorded
            as holding it (that process is gone). A live process on this machine is always refused.
    """

    def __init__(self, path: str | os.PathLike | bool | None = None, every: float = SUPERNET.checkpoint_every,
                 takeover: bool = False) -> None:
        if not (path is None or isinstance(path, (bool, str, os.PathLike))):
            raise TypeError(f"path must be a file or directory path, None or False, got {path!r}")
        if not (isinstance(every, (int, float)) and not isinstance(every, bool) and math.isfinite(every)
                and every >= 0):
            raise ValueError(f"every must be a number of seconds >= 0, got {every!r}")
        self.location, self.every, self.takeover = path, float(every), takeover
        self.path: Path | None = None  # where it is, known once held; None: in memory only
        self.token: str | None = None  # the study's: the checkpoint carries it
        self._file: CheckpointFile | None = None  # self.path's: remembers what it holds, to write only changes
        self._saved_at = -math.inf
        self._unsaved: list[int] = []  # trials trained since the last write
        self._checkpoint_ahead = False  # the file holds a trial that was undone: write it again

    def __repr__(self) -> str:
        return f"CheckpointStore({self.location!r}, every={self.every:g}, takeover={self.takeover})"

    @classmethod
    def of(cls, checkpoint: "CheckpointStore | str | os.PathLike | bool | None") -> "CheckpointStore":
        """``checkpoint`` itself, or a store at the path (None, False) it is."""
        return checkpoint if isinstance(checkpoint, cls) else cls(checkpoint)

    # -- the study's supernet ------------------------------------------------------------------------
    def hold(self, study: optuna.Study | None) -> Path | None:
        """Resolve where ``study``'s supernet is kept and, with a study and a file, make this process the
        one that trains it (refused while another live process does). Returns the path (None: in memory)."""
        self.path = resolve_path(study, self.location)
        if study is not None and self.path is not None:
            self.token = hold(study, self.path, takeover=self.takeover)
        return self.path

    def release(self, study: optuna.Study) -> None:
        """Stop holding the study's supernet, so that another process may resume it."""
        if self.path is not None:
            release(study)

    # -- writing and reading ---------------------------------------------------------------------------
    def write(self, state: dict[str, Any]) -> None:
        """Write ``state`` to :attr:`path` (only what changed since the last write, when the file allows)."""
        assert self.path is not None
        started = time.monotonic()
        if self._file is None or self._file.path != self.path:
            self._file = CheckpointFile(self.path)
        self._file.write(state)
        self._saved_at, self._unsaved, self._checkpoint_ahead = started, [], False

    def read(self, path: str | os.PathLike, device: torch.device) -> dict[str, Any]:
        """The state the checkpoint at ``path`` holds; the study's own is then written to as a log."""
        file = CheckpointFile(Path(path))
        state = file.read(device)
        if file.path == self.path:  # it remembers what it holds, so the next write is only changes
            self._file = file
        return state

    # -- when a write is due -----------------------------------------------------------------------------
    @property
    def saved_at(self) -> float:
        """When the last write began (``time.monotonic``; -inf: none yet)."""
        return self._saved_at

    @property
    def due(self) -> bool:
        """Whether a trial just trained should be written now: ``every`` seconds since the last write, or
        the file holds a trial that was undone."""
        return self._checkpoint_ahead or time.monotonic() - self._saved_at >= self.every

    @property
    def pending(self) -> bool:
        """Whether the file lacks a trial trained (or still holds one undone) since the last write."""
        return bool(self._unsaved) or self._checkpoint_ahead

    def trained(self, number: int) -> None:
        """Trial ``number`` is in the weights, not yet in the file."""
        self._unsaved.append(number)

    def undone(self, number: int, written: bool) -> None:
        """Trial ``number`` was undone; ``written``: the file holds it, so it must be written again before
        anything trusts it (the next trial or the search's end does)."""
        self._unsaved = [n for n in self._unsaved if n != number]
        self._checkpoint_ahead = self._checkpoint_ahead or written
