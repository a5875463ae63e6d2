"""SupernetObjective: train the sampled path of a shared-weight supernet, return validation accuracy.

The supernet lives across trials (that is weight sharing: architectures that use the same op at the
same position read and update the same tensors); the objective is built from its training,
:class:`~optuna_epnas.supernet.trainer.SupernetTrainer`, and where it is kept,
:class:`~optuna_epnas.supernet.store.CheckpointStore`. It is checkpointed together with the values of the
trials it trained (:mod:`optuna_epnas.supernet.checkpoint`) once a minute and when a search ends; the
trials trained after the last checkpoint are replayed from the study on resume (their architectures and
data orders are recorded). So a search killed at any
moment and restarted on the same storage resumes with exactly the weights and trials it had (on the
CPU bit for bit; a GPU's kernels are not all deterministic). A trial is one unit: stopped before it
returns (Ctrl-C, SIGTERM, an exception at any step), it is undone -- weights and bookkeeping as before
it began, from an in-memory copy -- and fails; only a failure of its own training or evaluation counts
against its architecture.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import optuna

from optuna_epnas.supernet import checkpoint as ckpt
from optuna_epnas.supernet import distributed
from optuna_epnas.storage._storage import batched_writes, set_study_attr, set_trial_attr, study_attrs, trial_id
from optuna_epnas.costs.cost import TRAIN_FACTOR, NetworkSize
from optuna_epnas.costs.model import CostModel
from optuna_epnas.data.device import DeviceData
from optuna_epnas.settings import SUPERNET
from optuna_epnas.storage.keys import (COST_ATTR, FAULT_ATTR, OBJECTIVE_ATTR, RANKS_ATTR, SCHEMA_ATTR, SCHEMA_VERSION,
                                       WARMUP_ATTR, check_schema)
from optuna_epnas.spaces.base import SearchSpace
from optuna_epnas._checks import check_int
from optuna_epnas.supernet.store import CheckpointStore
from optuna_epnas.supernet.trainer import SupernetTrainer
from optuna_epnas.costs.values import accuracy_of

_logger = logging.getLogger(__name__)


class SupernetObjective:
    """Objective for ``study.optimize``: ``space.suggest(trial)`` -> train E epochs -> validation accuracy.

    Built from the supernet's training and where it is kept:
    ``SupernetObjective(SupernetTrainer(space, data, epochs=3, warmup_epochs=1), CheckpointStore(every=60))``.

    The trainer holds the supernet and its SGD (epochs, width, batch size, learning rate, seed, warm-up,
    ...); seeded runs on the CPU are reproducible, also across a resume. ``objective.trainer`` reaches it
    (:attr:`space`, :attr:`data` and :attr:`network_size` are forwarded).

    Args:
        trainer: the supernet and its training, a :class:`~optuna_epnas.supernet.trainer.SupernetTrainer`;
            its ``warmup_epochs`` of warm-up run before the first trial, charged to the first trial.
        checkpoint: where and when to keep the supernet, a
            :class:`~optuna_epnas.supernet.store.CheckpointStore` (its ``every`` seconds between writes,
            ``takeover``); a path, ``None`` or ``False`` is ``CheckpointStore(that)``: a file, or a
            directory to put ``<study>.supernet.pt`` in (needed for server storages such as PostgreSQL);
            ``None`` puts it beside a SQLite or journal file (``<db>.<study>.supernet.pt``), or where the
            study recorded it; in-memory studies keep it in memory only; ``False``: never.
        costs: what each trial counts of its stand-alone network, returns and is limited by, a
            :class:`~optuna_epnas.costs.model.CostModel` (default: one objective, no limits) completed
            with the network the trainer trains (:attr:`costs`). ``minimize="params"``, ``"macs"`` or
            ``"latency"``: each trial returns (validation accuracy, that cost), for a study with
            ``directions=["maximize", "minimize"]``; its ``limits`` are reported as Optuna constraints
            (``trial.set_constraint``: count - limit, feasible at <= 0) for samplers that read them (TPE,
            NSGA-II); :class:`~optuna_epnas.EPNASSampler` given ``costs=objective.costs`` never samples
            an architecture over them.
        report_epochs: evaluate after every epoch and ``trial.report`` it (learning curves in the
            dashboard; what a pruner needs). Off by default: each report is one more validation pass,
            and a pruner compares trials at one epoch across levels of very different depth. A pruned
            trial keeps its training (the weights are shared) and counts as measured at its last report.
        rescore_images: validation images (the first ones, always the same) that :meth:`rescore`
            evaluates architectures on.
        estimator: None (the default): each trial trains its supernet path and returns its validation
            accuracy. An estimator object such as :class:`~optuna_epnas.estimators.ZeroCost` instead
            scores the architecture without training (``estimator.score(...)``): no supernet, no
            checkpoint, no warm-up; its value is the estimator's score (higher: better), not an accuracy.
    """

    def __init__(
        self, trainer: SupernetTrainer, checkpoint: CheckpointStore | str | os.PathLike | None | bool = None, *,
        costs: CostModel | None = None, report_epochs: bool = False, rescore_images: int = SUPERNET.rescore_images,
        estimator: Any = None,
    ) -> None:
        if not isinstance(trainer, SupernetTrainer):
            raise TypeError("trainer must be a SupernetTrainer(space, data, epochs=..., ...) "
                            f"(optuna_epnas.supernet.trainer), got {trainer!r}")
        if not (costs is None or isinstance(costs, CostModel)):
            raise TypeError(f"costs must be an optuna_epnas.costs.model.CostModel or None, got {costs!r}")
        check_int("rescore_images", rescore_images, 1)
        self.trainer = trainer
        self.checkpoint = CheckpointStore.of(checkpoint)
        #: What trials count, return and are limited by, in the network the trainer trains (the sampler's too).
        self.costs = (CostModel() if costs is None else costs).for_network(trainer.network_size)
        self._step = "sample"  # where the running trial is (a fault there is not its architecture's)
        self._behind: list[optuna.trial.FrozenTrial] = []  # trials the study has and the checkpoint lacks
        self.rescore_images = rescore_images
        if estimator is not None and not (callable(getattr(estimator, "score", None)) and callable(getattr(estimator, "spec", None))):
            raise TypeError(f"estimator must have score(space, arch, data, channels, seed, macs) and spec() "
                            f"(e.g. optuna_epnas.estimators.ZeroCost()), got {estimator!r}")
        if estimator is not None and (report_epochs or trainer.warmup_epochs):
            raise ValueError("an estimator scores without training: report_epochs and the trainer's warmup_epochs "
                             "need the supernet (estimator=None)")
        self.estimator = estimator
        if not isinstance(report_epochs, bool):
            raise TypeError(f"report_epochs must be True or False, got {report_epochs!r}")
        self.report_epochs = report_epochs
        if report_epochs and len(self.costs.objectives) > 1:
            raise ValueError("Optuna prunes single-objective studies only: report_epochs needs one objective "
                             "(costs with minimize=None)")
        self.pruned: set[int] = set()  # trained trials a pruner stopped (values: their last report)
        self.trained: list[int] = []  # trial numbers whose training the weights contain, in order
        self._busy = threading.Lock()
        self.values: dict[int, Any] = {}  # their values, saved with the weights (a kill in between loses neither)
        self._spec_recorded = False  # an estimator's objective: recorded in the study at attach

    @property
    def space(self) -> SearchSpace:
        """The search space (the trainer's)."""
        return self.trainer.space

    @property
    def data(self) -> DeviceData:
        """The data the trials train and are measured on (the trainer's)."""
        return self.trainer.data

    @property
    def network_size(self) -> NetworkSize:
        """The network its trials train, as :attr:`costs` counts it (the trainer's)."""
        return self.trainer.network_size

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
            counts = self.costs.counts(self.space, arch)
            if "latency" in counts:
                trial.set_user_attr("latency_ms", round(counts["latency"], 6))
            trial.set_user_attr("params", counts["params"])
            for name, value in self.costs.constraints(counts).items():
                trial.set_constraint(name, value)
        if self.estimator is not None:
            self._step = "evaluate"
            return self._estimate(trial, arch, counts)
        self._step = "attach"
        if self.trainer.net is None:  # a trial before attach: attach to its study
            self.attach(trial.study)
        before, saved_at = self._snapshot(), self.checkpoint.saved_at
        try:
            result, pruned_at = self._train_and_record(trial, arch, counts)
        except BaseException:
            self._undo(trial.number, before, checkpoint_ahead=self.checkpoint.saved_at != saved_at)
            raise
        if pruned_at:  # committed and checkpointed: a resume completes it as PRUNED, from there
            raise optuna.TrialPruned(f"pruned after epoch {pruned_at} at validation accuracy {self.values[trial.number]:.4f}")
        return result

    def _train_and_record(self, trial: optuna.trial.Trial, arch: Any, counts: dict[str, float]
                          ) -> tuple[float | tuple[float, ...], int]:
        """Train, measure, record and (when due) checkpoint one trial; returns its result and, for a
        pruned one, the epoch it stopped after (0: not pruned)."""
        trainer, started = self.trainer, time.perf_counter()
        reports: list[float] = []

        def report(epoch: int) -> bool:  # after each epoch (report_epochs): whether the pruner stops it
            reports.append(trainer.evaluate(arch))
            trial.report(reports[-1], epoch)
            return epoch + 1 < trainer.epochs and trial.should_prune()

        self._step = "train"
        try:
            trainer.train(arch, step=len(self.trained), on_epoch=report if self.report_epochs else None)
        except FloatingPointError as err:
            raise FloatingPointError(f"trial {trial.number} diverged: {err}; the supernet is back to its state "
                                     "before the trial. A lower --lr avoids it") from None
        self._step = "evaluate"
        accuracy = reports[-1] if reports else trainer.evaluate(arch)
        pruned = len(reports) < trainer.epochs and bool(reports)
        epochs = len(reports) or trainer.epochs
        self._step = "record"
        with batched_writes(trial.storage, trial_id(trial)):
            trial.set_user_attr("train_seconds", round(time.perf_counter() - started, 3))
            trial.set_user_attr(COST_ATTR, float(TRAIN_FACTOR * counts["macs"] * epochs * len(self.data.train_y)
                                                 + counts["macs"] * len(self.data.val_y) * max(len(reports), 1)))
            set_trial_attr(trial.study, trial, ckpt.TRAINED_ATTR, len(self.trained))
        result = self._values(accuracy, counts)
        # the commit: from here the weights' training and this bookkeeping agree (_undo reverts both)
        self.values[trial.number] = result
        if pruned:
            self.pruned.add(trial.number)
        self.checkpoint.trained(trial.number)
        self.trained.append(trial.number)
        self._step = "checkpoint"
        if self.checkpoint.due:
            self.save()
        if distributed.leads():  # every rank's copy must be the same after every trial
            self._step = "ranks"
            distributed.command("check")
            distributed.check_identical(trainer.net, trainer.optimizer)
            set_trial_attr(trial.study, trial, RANKS_ATTR, distributed.rank_and_size()[1])
        self._step = "done"
        return result, len(reports) if pruned else 0

    def _estimate(self, trial: optuna.trial.Trial, arch: Any, counts: dict[str, float]) -> float | tuple[float, ...]:
        """The estimator's score of ``arch`` (no training), with its cost."""
        if not self._spec_recorded:
            self._record_spec(trial.study)
            self._spec_recorded = True
        started = time.perf_counter()
        value, cost = self.estimator.score(self.space, arch, self.data, self.trainer.channels, self.trainer.seed,
                                           int(counts["macs"]))
        with batched_writes(trial.storage, trial_id(trial)):
            trial.set_user_attr("train_seconds", round(time.perf_counter() - started, 3))
            trial.set_user_attr(COST_ATTR, float(cost))
        return self._values(value, counts)

    def _values(self, value: float, counts: dict[str, float]) -> float | tuple[float, ...]:
        """What a trial returns: ``value``, or it and the cost objective (two objectives)."""
        objectives = self.costs.objectives
        return (value, *(float(counts[o]) for o in objectives[1:])) if len(objectives) > 1 else value

    def rescore(self, study: optuna.Study, keys: Sequence[str]) -> tuple[list[float], float]:
        """Accuracy of each architecture's supernet path on the current weights (evaluation only, on
        the first ``rescore_images`` validation images): targets measured at one moment, comparable
        with each other, for the sampler's surrogate. Returns them and what they cost in MACs.

        The sampler calls it while planning a level, before the trial's objective runs: the supernet
        is attached to ``study`` (its checkpoint resumed) here if it is not yet."""
        if self.estimator is not None:
            raise ValueError("re-scoring evaluates supernet paths: this objective has an estimator and no supernet")
        if self.trainer.net is None:
            self.attach(study)
        archs = [self.space.parse(k) for k in keys]
        n = min(self.rescore_images, len(self.data.val_y))
        values = [self.trainer.evaluate(a, limit=n) for a in archs]
        return values, float(sum(self.trainer._macs(a) for a in archs) * n)

    def spec(self) -> dict[str, Any]:
        """What a study and its checkpoint must match to be resumed by this objective: everything
        that changes the values its trials return."""
        trainer, data, objectives = self.trainer, self.data, self.costs.objectives
        return {
            "space": self.space.spec(), "channels": trainer.channels, "dataset": data.name,
            "num_classes": data.num_classes, "in_channels": data.in_channels, "seed": trainer.seed,
            "image_size": data.image_size, "train_images": len(data.train_y),
            "warmup_epochs": trainer.warmup_epochs, **trainer.training_spec(),
            **({"objectives": list(objectives)} if len(objectives) > 1 else {}),  # absent: as before
            **({"latency_table": self.costs.latency.digest} if "latency" in objectives else {}),
            **({"estimator": self.estimator.spec()} if self.estimator is not None else {}),  # absent: a supernet
        }

    def _mismatch(self, stored: dict[str, Any] | None) -> str | None:
        # The training spec was added after the first studies were made: one that lacks it is not refused for it.
        return ckpt.spec_mismatch(stored, self.spec(), optional=self.trainer.training_spec())

    # -- supernet lifetime ---------------------------------------------------------------------
    def attach(self, study: optuna.Study | None) -> None:
        """Build the supernet and resume it from the study's checkpoint, before any trial runs.

        Call it before ``study.optimize`` (``epnas search`` does): it reports a mismatched or foreign
        checkpoint without starting a trial, and completes the trial a killed search had trained
        and checkpointed but not yet recorded *before* the sampler can hand its slot out again.
        """
        trainer = self.trainer
        if trainer.net is not None or self._spec_recorded:
            return
        if study is not None:
            self._record_spec(study)
        if self.estimator is not None:  # nothing to build, resume or warm up
            self._spec_recorded = study is not None
            return
        trainer.start()
        try:
            self._resume(study)
        except BaseException:  # half resumed or half warmed up: the next attach starts again from the file
            trainer.net = trainer.optimizer = None
            raise

    def _resume(self, study: optuna.Study | None) -> None:
        trainer = self.trainer
        path = self.checkpoint.hold(study)
        if path is not None and path.exists():
            self.load(path, study)
        elif study is not None and path is not None:
            ckpt.require_none_trained(study, path)
        if distributed.leads():
            distributed.command("state", trainer.get_state())  # the resumed weights, on every rank
        if self._behind:
            self._replay(self._behind)
        if trainer.warmup_epochs and not trainer.warmed_up:
            try:
                trainer.warm_up()
            except FloatingPointError as err:
                raise FloatingPointError(f"the supernet's warm-up diverged before any trial ran: {err}. A lower "
                                         "--lr avoids it") from None
            if study is not None:
                set_study_attr(study, WARMUP_ATTR, trainer.warmup_record)
            self.save()

    @property
    def checkpoint_path(self) -> Path | None:
        """Where the supernet is kept (known once attached); None: in memory only."""
        return self.checkpoint.path

    def detach(self, study: optuna.Study) -> None:
        """Write what the last checkpoint lacks and stop holding the study's supernet, so that another
        process may resume it (a search that ends)."""
        if self.checkpoint.path is not None:
            if self.checkpoint.pending:
                self.save()
            self.checkpoint.release(study)

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

    def save(self) -> None:
        """Write the checkpoint atomically, with the values of the trials it trained."""
        trainer = self.trainer
        if self.checkpoint.path is None or trainer.net is None:
            return
        assert trainer.optimizer is not None
        self.checkpoint.write({
            "format": ckpt.FORMAT, "spec": self.spec(), "token": self.checkpoint.token, "trained": list(self.trained),
            "values": dict(self.values), "pruned": sorted(self.pruned), "warmed_up": trainer.warmed_up,
            "model": trainer.net.state_dict(), "optimizer": trainer.optimizer.state_dict(),
        })

    def load(self, path: str | os.PathLike, study: optuna.Study | None = None) -> None:
        """Resume the weights of ``path``; with ``study``: check that they are the study's and complete
        the trials they hold but the study does not record."""
        state = self.checkpoint.read(path, self.data.device)
        if (diff := self._mismatch(state.get("spec"))) is not None:
            raise ValueError(f"the supernet checkpoint {path} was made with other settings ({diff}) "
                             "than this search; resume with the same settings, or use a new study name")
        self.trainer.set_state(state)
        self.trained = list(state["trained"])
        self.values = {int(n): v if isinstance(v, (list, tuple)) else float(v)
                       for n, v in (state.get("values") or {}).items()}
        self.pruned = {int(n) for n in state.get("pruned", ())}
        self.trainer.warmed_up = bool(state["warmed_up"])
        if study is None:
            return
        trained = ckpt.reconcile(study, Path(path), state, self.checkpoint.token or "")
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
        trainer = self.trainer
        for t in trials:
            arch = self.space.parse(t.user_attrs["arch"])
            epochs = len(t.intermediate_values) if t.state == optuna.trial.TrialState.PRUNED else trainer.epochs
            trainer.train(arch, step=len(self.trained), epochs=epochs)
            recorded = accuracy_of(t) if t.values else (t.intermediate_values.get(t.last_step) if t.last_step is not None else None)
            again = trainer.evaluate(arch)
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
        return copy.deepcopy(self.trainer.get_state())

    def _undo(self, number: int, before: dict[str, Any], checkpoint_ahead: bool) -> None:
        """Back to the state before trial ``number`` began: its weights, and none of its bookkeeping.
        ``checkpoint_ahead``: the trial was checkpointed before it failed, so the file holds it and must
        be written again before anything trusts it (the next trial or the search's end does)."""
        self.trainer.set_state(before)
        if distributed.leads():
            distributed.command("state", self.trainer.get_state())
        self.values.pop(number, None)
        self.pruned.discard(number)
        if number in self.trained:
            self.trained.remove(number)
        self.checkpoint.undone(number, written=checkpoint_ahead)
