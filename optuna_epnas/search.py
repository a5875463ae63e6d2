"""The search set-up shared by ``epnas search`` and ``epnas compare``: the search space from the command
line, the sampler, the study with its supernet objective (:func:`open_search`), and the per-trial progress lines."""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from optuna_epnas.cost import NetworkSize, total_cost
from optuna_epnas.latency import LatencyTable, latency_table
from optuna_epnas.argtypes import non_negative_float, non_negative_int, positive_float, positive_int
from optuna_epnas.analysis.dashboard import DashboardRecorder
from optuna_epnas.data import DeviceData
from optuna_epnas.objective import SupernetObjective
from optuna_epnas.sampler.epnas import ACQUISITIONS, SCORES, EPNASSampler, Rescorer
from optuna_epnas.sampler.schedule import planned_trials
from optuna_epnas.spaces import MACRO_OPS, MICRO_OPS, MacroSpace, MicroSpace, SearchSpace
from optuna_epnas.storages import open_storage
from optuna_epnas.values import accuracy_of, check_objectives

@dataclass(frozen=True)
class SearchSettings:
    """Everything a search is made with but the space, data and seed: sampler and supernet training.

    The defaults are the default EPNAS (:class:`~optuna_epnas.EPNASSampler`'s defaults, plus one
    epoch of warm-up; re-scoring is off: see ``VARIANTS["epnas-rescore"]``); ``VARIANTS`` names the paper's preset, PNAS, the ablations
    and the baselines as changes to it.
    """

    k: int = 25
    iterations: int = 3
    temperature: tuple[float, float] = (0.5, 0.1)
    ensemble: int = 5
    score: str = "z"
    acquisition: str = "ucb"
    beta: float = 1.0
    rescore: bool = False
    warmup_epochs: int = 1
    epochs: int = 3
    channels: int = 24
    batch_size: int = 128
    lr: float = 0.05
    parent_weight: float = 3.0
    diverse: bool = True
    max_params: int | None = None  # size limits, counted in the network the search trains
    max_macs: int | None = None
    objectives: tuple[str, ...] = ("accuracy",)  # ("accuracy", "params"|"macs"|"latency"): two objectives
    max_latency_ms: float | None = None  # estimated on the search's device (optuna_epnas.latency)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name, off in _ABSENT_WHEN_OFF.items():  # runs made before these options existed still resume
            if out[name] == off:
                del out[name]
        return out


_ABSENT_WHEN_OFF = {"parent_weight": 0.0, "diverse": False, "max_params": None, "max_macs": None,
                    "objectives": ("accuracy",), "max_latency_ms": None}


_PAPER = {"temperature": (10.0, 1.0), "ensemble": 1, "score": "raw", "acquisition": "mean", "rescore": False,
          "warmup_epochs": 0, "parent_weight": 0.0, "diverse": False}
#: Named samplers, each a change to the default settings that wins over the command line's (a
#: variant *is* its mechanisms). Baselines train no warm-up: their trials are uniform path training.
VARIANTS: dict[str, dict[str, Any]] = {
    "epnas": {},
    "epnas-paper": _PAPER,  # the paper's EPNAS: p ∝ s^(1/τ) over one LSTM, τ 10 → 1
    "pnas": _PAPER,  # top-K of one LSTM's predictions (PNAS itself averaged 5: --ensemble is fixed here)
    "tpe": {"warmup_epochs": 0},
    "random": {"warmup_epochs": 0},
    "nsga2": {"warmup_epochs": 0},  # Optuna's NSGA-II: the multi-objective baseline
    # ablations of the default, one mechanism off each
    "epnas-rescore": {"rescore": True},  # off by default: re-scored values favour the last-trained path
    "epnas-no-warmup": {"warmup_epochs": 0},
    "epnas-paper-selection": {"temperature": (10.0, 1.0), "score": "raw", "acquisition": "mean"},
    "epnas-surrogate-only": {"parent_weight": 0.0, "diverse": False},  # the draw before parent weight + diverse
}
SAMPLER_NAMES = tuple(VARIANTS)
PROGRESSIVE = tuple(n for n in SAMPLER_NAMES if n not in ("tpe", "random", "nsga2"))
BASELINES = ("epnas", "epnas-paper", "pnas", "tpe", "random")  # what `epnas compare` runs by default


def resolve_settings(sampler: str, given: dict[str, Any] | None = None) -> SearchSettings:
    """The default settings, then what was ``given`` (None values ignored), then the variant's own."""
    if sampler not in VARIANTS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLER_NAMES)}")
    given = {k: v for k, v in (given or {}).items() if v is not None}
    unknown = set(given) - {f.name for f in dataclasses.fields(SearchSettings)}
    if unknown:
        raise ValueError(f"unknown search setting(s) {sorted(unknown)}")
    settings = dataclasses.replace(SearchSettings(), **{**given, **VARIANTS[sampler]})
    return dataclasses.replace(settings, temperature=tuple(float(t) for t in settings.temperature))


#: Supernet training on a GPU when the command line leaves it open: a batch twice the CPU default's
#: (a 24-channel path is too small to fill a GPU at 128) and the learning rate scaled with it, linearly.
#: Not measured on a GPU yet (benchmarks/gpu_search.py is the check); a study keeps what it was made with.
GPU_TRAINING = {"batch_size": 256, "lr": 0.1}


def settings_from_args(args: argparse.Namespace, device: Any = None) -> dict[str, Any]:
    """The search settings given on the command line (None: not given); on a CUDA ``device`` the batch
    size and learning rate not given are :data:`GPU_TRAINING`'s."""
    tau = (args.tau_start, args.tau_end)
    if (tau[0] is None) != (tau[1] is None):
        default = SearchSettings().temperature
        tau = (tau[0] or default[0], tau[1] or default[1])
    return {"k": args.k, "iterations": args.iterations, "temperature": None if tau[0] is None else tau,
            "ensemble": args.ensemble, "score": args.score, "acquisition": args.acquisition, "beta": args.beta,
            "rescore": args.rescore, "warmup_epochs": args.warmup_epochs, "epochs": args.epochs,
            "channels": args.channels, "batch_size": args.batch_size, "lr": args.lr,
            "parent_weight": args.parent_weight, "diverse": args.diverse,
            "max_params": getattr(args, "max_params", None), "max_macs": getattr(args, "max_macs", None),
            "objectives": getattr(args, "objectives", None), "max_latency_ms": getattr(args, "max_latency_ms", None),
            **({name: value for name, value in GPU_TRAINING.items() if getattr(args, name) is None}
               if device is not None and torch.device(device).type == "cuda" else {})}


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: ``epnas search --pruner``: over the per-epoch reports of ``--report-epochs`` (none: Optuna's
#: default MedianPruner would prune as soon as trials report).
PRUNERS: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
    "none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
    "successive-halving": optuna.pruners.SuccessiveHalvingPruner,
}


# -- the search space, from the command line ---------------------------------------------------------
def op_list(text: str) -> tuple[str, ...]:
    ops = tuple(o.strip() for o in text.split(",") if o.strip())
    unknown = [o for o in ops if o not in MICRO_OPS]
    if not ops or unknown:
        raise argparse.ArgumentTypeError(f"unknown operation(s) {unknown or [text]}; choose from {','.join(MICRO_OPS)}")
    return ops


def objective_list(text: str) -> tuple[str, ...]:
    try:
        return check_objectives(o.strip() for o in text.split(",") if o.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use accuracy, accuracy,params or accuracy,macs") from None


def add_space_arguments(group: argparse._ActionsContainer) -> None:
    """The search-space options of ``epnas search`` and ``epnas compare``."""
    group.add_argument("--space", choices=("macro", "micro"), default="macro",
                       help="macro: a chain of layers with skips; micro: a cell of blocks, stacked")
    group.add_argument("--layers", type=positive_int, default=12, help="macro: layers of a complete architecture")
    group.add_argument("--blocks", type=positive_int, default=5, help="micro: blocks of a complete cell")
    group.add_argument("--cells", type=positive_int, default=2, help="micro: normal cells between reductions (N)")
    group.add_argument("--ops", type=op_list, default=None,
                       help=f"comma-separated subset of the operations (default: all; macro {','.join(MACRO_OPS)}; "
                            "micro adds identity)")


def add_search_arguments(group: argparse._ActionsContainer) -> None:
    """The sampler and supernet-training options of ``epnas search`` and ``epnas compare``: each one
    left out takes the default EPNAS's value, and a named variant (``epnas-paper``, ``pnas``, the
    ablations) fixes its own mechanisms over what is given."""
    d = SearchSettings()
    group.add_argument("--k", type=positive_int, default=None, help=f"architectures kept per level (default {d.k})")
    group.add_argument("--iterations", type=positive_int, default=None,
                       help=f"progressions from level 1 to full depth (default {d.iterations})")
    group.add_argument("--tau-start", type=positive_float, default=None,
                       help=f"EPNAS temperature, first iteration (default {d.temperature[0]}; paper 10)")
    group.add_argument("--tau-end", type=positive_float, default=None,
                       help=f"EPNAS temperature, last iteration (default {d.temperature[1]}; paper 1)")
    group.add_argument("--score", choices=SCORES, default=None,
                       help=f"raw: the paper's p ∝ s^(1/τ); z: p ∝ exp(z/τ) over z-scored candidates (default {d.score})")
    group.add_argument("--acquisition", choices=ACQUISITIONS, default=None,
                       help=f"mean prediction, mean + β·std (ucb) or expected improvement (ei) of the surrogate "
                            f"ensemble (default {d.acquisition})")
    group.add_argument("--beta", type=non_negative_float, default=None, help=f"UCB's β (default {d.beta})")
    group.add_argument("--ensemble", type=positive_int, default=None,
                       help=f"LSTM surrogates per level (default {d.ensemble}; the paper's EPNAS: 1; PNAS: 5)")
    group.add_argument("--parent-weight", type=non_negative_float, default=None,
                       help="adds this × the parent's z-scored measured accuracy to each child's log-weight "
                            f"(default {d.parent_weight:g}: the surrogate alone)")
    group.add_argument("--diverse", action=argparse.BooleanOptionalAction, default=None,
                       help="draw the K children from distinct (parent, new op) groups first "
                            f"(default {'on' if d.diverse else 'off'})")
    group.add_argument("--rescore", action=argparse.BooleanOptionalAction, default=None,
                       help="re-evaluate the measured architectures on the current supernet weights before each "
                            f"level's surrogate fit (default {'on' if d.rescore else 'off'})")
    group.add_argument("--warmup-epochs", type=non_negative_int, default=None,
                       help=f"epochs of uniformly sampled full-depth paths before level 1 (default {d.warmup_epochs})")
    group.add_argument("--epochs", type=positive_int, default=None,
                       help=f"supernet training epochs per trial (default {d.epochs})")
    group.add_argument("--channels", type=positive_int, default=None, help=f"supernet width (default {d.channels})")
    group.add_argument("--batch-size", type=positive_int, default=None,
                       help=f"supernet SGD batch size (default {d.batch_size})")
    group.add_argument("--lr", type=positive_float, default=None, help=f"supernet SGD learning rate (default {d.lr})")
    group.add_argument("--max-params", type=positive_int, default=None, metavar="N",
                       help="never sample a network with more parameters, counted at the search's --channels "
                            "(progressive samplers; TPE and random see it as an Optuna constraint). Macro space")
    group.add_argument("--max-macs", type=positive_int, default=None, metavar="N",
                       help="likewise for forward multiply-adds per image")
    group.add_argument("--max-latency-ms", type=positive_float, default=None, metavar="MS",
                       help="likewise for the forward latency of one image on the search's device, estimated from "
                            "a table of the network's parts measured once (cached in ~/.cache/optuna_epnas)")
    group.add_argument("--objectives", type=objective_list, default=None, metavar="LIST",
                       help="accuracy (default), or accuracy,params / accuracy,macs / accuracy,latency: a "
                            "two-objective search (accuracy maximised, the cost minimised); the summary lists the "
                            "Pareto front")


def make_space(args: argparse.Namespace) -> SearchSpace:
    if args.space == "micro":
        return MicroSpace(num_blocks=args.blocks, cells=args.cells, ops=args.ops or MICRO_OPS)
    return MacroSpace(num_layers=args.layers, ops=args.ops or MACRO_OPS)


# -- a search, set up as `epnas search` sets it up -----------------------------------------------------
def make_sampler(name: str, space: SearchSpace, settings: SearchSettings, seed: int,
                 rescore: Rescorer | None = None, network: NetworkSize | None = None,
                 latency: LatencyTable | None = None, device: Any = None) -> optuna.samplers.BaseSampler:
    """The named sampler, seeded: a progressive variant (EPNAS or PNAS selection), TPE or random.
    ``network``, ``latency``: what the settings' limits and cost objective are counted in (the objective's);
    ``device``: where a progressive sampler's surrogates run (the search's)."""
    if name in PROGRESSIVE:
        if settings.rescore and rescore is None:
            raise ValueError("these settings re-score architectures on the supernet: pass its rescore callable")
        return EPNASSampler(space, k=settings.k, iterations=settings.iterations,
                            selection="pnas" if name == "pnas" else "epnas", temperature=settings.temperature,
                            seed=seed, surrogate_ensemble=settings.ensemble, score=settings.score,
                            acquisition=settings.acquisition, beta=settings.beta,
                            rescore=rescore if settings.rescore else None,
                            parent_weight=settings.parent_weight, diverse=settings.diverse,
                            max_params=settings.max_params, max_macs=settings.max_macs, network=network,
                            objectives=settings.objectives, max_latency_ms=settings.max_latency_ms, latency=latency,
                            surrogate_device=None if device is None else str(device))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":  # generations of 10: at the ~50 trials of a proxy budget the default 50 would never evolve
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLER_NAMES)}")


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE and PRUNED trials in trial order: what a trial budget counts (failed ones are retried)."""
    return sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)


@dataclass
class Search:
    """A study, its sampler and its supernet objective, ready to run or resume.

    ``budget_is_exact``: stop at exactly ``budget`` finished trials, whatever the sampler (a
    progressive sampler stops mid-schedule or goes on into further iterations). Otherwise a
    progressive sampler runs its schedule to the end (``budget`` is then its planned trials).
    ``cost_budget`` (MACs, :mod:`optuna_epnas.cost`), for a sampler without a schedule: run until the
    search has spent that much compute (the trial that crosses it is the last); ``budget`` is then
    only a safety cap on trials.
    """

    study: optuna.Study
    sampler: optuna.samplers.BaseSampler
    objective: SupernetObjective
    space: SearchSpace
    budget: int
    budget_is_exact: bool
    checkpoint: Path | None
    cost_budget: float | None = None

    @property
    def progressive(self) -> bool:
        return isinstance(self.sampler, EPNASSampler)

    @property
    def finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED))

    def is_done(self) -> bool:
        if self.progressive and not self.budget_is_exact:
            assert isinstance(self.sampler, EPNASSampler)
            return self.sampler.is_finished(self.study)
        if self.cost_budget is not None:
            return total_cost(self.study) >= self.cost_budget or self.finished >= self.budget
        return self.finished >= self.budget

    def run(self, callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = ()) -> None:
        """Run what is left (nothing when done), with the dashboard notes ``epnas search`` writes."""
        recorder = DashboardRecorder(planned_trials=self.budget)  # trial notes + drawings, a study note
        try:
            if not self.is_done():
                # a diverging architecture fails its trial (retried, then given up); the search goes on
                self.study.optimize(self.objective, callbacks=[*callbacks, recorder, self._stop_rule()],
                                    catch=(FloatingPointError,))
        finally:
            self.objective.detach(self.study)  # another process may resume it now
            recorder.close()  # the drawings still being made
        recorder.write_study_note(self.study, final=True)  # final numbers, also when nothing was left to run

    def _stop_rule(self) -> Callable[[optuna.Study, FrozenTrial], None]:
        if (self.progressive and not self.budget_is_exact) or self.cost_budget is not None:
            def stop_when_done(study: optuna.Study, trial: FrozenTrial) -> None:
                if self.is_done():
                    study.stop()

            return stop_when_done
        return optuna.study.MaxTrialsCallback(self.budget, states=FINISHED)


def make_objective(space: SearchSpace, data: DeviceData, settings: SearchSettings, seed: int,
                   **kwargs: Any) -> SupernetObjective:
    """The supernet objective a search with ``settings`` and ``seed`` trains (not yet attached to a study);
    ``kwargs``: where its checkpoint goes (``checkpoint``, ``takeover``)."""
    return SupernetObjective(space, data, epochs=settings.epochs, channels=settings.channels,
                             batch_size=settings.batch_size, lr=settings.lr, seed=seed,
                             warmup_epochs=settings.warmup_epochs, max_params=settings.max_params,
                             max_macs=settings.max_macs, objectives=settings.objectives,
                             max_latency_ms=settings.max_latency_ms, latency=latency_for(space, data, settings),
                             **kwargs)


def latency_for(space: SearchSpace, data: DeviceData, settings: SearchSettings) -> LatencyTable | None:
    """The device's latency table when the settings limit or minimise latency (measured once, cached)."""
    if settings.max_latency_ms is None and "latency" not in settings.objectives:
        return None
    return latency_table(space, NetworkSize.of(data, settings.channels), data.device)


#: Study system attr: the named sampler a search was made with (resuming with another is refused).
SAMPLER_ATTR = "epnas:sampler"


def _record_sampler(study: optuna.Study, sampler: str) -> None:
    stored = study._storage.get_study_system_attrs(study._study_id).get(SAMPLER_ATTR)
    if stored is None:
        study._storage.set_study_system_attr(study._study_id, SAMPLER_ATTR, sampler)
    elif stored != sampler:
        raise ValueError(f"study {study.study_name!r} was searched with --sampler {stored}, not {sampler}: its "
                         f"values would mix two searches. Resume it with --sampler {stored}, or use a new study name")


def open_search(
    space: SearchSpace, data: DeviceData, sampler: str, storage: str | optuna.storages.BaseStorage, study_name: str,
    *, settings: SearchSettings | None = None, seed: int = 0, budget: int | None = None,
    cost_budget: float | None = None, checkpoint: str | Path | None = None, heartbeat: float | None = None,
    takeover: bool = False, report_epochs: bool = False, pruner: optuna.pruners.BasePruner | None = None,
    checkpoint_every: float = 60.0,
) -> Search:
    """Create or load the study and attach its supernet (``epnas search`` and ``epnas compare``).

    ``settings``: the named sampler's (:func:`resolve_settings`; default: its defaults).
    ``budget=None``: a progressive sampler runs its schedule, TPE/random get as many trials as the
    schedule plans; an int: every sampler gets exactly that many finished trials. ``cost_budget``
    (MACs; TPE/random only): run until that much compute is spent, ``budget`` capping the trials.
    ``checkpoint``: where the supernet goes (a file or a directory; default beside a SQLite or journal
    file, or where the study recorded it); ``heartbeat``: seconds between Optuna's RDB heartbeats, so
    that a worker lost on another machine has its trial failed and its slot run again;
    ``takeover``, ``report_epochs``, ``checkpoint_every``: see :class:`~optuna_epnas.SupernetObjective`; ``pruner``: the
    study's (default: none -- not Optuna's MedianPruner).
    A checkpoint or study made with other settings, or another sampler, fails here, before any trial.
    """
    settings = settings or resolve_settings(sampler)
    if not isinstance(pruner, (optuna.pruners.NopPruner, type(None))) and not report_epochs:
        raise ValueError("a pruner stops trials by their per-epoch reports: add --report-epochs (report_epochs=True)")
    objective = make_objective(space, data, settings, seed, checkpoint=checkpoint, takeover=takeover,
                               report_epochs=report_epochs, checkpoint_every=checkpoint_every)
    made = make_sampler(sampler, space, settings, seed, rescore=objective.rescore, network=objective.network_size,
                        latency=objective.latency, device=data.device)
    if cost_budget is not None and isinstance(made, EPNASSampler):
        raise ValueError("a progressive sampler runs its schedule: a compute budget is for TPE and random search")
    opened = open_storage(storage, heartbeat) if isinstance(storage, str) else storage
    directions = ["maximize"] + ["minimize"] * (len(settings.objectives) - 1)
    study = optuna.create_study(storage=opened, study_name=study_name, directions=directions, sampler=made,
                                pruner=pruner or optuna.pruners.NopPruner(), load_if_exists=True)
    if [d.name.lower() for d in study.directions] != directions:
        raise ValueError(f"study {study_name!r} has {len(study.directions)} objective(s) "
                         f"({', '.join(d.name.lower() for d in study.directions)}), not the --objectives given "
                         f"({', '.join(settings.objectives)}): resume it with its own, or use a new study name")
    _record_sampler(study, sampler)
    objective.attach(study)  # before the sampler runs: completes a trial a kill left unrecorded
    return Search(study=study, sampler=made, objective=objective, space=space,
                  budget=budget or planned_trials(space, settings.k, settings.iterations),
                  budget_is_exact=budget is not None, checkpoint=objective.checkpoint_path,
                  cost_budget=cost_budget)


# -- progress lines ----------------------------------------------------------------------------------
def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


class Progress:
    """One line per finished trial: where the schedule is, the result, the best so far."""

    def __init__(self, study, space, budget, sampler, quiet) -> None:
        self.space, self.budget, self.sampler, self.quiet = space, budget, sampler, quiet
        self.started = time.perf_counter()
        self.best_full: float | None = None
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            self._update(t)
        self.finished = _finished(study)  # counted from here on, not re-read per trial

    def _update(self, trial) -> None:
        if trial.user_attrs.get("level") == self.space.max_level and accuracy_of(trial) is not None:
            self.best_full = max(self.best_full or 0.0, accuracy_of(trial))

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._update(trial)
        self.finished += trial.state in FINISHED
        if self.quiet:
            return
        a = trial.user_attrs
        where = (f"iter {a['iteration']}/{self.sampler.iterations} level {a['level']}/{self.space.max_level} "
                 f"τ={a['temperature']:.3g}" if "iteration" in a else f"level {a.get('level', '?')}")
        value = "failed" if accuracy_of(trial) is None else f"acc {accuracy_of(trial):.4f}" + (
            f" {trial.values[1]:,.0f}" if len(trial.values) > 1 else "") + (
            f" (pruned after epoch {trial.last_step + 1})" if trial.state == TrialState.PRUNED else "")
        best = "-" if self.best_full is None else f"{self.best_full:.4f}"
        print(
            f"[{self.finished:>4}/{self.budget}] trial {trial.number:>4} {where:<32} {value}  "
            f"best full-depth {best}  ({time.perf_counter() - self.started:.0f}s)",
            flush=True,
        )
