"""optuna_epnas: Efficient Progressive Neural Architecture Search as an Optuna sampler."""

from optuna_epnas.costs.cost import NetworkSize
from optuna_epnas.costs.model import CostModel, Limits
from optuna_epnas.data.device import DeviceData, load_dataset
from optuna_epnas.standalone.export import ModelSpec, build_model
from optuna_epnas.nn import build_network
from optuna_epnas.supernet.objective import SupernetObjective
from optuna_epnas.supernet.store import CheckpointStore
from optuna_epnas.supernet.trainer import SupernetTrainer
from optuna_epnas.sampler.epnas import EPNASSampler
from optuna_epnas.sampler.selection import UCB, ExpectedImprovement, Mean, Softmax, TopK
from optuna_epnas.sampler.surrogate import LSTMSurrogate
from optuna_epnas.spaces import MacroArch, MacroSpace, MicroArch, MicroSpace, NB201Space, SearchSpace

__all__ = [
    "CostModel", "DeviceData", "EPNASSampler", "ExpectedImprovement", "LSTMSurrogate", "Limits", "Mean", "Softmax",
    "TopK", "UCB", "MacroArch", "MacroSpace", "MicroArch", "MicroSpace", "ModelSpec", "NB201Space",
    "NetworkSize", "SearchSpace",
    "SupernetObjective", "build_model", "build_network", "load_dataset",
    "CheckpointStore", "SupernetTrainer",  # what a SupernetObjective is built from
]
__version__ = "0.1.0"
