"""Analysis of finished searches: sampler comparisons and their report, supernet and surrogate rank
correlations, and the optuna-dashboard notes. Apart from the search itself: these modules import the
plotting, statistics, drawing and dashboard libraries, which the search does not need."""
