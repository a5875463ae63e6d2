"""Cheap synthetic architecture scores with a known best, for testing and comparing samplers.

No training: an objective scores the sampled macro architecture against a hidden target
architecture. Two kinds, to be honest about where progressive search helps and where it does not:

- ``"prefix"``: 0.9 × (length of the prefix of layers whose op matches the target) / L
  + 0.1 × (agreement of skip bits with the target). Models "a network is as good as its longest
  right beginning": partial architectures are informative about their extensions, as progressive
  search assumes; the layers interact (a right op after a wrong one earns nothing).
- ``"chain"``: 0.9 × (fraction of layers whose op is the one a hidden rule prescribes after the
  previous layer's op; a hidden start op for layer 1) + 0.1 × (skip agreement). A local rule that
  holds at every depth, as "what works after what" does in real networks: a sequence model can
  learn it from shallow architectures and apply it deeper. (Its best is still one fixed sequence,
  so per-layer marginals find it too: TPE beat EPNAS on it here.)
- ``"separable"``: the mean over layers of 0.5 × [op matches] + 0.5 × (skip agreement). Every
  parameter contributes independently: the easy case for TPE and for random search.

All three are 1.0 exactly at the target and in [0, 1] everywhere, like a validation accuracy.

Compute: each trial also records what training its path would cost (user attr ``cost_macs``, see
:func:`synthetic_cost`), so that samplers can be compared at equal *compute* (:func:`run_at_equal_compute`,
:class:`StopAtCost`) rather than at an equal number of trials: a progressive search's shallow trials are
cheap, as they are in a real search.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from optuna_epnas.costs.cost import TRAIN_FACTOR, forward_macs, total_cost
from optuna_epnas.storage.keys import COST_ATTR
from optuna_epnas.spaces.macro import MacroArch, MacroSpace
from optuna_epnas.costs.values import full_size

KINDS = ("chain", "prefix", "separable")
#: The nominal network a synthetic trial "trains": a Fashion-MNIST-like 1×14×14 input, 16 channels, 10 classes.
COST_NETWORK = {"num_classes": 10, "in_channels": 1, "channels": 16, "image_size": 14}


def synthetic_cost(space: MacroSpace, arch: MacroArch) -> float:
    """What a synthetic trial of ``arch`` costs, in MACs: one training pass of one image through its
    path (``TRAIN_FACTOR`` × forward MACs of the nominal :data:`COST_NETWORK`). A relative unit -- a
    real trial's epochs × images would only scale it -- in which a shallow architecture costs less
    than its deeper extensions and cheap ops (pooling) less than convolutions, as in a real search."""
    return float(TRAIN_FACTOR * forward_macs(space, arch, **COST_NETWORK))


class SyntheticScore:
    """Objective ``trial -> score`` on ``space`` with a hidden target drawn from ``seed``."""

    def __init__(self, space: MacroSpace, seed: int = 0, kind: str = "prefix") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        rng = np.random.default_rng(seed)
        self.space, self.kind = space, kind
        arch = space.root()
        for _ in range(space.num_layers):
            arch = space.child(arch, int(rng.integers(space.num_children(arch))))
        self._rule = {op: space.ops[int(rng.integers(len(space.ops)))] for op in space.ops}
        if kind == "chain":  # the target follows the rule from a hidden start op
            ops = [space.ops[int(rng.integers(len(space.ops)))]]
            for _ in range(space.num_layers - 1):
                ops.append(self._rule[ops[-1]])
            arch = MacroArch(tuple(ops), arch.skips)
        self.target = arch

    def best(self) -> MacroArch:
        """The architecture that scores 1.0."""
        return self.target

    def score(self, arch: MacroArch) -> float:
        L, target = self.space.num_layers, self.target
        skip_agree = [
            np.mean([(j in sources) == (j in target.skips[layer]) for j in range(layer)]) if layer else 1.0
            for layer, sources in enumerate(arch.skips)
        ]
        op_match = [op == t for op, t in zip(arch.ops, target.ops)]
        if self.kind == "chain":
            follows = [op == (target.ops[0] if i == 0 else self._rule[arch.ops[i - 1]]) for i, op in enumerate(arch.ops)]
            return float(0.9 * sum(follows) / L + 0.1 * sum(skip_agree) / L)
        if self.kind == "separable":
            return float(sum(0.5 * m + 0.5 * a for m, a in zip(op_match, skip_agree)) / L)
        prefix = next((i for i, m in enumerate(op_match) if not m), len(op_match))
        return float(0.9 * prefix / L + 0.1 * sum(skip_agree) / L)

    def __call__(self, trial: optuna.trial.Trial) -> float:
        """Score the trial's architecture; record its ``arch`` key, ``level`` and compute cost ``cost_macs``
        (:func:`synthetic_cost`) as user attrs, as :class:`~optuna_epnas.SupernetObjective` does."""
        arch = self.space.suggest(trial)
        trial.set_user_attr("arch", self.space.key(arch))
        trial.set_user_attr("level", arch.level)
        trial.set_user_attr(COST_ATTR, synthetic_cost(self.space, arch))
        return self.score(arch)


# -- equal-compute comparisons -------------------------------------------------------------------
class StopAtCost:
    """Study callback: ``study.stop()`` once the study has spent ``budget_macs``.

    The first call reads everything the study has spent so far (:func:`optuna_epnas.costs.cost.total_cost`,
    so that a resumed study counts its earlier trials); later calls add the finished trial's
    ``cost_macs`` (failed trials included: the compute was spent). That running sum is exact for a
    synthetic study, whose trials are its only costs. The trial that crosses the budget completes
    (a trial cannot be taken back), so a search overshoots by at most one trial.
    """

    def __init__(self, budget_macs: float) -> None:
        if not budget_macs > 0:
            raise ValueError(f"budget_macs must be > 0, got {budget_macs!r}")
        self.budget = float(budget_macs)
        self.spent: float | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.spent is None:
            self.spent = total_cost(study)
        else:
            self.spent += float(trial.user_attrs.get(COST_ATTR, 0.0))
        if self.spent >= self.budget:
            study.stop()


@dataclass
class SearchResult:
    """One search of a synthetic score: ``best`` is the best score of a *complete* architecture
    (level == ``space.max_level``; nan when none was measured)."""

    best: float
    trials: int
    cost_macs: float
    seconds: float
    study: optuna.Study


def best_complete(study: optuna.Study, space: MacroSpace) -> float:
    """The best value of a complete architecture (level == ``space.max_level``) in ``study``."""
    values = [t.value for t in full_size(study.get_trials(deepcopy=False), space.max_level)]
    return float(max(values)) if values else float("nan")


def run_search(sampler: optuna.samplers.BaseSampler, score: SyntheticScore, n_trials: int | None = None,
               budget_macs: float | None = None) -> SearchResult:
    """Search ``score`` with ``sampler`` for ``n_trials`` trials (default: an EPNAS-like sampler's
    ``n_trials``, its full schedule), stopping early once ``budget_macs`` is spent (if given)."""
    if n_trials is None:
        n_trials = getattr(sampler, "n_trials", None)
        if n_trials is None:
            raise ValueError("n_trials is needed for a sampler without a schedule of its own")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    started = time.perf_counter()
    callbacks = [StopAtCost(budget_macs)] if budget_macs is not None else []
    study.optimize(score, n_trials=n_trials, callbacks=callbacks)
    return SearchResult(best_complete(study, score.space), len(study.trials), total_cost(study),
                        time.perf_counter() - started, study)


def run_at_equal_compute(sampler: optuna.samplers.BaseSampler, score: SyntheticScore, budget_macs: float,
                         max_trials: int = 100_000) -> SearchResult:
    """Search ``score`` with ``sampler`` until it has spent ``budget_macs`` (or run ``max_trials``).

    For a progressive sampler pass ``max_trials=sampler.n_trials`` to stop at the end of its schedule
    should that come first. The protocol of ``studies/synthetic_samplers.py``: the reference budget is
    the total cost of the default EPNAS search's full schedule on the same score (:func:`run_search`),
    and every other sampler runs until it has spent that.
    """
    return run_search(sampler, score, n_trials=max_trials, budget_macs=budget_macs)
