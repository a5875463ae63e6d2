"""For testing samplers and spaces (as ``optuna.testing``): synthetic scores, the regularized-evolution
baseline, and the contract every search space must keep."""

from optuna_epnas.testing.rea import RegularizedEvolutionSampler
from optuna_epnas.testing.space_contract import check_space
from optuna_epnas.testing.synthetic import SyntheticScore

__all__ = ["RegularizedEvolutionSampler", "SyntheticScore", "check_space"]
