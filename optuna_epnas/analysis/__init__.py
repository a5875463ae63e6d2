"""Analysis of finished searches: sampler comparisons and their report, supernet and surrogate rank
correlations, and the optuna-dashboard notes. Apart from the search itself: these modules import the
plotting, statistics, drawing and dashboard libraries, which the search does not need."""

#: The analysis extra's modules that a search's dashboard notes and ``epnas dashboard`` need, and how
#: to install them (said when one is missing).
EXTRA_MODULES = ("optuna_dashboard", "graphviz")
INSTALL_EXTRA = 'pip install -e ".[analysis]" (or optuna-dashboard and graphviz)'
