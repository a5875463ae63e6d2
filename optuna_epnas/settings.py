"""Default settings, in one place: the supernet's training, a search's, and final (stand-alone) training.

Frozen dataclasses of plain values; the command line takes its defaults from them and the library calls
theirs. :class:`SearchSettings` is what a study is made with (a resume checks it); :data:`VARIANTS`
names the samplers as changes to its defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SupernetSettings:
    """The supernet's training defaults: :class:`~optuna_epnas.SupernetTrainer`'s (its signature reads them),
    :class:`~optuna_epnas.SupernetObjective`'s and its :class:`~optuna_epnas.CheckpointStore`'s."""

    epochs: int = 3
    channels: int = 24
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    warmup_epochs: int = 0
    eval_batch_size: int = 1000
    rescore_images: int = 1000
    checkpoint_every: float = 60.0  # seconds between supernet checkpoints


SUPERNET = SupernetSettings()


@dataclass(frozen=True)
class FinalSettings:
    """Final training of a found architecture alone (``train_final``'s schedule; ``epnas train``,
    ``epnas compare``'s stand-alone runs): SGD with Nesterov momentum, lr cosine-decayed to 0."""

    epochs: int = 30
    lr: float = 0.05
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    cells: int = 3  # micro: normal cells per stage (the paper's final training: 3; search: 2)

    def schedule(self) -> dict[str, Any]:
        """The SGD settings, as results record them."""
        return {"lr": self.lr, "batch_size": self.batch_size, "momentum": self.momentum,
                "weight_decay": self.weight_decay}


FINAL = FinalSettings()
#: ``epnas ranking``: epochs of each of its stand-alone networks (it trains many: fewer than FINAL's).
RANKING_EPOCHS = 10


@dataclass(frozen=True)
class SamplerSettings:
    """:class:`~optuna_epnas.EPNASSampler`'s defaults and those of its behaviour objects (the selection,
    its acquisition, the surrogate): the variant that measured best in this package's studies
    (docs/defaults.md). Written here only; the classes and :class:`SearchSettings` read them."""

    k: int = 25
    iterations: int = 3
    temperature: tuple[float, float] = (0.5, 0.1)
    ensemble: int = 5  # LSTMs fitted per level
    surrogate_steps: int = 500  # Adam steps per fit
    score: str = "z"
    acquisition: str = "ucb"
    beta: float = 1.0
    parent_weight: float = 3.0
    diverse: bool = True
    max_retries: int = 1


SAMPLER = SamplerSettings()


@dataclass(frozen=True)
class SearchSettings:
    """Everything a search is made with but the space, data and seed: sampler and supernet training.

    The defaults are the default EPNAS (:class:`~optuna_epnas.EPNASSampler`'s defaults, plus one
    epoch of warm-up; re-scoring is off: see ``VARIANTS["epnas-rescore"]``); ``VARIANTS`` names the paper's
    preset, PNAS, the ablations and the baselines as changes to it.
    """

    k: int = SAMPLER.k
    iterations: int = SAMPLER.iterations
    temperature: tuple[float, float] = SAMPLER.temperature
    ensemble: int = SAMPLER.ensemble
    score: str = SAMPLER.score
    acquisition: str = SAMPLER.acquisition
    beta: float = SAMPLER.beta
    rescore: bool = False
    warmup_epochs: int = 1
    epochs: int = SUPERNET.epochs
    channels: int = SUPERNET.channels
    batch_size: int = SUPERNET.batch_size
    lr: float = SUPERNET.lr
    parent_weight: float = SAMPLER.parent_weight
    diverse: bool = SAMPLER.diverse
    max_params: int | None = None  # size limits, counted in the network the search trains
    max_macs: int | None = None
    objectives: tuple[str, ...] = ("accuracy",)  # ("accuracy", "params"|"macs"|"latency"): two objectives
    max_latency_ms: float | None = None  # estimated on the search's device (optuna_epnas.costs.latency)
    n_trials: int | None = None  # a trial budget the progressive schedule is fitted to (k, iterations)
    reuse: bool = False  # a network measured before keeps its value (a deterministic objective)
    estimator: str = "supernet"  # how a trial scores its architecture: ESTIMATORS

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name, off in _ABSENT_WHEN_OFF.items():  # runs made before these options existed still resume
            if out[name] == off:
                del out[name]
        return out


_ABSENT_WHEN_OFF = {"parent_weight": 0.0, "diverse": False, "max_params": None, "max_macs": None,
                    "objectives": ("accuracy",), "max_latency_ms": None, "n_trials": None, "reuse": False, "estimator": "supernet"}


#: The paper's EPNAS: p ∝ s^(1/τ) over one LSTM's predicted accuracy, τ 10 → 1, K=25, 3 iterations, no
#: re-scoring, no warm-up (``EPNASSampler.paper()``, ``--sampler epnas-paper``; ``pnas``: its top K).
PAPER = {"temperature": (10.0, 1.0), "ensemble": 1, "score": "raw", "acquisition": "mean", "rescore": False,
         "warmup_epochs": 0, "parent_weight": 0.0, "diverse": False}
#: Named samplers, each a change to the default settings that wins over the command line's (a
#: variant *is* its mechanisms). Baselines train no warm-up: their trials are uniform path training.
VARIANTS: dict[str, dict[str, Any]] = {
    "epnas": {},
    "epnas-paper": PAPER,  # the paper's EPNAS: p ∝ s^(1/τ) over one LSTM, τ 10 → 1
    "pnas": PAPER,  # top-K of one LSTM's predictions (PNAS itself averaged 5: --ensemble is fixed here)
    "tpe": {"warmup_epochs": 0},
    "random": {"warmup_epochs": 0},
    "nsga2": {"warmup_epochs": 0},  # Optuna's NSGA-II: the multi-objective baseline
    # ablations of the default, one mechanism off each
    "epnas-rescore": {"rescore": True},  # off by default: re-scored values favour the last-trained path
    "epnas-no-warmup": {"warmup_epochs": 0},
    "epnas-paper-selection": {"temperature": (10.0, 1.0), "score": "raw", "acquisition": "mean"},
    "epnas-surrogate-only": {"parent_weight": 0.0, "diverse": False},  # the draw before parent weight + diverse
    # an option under test: a path measured before keeps its value (on by default on NAS-Bench-201's table only)
    "epnas-reuse": {"reuse": True},
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
    if given.get("estimator", "supernet") not in ESTIMATORS:
        raise ValueError(f"unknown estimator {given['estimator']!r}; choose from {', '.join(ESTIMATORS)}")
    settings = dataclasses.replace(SearchSettings(), **{**given, **VARIANTS[sampler]})
    return dataclasses.replace(settings, temperature=tuple(float(t) for t in settings.temperature))


#: How a search's trials score architectures (``--estimator``): "supernet" trains the path on the shared
#: weights (SupernetObjective's own protocol); the others are zero-cost proxies on the untrained network
#: (optuna_epnas.estimators.ZeroCost, 4 initialisations averaged), no supernet. Ranking benchmark:
#: studies/results/ranking-benchmark/.
ESTIMATORS = ("supernet", "jacob_cov", "snip", "grad_norm", "synflow", "naswot")


#: Supernet training on a GPU when the command line leaves it open: a batch twice the CPU default's
#: (a 24-channel path is too small to fill a GPU at 128) and the learning rate scaled with it, linearly.
#: Not measured on a GPU yet (benchmarks/gpu_search.py is the check); a study keeps what it was made with.
GPU_TRAINING = {"batch_size": 256, "lr": 0.1}
