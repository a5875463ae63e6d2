"""SupernetObjective: train the sampled path of a shared-weight supernet, return validation accuracy.

The supernet lives across trials (that is weight sharing: architectures that use the same op at the
same position read and update the same tensors). It is checkpointed together with the values of the
trials it trained (:mod:`optuna_epnas.checkpoint`) once a minute and when a search ends; the trials
trained after the last checkpoint are replayed from the study on resume (their architectures and data
orders are recorded). So a search killed at any moment and restarted on the same storage resumes
with exactly the weights and trials it had (on the CPU bit for bit; a GPU's kernels are not all
deterministic).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import optuna
import torch
import torch.nn.functional as F

from optuna_epnas import checkpoint as ckpt
from optuna_epnas import distributed
from optuna_epnas.cost import COST_ATTR, TRAIN_FACTOR, WARMUP_ATTR, NetworkSize
from optuna_epnas.data import DeviceData, make_generator
from optuna_epnas.nn import build_network
from optuna_epnas.spaces.base import SearchSpace
from optuna_epnas._storage import batched_writes
from optuna_epnas.values import accuracy_of, check_objectives

_logger = logging.getLogger(__name__)

#: Study system attribute holding :meth:`SupernetObjective.spec`: what ``epnas train`` reads to rebuild
#: the space of a search run with any sampler.
OBJECTIVE_ATTR = "epnas:objective"
#: Trial system attr: the number of ranks whose supernet copies were checked identical after the trial.
RANKS_ATTR = "epnas:ranks_identical"


def checkpoint_path_for(storage: Any, study_name: str) -> Path | None:
    """``<db>.<study>.supernet.pt`` beside a SQLite (or journal-file) study; None for other storages."""
    return ckpt.default_path(storage, study_name)


class SupernetObjective:
    """Objective for ``study.optimize``: ``space.suggest(trial)`` -> train E epochs -> validation accuracy.

    Args:
        space: the search space (the same object the sampler uses).
        data: a :class:`~optuna_epnas.data.DeviceData` from :func:`~optuna_epnas.load_dataset`.
        epochs: epochs of training per sampled architecture (paper: 3).
        channels: width C of the supernet (paper search setting: 24).
        batch_size, lr, momentum, weight_decay, grad_clip: SGD (Nesterov) settings, shared by all trials.
        seed: seeds the supernet's initialisation and every trial's data order; seeded runs on the
            CPU are reproducible, also across a resume.
        checkpoint: where to keep the supernet: a file, or a directory to put ``<study>.supernet.pt``
            in (needed for server storages such as PostgreSQL); ``None`` puts it beside a SQLite or
            journal file (``<db>.<study>.supernet.pt``), or where the study recorded it; in-memory
            studies keep it in memory only; ``False``: never.
        takeover: hold the study's supernet even if another process on another machine is recorded
            as holding it (that process is gone). A live process on this machine is always refused.
        amp: bf16 autocast (default: on CUDA only). channels_last likewise.
        warmup_epochs: epochs of SPOS-style warm-up before the first trial -- every batch trains a
            full-depth architecture drawn uniformly at random -- so that the first measurements are
            not made on random weights. Its cost is charged to the first trial.
        rescore_images: validation images (the first ones, always the same) that :meth:`rescore`
            evaluates architectures on.
        checkpoint_every: seconds between checkpoint writes (also written when the search ends, and
            at attach after a warm-up or a replay); 0: after every trial. A kill loses at most that
            much training, which the next run replays (the micro supernet's checkpoint, ~200 MiB at
            C=24, takes about a second to write).
        report_epochs: evaluate after every epoch and ``trial.report`` it (learning curves in the
            dashboard; what a pruner needs). Off by default: each report is one more validation pass,
            and a pruner compares trials at one epoch across levels of very different depth. A pruned
            trial keeps its training (the weights are shared) and counts as measured at its last report.
        objectives: what each trial returns: ``("accuracy",)`` its validation accuracy;
            ``("accuracy", "params")`` or ``("accuracy", "macs")`` the tuple of it and the stand-alone
            network's exact size (:attr:`network_size`), for a study with
            ``directions=["maximize", "minimize"]``.
        latency, max_latency_ms: a :class:`~optuna_epnas.latency.LatencyTable` of the device, which
            ``objectives=("accuracy", "latency")`` and ``max_latency_ms`` (a constraint, as below) read.
        max_params, max_macs: limits on the stand-alone network (:attr:`network_size`) that each trial
            reports as Optuna constraints (``trial.set_constraint``: count - limit, feasible at <= 0),
            for samplers that read them (TPE, NSGA-II); :class:`~optuna_epnas.EPNASSampler` with the
            same limits never samples an architecture over them.
    """

    def __init__(
        self, space: SearchSpace, data: DeviceData, epochs: int = 3, channels: int = 24, batch_size: int = 128,
        lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 3e-4, grad_clip: float = 5.0, seed: int = 0,
        checkpoint: str | os.PathLike | None | bool = None, amp: bool | None = None,
        channels_last: bool | None = None, eval_batch_size: int = 1000, warmup_epochs: int = 0,
        rescore_images: int = 1000, takeover: bool = False, max_params: int | None = None,
        max_macs: int | None = None, report_epochs: bool = False, objectives: Sequence[str] = ("accuracy",),
        latency: Any = None, max_latency_ms: float | None = None, checkpoint_every: float = 60.0,
    ) -> None:
        for name, value, low in (("epochs", epochs, 1), ("channels", channels, 1), ("batch_size", batch_size, 1),
                                 ("warmup_epochs", warmup_epochs, 0), ("rescore_images", rescore_images, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name, value, low in (("lr", lr, None), ("momentum", momentum, 0.0), ("weight_decay", weight_decay, 0.0),
                                 ("grad_clip", grad_clip, 0.0)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 if low is None else value >= low)):
                raise ValueError(f"{name} must be a finite number {'> 0' if low is None else '>= 0'}, got {value!r}")
        self.space, self.data, self.epochs, self.channels = space, data, epochs, channels
        self.limits: dict[str, float] = {name: int(v) for name, v in (("params", max_params), ("macs", max_macs))
                                         if v is not None}
        if max_latency_ms is not None:
            self.limits["latency"] = float(max_latency_ms)
        self.latency = latency
        if any(isinstance(v, bool) or v < 1 for v in (max_params, max_macs) if v is not None):
            raise ValueError(f"max_params and max_macs must be positive integers, got {max_params!r}, {max_macs!r}")
        self.batch_size, self.lr, self.momentum = batch_size, lr, momentum
        self.weight_decay, self.grad_clip, self.seed, self.eval_batch_size = weight_decay, grad_clip, seed, eval_batch_size
        self.checkpoint, self.takeover = checkpoint, takeover
        if not (isinstance(checkpoint_every, (int, float)) and not isinstance(checkpoint_every, bool)
                and math.isfinite(checkpoint_every) and checkpoint_every >= 0):
            raise ValueError(f"checkpoint_every must be a number of seconds >= 0, got {checkpoint_every!r}")
        self.checkpoint_every = float(checkpoint_every)
        self._saved_at = -math.inf
        self._unsaved: list[tuple[int, str, int]] = []  # (trial, arch, epochs) trained since the checkpoint
        self._behind: list[optuna.trial.FrozenTrial] = []  # trials the study has and the checkpoint lacks
        self.warmup_epochs, self.rescore_images = warmup_epochs, rescore_images
        self.warmed_up = False
        if not isinstance(report_epochs, bool):
            raise TypeError(f"report_epochs must be True or False, got {report_epochs!r}")
        self.report_epochs = report_epochs
        self.objectives = check_objectives(objectives)
        if "latency" in (*self.objectives, *self.limits) and latency is None:
            raise ValueError("a latency objective or limit needs latency=latency_table(space, objective.network_size, "
                             "device) (optuna_epnas.latency)")
        if report_epochs and len(self.objectives) > 1:
            raise ValueError("Optuna prunes single-objective studies only: report_epochs needs objectives=('accuracy',)")
        self.pruned: set[int] = set()  # trained trials a pruner stopped (values: their last report)
        cuda = data.device.type == "cuda"
        self.amp = cuda if amp is None else amp
        self.channels_last = cuda if channels_last is None else channels_last
        self.net: torch.nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.trained: list[int] = []  # trial numbers whose training the weights contain, in order
        self._busy = threading.Lock()
        self.values: dict[int, Any] = {}  # their values, saved with the weights (a kill in between loses neither)
        self._path: Path | None = None
        self._token: str | None = None

    # -- the objective -------------------------------------------------------------------------
    def __call__(self, trial: optuna.trial.Trial) -> float | tuple[float, ...]:
        # One supernet trains one path at a time: a second thread (study.optimize(n_jobs=2)) would train
        # the same weights at once. Refused before the trial asks for an architecture, so it takes no slot.
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("SupernetObjective trains one shared supernet, one trial at a time: run "
                               "study.optimize with n_jobs=1 (for more cores or GPUs: torchrun, README)")
        try:
            return self._run(trial)
        finally:
            self._busy.release()

    def _run(self, trial: optuna.trial.Trial) -> float | tuple[float, ...]:
        with batched_writes(trial.storage, trial._trial_id):  # ~80 parameters at full depth: one commit
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
        self._ensure_supernet(trial)
        started = time.perf_counter()
        reports: list[float] = []

        def report(epoch: int) -> bool:  # after each epoch (report_epochs): whether the pruner stops it
            reports.append(self.evaluate(arch))
            trial.report(reports[-1], epoch)
            return epoch + 1 < self.epochs and trial.should_prune()

        try:
            self.train(arch, step=len(self.trained), on_epoch=report if self.report_epochs else None)
        except BaseException:
            self._roll_back()  # the next trial must not train on a half-trained (or NaN) supernet
            raise
        accuracy = reports[-1] if reports else self.evaluate(arch)
        pruned = len(reports) < self.epochs and bool(reports)
        macs = counts["macs"]
        epochs = len(reports) or self.epochs
        with batched_writes(trial.storage, trial._trial_id):
            trial.set_user_attr("train_seconds", round(time.perf_counter() - started, 3))
            trial.set_user_attr(COST_ATTR, float(TRAIN_FACTOR * macs * epochs * len(self.data.train_y)
                                                 + macs * len(self.data.val_y) * max(len(reports), 1)))
            trial.storage.set_trial_system_attr(trial._trial_id, ckpt.TRAINED_ATTR, len(self.trained))
        self._unsaved.append((trial.number, self.space.key(arch), epochs))
        self.trained.append(trial.number)
        result = (accuracy, *(float(counts[o]) for o in self.objectives[1:])) if len(self.objectives) > 1 else accuracy
        self.values[trial.number] = result
        if pruned:
            self.pruned.add(trial.number)
        try:
            if time.monotonic() - self._saved_at >= self.checkpoint_every:
                self.save()
        except RuntimeError:
            from optuna_epnas.sampler.epnas import FAULT_ATTR  # not the architecture's failure: its slot is run again

            trial.storage.set_trial_system_attr(trial._trial_id, FAULT_ATTR, "checkpoint write")
            raise
        if distributed.leads():  # every rank's copy must be the same after every trial
            distributed.command("check")
            distributed.check_identical(self.net, self.optimizer)
            trial.storage.set_trial_system_attr(trial._trial_id, RANKS_ATTR, distributed.rank_and_size()[1])
        if pruned:  # after the checkpoint: a resume completes it as PRUNED, from there
            raise optuna.TrialPruned(f"pruned after epoch {len(reports)} at validation accuracy {accuracy:.4f}")
        return result

    @property
    def network_size(self) -> NetworkSize:
        """The network its trials train, as size limits count it (``EPNASSampler(network=...)``)."""
        return NetworkSize.of(self.data, self.channels)

    def _macs(self, arch: Any) -> int:
        return self.network_size.count(self.space, arch)[1]

    def rescore(self, study: optuna.Study, keys: Sequence[str]) -> tuple[list[float], float]:
        """Accuracy of each architecture's supernet path on the current weights (evaluation only, on
        the first ``rescore_images`` validation images): targets measured at one moment, comparable
        with each other, for the sampler's surrogate. Returns them and what they cost in MACs.

        The sampler calls it while planning a level, before the trial's objective runs: the supernet
        is attached to ``study`` (its checkpoint resumed) here if it is not yet."""
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
            "warmup_epochs": self.warmup_epochs, **self._training_spec(),
            **({"objectives": list(self.objectives)} if len(self.objectives) > 1 else {}),  # absent: as before
            **({"latency_table": self.latency.digest} if "latency" in self.objectives else {}),
        }

    def _training_spec(self) -> dict[str, Any]:
        # Added after the first studies were made: a study or checkpoint that lacks them is not refused for it.
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "momentum": self.momentum,
                "weight_decay": self.weight_decay, "grad_clip": self.grad_clip,
                "val_images": len(self.data.val_y)}

    def _differs(self, stored: dict[str, Any] | None) -> bool:
        spec = json.loads(json.dumps(self.spec()))  # as a storage gives it back (tuples -> lists)
        if stored is None:
            return True
        added = set(self._training_spec()) - set(stored)
        return {k: v for k, v in spec.items() if k not in added} != json.loads(json.dumps(stored))

    def build(self) -> torch.nn.Module:
        """A fresh supernet, initialised from ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = build_network(self.space, self.data.num_classes, self.data.in_channels, self.channels)
        net = net.to(self.data.device)
        return net.to(memory_format=torch.channels_last) if self.channels_last else net

    def train(self, arch: Any, step: int, on_epoch: Callable[[int], bool] | None = None,
              stoppable: bool = False, epochs: int | None = None) -> None:
        """Train the path of ``arch`` for ``epochs`` epochs (default: the objective's); ``step`` seeds
        this trial's data order. ``on_epoch(epoch)`` after each epoch: True stops the training there (a
        pruned trial). ``stoppable``: another rank's trainer, told by rank 0 after each epoch whether to stop."""
        epochs = self.epochs if epochs is None else epochs
        if distributed.leads():  # every rank trains it with us
            distributed.command("train", self.space.key(arch), step, on_epoch is not None, epochs)
        self._fit(lambda images: arch, epochs, [self.seed, step], on_epoch, stoppable or on_epoch is not None)

    def warm_up(self) -> None:
        """SPOS-style: ``warmup_epochs`` epochs, each batch on a full-depth architecture drawn uniformly."""
        if distributed.leads():
            distributed.command("warm_up")
        rng = np.random.default_rng([self.seed, 2**31 - 1])  # a seed no trial's data order uses
        cost = 0.0

        def uniform_path(images: int) -> Any:
            nonlocal cost
            arch = self.space.root()
            for _ in range(self.space.max_level):
                arch = self.space.child(arch, int(rng.integers(self.space.num_children(arch))))
            cost += TRAIN_FACTOR * self._macs(arch) * images
            return arch

        started = time.perf_counter()
        self._fit(uniform_path, self.warmup_epochs, [self.seed, 2**31 - 1])
        self.warmed_up = True
        self.warmup_record = {"epochs": self.warmup_epochs, "cost_macs": float(cost),
                              "seconds": round(time.perf_counter() - started, 3)}

    def _fit(self, pick_arch: Callable[[int], Any], epochs: int, seed_words: list[int],
             on_epoch: Callable[[int], bool] | None = None, stoppable: bool = False) -> None:
        """SGD over ``epochs`` epochs; each batch trains the path ``pick_arch(batch images)`` gives.
        ``stoppable``: after each epoch, ``on_epoch`` (rank 0) may stop it, on every rank."""
        net, opt = self._ensure_supernet(None)
        seed = int(np.random.SeedSequence(seed_words).generate_state(1)[0])
        gen = make_generator(self.data.device, seed)
        rank, size = distributed.rank_and_size()
        params = list(net.parameters())
        net.train()
        finite = torch.ones((), dtype=torch.bool, device=self.data.device)
        for epoch in range(epochs):
            for x, y in self.data.train_batches(self.batch_size, gen):
                arch = pick_arch(len(y))
                n = len(y)
                if size > 1:  # this rank's shard of the global batch (the same batches on every rank)
                    x, y = x[rank::size], y[rank::size]  # may be empty: zero gradients, still all-reduced
                with torch.autocast(self.data.device.type, torch.bfloat16, enabled=self.amp):
                    # shards: each rank's sum over the global count, so the all-reduced gradient is the mean
                    loss = F.cross_entropy(net(self._layout(x), arch), y, reduction="mean" if size == 1 else "sum")
                    loss = loss if size == 1 else loss / n
                finite &= torch.isfinite(loss.detach())  # checked once per epoch: no host sync per batch
                opt.zero_grad(set_to_none=True)  # None, not zero: untouched paths stay untouched
                loss.backward()
                if size > 1:
                    distributed.average_gradients(params)
                if self.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
                opt.step()
            if not (bool(finite) if size == 1 else distributed.all_finite(finite)):
                raise FloatingPointError(
                    f"the training loss became NaN or infinite in epoch {epoch + 1} (lr={self.lr}): the trial "
                    "failed and the supernet was restored to its last checkpoint; a lower --lr avoids it")
            if stoppable:
                stop = on_epoch(epoch) if on_epoch is not None else None
                if (distributed.command(stop)[0] if size > 1 else stop):
                    return
                net.train()  # the report evaluated in eval mode

    @torch.no_grad()
    def evaluate(self, arch: Any, split: str = "val", limit: int | None = None) -> float:
        """Accuracy of the supernet path of ``arch`` on a split (search only ever uses ``val``), or on
        its first ``limit`` images."""
        net, _ = self._ensure_supernet(None)
        net.eval()  # the supernet's BN uses batch statistics in eval too (see nn.ops.batch_norm)
        correct = torch.zeros((), dtype=torch.int64, device=self.data.device)  # one host sync, at the end
        seen = 0
        for x, y in self.data.eval_batches(split, self.eval_batch_size, limit):
            with torch.autocast(self.data.device.type, torch.bfloat16, enabled=self.amp):
                correct += (net(self._layout(x), arch).argmax(1) == y).sum()
            seen += len(y)
        return int(correct) / seen

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # -- supernet lifetime ---------------------------------------------------------------------
    def attach(self, study: optuna.Study | None) -> None:
        """Build the supernet and resume it from the study's checkpoint, before any trial runs.

        Call it before ``study.optimize`` (``epnas search`` does): it reports a mismatched or foreign
        checkpoint without starting a trial, and completes the trial a killed search had trained
        and checkpointed but not yet recorded *before* the sampler can hand its slot out again.
        """
        if self.net is not None:
            return
        if study is not None:
            self._record_spec(study)
        self.net = self.build()
        self.optimizer = torch.optim.SGD(
            self.net.parameters(), lr=self.lr, momentum=self.momentum, nesterov=self.momentum > 0,
            weight_decay=self.weight_decay,
        )
        self._path = self._resolve_path(study)
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
            self.warm_up()
            if study is not None:
                study._storage.set_study_system_attr(study._study_id, WARMUP_ATTR, self.warmup_record)
            self.save()

    @property
    def checkpoint_path(self) -> Path | None:
        """Where the supernet is kept (known once attached); None: in memory only."""
        return self._path

    def detach(self, study: optuna.Study) -> None:
        """Write what the last checkpoint lacks and stop holding the study's supernet, so that another
        process may resume it (a search that ends)."""
        if self._path is not None:
            if self._unsaved:
                self.save()
            ckpt.release(study)

    def _record_spec(self, study: optuna.Study) -> None:
        stored = study._storage.get_study_system_attrs(study._study_id).get(OBJECTIVE_ATTR)
        if stored is None:
            study._storage.set_study_system_attr(study._study_id, OBJECTIVE_ATTR, json.loads(json.dumps(self.spec())))
        elif self._differs(stored):
            raise ValueError(
                f"study {study.study_name!r} was searched with other settings ({_diff(stored, self.spec())}); "
                "resume with the same settings, or use a new study name")

    def _ensure_supernet(self, trial: optuna.trial.Trial | None) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        if self.net is None:
            self.attach(trial.study if trial is not None else None)
        assert self.net is not None and self.optimizer is not None
        return self.net, self.optimizer

    def _resolve_path(self, study: optuna.Study | None) -> Path | None:
        if self.checkpoint is False:
            return None
        given = None if self.checkpoint is None or self.checkpoint is True else self.checkpoint
        if study is None:
            return None if given is None else Path(given)
        return ckpt.resolve_path(study, given)

    def save(self) -> None:
        """Write the checkpoint atomically, with the values of the trials it trained."""
        if self._path is None or self.net is None:
            return
        assert self.optimizer is not None
        started = time.monotonic()
        ckpt.write(self._path, {
            "format": ckpt.FORMAT, "spec": self.spec(), "token": self._token, "trained": list(self.trained),
            "values": dict(self.values), "pruned": sorted(self.pruned), "warmed_up": self.warmed_up, "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        })
        self._saved_at, self._unsaved = started, []

    def load(self, path: str | os.PathLike, study: optuna.Study | None = None) -> None:
        """Resume the weights of ``path``; with ``study``: check that they are the study's and complete
        the trials they hold but the study does not record."""
        state = ckpt.read(Path(path), self.data.device)
        if self._differs(state.get("spec")):
            raise ValueError(
                f"the supernet checkpoint {path} was made with other settings ({_diff(state.get('spec') or {}, self.spec())}) "
                "than this search; resume with the same settings, or use a new study name")
        self.set_state(state)
        self.trained = list(state["trained"])
        self.values = {int(n): v if isinstance(v, (list, tuple)) else float(v)
                       for n, v in (state.get("values") or {}).items()}
        self.pruned = {int(n) for n in state.get("pruned", ())}
        self.warmed_up = bool(state["warmed_up"])
        if study is None:
            return
        if state["format"] < 3:
            complete = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
            extra = [n for n in self.trained if n not in complete]
            if extra:
                warnings.warn(f"the supernet checkpoint contains training of trial(s) {extra} that the study "
                              "does not record as complete (killed between checkpoint and result)")
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

    def get_state(self) -> dict[str, Any]:
        assert self.net is not None and self.optimizer is not None
        return {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Take the weights and optimizer state of :meth:`get_state` (or a checkpoint)."""
        assert self.net is not None and self.optimizer is not None
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def _roll_back(self) -> None:
        """Back to the weights before a trial whose training failed part-way: the last checkpoint, and
        the trials trained since replayed."""
        if self._path is not None and self._path.exists():
            self.set_state(ckpt.read(self._path, self.data.device))
            if distributed.leads():
                distributed.command("state", self.get_state())
            start = len(self.trained) - len(self._unsaved)
            for i, (_, key, epochs) in enumerate(self._unsaved):
                self.train(self.space.parse(key), step=start + i, epochs=epochs)
        elif self.net is not None:
            _logger.warning("a trial failed part-way through training and there is no checkpoint to restore: "
                            "the supernet keeps that trial's partial training")


def _diff(stored: dict[str, Any], spec: dict[str, Any]) -> str:
    spec = json.loads(json.dumps(spec))
    names = [k for k in stored if stored[k] != spec.get(k)]  # keys added since are not held against it
    return "; ".join(f"{k}: study has {stored.get(k)!r}, now {spec.get(k)!r}" for k in names) or "?"
