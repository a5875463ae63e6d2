"""SupernetObjective: train the sampled path of a shared-weight supernet, return validation accuracy.

The supernet lives across trials (that is weight sharing: architectures that use the same op at the
same position read and update the same tensors); its training is :class:`~optuna_epnas.supernet.trainer.SupernetTrainer`.
It is checkpointed together with the values of the trials it trained (:mod:`optuna_epnas.supernet.checkpoint`)
once a minute and when a search ends; the trials trained after the last checkpoint are replayed from
the study on resume (their architectures and data orders are recorded). So a search killed at any
moment and restarted on the same storage resumes with exactly the weights and trials it had (on the
CPU bit for bit; a GPU's kernels are not all deterministic). A trial is one unit: stopped before it
returns (Ctrl-C, SIGTERM, an exception at any step), it is undone -- weights and bookkeeping as before
it began, from an in-memory copy -- and fails; only a failure of its own training or evaluation counts
against its architecture.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import optuna

from optuna_epnas.supernet import checkpoint as ckpt
from optuna_epnas.supernet import distributed
from optuna_epnas.storage._storage import batched_writes, set_study_attr, set_trial_attr, study_attrs, trial_id
from optuna_epnas.costs.cost import TRAIN_FACTOR
from optuna_epnas.data.device import DeviceData
from optuna_epnas.storage.keys import (COST_ATTR, FAULT_ATTR, OBJECTIVE_ATTR, RANKS_ATTR, SCHEMA_ATTR, SCHEMA_VERSION,
                                       WARMUP_ATTR, check_schema)
from optuna_epnas.spaces.base import SearchSpace
from optuna_epnas._checks import check_int
from optuna_epnas.supernet.trainer import SupernetTrainer
from optuna_epnas.costs.values import accuracy_of, check_objectives

if TYPE_CHECKING:
    import torch

_logger = logging.getLogger(__name__)



def _limits(max_params: int | None, max_macs: int | None, max_latency_ms: float | None) -> dict[str, float]:
    """The size and latency limits each trial reports as constraints, by count name."""
    limits: dict[str, float] = {name: int(v) for name, v in (("params", max_params), ("macs", max_macs))
                                if v is not None}
    if max_latency_ms is not None:
        limits["latency"] = float(max_latency_ms)
    if any(isinstance(v, bool) or v < 1 for v in (max_params, max_macs) if v is not None):
        raise ValueError(f"max_params and max_macs must be positive integers, got {max_params!r}, {max_macs!r}")
    return limits


class SupernetObjective(SupernetTrainer):
    """Objective for ``study.optimize``: ``space.suggest(trial)`` -> train E epochs -> validation accuracy.

    ``space``, ``data``, ``epochs``, ``channels``, ``batch_size``, ``lr``, ``momentum``, ``weight_decay``,
    ``grad_clip``, ``seed``, ``amp``, ``channels_last`` and ``eval_batch_size`` are the supernet and its SGD
    (:class:`~optuna_epnas.supernet.trainer.SupernetTrainer`); seeded runs on the CPU are reproducible,
    also across a resume.

    Args:
        checkpoint: where to keep the supernet: a file, or a directory to put ``<study>.supernet.pt``
            in (needed for server storages such as PostgreSQL); ``None`` puts it beside a SQLite or
            journal file (``<db>.<study>.supernet.pt``), or where the study recorded it; in-memory
            studies keep it in memory only; ``False``: never.
        takeover: hold the study's supernet even if another process on another machine is recorded
            as holding it (that process is gone). A live process on this machine is always refused.
        warmup_epochs: epochs of :meth:`warm_up` before the first trial, charged to the first trial.
        rescore_images: validation images (the first ones, always the same) that :meth:`rescore`
            evaluates architectures on.
        checkpoint_every: seconds between checkpoint writes (also written when the search ends, and
            at attach after a warm-up or a replay); 0: after every trial. A kill loses at most that
            much training, which the next run replays (a write appends only the tensors that changed:
            for the micro supernet at C=24, ~14 MiB of its ~200 MiB after a trial).
        report_epochs: evaluate after every epoch and ``trial.report`` it (learning curves in the
            dashboard; what a pruner needs). Off by default: each report is one more validation pass,
            and a pruner compares trials at one epoch across levels of very different depth. A pruned
            trial keeps its training (the weights are shared) and counts as measured at its last report.
        objectives: what each trial returns: ``("accuracy",)`` its validation accuracy;
            ``("accuracy", "params")`` or ``("accuracy", "macs")`` the tuple of it and the stand-alone
            network's exact size (:attr:`network_size`), for a study with
            ``directions=["maximize", "minimize"]``.
        latency: a :class:`~optuna_epnas.costs.latency.LatencyTable` of the device, which
            ``objectives=("accuracy", "latency")`` and ``max_latency_ms`` read.
        max_latency_ms: a limit on that latency, reported as a constraint as ``max_params`` is.
        max_params: a limit on the stand-alone network's parameters (:attr:`network_size`) that each
            trial reports as an Optuna constraint (``trial.set_constraint``: count - limit, feasible at
            <= 0), for samplers that read them (TPE, NSGA-II); :class:`~optuna_epnas.EPNASSampler` with
            the same limits never samples an architecture over them.
        max_macs: the same for its forward multiply-adds per image.
        estimator: None (the default): each trial trains its supernet path and returns its validation
            accuracy. An estimator object such as :class:`~optuna_epnas.estimators.ZeroCost` instead
            scores the architecture without training (``estimator.score(...)``): no supernet, no
            checkpoint, no warm-up; its value is the estimator's score (higher: better), not an accuracy.
    """

    def __init__(
        self, space: SearchSpace, data: DeviceData, epochs: int = 3, channels: int = 24, batch_size: int = 128,
        lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 3e-4, grad_clip: float = 5.0, seed: int = 0,
        checkpoint: str | os.PathLike | None | bool = None, amp: bool | None = None,
        channels_last: bool | None = None, eval_batch_size: int = 1000, warmup_epochs: int = 0,
        rescore_images: int = 1000, takeover: bool = False, max_params: int | None = None,
        max_macs: int | None = None, report_epochs: bool = False, objectives: Sequence[str] = ("accuracy",),
        latency: Any = None, max_latency_ms: float | None = None, checkpoint_every: float = 60.0,
        estimator: Any = None,
    ) -> None:
        super().__init__(space, data, epochs=epochs, channels=channels, batch_size=batch_size, lr=lr,
                         momentum=momentum, weight_decay=weight_decay, grad_clip=grad_clip, seed=seed, amp=amp,
                         channels_last=channels_last, eval_batch_size=eval_batch_size, warmup_epochs=warmup_epochs)
        check_int("rescore_images", rescore_images, 1)
        self.limits, self.latency = _limits(max_params, max_macs, max_latency_ms), latency
        self.checkpoint, self.takeover = checkpoint, takeover
        if not (isinstance(checkpoint_every, (int, float)) and not isinstance(checkpoint_every, bool)
                and math.isfinite(checkpoint_every) and checkpoint_every >= 0):
            raise ValueError(f"checkpoint_every must be a number of seconds >= 0, got {checkpoint_every!r}")
        self.checkpoint_every = float(checkpoint_every)
        self._saved_at = -math.inf
        self._unsaved: list[int] = []  # trials trained since the checkpoint
        self._checkpoint_ahead = False  # the file holds a trial that was undone: write it again
        self._step = "sample"  # where the running trial is (a fault there is not its architecture's)
        self._behind: list[optuna.trial.FrozenTrial] = []  # trials the study has and the checkpoint lacks
        self.rescore_images = rescore_images
        if estimator is not None and not (callable(getattr(estimator, "score", None)) and callable(getattr(estimator, "spec", None))):
            raise TypeError(f"estimator must have score(space, arch, data, channels, seed, macs) and spec() "
                            f"(e.g. optuna_epnas.estimators.ZeroCost()), got {estimator!r}")
        if estimator is not None and (report_epochs or warmup_epochs):
            raise ValueError("an estimator scores without training: report_epochs and warmup_epochs need the "
                             "supernet (estimator=None)")
        self.estimator = estimator
        if not isinstance(report_epochs, bool):
            raise TypeError(f"report_epochs must be True or False, got {report_epochs!r}")
        self.report_epochs, self.objectives = report_epochs, check_objectives(objectives)
        if "latency" in (*self.objectives, *self.limits) and latency is None:
            raise ValueError("a latency objective or limit needs latency=latency_table(space, objective.network_size, "
                             "device) (optuna_epnas.costs.latency)")
        if report_epochs and len(self.objectives) > 1:
            raise ValueError("Optuna prunes single-objective studies only: report_epochs needs objectives=('accuracy',)")
        self.pruned: set[int] = set()  # trained trials a pruner stopped (values: their last report)
        self.trained: list[int] = []  # trial numbers whose training the weights contain, in order
        self._busy = threading.Lock()
        self.values: dict[int, Any] = {}  # their values, saved with the weights (a kill in between loses neither)
        self._path: Path | None = None
        self._file: ckpt.CheckpointFile | None = None  # self._path's: remembers what it holds, to write only changes
        self._token: str | None = None
        self._spec_recorded = False  # an estimator's objective: recorded in the study at attach

    # -- the objective -------------------------------------------------------------------------
    def __call__(self, trial: optuna.trial.Trial) -> float | tuple[float, ...]:
        # One supernet trains one path at a time: a second thread (study.optimize(n_jobs=2)) would train
        # the same weights at once. Refused before the trial asks for an architecture, so it takes no slot.
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("SupernetObjective trains one shared supernet, one trial at a time: run "
                               "study.optimize with n_jobs=1 (for more cores or GPUs: torchrun, docs/design.md)")
        try:
            return self._run(trial)
        finally:
            self._busy.release()

    def _run(self, trial: optuna.trial.Trial) -> float | tuple[float, ...]:
        # A trial is one unit: whatever stops it before it returns (Ctrl-C, SIGTERM, an exception in any
        # step), the supernet and the bookkeeping are as before it began (_trial undoes them), and the
        # study has it FAIL -- counted against its slot only when its own training or evaluation failed.
        self._step = "sample"
        try:
            return self._trial(trial)
        except optuna.TrialPruned:
            raise
        except BaseException as err:
            if not isinstance(err, Exception) or self._step not in ("train", "evaluate"):
                self._mark_fault(trial, err)
            raise

    def _mark_fault(self, trial: optuna.trial.Trial, err: BaseException) -> None:
        """Record that the trial failed for a reason that is not its architecture's: its slot runs again."""
        what = "interrupted" if not isinstance(err, Exception) else self._step
        try:
            set_trial_attr(trial.study, trial, FAULT_ATTR, f"{what} ({type(err).__name__})")
        except Exception as failed:  # the storage itself may be what failed; the original error matters more
            _logger.warning("could not mark trial %d as failed by a fault (%s): %s", trial.number, what, failed)

    def _trial(self, trial: optuna.trial.Trial) -> float | tuple[float, ...]:
        with batched_writes(trial.storage, trial_id(trial)):  # ~80 parameters at full depth: one commit
            arch = self.space.suggest(trial)
            trial.set_user_attr("arch", self.space.key(arch))
            trial.set_user_attr("level", self.space.level(arch))
            counts: dict[str, float] = dict(zip(("params", "macs"), self.network_size.count(self.space, arch)))
            if self.latency is not None:
                counts["latency"] = self.latency.network_ms(arch)
                trial.set_user_attr("latency_ms", round(counts["latency"], 6))
            trial.set_user_attr("params", counts["params"])
            for name, limit in self.limits.items():
                trial.set_constraint(name, float(counts[name] - limit))
        if self.estimator is not None:
            self._step = "evaluate"
            return self._estimate(trial, arch, counts)
        self._step = "attach"
        self._ensure_supernet(trial)
        before, saved_at = self._snapshot(), self._saved_at
        try:
            result, pruned_at = self._train_and_record(trial, arch, counts)
        except BaseException:
            self._undo(trial.number, before, checkpoint_ahead=self._saved_at != saved_at)
            raise
        if pruned_at:  # committed and checkpointed: a resume completes it as PRUNED, from there
            raise optuna.TrialPruned(f"pruned after epoch {pruned_at} at validation accuracy {self.values[trial.number]:.4f}")
        return result

    def _train_and_record(self, trial: optuna.trial.Trial, arch: Any, counts: dict[str, float]
                          ) -> tuple[float | tuple[float, ...], int]:
        """Train, measure, record and (when due) checkpoint one trial; returns its result and, for a
        pruned one, the epoch it stopped after (0: not pruned)."""
        started = time.perf_counter()
        reports: list[float] = []

        def report(epoch: int) -> bool:  # after each epoch (report_epochs): whether the pruner stops it
            reports.append(self.evaluate(arch))
            trial.report(reports[-1], epoch)
            return epoch + 1 < self.epochs and trial.should_prune()

        self._step = "train"
        try:
            self.train(arch, step=len(self.trained), on_epoch=report if self.report_epochs else None)
        except FloatingPointError as err:
            raise FloatingPointError(f"trial {trial.number} diverged: {err}; the supernet is back to its state "
                                     "before the trial. A lower --lr avoids it") from None
        self._step = "evaluate"
        accuracy = reports[-1] if reports else self.evaluate(arch)
        pruned = len(reports) < self.epochs and bool(reports)
        epochs = len(reports) or self.epochs
        self._step = "record"
        with batched_writes(trial.storage, trial_id(trial)):
            trial.set_user_attr("train_seconds", round(time.perf_counter() - started, 3))
            trial.set_user_attr(COST_ATTR, float(TRAIN_FACTOR * counts["macs"] * epochs * len(self.data.train_y)
                                                 + counts["macs"] * len(self.data.val_y) * max(len(reports), 1)))
            set_trial_attr(trial.study, trial, ckpt.TRAINED_ATTR, len(self.trained))
        result = (accuracy, *(float(counts[o]) for o in self.objectives[1:])) if len(self.objectives) > 1 else accuracy
        # the commit: from here the weights' training and this bookkeeping agree (_undo reverts both)
        self.values[trial.number] = result
        if pruned:
            self.pruned.add(trial.number)
        self._unsaved.append(trial.number)
        self.trained.append(trial.number)
        self._step = "checkpoint"
        if self._checkpoint_ahead or time.monotonic() - self._saved_at >= self.checkpoint_every:
            self.save()
        if distributed.leads():  # every rank's copy must be the same after every trial
            self._step = "ranks"
            distributed.command("check")
            distributed.check_identical(self.net, self.optimizer)
            set_trial_attr(trial.study, trial, RANKS_ATTR, distributed.rank_and_size()[1])
        self._step = "done"
        return result, len(reports) if pruned else 0

    def _estimate(self, trial: optuna.trial.Trial, arch: Any, counts: dict[str, float]) -> float | tuple[float, ...]:
        """The estimator's score of ``arch`` (no training), with its cost."""
        if not self._spec_recorded:
            self._record_spec(trial.study)
            self._spec_recorded = True
        started = time.perf_counter()
        value, cost = self.estimator.score(self.space, arch, self.data, self.channels, self.seed, int(counts["macs"]))
        with batched_writes(trial.storage, trial_id(trial)):
            trial.set_user_attr("train_seconds", round(time.perf_counter() - started, 3))
            trial.set_user_attr(COST_ATTR, float(cost))
        return (value, *(float(counts[o]) for o in self.objectives[1:])) if len(self.objectives) > 1 else value

    def rescore(self, study: optuna.Study, keys: Sequence[str]) -> tuple[list[float], float]:
        """Accuracy of each architecture's supernet path on the current weights (evaluation only, on
        the first ``rescore_images`` validation images): targets measured at one moment, comparable
        with each other, for the sampler's surrogate. Returns them and what they cost in MACs.

        The sampler calls it while planning a level, before the trial's objective runs: the supernet
        is attached to ``study`` (its checkpoint resumed) here if it is not yet."""
        if self.estimator is not None:
            raise ValueError("re-scoring evaluates supernet paths: this objective has an estimator and no supernet")
        if self.net is None:
            self.attach(study)
        archs = [self.space.parse(k) for k in keys]
        n = min(self.rescore_images, len(self.data.val_y))
        values = [self.evaluate(a, limit=n) for a in archs]
        return values, float(sum(self._macs(a) for a in archs) * n)

    def spec(self) -> dict[str, Any]:
        """What a study and its checkpoint must match to be resumed by this objective: everything
        that changes the values its trials return."""
        return {
            "space": self.space.spec(), "channels": self.channels, "dataset": self.data.name,
            "num_classes": self.data.num_classes, "in_channels": self.data.in_channels, "seed": self.seed,
            "image_size": self.data.image_size, "train_images": len(self.data.train_y),
            "warmup_epochs": self.warmup_epochs, **self.training_spec(),
            **({"objectives": list(self.objectives)} if len(self.objectives) > 1 else {}),  # absent: as before
            **({"latency_table": self.latency.digest} if "latency" in self.objectives else {}),
            **({"estimator": self.estimator.spec()} if self.estimator is not None else {}),  # absent: a supernet
        }

    def _mismatch(self, stored: dict[str, Any] | None) -> str | None:
        # The training spec was added after the first studies were made: one that lacks it is not refused for it.
        return ckpt.spec_mismatch(stored, self.spec(), optional=self.training_spec())

    # -- supernet lifetime ---------------------------------------------------------------------
    def attach(self, study: optuna.Study | None) -> None:
        """Build the supernet and resume it from the study's checkpoint, before any trial runs.

        Call it before ``study.optimize`` (``epnas search`` does): it reports a mismatched or foreign
        checkpoint without starting a trial, and completes the trial a killed search had trained
        and checkpointed but not yet recorded *before* the sampler can hand its slot out again.
        """
        if self.net is not None or self._spec_recorded:
            return
        if study is not None:
            self._record_spec(study)
        if self.estimator is not None:  # nothing to build, resume or warm up
            self._spec_recorded = study is not None
            return
        self.start()
        try:
            self._resume(study)
        except BaseException:  # half resumed or half warmed up: the next attach starts again from the file
            self.net = self.optimizer = None
            raise

    def _resume(self, study: optuna.Study | None) -> None:
        self._path = ckpt.resolve_path(study, self.checkpoint)
        if study is not None and self._path is not None:
            self._token = ckpt.hold(study, self._path, takeover=self.takeover)
        if self._path is not None and self._path.exists():
            self.load(self._path, study)
        elif study is not None and self._path is not None:
            ckpt.require_none_trained(study, self._path)
        if distributed.leads():
            distributed.command("state", self.get_state())  # the resumed weights, on every rank
        if self._behind:
            self._replay(self._behind)
        if self.warmup_epochs and not self.warmed_up:
            try:
                self.warm_up()
            except FloatingPointError as err:
                raise FloatingPointError(f"the supernet's warm-up diverged before any trial ran: {err}. A lower "
                                         "--lr avoids it") from None
            if study is not None:
                set_study_attr(study, WARMUP_ATTR, self.warmup_record)
            self.save()

    @property
    def checkpoint_path(self) -> Path | None:
        """Where the supernet is kept (known once attached); None: in memory only."""
        return self._path

    def detach(self, study: optuna.Study) -> None:
        """Write what the last checkpoint lacks and stop holding the study's supernet, so that another
        process may resume it (a search that ends)."""
        if self._path is not None:
            if self._unsaved or self._checkpoint_ahead:
                self.save()
            ckpt.release(study)

    def _record_spec(self, study: optuna.Study) -> None:
        attrs = study_attrs(study)
        check_schema(study.study_name, attrs)
        stored = attrs.get(OBJECTIVE_ATTR)
        if stored is None:
            set_study_attr(study, SCHEMA_ATTR, SCHEMA_VERSION)
            set_study_attr(study, OBJECTIVE_ATTR, json.loads(json.dumps(self.spec())))
        elif (diff := self._mismatch(stored)) is not None:
            raise ValueError(f"study {study.study_name!r} was searched with other settings ({diff}); "
                             "resume with the same settings, or use a new study name")

    def _ensure_supernet(self, trial: optuna.trial.Trial | None = None
                         ) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        if self.net is None:  # a trial before attach: attach to its study
            self.attach(trial.study if trial is not None else None)
        return super()._ensure_supernet()

    def save(self) -> None:
        """Write the checkpoint atomically, with the values of the trials it trained."""
        if self._path is None or self.net is None:
            return
        assert self.optimizer is not None
        started = time.monotonic()
        if self._file is None or self._file.path != self._path:
            self._file = ckpt.CheckpointFile(self._path)
        self._file.write({
            "format": ckpt.FORMAT, "spec": self.spec(), "token": self._token, "trained": list(self.trained),
            "values": dict(self.values), "pruned": sorted(self.pruned), "warmed_up": self.warmed_up, "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        })
        self._saved_at, self._unsaved, self._checkpoint_ahead = started, [], False

    def load(self, path: str | os.PathLike, study: optuna.Study | None = None) -> None:
        """Resume the weights of ``path``; with ``study``: check that they are the study's and complete
        the trials they hold but the study does not record."""
        file = ckpt.CheckpointFile(Path(path))
        state = file.read(self.data.device)
        if file.path == self._path:  # the study's own: it remembers what it holds, so the next write is only changes
            self._file = file
        if (diff := self._mismatch(state.get("spec"))) is not None:
            raise ValueError(f"the supernet checkpoint {path} was made with other settings ({diff}) "
                             "than this search; resume with the same settings, or use a new study name")
        self.set_state(state)
        self.trained = list(state["trained"])
        self.values = {int(n): v if isinstance(v, (list, tuple)) else float(v)
                       for n, v in (state.get("values") or {}).items()}
        self.pruned = {int(n) for n in state.get("pruned", ())}
        self.warmed_up = bool(state["warmed_up"])
        if study is None:
            return
        trained = ckpt.reconcile(study, Path(path), state, self._token or "")
        if trained != self.trained:  # a failed trial replaced by its complete copy: record the new number now
            self.values = {new: self.values[old] for old, new in zip(self.trained, trained) if old in self.values}
            self.pruned = {new for old, new in zip(self.trained, trained) if old in self.pruned}
            self.trained = trained
            self.save()
        self._behind = ckpt.behind(study, len(self.trained))
        _logger.info("resumed the supernet from %s (%d trials of training, %d to replay)", path, len(self.trained),
                     len(self._behind))

    def _replay(self, trials: Sequence[optuna.trial.FrozenTrial]) -> None:
        """Train again, in order and with their own data orders, the trials the study records but the
        checkpoint lacks (a kill after the last checkpoint); then checkpoint. Each is evaluated again:
        a value that differs from the recorded one is reported (on a GPU, non-deterministic kernels)."""
        _logger.warning("replaying the training of %d trial(s) recorded after the last checkpoint (%s)",
                        len(trials), ", ".join(str(t.number) for t in trials[:10]) + (" ..." if len(trials) > 10 else ""))
        for t in trials:
            arch = self.space.parse(t.user_attrs["arch"])
            epochs = len(t.intermediate_values) if t.state == optuna.trial.TrialState.PRUNED else self.epochs
            self.train(arch, step=len(self.trained), epochs=epochs)
            recorded = accuracy_of(t) if t.values else (t.intermediate_values.get(t.last_step) if t.last_step is not None else None)
            again = self.evaluate(arch)
            if recorded is not None and again != recorded:
                _logger.warning("replayed trial %d measures %.6f, recorded %.6f: the weights differ from the run "
                                "that was killed (non-deterministic kernels?)", t.number, again, recorded)
            self.trained.append(t.number)
            if t.values:
                self.values[t.number] = tuple(t.values) if len(t.values) > 1 else t.values[0]
            if t.state == optuna.trial.TrialState.PRUNED:
                self.pruned.add(t.number)
                self.values[t.number] = recorded
        self._behind = []
        self.save()

    def _snapshot(self) -> dict[str, Any]:
        """A copy of the weights and optimizer state, to undo a trial that does not finish. (The whole
        supernet: cheap beside a trial's training -- a device-side copy on a GPU.)"""
        import copy

        return copy.deepcopy(self.get_state())

    def _undo(self, number: int, before: dict[str, Any], checkpoint_ahead: bool) -> None:
        """Back to the state before trial ``number`` began: its weights, and none of its bookkeeping.
        ``checkpoint_ahead``: the trial was checkpointed before it failed, so the file holds it and must
        be written again before anything trusts it (the next trial or the search's end does)."""
        self.set_state(before)
        if distributed.leads():
            distributed.command("state", self.get_state())
        self.values.pop(number, None)
        self.pruned.discard(number)
        self._unsaved = [n for n in self._unsaved if n != number]
        if number in self.trained:
            self.trained.remove(number)
        self._checkpoint_ahead = self._checkpoint_ahead or checkpoint_ahead
