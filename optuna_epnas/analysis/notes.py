"""What the optuna-dashboard notes of a search say: Markdown of a trial (:func:`trial_note`) and of the
whole search (:func:`study_note`), from what the study recorded (:class:`SearchInfo`). Text only: the
notes are written to the storage by :mod:`optuna_epnas.analysis.dashboard`."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from statistics import mean
from typing import Any, Sequence

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_epnas.storage._storage import study_attrs
from optuna_epnas.costs.cost import total_cost
from optuna_epnas.storage.keys import CONFIG_ATTR, OBJECTIVE_ATTR, PLAN_PREFIX
from optuna_epnas.sampler.pareto import full_depth_front
from optuna_epnas.sampler.schedule import planned_trials
from optuna_epnas.spaces import SearchSpace
from optuna_epnas.costs.values import accuracy_of, full_size
from optuna_epnas.analysis.formatting import fmt

WEIGHT_SHARING_NOTE = (
    "Accuracies are **weight-sharing estimates**: the validation accuracy of the architecture's path "
    "through the shared supernet after a few epochs, good for ranking architectures, not the accuracy "
    "of the network trained alone (`epnas train --study NAME` measures that).")



@dataclass(frozen=True)
class SearchInfo:
    """What a study says about its search (read once: written before the first trial, never changed)."""

    space: SearchSpace | None
    config: dict[str, Any] | None  # the EPNAS/PNAS sampler's settings; None for TPE/random
    objective: dict[str, Any] | None

    @classmethod
    def of(cls, study: optuna.Study) -> "SearchInfo":
        attrs = study_attrs(study)
        objective, config = attrs.get(OBJECTIVE_ATTR), attrs.get(CONFIG_ATTR)
        spec = (objective or config or {}).get("space")
        space = SearchSpace.from_spec(spec) if spec else None
        return cls(space, config, objective)

    def planned(self) -> int | None:
        if self.space is None or self.config is None:
            return None
        return self.config.get("n_trials") or planned_trials(self.space, self.config["k"], self.config["iterations"],
                                                             self.config.get("reuse", False))


def trial_note(trial: FrozenTrial, info: SearchInfo, drawing_url: str | None = None) -> str:
    """The Markdown note of one trial (lists, not tables: architecture keys contain ``|``)."""
    a = trial.user_attrs
    lines = [f"### Trial {trial.number}: `{a['arch']}`", ""]
    where = []
    if "level" in a:
        where.append(f"level {a['level']}" + (f" of {info.space.max_level}" if info.space else ""))
    if "iteration" in a:
        of = f" of {info.config['iterations']}" if info.config else ""
        where.append(f"iteration {a['iteration']}{of}")
    if "temperature" in a:
        where.append(f"τ = {a['temperature']:.3g}")
    if where:
        lines.append("- " + " · ".join(where))
    if "predicted_accuracy" in a:
        lines.append(f"- surrogate prediction {a['predicted_accuracy']:.4f} · "
                     f"selection probability {fmt(a.get('selection_probability'), '.3g')}")
    if trial.state == TrialState.COMPLETE and accuracy_of(trial) is not None:
        lines.append(f"- measured accuracy **{accuracy_of(trial):.4f}** (validation, supernet weights)")
    else:
        lines.append(f"- measured accuracy – (trial {trial.state.name})")
    if "params" in a:
        lines.append(f"- parameters (stand-alone) {a['params']:,}")
    if "train_seconds" in a:
        lines.append(f"- training {a['train_seconds']:.2f} s")
    if drawing_url:
        lines += ["", f"![architecture of trial {trial.number}]({drawing_url})"]
    return "\n".join(lines) + "\n"


def best_full_size(study: optuna.Study, info: SearchInfo, trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The best COMPLETE trial at the space's full depth (shallower levels are not comparable)."""
    if info.space is None:
        return None
    full = full_size(trials, info.space.max_level)
    if not full:
        return None
    if len(study.directions) > 1:  # the most accurate member of the front (the cheapest of equals)
        front = full_depth_front(study, info.space.max_level)
        return front[-1] if front else None
    pick = max if study.direction == StudyDirection.MAXIMIZE else min
    return pick(full, key=accuracy_of)


def _settings_lines(info: SearchInfo) -> list[str]:
    lines = []
    if info.space is not None:
        space = info.space
        lines.append(f"- space: {space.describe()}; ops {', '.join(space.ops)} ({space.cardinality():.3g} architectures)")
    c = info.config
    if c is not None:
        taus = " → ".join(f"{t:.3g}" for t in c["temperatures"])
        acquisition = {"mean": "s", "ucb": f"UCB (mean + {c.get('beta', 1.0):g}·std)", "ei": "EI"}[c.get("acquisition", "mean")]
        form = f"p ∝ exp(z({acquisition})/τ)" if c.get("score") == "z" else f"p ∝ {acquisition}^(1/τ)"
        selection = f"EPNAS (sampled, {form})" if c["selection"] == "epnas" else "PNAS (top K)"
        surrogate = c.get("surrogate", {})
        iterations = f"{c['iterations']} iteration{'s' * (c['iterations'] != 1)}"
        lines.append(f"- sampler: {selection}, K = {c['k']}, {iterations}, τ {taus}, "
                     f"seed {c['seed']}; surrogate {surrogate.get('steps')} steps × {surrogate.get('ensemble')}"
                     + ("; surrogate targets re-scored on the current weights before each level" if c.get("rescore") else ""))
    else:
        lines.append("- sampler: not EPNAS/PNAS (no `epnas:config`: a TPE or random baseline)")
    o = info.objective
    if o is not None:
        lines.append(f"- objective: {o.get('dataset')}, supernet {o.get('channels')} channels, seed {o.get('seed')}")
    return lines


def rescored_lines(study: optuna.Study, trials: Sequence[FrozenTrial], most: int = 12,
                   attrs: dict[str, Any] | None = None) -> list[str]:
    """The latest level's re-scored surrogate targets beside each architecture's measured accuracy
    (``attrs``: the study's system attrs, when the caller has read them)."""
    attrs = study_attrs(study) if attrs is None else attrs
    plans = [(name, plan) for name, plan in attrs.items()
             if name.startswith(PLAN_PREFIX) and plan.get("rescored")]
    if not plans:
        return []
    name, plan = max(plans, key=lambda p: tuple(int(x) for x in p[0][len(PLAN_PREFIX):].split(":")))
    it, level = (int(x) for x in name[len(PLAN_PREFIX):].split(":"))
    measured = {t.user_attrs["arch"]: accuracy_of(t) for t in sorted(trials, key=lambda t: t.number)
                if t.state == TrialState.COMPLETE and "arch" in t.user_attrs}
    rows = sorted(zip(plan["rescored"]["keys"], plan["rescored"]["values"]), key=lambda kv: -kv[1])
    lines = ["", f"### Re-scored before iteration {it + 1}, level {level}", "",
             f"{len(rows)} architectures measured so far, evaluated again on the weights of that moment "
             "(the surrogate's targets; each trial keeps what it measured). Best re-scored first:", ""]
    lines += [f"- `{key}`: re-scored {value:.4f} · measured {fmt(measured.get(key), '.4f')}"
              for key, value in rows[:most]]
    if len(rows) > most:
        lines.append(f"- … and {len(rows) - most} more (the plan `{name}` in the study's system attributes)")
    return lines


def _seconds(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def study_note(study: optuna.Study, info: SearchInfo, trials: Sequence[FrozenTrial],
               drawing_url: str | None = None, planned: int | None = None,
               attrs: dict[str, Any] | None = None) -> str:
    """The Markdown note of the whole search (the drawing last: a deep network's is tall). ``attrs``: the
    study's system attrs, when the caller has read them."""
    lines = [f"## Architecture search `{study.study_name}`", ""]
    best = best_full_size(study, info, trials)
    if best is not None:
        lines += [f"**Best full-size architecture** (trial {best.number}): `{best.user_attrs['arch']}`", "",
                  f"- validation accuracy **{accuracy_of(best):.4f}** (supernet weights)"]
        if "params" in best.user_attrs:
            lines.append(f"- parameters (stand-alone) {best.user_attrs['params']:,}")
    else:
        lines.append("No full-size architecture measured yet.")
    if best is not None and info.space is not None and len(study.directions) > 1:
        front = full_depth_front(study, info.space.max_level)
        lines += ["", f"**Pareto front of the full-size networks** ({len(front)}, cheapest first; the Pareto-front "
                  "plot shows every trial, shallower levels included):", ""]
        lines += [f"- trial {t.number}: accuracy {t.values[0]:.4f} · cost {t.values[1]:,.0f} · `{t.user_attrs['arch']}`"
                  for t in front]

    finished = [t for t in trials if t.state.is_finished()]
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    full = full_size(complete, info.space.max_level) if info.space is not None else []
    planned = planned if planned is not None else info.planned()
    walls = [s for s in map(_seconds, complete) if s is not None]
    trains = [t.user_attrs["train_seconds"] for t in complete if "train_seconds" in t.user_attrs]
    lines += ["", "### Progress", "",
              f"- trials finished: {len(finished)}" + (f" of {planned} planned" if planned else "")
              + f" ({len(complete)} complete, {len(full)} at full depth, "
                f"{len(finished) - len(complete)} failed or pruned)"]
    if walls:
        lines.append(f"- time per trial: {mean(walls):.2f} s" + (f" (training {mean(trains):.2f} s)" if trains else ""))
    lines.append(f"- note updated {datetime.datetime.now().isoformat(sep=' ', timespec='seconds')}")
    lines.append(f"- compute spent: {total_cost(study, trials, attrs):.3g} multiply-adds (training, evaluation, warm-up, re-scoring)")
    lines += rescored_lines(study, trials, attrs=attrs)
    lines += ["", "### Settings", "", *_settings_lines(info), "", f"> {WEIGHT_SHARING_NOTE}"]
    if best is not None and drawing_url:
        lines += ["", f"### Best architecture (trial {best.number})", "",
                  f"![best architecture, trial {best.number}]({drawing_url})"]
    return "\n".join(lines) + "\n"
