"""Making a level's plan: level 1 is every one-unit architecture within the limits; after it, every
child of the previous level's measured architectures within the limits is scored by an ensemble of
LSTM surrogates fitted on everything measured so far, and K are drawn (:mod:`.selection`)."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any, Callable, Sequence

import numpy as np
import optuna
import torch
from optuna.study import Study, StudyDirection

from optuna_epnas._checks import check_int, check_positive_int
from optuna_epnas.costs.cost import NetworkSize, child_sizes, completion_sizes, per_cost_class
from optuna_epnas.costs.latency import LatencyTable
from optuna_epnas.sampler.selection import log_weights, pareto_log_weights, scaled, select
from optuna_epnas.sampler.surrogate import LSTMEnsemble
from optuna_epnas.spaces.base import SearchSpace
from optuna_epnas.costs.values import COSTS, check_objectives

_logger = logging.getLogger(__name__)

SELECTIONS = ("epnas", "pnas")
SCORES = ("raw", "z")
ACQUISITIONS = ("mean", "ucb", "ei")
#: A callable ``(study, arch keys) -> (accuracies on the current supernet weights, MACs spent)``, such
#: as :meth:`optuna_epnas.SupernetObjective.rescore`.
Rescorer = Callable[[Study, Sequence[str]], tuple[Sequence[float], float]]
#: The surrogate's rows: every distinct architecture measured before a stage (keys), its latest value,
#: and whether that measurement was infeasible (a constraint over 0).
Rows = tuple[list[str], list[float], list[bool]]


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


class _Targets:
    """What the surrogate fits, from a study's values: "higher is better", in [0, 1].

    Accuracy-like values (a maximised study, every value in [0, 1]) are fitted as they are; anything
    else -- an error or loss being minimised, a percentage -- is turned so that higher is better and
    scaled to [0.05, 0.95] over the values measured so far (the surrogate's output is a sigmoid).
    """

    def __init__(self, values: Sequence[float], maximize: bool) -> None:
        self.sign = 1.0 if maximize else -1.0
        v = np.asarray(values, dtype=np.float64) * self.sign
        self.identity = maximize and bool(np.all((v >= 0.0) & (v <= 1.0)))
        self.low, self.spread = (float(v.min()), float(np.ptp(v))) if len(v) else (0.0, 0.0)

    def __call__(self, values: Sequence[float]) -> list[float]:
        v = np.asarray(values, dtype=np.float64) * self.sign
        if self.identity:
            return [float(x) for x in v]
        if not self.spread > 0:
            return [0.5] * len(v)
        return [float(x) for x in 0.05 + 0.9 * (v - self.low) / self.spread]


class Planner:
    """Makes a level's plan, with the sampler's settings for it (checked here; documented at
    :class:`~optuna_epnas.sampler.epnas.EPNASSampler`)."""

    def __init__(self, space: SearchSpace, *, k: int, selection: str, score: str, acquisition: str, beta: float,
                 parent_weight: float, diverse: bool, surrogate_steps: int, surrogate_ensemble: int,
                 surrogate_device: str | None, rescore: Rescorer | None, max_params: int | None,
                 max_macs: int | None, network: NetworkSize | None, objectives: Sequence[str] | None,
                 max_latency_ms: float | None, latency: LatencyTable | None, reuse: bool = False) -> None:
        check_int("k", k, 1)
        check_int("surrogate_steps", surrogate_steps, 1)
        check_int("surrogate_ensemble", surrogate_ensemble, 1)
        check_choice("selection", selection, SELECTIONS)
        check_choice("score", score, SCORES)
        check_choice("acquisition", acquisition, ACQUISITIONS)
        if acquisition != "mean" and surrogate_ensemble < 2:
            raise ValueError(f"acquisition={acquisition!r} needs the spread of an ensemble: "
                             f"surrogate_ensemble >= 2 (got {surrogate_ensemble}), or acquisition='mean'")
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        if rescore is not None and not callable(rescore):
            raise TypeError(f"rescore must be a callable (study, keys) -> (accuracies, MACs) such as "
                            f"objective.rescore, got {rescore!r}")
        if not (isinstance(parent_weight, (int, float)) and math.isfinite(parent_weight) and parent_weight >= 0):
            raise ValueError(f"parent_weight must be a finite number >= 0, got {parent_weight!r}")
        if not isinstance(diverse, bool):
            raise TypeError(f"diverse must be True or False, got {diverse!r}")
        if not isinstance(reuse, bool):
            raise TypeError(f"reuse must be True or False, got {reuse!r}")
        self.reuse = reuse
        self.space, self.k, self.selection = space, k, selection
        self.surrogate_steps, self.surrogate_ensemble = surrogate_steps, surrogate_ensemble
        self.surrogate_device = str(torch.device(surrogate_device or "cpu"))  # a string: the sampler pickles
        self.score, self.acquisition, self.beta, self.rescore = score, acquisition, float(beta), rescore
        self.parent_weight, self.diverse = float(parent_weight), diverse
        self.limits = _limits(space, max_params, max_macs, network)
        self.objectives = None if objectives is None else check_objectives(objectives)
        if self.objectives is not None and len(self.objectives) > 1:
            _needs_network_counts(space, network, f"objectives={self.objectives}")
        else:
            self.objectives = None
        if max_latency_ms is not None and not (isinstance(max_latency_ms, (int, float)) and max_latency_ms > 0
                                               and math.isfinite(max_latency_ms)):
            raise ValueError(f"max_latency_ms must be a positive number, got {max_latency_ms!r}")
        if (max_latency_ms is not None or "latency" in (self.objectives or ())) and not isinstance(latency, LatencyTable):
            raise ValueError("a latency limit or objective needs the table it is estimated from: "
                             f"latency=optuna_epnas.costs.latency.latency_table(space, objective.network_size, device), got {latency!r}")
        self.max_latency_ms, self.latency, self.network = max_latency_ms, latency, network

    def check_study(self, study: Study) -> bool:
        """Whether the study maximises its (first) value; a study that these settings cannot search, or that
        a pruner splits (a plan needs every trial of the level before), is refused."""
        wanted = len(self.objectives or ("value",))
        if len(study.directions) != wanted:
            raise ValueError(
                f"study {study.study_name!r} has {len(study.directions)} objectives and this EPNASSampler "
                f"{wanted}: it searches one value (accuracy, or an error or loss to minimise), or accuracy and "
                "a cost with objectives=('accuracy', 'params'|'macs'), network=objective.network_size")
        if self.objectives and study.directions[1] != StudyDirection.MINIMIZE:
            raise ValueError(f"the study maximises {self.objectives[1]}, a cost: create it with "
                             "directions=['maximize', 'minimize']")
        if isinstance(getattr(study, "pruner", None), optuna.pruners.HyperbandPruner):
            raise ValueError(
                "HyperbandPruner splits the trials into brackets and hands samplers one bracket's view of the "
                "study, which a progressive schedule over all trials does not fit: use another pruner "
                "(MedianPruner, SuccessiveHalvingPruner) or none"
            )
        maximize = study.directions[0] == StudyDirection.MAXIMIZE
        if self.rescore is not None and not maximize:
            raise ValueError("rescore re-measures validation accuracies, which a minimised study cannot "
                             "compare with its values: use direction='maximize' or rescore=None")
        return maximize

    def config(self) -> dict[str, Any]:
        """These settings as the study stores them (an option absent when off, as before it existed)."""
        return {
            "surrogate": {"steps": self.surrogate_steps, "ensemble": self.surrogate_ensemble},
            "score": self.score, "acquisition": self.acquisition, "beta": self.beta,
            "rescore": self.rescore is not None,
            **({"parent_weight": self.parent_weight} if self.parent_weight else {}),
            **({"diverse": True} if self.diverse else {}),
            **({"reuse": True} if self.reuse else {}),
            **({"limits": {**self.limits, "network": dataclasses.asdict(self.network)}} if self.limits else {}),
            **({"objectives": list(self.objectives), "network": dataclasses.asdict(self.network)}
               if self.objectives else {}),
            **({"latency": {"max_ms": self.max_latency_ms, "table": self.latency.digest,
                            "device": self.latency.device}} if self.latency is not None else {}),
        }

    # -- the plans -------------------------------------------------------------------------------
    def first_level(self, tau: float, rows: Rows | None = None) -> dict[str, Any]:
        """Every one-unit architecture within the limits (with ``reuse``: those of ``rows``, the ones
        measured before, keep their values instead of a query)."""
        initial = self.space.initial()
        fits = self._fits(self.space.root())
        keys = [self.space.key(a) for a, ok in zip(initial, fits) if ok]
        if not keys:
            raise ValueError(f"no architecture fits {self._limits_text()}: the smallest has "
                             f"{self._smallest(self.space.root())}; raise the limit")
        seen = self._seen(rows)
        known = [self._known(key, seen) for key in keys]
        return {"temperature": tau, "predicted": None, "probability": None,
                "keys": [key for key, old in zip(keys, known) if old is None], "candidates": len(keys),
                **self._reused([(key, old) for key, old in zip(keys, known) if old is not None]),
                **self._rejected(len(initial) - len(keys))}

    def next_level(self, study: Study, it: int, level: int, last_level: list[tuple[Any, float, bool]], rows: Rows,
                   maximize: bool, tau: float, seed: Sequence[int], number: int | None,
                   k: int | None = None) -> dict[str, Any]:
        """``k`` (default K) children of the previous level's measured architectures ``last_level`` (arch,
        value, feasible) by trial ``number``, scored by surrogates fitted on ``rows``. ``seed`` is split
        into independent streams: one for the draw, one per surrogate.

        With ``reuse``, the draw goes on past the architectures measured before (``rows``): those drawn
        before the ``k``-th new one join the level with their recorded values, and all ``k`` queries go
        to architectures never measured."""
        started = time.perf_counter()
        k = self.k if k is None else k
        measured_parents = _parents(last_level, it, level)
        parents = [p for p, _ in measured_parents]
        keys, measured, infeasible = rows
        targets = _Targets(measured, maximize)
        values, rescored = self._fitted_values(study, keys, targets(measured), infeasible)
        rescored_at = time.perf_counter()
        draw_seed, *member_seeds = np.random.SeedSequence(list(seed)).spawn(1 + self.surrogate_ensemble)
        tokens = [self.space.tokens(self.space.parse(key)) for key in keys]
        members = LSTMEnsemble(self.space.token_dim, [int(s.generate_state(1)[0] % 2**31) for s in member_seeds],
                               steps=self.surrogate_steps, device=self.surrogate_device).fit(tokens, values)
        fitted = time.perf_counter()
        fits = [self._fits(p) for p in parents]  # the children under the limits: all others are never scored
        sizes = [int(f.sum()) for f in fits]  # children per parent, in candidate order
        if not sum(sizes):
            # each parent fitted with its cheapest completion, so only a limit changed on resume gets here
            raise ValueError(f"no architecture of level {level} grown from level {level - 1}'s fits "
                             f"{self._limits_text()}: raise the limit")
        children = [self.space.child_tokens(p)[f] for p, f in zip(parents, fits)]
        predicted, weights = self._score(members, [self.space.tokens(p) for p in parents], children, best=max(values))
        if self.objectives:  # the predicted front and crowding, over (acquisition, exact cost)
            weights = pareto_log_weights(weights, np.concatenate([self._costs(p)[f] for p, f in zip(parents, fits)]))
        if self.parent_weight:  # trust what was measured: children of the better-measured parents first
            # The trial's own measurement, not a re-scored value: re-scoring on the current weights ranks
            # the most recently trained path first (measured: 7 of 8 levels of a Fashion-MNIST run).
            parent_values = np.array(targets([v for _, v in measured_parents]), dtype=np.float64)
            parent_score = (pareto_log_weights(parent_values, np.array([self._cost(p) for p in parents]))
                            if self.objectives else scaled(parent_values, self.score))
            weights = weights + self.parent_weight * np.repeat(parent_score, sizes)
        groups = self._groups(parents, fits) if self.diverse else None
        seen = self._seen(rows)
        # with reuse, drawn past the candidates measured before: at most one per seen network of the level
        chosen, probability = select(weights, k + len(seen), self.selection, tau, np.random.default_rng(draw_seed),
                                     groups)
        drawn = self._chosen_keys(parents, fits, chosen)
        known = [self._known(key, seen) for key in drawn]
        new = [i for i, old in enumerate(known) if old is None][:k]
        # drawn in order: the seen ones before the k-th new one (when every candidate was drawn, all of them)
        last = new[-1] + 1 if new and len(drawn) < len(weights) else len(drawn)
        reused = [(key, old) for key, old in zip(drawn[:last], known[:last]) if old is not None]
        chosen, keys = chosen[new], [drawn[i] for i in new]
        return {
            "temperature": tau,
            "predicted": [float(predicted[c]) for c in chosen],
            "probability": [float(probability[c]) for c in chosen],
            "keys": keys,
            **self._reused(reused),
            "candidates": int(len(weights)),
            **self._rejected(sum(len(f) for f in fits) - int(len(weights))),
            "surrogate_rows": len(keys),
            "rescored": rescored,
            "planned_by": number,
            "rescore_seconds": round(rescored_at - started, 3),
            "fit_seconds": round(fitted - rescored_at, 3),
            "score_seconds": round(time.perf_counter() - fitted, 3),
        }

    def _seen(self, rows: Rows | None) -> dict[str, tuple[float, bool]]:
        """With ``reuse``: the networks measured before (``rows``), by network key: (value, feasible)."""
        if not self.reuse or rows is None:
            return {}
        keys, values, infeasible = rows
        return {self.space.network_key(self.space.parse(key)): (value, not bad)
                for key, value, bad in zip(keys, values, infeasible)}

    def _known(self, key: str, seen: dict[str, tuple[float, bool]]) -> tuple[float, bool] | None:
        """(value, feasible) of the network of ``key`` if it was measured before, else None."""
        return seen.get(self.space.network_key(self.space.parse(key))) if seen else None

    def _reused(self, reused: list[tuple[str, tuple[float, bool]]]) -> dict[str, Any]:
        """A plan's architectures that keep the recorded values of their networks (only with ``reuse``)."""
        if not self.reuse:
            return {}
        return {"reused": {"keys": [key for key, _ in reused], "values": [value for _, (value, _) in reused],
                           "feasible": [ok for _, (_, ok) in reused]}}

    def _fitted_values(self, study: Study, keys: list[str], values: list[float],
                       infeasible: list[bool]) -> tuple[list[float], dict[str, Any] | None]:
        """What the surrogates fit for ``keys``, and the re-scoring (when on) that it comes from."""
        rescored = None
        if self.rescore is not None:  # accuracies of a maximised study: fitted as they are
            values, macs = self._rescored(study, keys)  # its cost is charged to `planned_by` (cost.py)
            rescored = {"keys": keys, "values": values, "cost_macs": macs}
        if any(infeasible) and not all(infeasible):  # not good, whatever they measured: the worst feasible value
            worst = min(v for v, bad in zip(values, infeasible) if not bad)
            values = [worst if bad else v for v, bad in zip(values, infeasible)]
        return values, rescored

    def _groups(self, parents: list[Any], fits: list[np.ndarray]) -> np.ndarray:
        """The diverse draw's group of each candidate: (parent, the space's child group) as one id."""
        each = [self.space.child_groups(p)[f] for p, f in zip(parents, fits)]
        width = 1 + max(int(g.max()) for g in each if len(g))
        return np.concatenate([i * width + g for i, g in enumerate(each)])

    def _chosen_keys(self, parents: list[Any], fits: list[np.ndarray], chosen: np.ndarray) -> list[str]:
        """The architectures of the chosen candidates (indices into every parent's fitting children)."""
        child_index = [np.flatnonzero(f) for f in fits]  # candidate -> its index among its parent's children
        offsets = np.cumsum([0] + [len(i) for i in child_index])
        owner = np.searchsorted(offsets, chosen, side="right") - 1
        return [self.space.key(self.space.child(parents[o], int(child_index[o][c - offsets[o]])))
                for o, c in zip(owner, chosen)]

    def _score(self, members: LSTMEnsemble, prefixes: list[np.ndarray], children: list[np.ndarray],
               best: float) -> tuple[np.ndarray, np.ndarray]:
        """Each candidate's predicted accuracy (the ensemble mean) and its selection log-weight."""
        if len(members) == 1 and self.acquisition == "mean" and self.score == "raw":
            # log-sigmoid: no underflow to ties at 0 when the net is saturated
            log_scores = members.predict_children(prefixes, children, log=True)[0].astype(np.float64)
            return np.exp(log_scores), log_scores
        each = members.predict_children(prefixes, children).astype(np.float64)
        return each.mean(axis=0), log_weights(each, self.acquisition, self.score, self.beta, best)

    def _rescored(self, study: Study, keys: list[str]) -> tuple[list[float], float]:
        assert self.rescore is not None
        values, macs = self.rescore(study, keys)
        values = [float(v) for v in values]
        if len(values) != len(keys) or not all(0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"rescore must return one accuracy in [0, 1] per architecture ({len(keys)}), "
                             f"got {values[:5]}{'...' if len(values) > 5 else ''}")
        return values, float(macs)

    # -- size limits and costs -------------------------------------------------------------------
    def _fits(self, parent: Any) -> np.ndarray:
        """Per child of ``parent``: whether it and its cheapest full-depth completion are within every
        limit (a child that only fits as a partial network would leave the next level nothing to grow)."""
        fits = np.ones(self.space.num_children(parent), dtype=bool)
        if self.limits:
            params, macs = self._completed_sizes(parent)
            fits &= (params <= self.limits.get("max_params", np.inf)) & (macs <= self.limits.get("max_macs", np.inf))
        if self.max_latency_ms is not None:
            assert self.latency is not None
            fits &= self._completed_ms(parent) <= self.max_latency_ms
        return fits

    def _completed_ms(self, parent: Any) -> np.ndarray:
        assert self.latency is not None
        return self.latency.child_ms(self.space, parent) + self.latency.completion_ms(self.space, self.space.level(parent) + 1)

    def _completed_sizes(self, parent: Any) -> tuple[np.ndarray, np.ndarray]:
        params, macs = child_sizes(self.space, parent, self.network)
        more_params, more_macs = completion_sizes(self.space, self.space.level(parent) + 1, self.network)
        return params + more_params, macs + more_macs

    def _costs(self, parent: Any) -> np.ndarray:
        """The cost objective of every child of ``parent``."""
        return per_cost_class(self.space, parent, self._cost).astype(np.float64)

    def _cost(self, arch: Any) -> float:
        assert self.objectives is not None and self.network is not None
        if self.objectives[1] == "latency":
            assert self.latency is not None
            return self.latency.network_ms(arch)
        return float(self.network.count(self.space, arch)[COSTS.index(self.objectives[1])])

    def _smallest(self, parent: Any) -> str:
        if not self.limits:
            return f"{float(self._completed_ms(parent).min()):.3g} ms (estimated) at full depth"
        params, macs = self._completed_sizes(parent)
        return f"{int(params.min()):,} parameters and {int(macs.min()):,} multiply-adds at full depth"

    def _limits_text(self) -> str:
        limits = [f"{name}={value:,}" for name, value in self.limits.items()]
        return " and ".join(limits + ([f"max_latency_ms={self.max_latency_ms:g}"] if self.max_latency_ms else []))

    def _rejected(self, count: int) -> dict[str, int]:
        return {"over_limits": count} if self.limits or self.max_latency_ms is not None else {}


def _parents(last_level: list[tuple[Any, float, bool]], it: int, level: int) -> list[tuple[Any, float]]:
    """The (arch, value) of the last level to grow: the feasible ones (no Optuna constraint over 0); only
    when none is, the infeasible ones."""
    if not last_level:
        raise RuntimeError(
            f"no architecture of level {level - 1} in iteration {it + 1} was measured (all failed or "
            "were pruned), so there is nothing to grow; look at the failed trials' errors"
        )
    any_feasible = any(ok for _, _, ok in last_level)
    if not any_feasible:
        _logger.warning("iteration %d level %d: every architecture measured at level %d broke a constraint; "
                        "growing them anyway", it + 1, level, level - 1)
    return [(p, v) for p, v, ok in last_level if ok or not any_feasible]


def _limits(space: SearchSpace, max_params: int | None, max_macs: int | None,
            network: NetworkSize | None) -> dict[str, int]:
    limits = {name: value for name, value in (("max_params", max_params), ("max_macs", max_macs)) if value is not None}
    for name, value in limits.items():
        check_positive_int(name, value)
    if limits:
        _needs_network_counts(space, network, ", ".join(limits))
    return {name: int(value) for name, value in limits.items()}


def _needs_network_counts(space: SearchSpace, network: NetworkSize | None, what: str) -> None:
    if not isinstance(network, NetworkSize):
        raise ValueError(f"{what} is counted in a network of a given width and input: pass "
                         f"network=objective.network_size (or an optuna_epnas.costs.cost.NetworkSize), got {network!r}")
    if space.child_cost_classes(space.root()) is None:
        raise ValueError(f"{what}: sizes are counted for the macro space only; {space!r} has no exact per-child "
                         "count yet (each child's network would be built to count it)")
