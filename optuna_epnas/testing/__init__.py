"""Synthetic scores for testing samplers without training a network (as ``optuna.testing``)."""

from optuna_epnas.testing.synthetic import SyntheticScore

__all__ = ["SyntheticScore"]
