"""optuna_epnas: Efficient Progressive Neural Architecture Search as an Optuna sampler."""

from optuna_epnas.costs.cost import NetworkSize
from optuna_epnas.data.device import DeviceData, load_dataset
from optuna_epnas.standalone.export import ModelSpec, build_model
from optuna_epnas.nn import build_network
from optuna_epnas.supernet.objective import SupernetObjective
from optuna_epnas.sampler.epnas import EPNASSampler
from optuna_epnas.spaces import MacroArch, MacroSpace, MicroArch, MicroSpace, NB201Space, SearchSpace

__all__ = [
    "DeviceData", "EPNASSampler", "MacroArch", "MacroSpace", "MicroArch", "MicroSpace", "ModelSpec", "NB201Space",
    "NetworkSize", "SearchSpace",
    "SupernetObjective", "build_model", "build_network", "load_dataset",
]
__version__ = "0.1.0"
