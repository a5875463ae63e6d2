"""A third search space, written here in a few lines and registered from outside the package, runs an
EPNAS search through the Python API: nothing in the sampler, the objective or the cost accounting may
assume the macro or micro space."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch
import torch.nn.functional as F
from optuna.distributions import CategoricalDistribution
from torch import nn

from optuna_epnas import EPNASSampler, SearchSpace, SupernetObjective, SupernetTrainer, build_network, load_dataset
from optuna_epnas.costs.cost import NetworkSize
from optuna_epnas.spaces import register_space, space_class, space_names
from optuna_epnas.testing import check_space
from optuna_epnas.sampler.surrogate import LSTMSurrogate

CHAIN_OPS = ("conv3x3", "max3x3")


class ChainSpace(SearchSpace):
    """A chain of ``num_units`` units, each one of two ops; an architecture is the tuple of its ops."""

    name, spec_fields = "chain", ("num_units",)

    def __init__(self, num_units: int = 3) -> None:
        self.num_units = self.max_level = num_units
        self.token_dim = len(CHAIN_OPS)

    def root(self):
        return ()

    def level(self, arch):
        return len(arch)

    def key(self, arch):
        return " | ".join(arch)

    def parse(self, key):
        arch = tuple(p.strip() for p in key.split("|")) if key.strip() else ()
        self.validate(arch)
        return arch

    def validate(self, arch):
        if len(arch) > self.num_units or any(op not in CHAIN_OPS for op in arch):
            raise ValueError(f"{arch!r} is not in {self.num_units} units of {CHAIN_OPS}")

    def num_children(self, arch):
        return 0 if len(arch) >= self.num_units else len(CHAIN_OPS)

    def child(self, arch, index):
        if not 0 <= index < self.num_children(arch):
            raise IndexError(index)
        return arch + (CHAIN_OPS[index],)

    def child_tokens(self, arch):
        return np.eye(self.token_dim, dtype=np.float32)[: self.num_children(arch)]

    def tokens(self, arch):
        return np.eye(self.token_dim, dtype=np.float32)[[CHAIN_OPS.index(op) for op in arch]].reshape(-1, self.token_dim)

    def cardinality(self, level=None):
        return len(CHAIN_OPS) ** (self.num_units if level is None else level)

    def unit_param(self, unit):
        return f"unit_{unit}"

    def distributions(self, level=None):
        return {self.unit_param(u): CategoricalDistribution(CHAIN_OPS)
                for u in range(1, (self.num_units if level is None else level) + 1)}

    def to_params(self, arch):
        return {self.unit_param(u): op for u, op in enumerate(arch, start=1)}

    def from_params(self, params):
        arch = tuple(params[self.unit_param(u)] for u in range(1, self.num_units + 1) if self.unit_param(u) in params)
        self.validate(arch)
        return arch


class ChainNet(nn.Module):
    """Stem, then per unit its candidate ops (the supernet) or its one op (stand-alone), then a classifier."""

    def __init__(self, space, num_classes, in_channels, channels, arch=None):
        super().__init__()
        self.arch = arch
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)
        make = {"conv3x3": lambda: nn.Conv2d(channels, channels, 3, padding=1), "max3x3": lambda: nn.MaxPool2d(3, 1, 1)}
        self.units = nn.ModuleList(nn.ModuleDict({op: make[op]() for op in (CHAIN_OPS if arch is None else (arch[i],))})
                                   for i in range(space.num_units if arch is None else len(arch)))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x, arch=None):
        h = self.stem(x)
        for unit, op in zip(self.units, self.arch if arch is None else arch):
            h = F.relu(unit[op](h))
        return self.classifier(h.mean((2, 3)))


register_space(ChainSpace, network=ChainNet)


def test_the_third_space_keeps_the_space_contract():
    check_space(ChainSpace(3))
    check_space(ChainSpace(1))


def test_the_third_space_is_registered_and_builds_its_networks():
    space = ChainSpace(3)
    assert "chain" in space_names() and space_class("chain") is ChainSpace
    assert SearchSpace.from_spec(space.spec()).spec() == space.spec() == {"space": "chain", "num_units": 3}
    assert space.describe() == "chain, 3 units"
    alone = build_network(space, 10, 1, 4, arch=("max3x3", "conv3x3"), cells=None)
    assert alone(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="cells is a setting of the micro space"):
        build_network(space, 10, 1, 4, cells=2)
    size = NetworkSize(10, 1, 4, 8)
    assert size.count(space, ("conv3x3",))[0] == sum(p.numel() for p in ChainNet(space, 10, 1, 4, ("conv3x3",)).parameters())


@pytest.mark.slow
def test_an_epnas_search_runs_on_the_third_space():
    space = ChainSpace(3)
    data = load_dataset("digits", device="cpu", seed=0, max_train=64, image_size=8)
    objective = SupernetObjective(SupernetTrainer(space, data, epochs=1, channels=4, batch_size=32, seed=0))
    sampler = EPNASSampler(space, k=2, iterations=1, seed=0, surrogate=LSTMSurrogate(steps=20, rescore=objective.rescore))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=sampler.n_trials)
    trials = study.trials
    assert len(trials) == sampler.n_trials == 2 + 2 + 2
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert [t.user_attrs["level"] for t in trials] == [1, 1, 2, 2, 3, 3]
    keys = [t.user_attrs["arch"] for t in trials]
    assert len(set(keys)) == len(keys)
    assert all(space.level(space.parse(k)) == t.user_attrs["level"] for k, t in zip(keys, trials))
    assert sampler.is_finished(study)
