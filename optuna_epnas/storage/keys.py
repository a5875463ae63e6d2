"""Every key optuna_epnas keeps in a study's storage, in one place, with the layout's version.

The storage is the search's memory (the sampler's plans and slots, the objective's settings, the
supernet's owner and checkpoint): these are its names. Study system attrs unless marked otherwise.
A study written by a newer layout than :data:`SCHEMA_VERSION` is refused (:func:`check_schema`)
rather than misread; a study without the record is of the first layout (everything before it).
"""

from __future__ import annotations

from typing import Any

#: The layout of these keys and their values; raised when one changes meaning.
SCHEMA_VERSION = 1
SCHEMA_ATTR = "epnas:schema"

# -- the sampler (optuna_epnas.sampler.coordination) ------------------------------------------------
#: The sampler's settings, adopted by every process that joins the study.
CONFIG_ATTR = "epnas:config"
#: Each stage's plan: ``epnas:plan:<iteration>:<level>`` (:func:`plan_attr`).
PLAN_PREFIX = "epnas:plan:"
#: Trial system attrs: the (iteration, level, slot) a trial measures, and the process that claimed it.
STAGE_ATTR = "epnas:stage"
OWNER_ATTR = "epnas:owner"
#: Trial system attr, set by :meth:`EPNASSampler.after_trial` on a trial whose objective raised or
#: returned no value: a failure of the architecture, counted against its slot's retries. A FAIL trial
#: without it ended because its process died (killed, or found stale by Optuna's heartbeat): its slot
#: is run again.
OBJECTIVE_FAILED_ATTR = "epnas:objective_failed"
#: Trial system attr, set by an objective on a trial it fails for a reason that is not the
#: architecture's (an interrupt, a checkpoint it could not write): not counted either.
FAULT_ATTR = "epnas:fault"
#: Set when a trial first asks for an architecture (``space.suggest``): from then on every trial claims
#: its slot when its sampling starts. Before it, EPNAS takes no slot and leaves every parameter to its
#: independent sampler (an objective that never asks for an architecture).
USES_SPACE_ATTR = "epnas:uses_space"

# -- the objective and its supernet (optuna_epnas.supernet.objective, optuna_epnas.supernet.checkpoint) ----------------
#: :meth:`SupernetObjective.spec`: what a resume must match, and what ``epnas train`` rebuilds the space from.
OBJECTIVE_ATTR = "epnas:objective"
#: The supernet warm-up before the first trial, and its cost.
WARMUP_ATTR = "epnas:warmup"
#: ``{"token": ..., "path": ...}``: the checkpoint's token and where it is kept.
SUPERNET_ATTR = "epnas:supernet"
#: The mark of the process that trains the study's supernet (one at a time).
HOLDER_ATTR = "epnas:supernet_holder"
#: Trial system attr: the trial's position in the supernet's training order.
TRAINED_ATTR = "epnas:trained"
#: Trial system attr: how many ranks' supernet copies were checked identical after the trial.
RANKS_ATTR = "epnas:ranks_identical"

# -- the command line (optuna_epnas.search) ------------------------------------------------------------
#: The named sampler a search was made with (resuming with another is refused).
SAMPLER_ATTR = "epnas:sampler"

# -- trial user attrs (what a user reads; not system state) --------------------------------------------
#: What the trial's own training and evaluation cost, in multiply-adds.
COST_ATTR = "cost_macs"


def plan_attr(iteration: int, level: int) -> str:
    return f"{PLAN_PREFIX}{iteration}:{level}"


def check_schema(study_name: str, attrs: dict[str, Any]) -> None:
    """Refuse a study (its system ``attrs``) written by a newer layout than this version reads. Whoever
    first writes a study's state records :data:`SCHEMA_VERSION` beside it (:data:`SCHEMA_ATTR`); a study
    without the record is of layout 1."""
    stored = attrs.get(SCHEMA_ATTR, 1)
    if not isinstance(stored, int) or stored > SCHEMA_VERSION:
        raise ValueError(
            f"study {study_name!r} was written by a newer optuna_epnas (storage layout {stored!r}; this version "
            f"reads up to {SCHEMA_VERSION}): upgrade optuna_epnas to resume it, or use a new study name")
