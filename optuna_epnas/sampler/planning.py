"""Making a level's plan: level 1 is every one-unit architecture within the limits; after it, every
child of the previous level's measured architectures within the limits is scored by an ensemble of
LSTM surrogates fitted on everything measured so far, and K are drawn (:mod:`.selection`)."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.study import Study, StudyDirection

from optuna_epnas._checks import check_int
from optuna_epnas.costs.model import CostModel
from optuna_epnas.sampler.selection import Selection, Softmax, log_weights, pareto_log_weights, scaled
from optuna_epnas.sampler.surrogate import LSTMEnsemble, LSTMSurrogate
from optuna_epnas.spaces.base import SearchSpace

_logger = logging.getLogger(__name__)

#: The surrogate's rows: every distinct architecture measured before a stage (keys), its latest value,
#: and whether that measurement was infeasible (a constraint over 0).
Rows = tuple[list[str], list[float], list[bool]]


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
    """Makes a level's plan with the sampler's behaviour objects (checked here; documented at
    :class:`~optuna_epnas.sampler.epnas.EPNASSampler`)."""

    def __init__(self, space: SearchSpace, *, k: int, selection: Selection | None = None,
                 surrogate: LSTMSurrogate | None = None, costs: CostModel | None = None, reuse: bool = False) -> None:
        check_int("k", k, 1)
        selection = Softmax() if selection is None else selection
        surrogate = LSTMSurrogate() if surrogate is None else surrogate
        costs = CostModel() if costs is None else costs
        for name, value, kind, example in (("selection", selection, Selection, "Softmax() or TopK()"),
                                           ("surrogate", surrogate, LSTMSurrogate, "LSTMSurrogate(members=5)"),
                                           ("costs", costs, CostModel, "objective.costs")):
            if not isinstance(value, kind):
                raise TypeError(f"{name} must be a {kind.__name__} such as {example}, got {value!r}")
        if selection.acquisition.needs_spread and surrogate.members < 2:
            raise ValueError(f"acquisition {selection.acquisition!r} needs the spread of an ensemble: "
                             f"LSTMSurrogate(members >= 2) (got {surrogate.members}), or acquisition=Mean()")
        costs.check_space(space)
        if not isinstance(reuse, bool):
            raise TypeError(f"reuse must be True or False, got {reuse!r}")
        self.space, self.k, self.reuse = space, k, reuse
        self.selection, self.surrogate, self.costs = selection, surrogate, costs

    def check_study(self, study: Study) -> bool:
        """Whether the study maximises its (first) value; a study that these settings cannot search, or that
        a pruner splits (a plan needs every trial of the level before), is refused."""
        objectives = self.costs.objectives
        if len(study.directions) != len(objectives):
            raise ValueError(
                f"study {study.study_name!r} has {len(study.directions)} objectives and this EPNASSampler "
                f"{len(objectives)}: it searches one value (accuracy, or an error or loss to minimise), or accuracy and "
                "a cost with costs=objective.costs (a CostModel with minimize='params'|'macs'|'latency')")
        if len(objectives) > 1 and study.directions[1] != StudyDirection.MINIMIZE:
            raise ValueError(f"the study maximises {objectives[1]}, a cost: create it with "
                             "directions=['maximize', 'minimize']")
        if isinstance(getattr(study, "pruner", None), optuna.pruners.HyperbandPruner):
            raise ValueError(
                "HyperbandPruner splits the trials into brackets and hands samplers one bracket's view of the "
                "study, which a progressive schedule over all trials does not fit: use another pruner "
                "(MedianPruner, SuccessiveHalvingPruner) or none"
            )
        maximize = study.directions[0] == StudyDirection.MAXIMIZE
        if self.surrogate.rescore is not None and not maximize:
            raise ValueError("rescore re-measures validation accuracies, which a minimised study cannot "
                             "compare with its values: use direction='maximize' or LSTMSurrogate(rescore=None)")
        return maximize

    def config(self) -> dict[str, Any]:
        """These settings as the study stores them (an option absent when off, as before it existed)."""
        costs, network = self.costs, self.costs.network
        return {
            **self.surrogate.config(), **self.selection.config(), **({"reuse": True} if self.reuse else {}),
            **({"limits": {**costs.limits.sizes, "network": dataclasses.asdict(network)}}
               if costs.limits.sizes and network is not None else {}),
            **({"objectives": list(costs.objectives), "network": dataclasses.asdict(network)}
               if costs.minimize is not None and network is not None else {}),
            **({"latency": {"max_ms": costs.limits.max_latency_ms, "table": costs.latency.digest,
                            "device": costs.latency.device}} if costs.latency is not None else {}),
        }

    # -- the plans -------------------------------------------------------------------------------
    def first_level(self, tau: float, rows: Rows | None = None) -> dict[str, Any]:
        """Every one-unit architecture within the limits (with ``reuse``: those of ``rows``, the ones
        measured before, keep their values instead of a query)."""
        initial = self.space.initial()
        fits = self.costs.child_fits(self.space, self.space.root())
        keys = [self.space.key(a) for a, ok in zip(initial, fits) if ok]
        if not keys:
            raise ValueError(f"no architecture fits {self.costs.limits.text()}: the smallest has "
                             f"{self.costs.smallest(self.space, self.space.root())}; raise the limit")
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
        draw_seed, *member_seeds = np.random.SeedSequence(list(seed)).spawn(1 + self.surrogate.members)
        tokens = [self.space.tokens(self.space.parse(key)) for key in keys]
        members = self.surrogate.fit(self.space.token_dim, tokens, values,
                                     [int(s.generate_state(1)[0] % 2**31) for s in member_seeds])
        fitted = time.perf_counter()
        fits = [self.costs.child_fits(self.space, p) for p in parents]  # the children under the limits: all others are never scored
        sizes = [int(f.sum()) for f in fits]  # children per parent, in candidate order
        if not sum(sizes):
            # each parent fitted with its cheapest completion, so only a limit changed on resume gets here
            raise ValueError(f"no architecture of level {level} grown from level {level - 1}'s fits "
                             f"{self.costs.limits.text()}: raise the limit")
        children = [self.space.child_tokens(p)[f] for p, f in zip(parents, fits)]
        predicted, weights = self._score(members, [self.space.tokens(p) for p in parents], children, best=max(values))
        two_objectives = self.costs.minimize is not None
        if two_objectives:  # the predicted front and crowding, over (acquisition, exact cost)
            weights = pareto_log_weights(weights, np.concatenate([self.costs.child_costs(self.space, p)[f]
                                                                 for p, f in zip(parents, fits)]))
        if self.selection.parent_weight:  # trust what was measured: children of the better-measured parents first
            # The trial's own measurement, not a re-scored value: re-scoring on the current weights ranks
            # the most recently trained path first (measured: 7 of 8 levels of a Fashion-MNIST run).
            parent_values = np.array(targets([v for _, v in measured_parents]), dtype=np.float64)
            parent_score = (pareto_log_weights(parent_values, np.array([self.costs.cost(self.space, p) for p in parents]))
                            if two_objectives else scaled(parent_values, self.selection.score))
            weights = weights + self.selection.parent_weight * np.repeat(parent_score, sizes)
        groups = self._groups(parents, fits) if self.selection.diverse else None
        seen = self._seen(rows)
        # with reuse, drawn past the candidates measured before: at most one per seen network of the level
        chosen, probability = self.selection.draw(weights, k + len(seen), tau, np.random.default_rng(draw_seed), groups)
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
        if self.surrogate.rescore is not None:  # accuracies of a maximised study: fitted as they are
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
        if len(members) == 1 and self.selection.acquisition.name == "mean" and self.selection.score == "raw":
            # log-sigmoid: no underflow to ties at 0 when the net is saturated
            log_scores = members.predict_children(prefixes, children, log=True)[0].astype(np.float64)
            return np.exp(log_scores), log_scores
        each = members.predict_children(prefixes, children).astype(np.float64)
        return each.mean(axis=0), log_weights(each, self.selection.acquisition, self.selection.score, best)

    def _rescored(self, study: Study, keys: list[str]) -> tuple[list[float], float]:
        assert self.surrogate.rescore is not None
        values, macs = self.surrogate.rescore(study, keys)
        values = [float(v) for v in values]
        if len(values) != len(keys) or not all(0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"rescore must return one accuracy in [0, 1] per architecture ({len(keys)}), "
                             f"got {values[:5]}{'...' if len(values) > 5 else ''}")
        return values, float(macs)

    def _rejected(self, count: int) -> dict[str, int]:
        return {"over_limits": count} if self.costs.limits else {}


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
