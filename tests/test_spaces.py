"""MacroSpace / MacroArch: what is particular to the macro space (its cardinality formula, skip rule,
key format, token layout, parameter names, reductions and errors). The contract every space meets is
checked in test_space_contract.py."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from optuna_epnas.spaces import MACRO_OPS, MacroArch, MacroSpace, SearchSpace


def random_arch(space: MacroSpace, level: int, rng: np.random.Generator) -> MacroArch:
    arch = space.root()
    for _ in range(level):
        arch = space.child(arch, int(rng.integers(space.num_children(arch))))
    return arch


# -- cardinality -------------------------------------------------------------------------------
def test_cardinality_paper_space():
    space = MacroSpace(12)
    assert space.cardinality() == 6**12 * 2**66
    assert space.cardinality(12) == space.cardinality()
    assert 1.5e29 < space.cardinality() < 1.7e29
    assert space.cardinality(0) == 1
    assert space.cardinality(1) == 6
    assert space.cardinality(3) == 6**3 * 2**3


# -- expansion and tokens ------------------------------------------------------------------------
def test_initial_is_the_one_layer_archs():
    space = MacroSpace(12)
    initial = space.initial()
    assert len(initial) == 6
    assert [a.ops for a in initial] == [(op,) for op in MACRO_OPS]
    assert all(a.skips == ((),) for a in initial)
    assert space.root().level == 0


@pytest.mark.parametrize("level", [0, 1, 3, 7, 11])
def test_children_agree_and_extend_parent(level):
    space = MacroSpace(12)
    parent = random_arch(space, level, np.random.default_rng(level))
    n = space.num_children(parent)
    assert n == 6 * 2**level
    children = space.children(parent)
    assert len(children) == n
    if n <= 64:
        assert children == [space.child(parent, i) for i in range(n)]
    else:  # spot-check child(i) against children without another full expansion
        for i in np.random.default_rng(1).integers(n, size=32):
            assert children[i] == space.child(parent, int(i))
    assert len({space.key(c) for c in children}) == n  # distinct
    expected_extensions = set()
    for c in children:
        assert c.level == level + 1
        assert c.ops[:-1] == parent.ops and c.skips[:-1] == parent.skips
        expected_extensions.add((c.ops[-1], c.skips[-1]))
    # every (op, subset of sources 0..level-1) appears exactly once
    assert len(expected_extensions) == n
    assert {op for op, _ in expected_extensions} == set(MACRO_OPS)
    assert all(set(s) <= set(range(level)) for _, s in expected_extensions)
    with pytest.raises(IndexError):
        space.child(parent, n)
    with pytest.raises(IndexError):
        space.child(parent, -1)


def test_tokens_encode_op_and_skips():
    space = MacroSpace(4)
    arch = MacroArch(("sep5x5", "avg3x3", "conv3x3"), ((), (0,), (0, 1)))
    tok = space.tokens(arch)
    assert tok.dtype == np.float32 and tok.shape == (3, 6 + 4)
    expected = np.zeros((3, 10), dtype=np.float32)
    expected[0, MACRO_OPS.index("sep5x5")] = 1
    expected[1, MACRO_OPS.index("avg3x3")] = 1
    expected[1, 6 + 0] = 1
    expected[2, MACRO_OPS.index("conv3x3")] = 1
    expected[2, [6, 7]] = 1
    np.testing.assert_array_equal(tok, expected)


# -- keys ----------------------------------------------------------------------------------------
def test_key_format():
    space = MacroSpace(4)
    arch = MacroArch(("conv3x3", "sep5x5", "max3x3"), ((), (0,), (0, 1)))
    assert space.key(arch) == "conv3x3 | sep5x5[0] | max3x3[0,1]"
    assert space.parse("conv3x3 | sep5x5[0] | max3x3[0,1]") == arch


@pytest.mark.parametrize(
    "key",
    [
        "conv3x3 |",  # empty layer
        "| conv3x3",
        "conv3x3 || max3x3",
        "conv3x3[",  # unclosed bracket
        "conv3x3 | max3x3[0,]",
        "conv3x3 | max3x3[a]",
        "conv3x3 | max3x3[-1]",
        "conv 3x3",
        "conv3x3[0]",  # layer 1 may not skip
        "conv3x3 | max3x3[1]",  # layer 2 may only skip from 0
        "conv3x3 | max3x3 | avg3x3[1,0]",  # unsorted
        "conv3x3 | max3x3 | avg3x3[0,0]",  # duplicated
        "conv3x3 | max3x3 | avg3x3 | conv5x5",  # deeper than the space
    ],
)
def test_parse_malformed_keys(key):
    with pytest.raises(ValueError):
        MacroSpace(3).parse(key)


# -- Optuna parameters ----------------------------------------------------------------------------
def test_param_names():
    space = MacroSpace(12)
    rng = np.random.default_rng(7)
    for _ in range(100):
        level = int(rng.integers(1, 13))
        assert len(space.to_params(random_arch(space, level, rng))) == level + level * (level - 1) // 2

    arch = MacroArch(("conv3x3", "sep5x5", "max3x3"), ((), (0,), (1,)))
    params = space.to_params(arch)
    assert params == {
        "layer_01.op": "conv3x3",
        "layer_02.op": "sep5x5",
        "layer_02.skip_00": True,
        "layer_03.op": "max3x3",
        "layer_03.skip_00": False,
        "layer_03.skip_01": True,
    }
    assert space.unit_param(3) == "layer_03.op"


@pytest.mark.parametrize("level", [1, 2, 5, 12])
def test_distributions(level):
    space = MacroSpace(12)
    dists = space.distributions(level)
    op_names = [n for n in dists if n.endswith(".op")]
    skip_names = [n for n in dists if ".skip_" in n]
    assert len(op_names) == level
    assert len(skip_names) == level * (level - 1) // 2
    assert len(dists) == len(op_names) + len(skip_names)
    for n in op_names:
        assert isinstance(dists[n], optuna.distributions.CategoricalDistribution)
        assert tuple(dists[n].choices) == MACRO_OPS
    for n in skip_names:
        assert tuple(dists[n].choices) == (False, True)
        layer, source = int(n[6:8]), int(n.split("skip_")[1])
        assert 0 <= source <= layer - 2


def test_suggested_params_are_the_canonical_ones():
    space = MacroSpace(6)

    def objective(trial):
        arch = space.suggest(trial)
        assert trial.params == space.to_params(arch)  # a macro architecture has one spelling
        return 0.0

    optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).optimize(objective, n_trials=4)


# -- constructor and MacroArch errors ------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, False, "3", None])
def test_bad_num_layers(bad):
    with pytest.raises(ValueError):
        MacroSpace(bad)


def test_unknown_op_message_lists_valid_ops():
    with pytest.raises(ValueError) as info:
        MacroSpace(3, ops=("conv3x3", "conv7x7"))
    msg = str(info.value)
    assert "conv7x7" in msg
    assert all(op in msg for op in MACRO_OPS)


def test_duplicate_and_empty_ops():
    with pytest.raises(ValueError):
        MacroSpace(3, ops=("conv3x3", "max3x3", "conv3x3"))
    with pytest.raises(ValueError):
        MacroSpace(3, ops=())
    with pytest.raises(ValueError):
        MacroSpace(3, ops=[])


def test_subset_of_ops():
    space = MacroSpace(3, ops=["max3x3", "conv3x3"])
    assert space.ops == ("max3x3", "conv3x3")
    assert space.token_dim == 2 + 3
    assert [a.ops for a in space.initial()] == [("max3x3",), ("conv3x3",)]
    assert space.cardinality() == 2**3 * 2**3


@pytest.mark.parametrize(
    "ops,skips",
    [
        (("conv3x3",), ((0,),)),  # layer 1: no skip sources at all
        (("conv3x3", "max3x3"), ((), (1,))),  # source >= layer - 1
        (("conv3x3", "max3x3", "avg3x3"), ((), (), (2,))),
        (("conv3x3", "max3x3", "avg3x3"), ((), (), (1, 0))),  # unsorted
        (("conv3x3", "max3x3", "avg3x3"), ((), (), (0, 0))),  # duplicated
        (("conv3x3", "max3x3", "avg3x3"), ((), (), (-1,))),  # negative
        (("conv3x3", "max3x3"), ((),)),  # one skip tuple per op
    ],
)
def test_macro_arch_invalid_skips(ops, skips):
    with pytest.raises(ValueError):
        MacroArch(ops, skips)


def test_macro_arch_valid():
    arch = MacroArch(("conv3x3", "max3x3", "avg3x3"), ((), (0,), (0, 1)))
    assert arch.level == 3
    assert arch == MacroArch(("conv3x3", "max3x3", "avg3x3"), ((), (0,), (0, 1)))
    assert {arch: 1}[MacroArch(("conv3x3", "max3x3", "avg3x3"), ((), (0,), (0, 1)))] == 1


# -- reductions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("num_layers,expected", [(12, (4, 8)), (6, (2, 4)), (1, ()), (3, (1, 2))])
def test_reduction_layers(num_layers, expected):
    assert MacroSpace(num_layers).reduction_layers() == expected
    assert SearchSpace.from_spec(MacroSpace(num_layers).spec()).reduction_layers() == expected
