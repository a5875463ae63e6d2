"""The SearchSpace contract, checked on every space (macro and micro) by one suite.

What the sampler, the objective and the exports rely on: keys and parameters round-trip, specs rebuild
the space through the registry, children, levels and cardinality agree, tokens line up with children,
``validate`` refuses what is not in the space, and ``build_network``'s supernet and stand-alone network
name a path's parameters alike. What is particular to one space stays in test_spaces.py (macro) and
test_micro.py (micro).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import optuna
import pytest
import torch

from optuna_epnas.nn import build_network, count_parameters
from optuna_epnas.spaces import (
    MacroArch, MacroSpace, MicroArch, MicroSpace, NB201Space, SearchSpace, register_space, space_class,
    space_from_spec, space_names,
)
from optuna_epnas.testing import check_space

torch.set_num_threads(1)

OPS4 = ("conv3x3", "sep3x3", "max3x3", "identity")


@dataclass(frozen=True)
class Case:
    space: SearchSpace  # a full-size space
    restricted: SearchSpace  # the same depth, fewer ops
    outside_key: str  # a key of `space` that uses an op outside `restricted`
    outside_op: str
    unknown_op_key: str  # a key naming an op of no space
    describe: str
    units: str
    network_options: tuple[str, ...]
    final_channels: int
    tiny: SearchSpace  # small enough to build networks of on the CPU in milliseconds


CASES = {
    "macro": Case(MacroSpace(12), MacroSpace(12, ops=("conv3x3", "max3x3")), "conv3x3 | sep3x3", "sep3x3",
                  "conv7x7", "macro, 12 layers", "layers", (), 64, MacroSpace(4)),
    "micro": Case(MicroSpace(5), MicroSpace(5, ops=("conv3x3", "max3x3")), "conv3x3(prev) + sep3x3(prev2)",
                  "sep3x3", "sep3x3(prev) + conv7x7(prev)", "micro, 5 blocks, 2 normal cells per stage", "blocks",
                  ("cells",), 32, MicroSpace(2, ops=OPS4, cells=1)),
}


@pytest.fixture(params=list(CASES))
def case(request) -> Case:
    return CASES[request.param]


def space_id(x) -> str:
    return f"{x.name}{x.max_level}" if isinstance(x, SearchSpace) else str(x)


def random_arch(space: SearchSpace, level: int, rng: np.random.Generator):
    arch = space.root()
    for _ in range(level):
        arch = space.child(arch, int(rng.integers(space.num_children(arch))))
    return arch


# -- identity: name, units, describe, registry -----------------------------------------------------
def test_name_units_describe_and_registry(case):
    space = case.space
    assert space.name == space.spec()["space"] and space.name in space_names()
    assert space_class(space.name) is type(space)
    assert space.units == case.units and space.describe() == case.describe
    assert space.describe().startswith(f"{space.name}, {space.max_level} {space.units}")
    assert type(space).network_options == case.network_options
    assert type(space).final_channels == case.final_channels


def test_micro_describe_counts_its_cells():
    assert MicroSpace(3, cells=1).describe() == "micro, 3 blocks, 1 normal cell per stage"


# -- specs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", [
    MacroSpace(12), MacroSpace(4, ops=("avg3x3", "sep3x3")), MicroSpace(4, ops=("sep5x5", "avg3x3", "identity"), cells=3),
], ids=["macro", "macro-ops", "micro"])
def test_spec_round_trips_through_from_spec(space):
    spec = json.loads(json.dumps(space.spec()))  # as a storage gives it back
    for rebuilt in (SearchSpace.from_spec(spec), type(space).from_spec(spec), space_from_spec(spec)):
        assert type(rebuilt) is type(space) and rebuilt.spec() == space.spec()
        assert all(getattr(rebuilt, f) == getattr(space, f) for f in type(space).spec_fields)
        assert rebuilt.token_dim == space.token_dim and rebuilt.cardinality() == space.cardinality()
        assert rebuilt.distributions() == space.distributions()
    rng = np.random.default_rng(5)
    for _ in range(10):
        arch = random_arch(space, int(rng.integers(0, space.max_level + 1)), rng)
        assert rebuilt.parse(space.key(arch)) == arch
        np.testing.assert_array_equal(rebuilt.tokens(arch), space.tokens(arch))
        np.testing.assert_array_equal(rebuilt.child_tokens(arch), space.child_tokens(arch))


def test_a_spec_lacking_a_field_or_of_an_unknown_kind_is_refused(case):
    spec = case.space.spec()
    for field in type(case.space).spec_fields:
        with pytest.raises(ValueError, match=f"lacks '{field}'"):
            SearchSpace.from_spec({k: v for k, v in spec.items() if k != field})
    for bad in ({**spec, "space": "nano"}, {k: v for k, v in spec.items() if k != "space"}, ["not", "a", "dict"]):
        with pytest.raises(ValueError, match="unknown search space .*known: 'macro', 'micro'"):
            SearchSpace.from_spec(bad)
    other = next(cls for n in space_names() if (cls := space_class(n)) is not type(case.space))
    with pytest.raises(ValueError, match="describes a"):
        other.from_spec(spec)


def test_register_space_needs_a_name():
    class Nameless(MacroSpace):
        name = ""

    with pytest.raises(ValueError, match="name"):
        register_space(Nameless)
    assert space_class("macro") is MacroSpace


# -- keys and parameters ----------------------------------------------------------------------------
def test_key_parse_round_trip(case):
    space = case.space
    rng = np.random.default_rng(42)
    for _ in range(200):
        arch = random_arch(space, int(rng.integers(0, space.max_level + 1)), rng)
        key = space.key(arch)
        assert key == str(arch) == arch.key
        back = space.parse(key)
        assert back == arch and hash(back) == hash(arch) and space.key(back) == key
        assert space.parse(key.replace(" | ", "|")) == arch  # whitespace around separators is tolerated
    assert space.key(space.root()) == "" and space.parse("") == space.root() and space.parse("  ") == space.root()


def test_params_round_trip(case):
    space = case.space
    rng = np.random.default_rng(7)
    for _ in range(100):
        level = int(rng.integers(1, space.max_level + 1))
        arch = random_arch(space, level, rng)
        params = space.to_params(arch)
        dists = space.distributions(level)
        assert set(params) == set(dists)
        assert all(v in dists[n].choices for n, v in params.items())
        assert space.from_params(params) == arch
        assert space.from_params({**params, "lr": 0.1, "other": "x"}) == arch  # extras ignored
    assert space.from_params({}) == space.root()


def test_distributions_and_unit_params(case):
    space = case.space
    assert space.distributions() == space.distributions(space.max_level)
    for unit in range(1, space.max_level + 1):
        assert space.unit_param(unit) in space.distributions(unit)
        assert space.unit_param(unit) not in space.distributions(unit - 1)
        assert all(isinstance(d, optuna.distributions.CategoricalDistribution)
                   for d in space.distributions(unit).values())


def test_suggest_with_fixed_trial(case):
    space = case.space
    rng = np.random.default_rng(3)
    for _ in range(5):
        arch = random_arch(space, space.max_level, rng)
        assert space.suggest(optuna.trial.FixedTrial(space.to_params(arch))) == arch


def test_suggest_with_random_sampler(case):
    space = case.space
    seen = []

    def objective(trial):
        arch = space.suggest(trial)
        assert space.level(arch) == space.max_level  # not a growing sampler: complete architectures
        assert space.from_params(trial.params) == arch
        seen.append(space.key(arch))
        return 0.0

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=8)
    assert len(seen) == 8 and len(set(seen)) > 1  # really sampled, not a constant
    for t, key in zip(study.trials, seen):
        assert space.from_params(t.params) == space.parse(key)
        assert set(t.distributions) == set(space.distributions())


# -- children, levels, cardinality ------------------------------------------------------------------
SMALL = [MacroSpace(1), MacroSpace(2), MacroSpace(3), MacroSpace(4, ops=("conv3x3", "max3x3")),
         MicroSpace(2, ops=("conv3x3", "max3x3")), MicroSpace(3, ops=("identity",)), MicroSpace(2, ops=OPS4[:3])]


@pytest.mark.parametrize("space", SMALL, ids=space_id)
def test_expansion_enumerates_exactly_the_cardinality(space):
    assert space.level(space.root()) == 0 and space.cardinality(0) == 1
    assert space.initial() == space.children(space.root())
    frontier = [space.root()]
    for level in range(1, space.max_level + 1):
        nxt = []
        for parent in frontier:
            children = space.children(parent)
            assert len(children) == space.num_children(parent)
            assert len({space.key(c) for c in children}) == len(children) == len(set(children))  # distinct
            assert all(space.level(c) == level for c in children)
            nxt += children
        assert len(nxt) == len(set(nxt)) == space.cardinality(level)
        assert all(space.level(space.parse(space.key(a))) == level for a in nxt)
        frontier = nxt
    assert space.cardinality() == space.cardinality(space.max_level)
    full = frontier[0]
    assert space.num_children(full) == 0 and space.children(full) == []
    assert space.child_tokens(full).shape == (0, space.token_dim)
    with pytest.raises(IndexError):
        space.child(full, 0)
    for bad in (space.max_level + 1, -1):
        with pytest.raises(ValueError):
            space.cardinality(bad)


@pytest.mark.parametrize("level", [0, 1, 3])
def test_children_by_index_agree_and_refuse_out_of_range(case, level):
    space = case.space
    parent = random_arch(space, level, np.random.default_rng(level))
    n = space.num_children(parent)
    children = space.children(parent)
    assert len(children) == n and all(children[i] == space.child(parent, i) for i in range(0, n, max(1, n // 64)))
    assert len({space.key(c) for c in children}) == n
    for bad in (n, -1):
        with pytest.raises(IndexError):
            space.child(parent, bad)
    groups = np.asarray(space.child_groups(parent))
    assert groups.shape == (n,)
    classes = space.child_cost_classes(parent)
    assert classes is None or np.asarray(classes).shape == (n,)


# -- tokens -------------------------------------------------------------------------------------------
TOKEN_CASES = [(MacroSpace(12), 0), (MacroSpace(12), 1), (MacroSpace(12), 4),
               pytest.param(MacroSpace(12), 11, marks=pytest.mark.slow), (MacroSpace(5), 3),
               (MicroSpace(5), 0), (MicroSpace(5), 1), (MicroSpace(5), 3), (MicroSpace(5), 4), (MicroSpace(3), 2)]


@pytest.mark.parametrize("space,level", TOKEN_CASES, ids=space_id)
def test_child_tokens_equal_last_token_of_child(space, level):
    parent = random_arch(space, level, np.random.default_rng(100 + level))
    ct = space.child_tokens(parent)
    assert ct.dtype == np.float32 and ct.shape == (space.num_children(parent), space.token_dim)
    parent_tokens = space.tokens(parent)
    assert parent_tokens.dtype == np.float32 and parent_tokens.shape == (level, space.token_dim)
    for i in range(len(ct)):
        tok = space.tokens(space.child(parent, i))
        assert tok.shape == (level + 1, space.token_dim)
        np.testing.assert_array_equal(tok[:-1], parent_tokens)
        np.testing.assert_array_equal(ct[i], tok[-1])
    assert len({row.tobytes() for row in ct}) == len(ct)  # distinct children, distinct added-unit tokens


# -- validate -----------------------------------------------------------------------------------------
def test_validate_refuses_what_is_not_in_the_space(case):
    space, restricted = case.space, case.restricted
    arch = space.parse(case.outside_key)
    space.validate(arch)  # in the full space
    with pytest.raises(ValueError, match=case.outside_op):
        restricted.validate(arch)
    with pytest.raises(ValueError, match=case.outside_op):
        restricted.parse(case.outside_key)
    with pytest.raises(ValueError):
        restricted.from_params(space.to_params(arch))
    with pytest.raises(ValueError):
        space.parse(case.unknown_op_key)
    deep = random_arch(space, space.max_level, np.random.default_rng(0))
    shallow = type(space).smallest_holding(space.parse(case.outside_key))
    with pytest.raises(ValueError, match=space.units):
        shallow.validate(deep)  # deeper than the space
    with pytest.raises(ValueError):
        shallow.parse(space.key(deep))
    other = next(c.space for c in CASES.values() if type(c.space) is not type(space))
    with pytest.raises(TypeError):
        space.validate(other.root())


def test_smallest_holding_holds_the_arch_at_full_depth(case):
    arch = random_arch(case.space, 3, np.random.default_rng(1))
    smallest = type(case.space).smallest_holding(arch)
    assert type(smallest) is type(case.space) and smallest.max_level == 3
    smallest.validate(arch)
    assert type(case.space).smallest_holding(case.space.root()).max_level == 1


# -- networks -----------------------------------------------------------------------------------------
def test_supernet_and_standalone_name_a_path_alike(case):
    space = case.tiny
    torch.manual_seed(0)
    supernet = build_network(space, 10, 1, 4)
    assert supernet.arch is None
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    rng = np.random.default_rng(2)
    for level in (1, space.max_level):
        arch = random_arch(space, level, rng)
        alone = build_network(space, 10, 1, 4, arch=arch)
        assert alone.arch == arch
        path = {id(p) for p in supernet.path_parameters(arch)}
        names = {n for n, _ in alone.named_parameters()}
        assert names == {n for n, p in supernet.named_parameters() if id(p) in path}
        for n, p in alone.named_parameters():
            assert p.shape == supernet.get_parameter(n).shape, n
        alone.load_state_dict(supernet.state_dict(), strict=False)
        supernet.train()  # the supernet's BNs use batch statistics: compare in train mode
        alone.train()
        with torch.no_grad():
            torch.testing.assert_close(supernet(x, arch), alone(x), rtol=1e-5, atol=1e-5)
        n_alone = sum(p.numel() for p in alone.parameters())
        assert count_parameters(space, arch, 10, 1, 4) == n_alone < sum(p.numel() for p in supernet.parameters())


def test_build_network_refuses_options_the_space_does_not_take(case):
    space = case.tiny
    arch = random_arch(space, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="bogus is not a setting"):
        build_network(space, 10, 1, 4, bogus=1)
    with pytest.raises(ValueError, match="bogus"):
        count_parameters(space, arch, 10, 1, 4, bogus=1)
    build_network(space, 10, 1, 4, arch=arch, cells=None)  # an option left at None is the default
    with pytest.raises(TypeError, match="no network"):
        build_network(object(), 10, 1, 4)


def test_the_macro_space_refuses_cells_as_before():
    with pytest.raises(ValueError, match="cells is a setting of the micro space; the macro space's depth is its "
                                         "number of layers"):
        build_network(MacroSpace(3), 10, 1, 4, cells=2)
    assert isinstance(MacroArch(("conv3x3",), ((),)), MacroSpace.arch_type)
    assert isinstance(MicroArch(((0, "conv3x3", 1, "conv3x3"),)), MicroSpace.arch_type)


# -- the reusable contract (optuna_epnas.testing.check_space), on every registered space ----------------------
@pytest.mark.parametrize("space", [MacroSpace(12), MacroSpace(3, ops=("conv3x3", "avg3x3")), MicroSpace(5),
                                   MicroSpace(2, ops=OPS4, cells=1), NB201Space(),
                                   NB201Space(order=range(6), ungrown="skip_connect")], ids=space_id)
def test_check_space_passes_on_the_package_spaces(space):
    check_space(space)


class _UnevenSpace(NB201Space):
    """Breaks the schedule's assumption: the 'none' child of the root has fewer children than its siblings."""

    name = "uneven-nb201"

    def num_children(self, arch):
        n = super().num_children(arch)
        return n - 1 if n and arch.edges[self.order[0]] == "none" and self.level(arch) == 1 else n

    def child(self, arch, index):
        if index >= self.num_children(arch):
            raise IndexError(index)
        return super().child(arch, index)

    def child_tokens(self, arch):
        return super().child_tokens(arch)[: self.num_children(arch)]


class _BadTokens(NB201Space):
    name = "bad-tokens-nb201"

    def child_tokens(self, arch):
        return super().child_tokens(arch)[::-1].copy()


def test_check_space_names_the_promise_a_space_breaks():
    register_space(_UnevenSpace)
    register_space(_BadTokens)
    with pytest.raises(AssertionError, match="architectures of level 1 have .* children"):
        check_space(_UnevenSpace(), samples=30)
    with pytest.raises(AssertionError, match="child_tokens"):
        check_space(_BadTokens())
    with pytest.raises(AssertionError, match="is not registered"):
        check_space(type("Unregistered", (NB201Space,), {"name": "unregistered-nb201"})())


def test_a_space_must_set_its_sizes():
    class Sizeless(NB201Space):
        name = "sizeless-nb201"

        def __init__(self):
            super().__init__()
            del self.max_level

    with pytest.raises(TypeError, match=r"Sizeless.__init__ must set self.max_level to a positive integer"):
        Sizeless()
