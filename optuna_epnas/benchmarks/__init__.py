"""Tabular benchmarks: objectives that answer from a table of fully trained accuracies, without training."""

from optuna_epnas.benchmarks.nb201 import NB201Table, TabularObjective, load_table

__all__ = ["NB201Table", "TabularObjective", "load_table"]
