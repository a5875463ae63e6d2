"""OptunaHub entry for EPNAS: a thin wrapper over the optuna_epnas package (the sampler, its search
spaces and the weight-sharing objective live there)."""

from optuna_epnas import EPNASSampler, MacroSpace, MicroSpace, NetworkSize, SupernetObjective, load_dataset

__all__ = ["EPNASSampler", "MacroSpace", "MicroSpace", "NetworkSize", "SupernetObjective", "load_dataset"]
