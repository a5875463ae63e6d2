"""OptunaHub entry for EPNAS: a thin wrapper over the optuna_epnas package (the sampler, its search
spaces and the weight-sharing objective live there)."""

from optuna_epnas import (UCB, CostModel, EPNASSampler, Limits, LSTMSurrogate, MacroSpace, Mean, MicroSpace,
                          NetworkSize, Softmax, SupernetObjective, SupernetTrainer, TopK, load_dataset)

__all__ = ["CostModel", "EPNASSampler", "LSTMSurrogate", "Limits", "MacroSpace", "Mean", "MicroSpace", "NetworkSize",
           "Softmax", "SupernetObjective", "SupernetTrainer", "TopK", "UCB", "load_dataset"]
