"""The EPNAS sampler: progressive growth, surrogate scoring, sampling K children per level.

``epnas`` holds the Optuna sampler, the algorithm; ``coordination`` the slots that workers claim and
the names of what the sampler keeps in the study storage; ``planning`` the making of a level's plan,
``selection`` its draw of K candidates (the selection and acquisition objects); ``schedule`` the
temperature and trial counts, ``surrogate`` the LSTM predictor (and the surrogate object), ``presets``
those objects from flat settings (the command line's, the paper's); ``pareto`` the fronts that
multi-objective selection weighs.
"""

from optuna_epnas.sampler.coordination import (CONFIG_ATTR, FAULT_ATTR, OWNER_ATTR, STAGE_ATTR, USES_SPACE_ATTR,
                                               plan_attr)
from optuna_epnas.sampler.epnas import EPNASSampler

__all__ = ["EPNASSampler", "CONFIG_ATTR", "FAULT_ATTR", "OWNER_ATTR", "STAGE_ATTR", "USES_SPACE_ATTR", "plan_attr"]
