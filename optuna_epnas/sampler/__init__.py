"""The EPNAS sampler: progressive growth, surrogate scoring, sampling K children per level.

``epnas`` holds the Optuna sampler; ``schedule`` the temperature and trial counts, ``surrogate`` the
LSTM predictor, ``pareto`` the fronts that multi-objective selection weighs.
"""

from optuna_epnas.sampler.epnas import EPNASSampler

__all__ = ["EPNASSampler"]
