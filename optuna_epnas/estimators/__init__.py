"""Estimators of stand-alone quality, judged by the ranking benchmark (:mod:`optuna_epnas.benchmarks.ranking`).

An estimator is a function from architecture keys to one score each (:class:`Estimate`, with its cost in
multiply-adds): weight-sharing protocols (:mod:`.weight_sharing`) and zero-cost proxies (:mod:`.zero_cost`).
"""

from optuna_epnas.benchmarks.ranking import Estimate, Estimator
from optuna_epnas.estimators.weight_sharing import measure_path, shared_weights, warmup_curve
from optuna_epnas.estimators.zero_cost import PROXIES, ZeroCost, rank_average, zero_cost

__all__ = ["Estimate", "Estimator", "measure_path", "shared_weights", "warmup_curve", "PROXIES", "ZeroCost", "rank_average",
           "zero_cost"]
