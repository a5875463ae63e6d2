"""Regularized evolution (Real et al., AAAI 2019) as an Optuna sampler: the NAS baseline of NAS-Bench-201.

A population of the ``population_size`` most recent complete trials ages out its oldest; each new
trial samples ``sample_size`` members at random, takes the best as parent and mutates one of its
parameters to another value. Until the first ``population_size`` trials are complete, trials are
random. Everything is read from the study's trials (state in storage, so a study resumes), and each
trial's draws come from ``(seed, trial number)``, so a resumed search draws what it would have drawn.
Categorical parameters only (an architecture's); any other parameter is its independent sampler's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_epnas._checks import check_int


class RegularizedEvolutionSampler(BaseSampler):
    """Regularized (aging) evolution over a study's categorical parameters.

    Args:
        population_size: P, the most recent complete trials that form the population (NB201's REA: 10-20).
        sample_size: S, members drawn (without replacement) to pick a parent from (NB201's REA: 3-10).
        seed: seeds the draws (with each trial's number).
        independent_sampler: samples the first P trials and any parameter that is not categorical
            (default: ``RandomSampler(seed)``).
    """

    def __init__(self, population_size: int = 20, sample_size: int = 5, seed: int | None = None,
                 independent_sampler: BaseSampler | None = None) -> None:
        check_int("population_size", population_size, 2)
        check_int("sample_size", sample_size, 1)
        if sample_size > population_size:
            raise ValueError(f"sample_size ({sample_size}) cannot exceed population_size ({population_size})")
        self.population_size, self.sample_size = population_size, sample_size
        self.seed = int(np.random.SeedSequence().generate_state(1)[0]) if seed is None else seed
        self._independent = independent_sampler or RandomSampler(seed=seed)
        self._search_space = optuna.search_space.IntersectionSearchSpace()

    def reseed_rng(self) -> None:
        self._independent.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {name: dist for name, dist in self._search_space.calculate(study).items()
                if isinstance(dist, CategoricalDistribution) and len(dist.choices) > 1}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space or len(study.directions) != 1:
            return {}
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and np.isfinite(t.value) and all(n in t.params for n in search_space)]
        if len(done) < self.population_size:
            return {}
        population = sorted(done, key=lambda t: t.number)[-self.population_size:]  # aging: the newest P
        rng = np.random.default_rng([self.seed, trial.number])
        sample = [population[i] for i in rng.choice(len(population), self.sample_size, replace=False)]
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        parent = max(sample, key=lambda t: sign * t.value)
        child = {name: parent.params[name] for name in search_space}
        name = sorted(search_space)[int(rng.integers(len(search_space)))]
        choices = search_space[name].choices  # type: ignore[attr-defined]
        others = [c for c in choices if c != child[name]]
        child[name] = others[int(rng.integers(len(others)))]
        return child

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._independent.after_trial(study, trial, state, values)
