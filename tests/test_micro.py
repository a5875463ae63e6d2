"""The micro (cell) space and its network: MicroArch, MicroSpace, MicroNet, and the model export.

Covers canonical blocks and keys, cardinality (by brute force), children and tokens, Optuna parameters
(also through real samplers and the EPNAS sampler), the supernet vs the stand-alone network, weight
sharing, reductions and cell counts, and ModelSpec / build_model with a save-and-reload round trip:
what is particular to the micro space. The contract every space meets is checked in
test_space_contract.py.
"""

from __future__ import annotations

import itertools
import json
import re
import zlib

import numpy as np
import optuna
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optuna_epnas import EPNASSampler
from optuna_epnas.standalone.export import SPEC_FORMAT, ModelSpec, build_model, default_space
from optuna_epnas.nn import MacroNet, MicroNet, build_network, count_parameters
from optuna_epnas.spaces import MICRO_OPS, MacroArch, MacroSpace, MicroArch, MicroSpace
from optuna_epnas.spaces.micro import input_index, input_name
from optuna_epnas.sampler.surrogate import LSTMSurrogate

torch.set_num_threads(1)

OPS4 = ("conv3x3", "sep3x3", "max3x3", "identity")
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")

# Three blocks over OPS4. A: b1 is read by b2 and b3, so the cell concatenates b2 and b3.
ARCH_A = MicroArch(((0, "sep3x3", 1, "identity"), (0, "max3x3", 2, "conv3x3"), (1, "conv3x3", 2, "sep3x3")))
# B shares with A exactly: block 2's conv3x3(b1) branch (and prev2 identity of block 1, weightless in
# normal cells, a strided 1x1 conv in reduction cells). Only block 3 is concatenated.
ARCH_B = MicroArch(((0, "conv3x3", 1, "identity"), (2, "conv3x3", 1, "sep3x3"), (3, "max3x3", 2, "identity")))
# A block whose two branches are the same (input, op), and a cell that only ever reads prev2.
ARCH_SAME = MicroArch(((0, "conv3x3", 0, "conv3x3"), (2, "sep3x3", 1, "max3x3")))


# -- helpers ---------------------------------------------------------------------------------------
def random_arch(space: MicroSpace, level: int, rng: np.random.Generator) -> MicroArch:
    arch = space.root()
    for _ in range(level):
        arch = space.child(arch, int(rng.integers(space.num_children(arch))))
    return arch


def all_blocks(b: int, ops) -> list[tuple]:
    """Every *ordered* (in1, op1, in2, op2) of block ``b`` (1-based)."""
    branches = [(i, op) for i in range(b + 1) for op in ops]
    return [x + y for x in branches for y in branches]


def brute_force_keys(ops, level: int) -> set[str]:
    per_block = [all_blocks(b, ops) for b in range(1, level + 1)]
    return {MicroArch(blocks).key for blocks in itertools.product(*per_block)}


def swap_branches(block: tuple) -> tuple:
    in1, op1, in2, op2 = block
    return (in2, op2, in1, op1)


def images(n: int = 16, size: int = 8, channels: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def make_supernet(space: MicroSpace, seed: int = 0, channels: int = 4, cells: int | None = None) -> MicroNet:
    torch.manual_seed(seed)
    return MicroNet(space, num_classes=10, in_channels=1, channels=channels, cells=cells)


def train_steps(net: nn.Module, arch, x, y, steps: int = 3) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    net.train()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        out = net(x) if arch is None else net(x, arch)
        F.cross_entropy(out, y).backward()
        opt.step()


def cell_outputs(net: MicroNet, x: torch.Tensor, arch: MicroArch | None = None) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    hooks = [c.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for c in net.cells.values()]
    try:
        net(x) if arch is None else net(x, arch)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def super_names(net: nn.Module) -> set[str]:
    return {n for n, _ in net.named_parameters()}


# -- inputs and MicroArch --------------------------------------------------------------------------
def test_input_names():
    assert [input_name(i) for i in range(5)] == ["prev", "prev2", "b1", "b2", "b3"]
    for i in range(12):
        assert input_index(input_name(i)) == i
    for bad in ("b0", "b01", "b", "prev3", "b-1", "B1", "", "prev "):
        with pytest.raises(ValueError):
            input_index(bad)


def test_arch_canonical_branch_order():
    blocks = ((1, "max3x3", 0, "sep3x3"), (2, "conv3x3", 0, "identity"), (1, "sep3x3", 1, "avg3x3"))
    mirrored = tuple(swap_branches(b) for b in blocks)
    a, m = MicroArch(blocks), MicroArch(mirrored)
    assert a == m and hash(a) == hash(m) and a.key == m.key and {a: 1}[m] == 1
    # canonical order: by input, then op name
    assert a.blocks == ((0, "sep3x3", 1, "max3x3"), (0, "identity", 2, "conv3x3"), (1, "avg3x3", 1, "sep3x3"))
    # mirroring only some blocks still gives the same architecture
    for mask in itertools.product((False, True), repeat=3):
        mixed = tuple(swap_branches(b) if s else b for b, s in zip(blocks, mask))
        assert MicroArch(mixed) == a
    # numpy integers are accepted and stored as plain ints
    n = MicroArch(((np.int64(1), "max3x3", np.int32(0), "sep3x3"),))
    assert n == MicroArch(((0, "sep3x3", 1, "max3x3"),))
    assert all(type(i) is int for i in (n.blocks[0][0], n.blocks[0][2]))
    # different blocks are different architectures; block order matters
    assert MicroArch(((0, "sep3x3", 0, "max3x3"),)) != MicroArch(((0, "sep3x3", 1, "max3x3"),))
    two = ((0, "sep3x3", 1, "max3x3"), (0, "conv3x3", 1, "conv3x3"))
    assert MicroArch(two) != MicroArch(two[::-1])


def test_key_format_and_examples():
    space = MicroSpace(5)
    arch = MicroArch(((1, "identity", 0, "sep3x3"), (2, "conv3x3", 0, "max3x3")))
    assert arch.key == "sep3x3(prev) + identity(prev2) | max3x3(prev) + conv3x3(b1)"
    assert str(arch) == space.key(arch) == arch.key
    assert space.parse(arch.key) == arch
    # the mirrored spelling parses to the same architecture and has the canonical key
    assert space.parse("identity(prev2) + sep3x3(prev) | conv3x3(b1) + max3x3(prev)") == arch
    assert space.parse("identity(prev2)+sep3x3(prev)|conv3x3(b1)+max3x3(prev)") == arch
    deep = MicroArch(((0, "avg3x3", 0, "avg3x3"), (1, "sep5x5", 2, "conv5x5"), (3, "identity", 2, "max3x3"),
                      (4, "conv3x3", 0, "sep3x3")))
    assert deep.key == ("avg3x3(prev) + avg3x3(prev) | sep5x5(prev2) + conv5x5(b1) | "
                        "max3x3(b1) + identity(b2) | sep3x3(prev) + conv3x3(b3)")
    assert space.root().key == "" and space.parse("") == space.root() and space.parse("  ") == space.root()


def test_mirrored_keys_parse_to_the_same_arch():
    space = MicroSpace(5)
    rng = np.random.default_rng(11)
    for _ in range(200):
        arch = random_arch(space, int(rng.integers(0, 6)), rng)
        key = space.key(arch)
        # the same key written with every block mirrored
        mirrored = " | ".join(" + ".join(part.split(" + ")[::-1]) for part in key.split(" | ")) if key else ""
        assert space.parse(mirrored) == arch


@pytest.mark.parametrize(
    "key",
    [
        "sep3x3(prev)",  # one branch
        "sep3x3(prev) + max3x3(prev) + conv3x3(prev)",  # three branches
        "sep3x3(prev) + ",
        "sep3x3(prev) + max3x3(prev) |",  # empty block
        "| sep3x3(prev) + max3x3(prev)",
        "sep3x3(prev) + max3x3(prev) || sep3x3(prev) + max3x3(prev)",
        "sep3x3 + max3x3",  # no inputs
        "sep3x3(prev + max3x3(prev)",
        "sep3x3[prev] + max3x3(prev)",
        "sep3x3(prev3) + max3x3(prev)",  # unknown input
        "sep3x3(b0) + max3x3(prev)",
        "sep3x3(b1) + max3x3(prev)",  # block 1 cannot read a block
        "sep3x3(prev) + max3x3(prev) | sep3x3(b2) + max3x3(prev)",  # block 2 reads only b1
        "sep3x3(prev) + conv7x7(prev)",  # unknown op
        "sep 3x3(prev) + max3x3(prev)",
        "sep3x3(prev) + max3x3(prev) | conv3x3(b1) + identity(prev2) | max3x3(b2) + max3x3(b1)",  # 3 > B=2
    ],
)
def test_parse_malformed_keys(key):
    with pytest.raises(ValueError):
        MicroSpace(2).parse(key)


@pytest.mark.parametrize(
    "blocks",
    [
        ((0, "conv3x3", 2, "max3x3"),),  # block 1 reads inputs 0..1
        ((0, "conv3x3", 1, "max3x3"), (3, "conv3x3", 0, "max3x3")),  # block 2 reads 0..2
        ((-1, "conv3x3", 0, "max3x3"),),
        ((0, "conv3x3", 1),),  # three fields
        ((0, "conv3x3", 1, "max3x3", 0),),
        ((True, "conv3x3", 0, "max3x3"),),  # bools are not inputs
        ((0.0, "conv3x3", 0, "max3x3"),),
        (("prev", "conv3x3", 0, "max3x3"),),
        ((0, 3, 0, "max3x3"),),  # ops are names
        ((0, "conv3x3", 0, None),),
    ],
)
def test_micro_arch_invalid(blocks):
    with pytest.raises(ValueError):
        MicroArch(blocks)


def test_outputs_are_the_unread_blocks():
    assert ARCH_A.outputs() == (2, 3)
    assert ARCH_B.outputs() == (3,)
    assert ARCH_SAME.outputs() == (2,)
    assert MicroArch(((0, "max3x3", 1, "max3x3"),)).outputs() == (1,)
    # prev / prev2 reads never hide a block
    assert MicroArch(((0, "max3x3", 1, "max3x3"), (0, "max3x3", 1, "max3x3"))).outputs() == (1, 2)
    chain = MicroArch(((0, "max3x3", 1, "max3x3"), (2, "max3x3", 0, "max3x3"), (3, "max3x3", 3, "max3x3")))
    assert chain.outputs() == (3,)


# -- space construction ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3", None])
def test_bad_num_blocks_and_cells(bad):
    with pytest.raises(ValueError):
        MicroSpace(bad)
    with pytest.raises(ValueError):
        MicroSpace(3, cells=bad)


def test_bad_ops():
    with pytest.raises(ValueError, match="conv7x7"):
        MicroSpace(3, ops=("conv3x3", "conv7x7"))
    with pytest.raises(ValueError):
        MicroSpace(3, ops=())
    with pytest.raises(ValueError):
        MicroSpace(3, ops=("conv3x3", "max3x3", "conv3x3"))


def test_defaults_and_token_dim():
    space = MicroSpace()
    assert space.num_blocks == space.max_level == 5 and space.cells == 2 and space.ops == MICRO_OPS
    assert len(MICRO_OPS) == 7 and "identity" in MICRO_OPS
    assert space.token_dim == 6 * 7 + 6 + 7
    assert MicroSpace(2, ops=["max3x3", "identity"]).ops == ("max3x3", "identity")


# -- cardinality --------------------------------------------------------------------------------------
def test_cardinality_paper_space():
    space = MicroSpace(5, ops=MICRO_OPS)
    assert space.cardinality() == 5_602_161_341_700
    print("MicroSpace(5, 7 ops) cardinality:", f"{space.cardinality():,}")
    assert space.cardinality(0) == 1
    assert space.cardinality(1) == 14 * 15 // 2
    assert space.cardinality(2) == 105 * (21 * 22 // 2)


@pytest.mark.parametrize("ops,num_blocks", [(("conv3x3", "max3x3"), 2), (("identity",), 3), (OPS4[:3], 2)])
def test_cardinality_matches_brute_force(ops, num_blocks):
    space = MicroSpace(num_blocks, ops=ops)
    for level in range(num_blocks + 1):
        expected = 1
        for b in range(1, level + 1):
            n = (b + 1) * len(ops)
            expected *= n * (n + 1) // 2
        assert space.cardinality(level) == expected
        keys = brute_force_keys(ops, level)
        assert len(keys) == expected, (ops, level)
        assert all(space.parse(k).level == level for k in keys)


@pytest.mark.parametrize("ops,num_blocks", [(("conv3x3", "max3x3"), 2), (("identity",), 3), (OPS4[:3], 2)])
def test_expansion_enumerates_the_brute_forced_cells(ops, num_blocks):
    space = MicroSpace(num_blocks, ops=ops)
    frontier = [space.root()]
    for level in range(1, num_blocks + 1):
        nxt = []
        for parent in frontier:
            children = space.children(parent)
            assert all(c.blocks[:-1] == parent.blocks for c in children)
            nxt += children
        assert {a.key for a in nxt} == brute_force_keys(ops, level)
        frontier = nxt


def test_initial_and_child_counts():
    space = MicroSpace(3, ops=("max3x3", "identity"))
    initial = space.initial()
    assert len(initial) == 4 * 5 // 2
    assert all(a.level == 1 and set(a.blocks[0][::2]) <= {0, 1} for a in initial)
    assert MicroArch(((0, "max3x3", 0, "max3x3"),)) in initial  # same branch twice is a block
    assert space.num_children(initial[0]) == 6 * 7 // 2


# -- tokens ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_blocks,level", [(5, 0), (5, 1), (5, 3), (5, 4), (3, 2)])
def test_child_tokens_count_two_branches(num_blocks, level):
    space = MicroSpace(num_blocks)
    ct = space.child_tokens(random_arch(space, level, np.random.default_rng(200 + level)))
    # every token counts two branches: two joint, two input and two op marks
    n_in, n_ops = num_blocks + 1, len(space.ops)
    np.testing.assert_array_equal(ct[:, : n_in * n_ops].sum(1), 2)
    np.testing.assert_array_equal(ct[:, n_in * n_ops: n_in * n_ops + n_in].sum(1), 2)
    np.testing.assert_array_equal(ct[:, n_in * n_ops + n_in:].sum(1), 2)


def test_tokens_encode_branches():
    ops = ("conv3x3", "max3x3", "identity")
    space = MicroSpace(3, ops=ops)
    n_in = 4
    arch = MicroArch(((1, "identity", 0, "conv3x3"), (2, "max3x3", 2, "max3x3")))
    tok = space.tokens(arch)
    assert tok.shape == (2, n_in * 3 + n_in + 3) == (2, space.token_dim)
    expected = np.zeros_like(tok)
    # block 1: conv3x3(prev) + identity(prev2)
    expected[0, 0 * 3 + 0] = expected[0, 1 * 3 + 2] = 1
    expected[0, 12 + 0] = expected[0, 12 + 1] = 1
    expected[0, 16 + 0] = expected[0, 16 + 2] = 1
    # block 2: max3x3(b1) twice: counts, not flags
    expected[1, 2 * 3 + 1] = 2
    expected[1, 12 + 2] = 2
    expected[1, 16 + 1] = 2
    np.testing.assert_array_equal(tok, expected)
    # invariant to branch order
    swapped = MicroArch(tuple(swap_branches(b) for b in arch.blocks))
    np.testing.assert_array_equal(space.tokens(swapped), tok)
    assert space.tokens(space.root()).shape == (0, space.token_dim)


def test_tokens_differ_between_blocks_of_a_level():
    space = MicroSpace(3, ops=("conv3x3", "max3x3"))
    # all level-2 archs with the same block 1: every block-2 value has its own token
    parent = space.initial()[3]
    last = {space.tokens(c)[-1].tobytes(): c for c in space.children(parent)}
    assert len(last) == space.num_children(parent)
    # and tokens of brute-forced block-2 values agree under mirroring
    seen: dict[MicroArch, bytes] = {}
    for block in all_blocks(2, space.ops):
        arch = MicroArch(parent.blocks + (block,))
        t = space.tokens(arch)[-1].tobytes()
        assert seen.setdefault(arch, t) == t
    assert len(seen) == len(set(seen.values())) == space.num_children(parent)


# -- Optuna parameters ------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", [1, 2, 5])
def test_distributions(level):
    space = MicroSpace(5, ops=OPS4)
    dists = space.distributions(level)
    assert len(dists) == 4 * level
    for b in range(1, level + 1):
        inputs = ("prev", "prev2") + tuple(f"b{j}" for j in range(1, b))
        for branch in (1, 2):
            d_in, d_op = dists[f"cell.block_{b}.in{branch}"], dists[f"cell.block_{b}.op{branch}"]
            assert isinstance(d_in, optuna.distributions.CategoricalDistribution)
            assert tuple(d_in.choices) == inputs
            assert tuple(d_op.choices) == OPS4
    assert space.unit_param(3) == "cell.block_3.op1"


def test_params_with_swapped_branches_and_names():
    space = MicroSpace(5)
    rng = np.random.default_rng(9)
    for _ in range(100):
        level = int(rng.integers(1, 6))
        arch = random_arch(space, level, rng)
        params = space.to_params(arch)
        assert space.from_params({**params, "cell.block_9.op1": "x"}) == arch  # a block beyond B is ignored
        # the same architecture with branches swapped in some blocks
        swapped = dict(params)
        for b in range(1, level + 1):
            if rng.random() < 0.5:
                p = f"cell.block_{b}."
                swapped[p + "in1"], swapped[p + "in2"] = params[p + "in2"], params[p + "in1"]
                swapped[p + "op1"], swapped[p + "op2"] = params[p + "op2"], params[p + "op1"]
        assert space.from_params(swapped) == arch
    arch = MicroArch(((1, "identity", 0, "sep3x3"), (2, "conv3x3", 0, "max3x3")))
    assert space.to_params(arch) == {
        "cell.block_1.in1": "prev", "cell.block_1.op1": "sep3x3",
        "cell.block_1.in2": "prev2", "cell.block_1.op2": "identity",
        "cell.block_2.in1": "prev", "cell.block_2.op1": "max3x3",
        "cell.block_2.in2": "b1", "cell.block_2.op2": "conv3x3",
    }


def test_from_params_errors():
    space = MicroSpace(3, ops=("conv3x3", "max3x3"))
    good = {"cell.block_1.in1": "prev", "cell.block_1.op1": "conv3x3",
            "cell.block_1.in2": "prev2", "cell.block_1.op2": "max3x3"}
    assert space.from_params(good).level == 1
    for drop in ("cell.block_1.in1", "cell.block_1.in2", "cell.block_1.op2"):
        with pytest.raises(ValueError):
            space.from_params({k: v for k, v in good.items() if k != drop})
    with pytest.raises(ValueError):
        space.from_params({**good, "cell.block_1.op2": "sep3x3"})  # op outside the space
    with pytest.raises(ValueError):
        space.from_params({**good, "cell.block_1.in2": "b1"})  # block 1 reads no block
    with pytest.raises(ValueError):
        space.from_params({**good, "cell.block_1.in2": "prev3"})


@pytest.mark.parametrize("make_sampler", [
    lambda: optuna.samplers.RandomSampler(seed=0),
    lambda: optuna.samplers.TPESampler(seed=0, n_startup_trials=4),
], ids=["random", "tpe"])
def test_suggest_with_optuna_samplers(make_sampler):
    space = MicroSpace(3, ops=OPS4)
    seen = []

    def objective(trial):
        arch = space.suggest(trial)
        assert isinstance(arch, MicroArch) and arch.level == 3
        assert set(trial.params) == set(space.distributions(3))  # all four params of every block
        assert space.from_params(trial.params) == arch
        # trial params equal the canonical ones up to the order of each block's branches
        assert MicroArch(tuple(
            (input_index(trial.params[f"cell.block_{b}.in1"]), trial.params[f"cell.block_{b}.op1"],
             input_index(trial.params[f"cell.block_{b}.in2"]), trial.params[f"cell.block_{b}.op2"])
            for b in (1, 2, 3))) == arch
        seen.append(arch)
        return zlib.crc32(arch.key.encode()) / 2**32

    study = optuna.create_study(direction="maximize", sampler=make_sampler())
    study.optimize(objective, n_trials=12)
    assert len(seen) == 12 and len(set(seen)) > 1
    for t, arch in zip(study.trials, seen):
        assert space.parse(arch.key) == arch
        assert set(t.distributions) == set(space.distributions())


@pytest.mark.slow
def test_epnas_sampler_grows_cells():
    space = MicroSpace(2, ops=("max3x3", "identity"))
    sampler = EPNASSampler(space, k=2, iterations=1, seed=0, surrogate=LSTMSurrogate(steps=20))
    n = EPNASSampler.planned_trials(space, 2, 1)
    assert n == sampler.n_trials == 10 + 2  # 4 branch choices -> 10 one-block cells, then K=2
    levels, keys = [], []

    def objective(trial):
        arch = space.suggest(trial)
        levels.append(arch.level)
        keys.append(arch.key)
        return 0.05 + 0.9 * zlib.crc32(arch.key.encode()) / 2**32

    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=n)
    assert levels == [1] * 10 + [2, 2]
    assert [t.user_attrs["level"] for t in study.trials] == levels
    assert [t.user_attrs["arch"] for t in study.trials] == keys
    assert sorted(keys[:10]) == sorted(a.key for a in space.initial())
    assert len(set(keys[10:])) == 2
    for key in keys[10:]:
        assert key.rsplit(" | ", 1)[0] in keys[:10]
        assert space.parse(key).level == 2
    assert sampler.is_finished(study)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_spec_format():
    space = MicroSpace(4, ops=("sep5x5", "avg3x3", "identity"), cells=3)
    spec = json.loads(json.dumps(space.spec()))
    assert spec == {"space": "micro", "num_blocks": 4, "ops": ["sep5x5", "avg3x3", "identity"], "cells": 3}


# -- the network: supernet path == stand-alone network --------------------------------------------------
@pytest.mark.parametrize(
    "arch",
    [ARCH_A, ARCH_B, ARCH_SAME, MicroArch(ARCH_A.blocks[:1]), MicroArch(ARCH_B.blocks[:2])],
    ids=["A", "B", "same-branch", "A1", "B2"],
)
def test_supernet_path_equals_standalone(arch):
    space = MicroSpace(3, ops=OPS4, cells=1)
    net = make_supernet(space, seed=2)
    x, y = images(16, 8, seed=2)
    train_steps(net, ARCH_A, x, y, steps=2)  # non-initial weights

    torch.manual_seed(321)
    alone = MicroNet(space, 10, 1, 4, arch=arch)
    assert alone.arch == arch and len(alone.cells) == len(net.cells) == 5
    alone_names = {n for n, _ in alone.named_parameters()}
    assert alone_names <= super_names(net)
    path_ids = {id(p) for p in net.path_parameters(arch)}
    assert alone_names == {n for n, p in net.named_parameters() if id(p) in path_ids}
    for n, p in alone.named_parameters():
        assert p.shape == net.get_parameter(n).shape, n

    result = alone.load_state_dict(net.state_dict(), strict=False)
    assert result.missing_keys and all(k.rsplit(".", 1)[1] in RUNNING_STATS for k in result.missing_keys)
    alone_modules = {n for n, _ in alone.named_modules()}
    for k in result.unexpected_keys:
        assert k.startswith("cells.") and k.rsplit(".", 1)[0] not in alone_modules, k
    for n, p in alone.named_parameters():
        assert torch.equal(p, net.get_parameter(n))

    # the supernet's BNs use batch statistics: compare in train mode (the stand-alone's too)
    net.train()
    alone.train()
    with torch.no_grad():
        a, b = net(x, arch), alone(x)
    assert a.shape == b.shape == (16, 10)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert (a - a.mean(0)).abs().max() > 1e-3  # a non-degenerate output was compared
    assert count_parameters(space, arch, 10, 1, 4) == n_params(alone) < n_params(net)


def test_standalone_holds_only_its_cell():
    space = MicroSpace(3, ops=OPS4, cells=1)
    alone = MicroNet(space, 10, 1, 4, arch=ARCH_B)
    for c, cell in enumerate(alone.cells.values()):
        assert [sorted(b.ops) for b in cell.blocks] == [
            ["prev2_identity", "prev_conv3x3"], ["b1_conv3x3", "prev2_sep3x3"], ["b1_identity", "b2_max3x3"]], c
        assert sorted(cell.project) == ["b3"]
        assert cell.pre_prev is not None and cell.pre_prev2 is not None
    # a cell that never reads prev2 has no prev2 preprocessing, and vice versa
    only_prev = MicroArch(((0, "conv3x3", 0, "max3x3"), (2, "sep3x3", 0, "identity")))
    net = MicroNet(space, 10, 1, 4, arch=only_prev)
    assert all(c.pre_prev2 is None and c.pre_prev is not None for c in net.cells.values())
    only_prev2 = MicroArch(((1, "conv3x3", 1, "max3x3"),))
    net = MicroNet(space, 10, 1, 4, arch=only_prev2)
    assert all(c.pre_prev is None and c.pre_prev2 is not None for c in net.cells.values())
    assert net(images(2, 8)[0]).shape == (2, 10)
    # the supernet holds every (input, op) of every block and a projection per block
    sup = make_supernet(space)
    for cell in sup.cells.values():
        assert [len(b.ops) for b in cell.blocks] == [2 * 4, 3 * 4, 4 * 4]
        assert sorted(cell.project) == ["b1", "b2", "b3"]
        assert set(cell.blocks[2].ops) == {f"{i}_{op}" for i in ("prev", "prev2", "b1", "b2") for op in OPS4}


def reference_cell(cell, s_prev2, s_prev, arch: MicroArch, outputs) -> torch.Tensor:
    """The cell's function, spelled out: sum of two branches per block, concat outputs(), 1x1, BN."""
    inputs = {}
    if cell.pre_prev is not None:
        inputs[0] = cell.pre_prev(s_prev)
    if cell.pre_prev2 is not None:
        inputs[1] = cell.pre_prev2(s_prev2)
    for b, (in1, op1, in2, op2) in enumerate(arch.blocks, start=1):
        ops = cell.blocks[b - 1].ops
        inputs[b + 1] = ops[f"{input_name(in1)}_{op1}"](inputs[in1]) + ops[f"{input_name(in2)}_{op2}"](inputs[in2])
    parts = [F.conv2d(F.relu(inputs[b + 1]), cell.project[f"b{b}"].weight) for b in outputs]
    return cell.out_bn(sum(parts))


@pytest.mark.parametrize("arch,outputs", [(ARCH_A, (2, 3)), (ARCH_B, (3,)), (ARCH_SAME, (2,))],
                         ids=["A", "B", "same-branch"])
def test_cell_projects_exactly_the_outputs(arch, outputs):
    assert arch.outputs() == outputs
    space = MicroSpace(3, ops=OPS4, cells=1)
    alone = MicroNet(space, 10, 1, 4, arch=arch)
    assert sorted(alone.cells["0"].project) == [f"b{b}" for b in outputs]
    assert [alone.cells["0"].project[f"b{b}"].weight.shape for b in outputs] == [(4, 4, 1, 1)] * len(outputs)
    net = make_supernet(space, seed=5)
    net.train()
    x, _ = images(8, 8, seed=5)
    # every cell (normal and reduction, supernet and stand-alone) computes the reference function
    for model, a in ((net, arch), (alone, None)):
        model.train()
        seen = []
        hooks = [c.register_forward_hook(lambda m, i, o: seen.append((m, i, o))) for c in model.cells.values()]
        with torch.no_grad():
            model(x) if a is None else model(x, a)
            for h in hooks:
                h.remove()
            assert len(seen) == 5
            for cell, (s_prev2, s_prev, _), out in seen:
                ref = reference_cell(cell, s_prev2, s_prev, arch, outputs)
                torch.testing.assert_close(ref, out, rtol=1e-5, atol=1e-6)
    # in the supernet, projections of blocks that are read by others do not matter; output blocks' do
    with torch.no_grad():
        base = net(x, arch)
        for b in range(1, 4):
            w = net.cells["2"].project[f"b{b}"].weight
            saved = w.clone()
            w.add_(1.0)
            changed = not torch.allclose(net(x, arch), base)
            w.copy_(saved)
            assert changed == (b in outputs), b


def test_same_branch_block_is_one_module_applied_twice():
    """A block ``op(x) + op(x)`` holds one module, which is called twice on the same input: 2 * op(x)."""
    space = MicroSpace(3, ops=OPS4, cells=1)
    alone = MicroNet(space, 10, 1, 4, arch=ARCH_SAME)
    block = alone.cells["0"].blocks[0]
    assert list(block.ops) == ["prev_conv3x3"]
    calls = []
    h = block.ops["prev_conv3x3"].register_forward_hook(lambda m, i, o: calls.append((i[0], o)))
    # the block's output is what block 2 reads as b1 (sep3x3(b1))
    read = []
    h2 = alone.cells["0"].blocks[1].ops["b1_sep3x3"].register_forward_pre_hook(lambda m, i: read.append(i[0]))
    alone.train()
    with torch.no_grad():
        alone(images(4, 8)[0])
    h.remove()
    h2.remove()
    assert len(calls) == 2 and len(read) == 1
    (in_a, out_a), (in_b, out_b) = calls
    assert torch.equal(in_a, in_b) and torch.equal(out_a, out_b)
    torch.testing.assert_close(read[0], 2 * out_a)
    # in the supernet, the shared module is on the path once
    net = make_supernet(space)
    path = net.path_parameters(ARCH_SAME)
    assert len({id(p) for p in path}) == len(path)
    assert count_parameters(space, ARCH_SAME, 10, 1, 4) == n_params(alone)


# -- weight sharing -------------------------------------------------------------------------------------
def test_weight_sharing_training_changes_exactly_the_path():
    space = MicroSpace(3, ops=OPS4, cells=1)
    net = make_supernet(space)
    x, y = images(16, 8)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    path_a = net.path_parameters(ARCH_A)
    path_ids = {id(p) for p in path_a}
    assert len(path_ids) == len(path_a)
    assert path_ids < {id(p) for p in net.parameters()}

    train_steps(net, ARCH_A, x, y)

    on_path = {n for n, p in net.named_parameters() if id(p) in path_ids}
    for n, p in net.named_parameters():
        assert (p.grad is not None) == (n in on_path), n
        if n not in on_path:
            assert torch.equal(p, before[n]), n  # bitwise unchanged
    moved = {n for n, p in net.named_parameters() if (p - before[n]).abs().max() > 1e-6}
    assert moved == on_path
    # the path is A's: its branches in every cell, both input preprocessings, projections of b2 and b3
    for c in range(5):
        prefix = f"cells.{c}."
        for name in ("blocks.0.ops.prev_sep3x3.", "blocks.1.ops.b1_conv3x3.", "blocks.2.ops.prev2_conv3x3.",
                     "blocks.2.ops.b1_sep3x3.", "pre_prev.", "pre_prev2.", "project.b2.", "project.b3.", "out_bn."):
            assert any(n.startswith(prefix + name) for n in on_path), prefix + name
        for name in ("blocks.0.ops.prev_conv3x3.", "blocks.1.ops.prev_conv3x3.", "blocks.2.ops.b1_conv3x3.",
                     "project.b1."):
            assert not any(n.startswith(prefix + name) for n in on_path), prefix + name
    # identity on prev2 is a strided 1x1 conv in reduction cells (1 and 3), nothing in normal ones
    assert any(n.startswith("cells.1.blocks.0.ops.prev2_identity.") for n in on_path)
    assert not any(n.startswith("cells.0.blocks.0.ops.prev2_identity.") for n in super_names(net))

    # B reads A's trained tensors where it uses the same (cell, block, input, op)
    names = {id(p): n for n, p in net.named_parameters()}
    path_b = {names[id(p)]: p for p in net.path_parameters(ARCH_B)}
    shared = {n for n in path_b if n in on_path}
    for c in range(5):
        for n, p in net.cells[str(c)].blocks[1].ops["b1_conv3x3"].named_parameters():
            full = f"cells.{c}.blocks.1.ops.b1_conv3x3.{n}"
            assert full in shared and path_b[full] is p and path_b[full].data_ptr() == p.data_ptr()
        assert f"cells.{c}.project.b2.weight" not in path_b
    # ... and nowhere else: besides stem, head and each cell's input / output layers, only the
    # block-2 conv3x3(b1) branch and the block-1 identity(prev2) of the reduction cells
    expected_shared = {n for n in super_names(net) if n.startswith(("stem.", "classifier.")) or re.match(
        r"cells\.\d\.(pre_prev\.|pre_prev2\.|out_bn\.|project\.b3\.|blocks\.1\.ops\.b1_conv3x3\."
        r"|blocks\.0\.ops\.prev2_identity\.)", n)}
    assert shared == expected_shared
    w = net.cells["0"].blocks[1].ops["b1_conv3x3"][1].weight
    assert not torch.equal(w, before["cells.0.blocks.1.ops.b1_conv3x3.1.weight"])  # trained by A
    # B's prev_conv3x3 of block 1 still holds its initial value
    assert torch.equal(path_b["cells.0.blocks.0.ops.prev_conv3x3.1.weight"],
                       before["cells.0.blocks.0.ops.prev_conv3x3.1.weight"])

    # B's forward reads the shared tensor, and nothing outside its path
    net.train()
    with torch.no_grad():
        out_b = net(x, ARCH_B)
        saved = w.clone()
        w.add_(torch.randn_like(w) * 0.5)
        assert not torch.allclose(net(x, ARCH_B), out_b, atol=1e-4)
        w.copy_(saved)
        assert torch.equal(net(x, ARCH_B), out_b)
        b_ids = {id(p) for p in path_b.values()}
        for p in net.parameters():
            if id(p) not in b_ids:
                p.add_(1.0)
        assert torch.equal(net(x, ARCH_B), out_b)



def test_training_b_after_a_moves_only_b_path():
    space = MicroSpace(3, ops=OPS4, cells=1)
    net = make_supernet(space, seed=1)
    x, y = images(16, 8, seed=1)
    train_steps(net, ARCH_A, x, y, steps=2)
    after_a = {n: p.detach().clone() for n, p in net.named_parameters()}
    train_steps(net, ARCH_B, x, y, steps=2)
    path_b = {id(p) for p in net.path_parameters(ARCH_B)}
    for n, p in net.named_parameters():
        assert (id(p) in path_b) == (p.grad is not None), n
        if id(p) not in path_b:
            assert torch.equal(p, after_a[n]), n
    moved = {id(p) for n, p in net.named_parameters() if (p - after_a[n]).abs().max() > 1e-6}
    assert moved == path_b
    assert not torch.equal(net.cells["2"].blocks[1].ops["b1_conv3x3"][1].weight,
                           after_a["cells.2.blocks.1.ops.b1_conv3x3.1.weight"])


def test_path_parameters_of_a_cell_reading_only_prev2():
    """A cell that never reads prev: cell c feeds only cell c + 2, so with N=1 the chain is
    stem -> cell 0 -> cell 2 -> cell 4 and cells 1 and 3 (both reduction cells) are never read.
    Training such an architecture cannot move their weights, so path_parameters -- documented as
    "the parameters that training it changes" -- must not list them."""
    space = MicroSpace(2, ops=("conv3x3", "max3x3"), cells=1)
    arch = MicroArch(((1, "conv3x3", 1, "max3x3"),))
    net = make_supernet(space, seed=3)
    x, y = images(8, 8, seed=3)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    train_steps(net, arch, x, y, steps=1)
    path = {id(p) for p in net.path_parameters(arch)}
    with_grad = {n for n, p in net.named_parameters() if p.grad is not None}
    moved = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    assert moved == with_grad
    listed_but_unused = sorted({".".join(n.split(".")[:2]) for n, p in net.named_parameters()
                                if id(p) in path and n not in with_grad})
    assert listed_but_unused == []


# -- shapes, reductions, cells ------------------------------------------------------------------------
@pytest.mark.parametrize("size,resolutions", [(8, [8, 4, 4, 2, 2]), (7, [7, 4, 4, 2, 2]), (5, [5, 3, 3, 2, 2]),
                                              (14, [14, 7, 7, 4, 4])])
def test_reduction_cells_halve_resolution_and_double_channels(size, resolutions):
    space = MicroSpace(3, ops=OPS4, cells=1)
    x, _ = images(2, size)
    c = 4
    expected = [(2, ch, r, r) for ch, r in zip([c, 2 * c, 2 * c, 4 * c, 4 * c], resolutions)]
    net = make_supernet(space)
    for arch in (ARCH_A, ARCH_B, ARCH_SAME, MicroArch(ARCH_A.blocks[:1])):
        assert cell_outputs(net, x, arch) == expected
        alone = MicroNet(space, 10, 1, c, arch=arch)
        assert cell_outputs(alone, x) == expected
        assert alone(x).shape == (2, 10)


@pytest.mark.parametrize("op", MICRO_OPS)
@pytest.mark.parametrize("size", [7, 8])
def test_every_op_reads_every_input_in_reduction_cells(op, size):
    # block 1 reads prev and prev2 with op (strided in reduction cells), block 2 reads b1 and prev2
    arch = MicroArch(((0, op, 1, op), (2, op, 1, op)))
    space = MicroSpace(2, ops=MICRO_OPS, cells=1)
    alone = MicroNet(space, 3, 3, 4, arch=arch)
    x = torch.rand(2, 3, size, size)
    r = [size, (size + 1) // 2, (size + 1) // 2, ((size + 1) // 2 + 1) // 2, ((size + 1) // 2 + 1) // 2]
    assert cell_outputs(alone, x) == [(2, ch, s, s) for ch, s in zip([4, 8, 8, 16, 16], r)]
    assert torch.isfinite(alone(x)).all()


@pytest.mark.parametrize("cells", [1, 2, 3])
def test_cells_setting(cells):
    space = MicroSpace(3, ops=OPS4, cells=2)
    c = 4
    widths = [c] * cells + [2 * c] * (cells + 1) + [4 * c] * (cells + 1)
    for arch in (None, ARCH_A):
        net = MicroNet(space, 10, 1, c, arch=arch, cells=cells)
        assert len(net.cells) == 3 * cells + 2 and net.cells_per_stage == cells
        assert [cell.out_bn.num_features for cell in net.cells.values()] == widths
        assert net.classifier.in_features == 4 * c
        reductions = [i for i, cell in enumerate(net.cells.values()) if cell.blocks[0].ops["prev_sep3x3"][1].stride == (2, 2)]
        assert reductions == [cells, 2 * cells + 1]
    assert count_parameters(space, ARCH_A, 10, 1, c, cells=cells) == n_params(
        MicroNet(space, 10, 1, c, arch=ARCH_A, cells=cells))
    assert n_params(build_network(space, 10, 1, c, arch=ARCH_A, cells=cells)) == count_parameters(
        space, ARCH_A, 10, 1, c, cells=cells)
    x, _ = images(2, 8)
    sizes = [s[-1] for s in cell_outputs(MicroNet(space, 10, 1, c, arch=ARCH_A, cells=cells), x)]
    assert sizes == [8] * cells + [4] * (cells + 1) + [2] * (cells + 1)


def test_default_cells_come_from_the_space_and_count_grows():
    c = 4
    counts = []
    for n in (1, 2, 3):
        space = MicroSpace(3, ops=OPS4, cells=n)
        net = build_network(space, 10, 1, c, arch=ARCH_A)
        assert len(net.cells) == 3 * n + 2
        counts.append(count_parameters(space, ARCH_A, 10, 1, c))
        assert counts[-1] == n_params(net)
        assert count_parameters(MicroSpace(3, ops=OPS4, cells=1), ARCH_A, 10, 1, c, cells=n) == counts[-1]
    assert counts[0] < counts[1] < counts[2]
    assert count_parameters(MicroSpace(3), ARCH_A, 10, 3, 24) > count_parameters(MicroSpace(3), ARCH_A, 10, 3, 8)


def test_network_errors():
    space = MicroSpace(2, ops=("conv3x3", "max3x3"), cells=1)
    net = make_supernet(space)
    with pytest.raises(ValueError):
        net(images(2, 8)[0])  # the supernet needs an architecture
    with pytest.raises(ValueError):
        MicroNet(space, 10, 1, 4, arch=space.root())
    with pytest.raises(ValueError):
        MicroNet(space, 10, 1, 4, arch=MicroArch(((0, "sep3x3", 1, "max3x3"),)))  # op outside the space
    with pytest.raises(ValueError):
        MicroNet(space, 10, 1, 4, arch=MicroArch(((0, "max3x3", 1, "max3x3"),) * 3))  # deeper than B
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError):
            MicroNet(space, 10, 1, 4, cells=bad)
    with pytest.raises(ValueError):
        count_parameters(space, MicroArch(((0, "sep3x3", 1, "max3x3"),)), 10, 1, 4)
    with pytest.raises(ValueError):
        build_network(MacroSpace(3), 10, 1, 4, cells=2)


def test_build_network_micro():
    space = MicroSpace(3, ops=OPS4, cells=1)
    sup = build_network(space, num_classes=5, in_channels=3, channels=4)
    assert isinstance(sup, MicroNet) and sup.arch is None and sup.classifier.out_features == 5
    assert sup.stem[0].in_channels == 3 and sup.stem[0].out_channels == 4
    alone = build_network(space, 5, 3, 4, arch=ARCH_B, cells=2)
    assert isinstance(alone, MicroNet) and alone.arch == ARCH_B and len(alone.cells) == 8
    assert alone(torch.rand(2, 3, 9, 9)).shape == (2, 5)


# -- export: ModelSpec and build_model --------------------------------------------------------------------
def test_model_spec_json_round_trip(tmp_path):
    micro_space = MicroSpace(3, ops=OPS4, cells=1)
    specs = [
        ModelSpec.from_arch(ARCH_A, micro_space, num_classes=10, in_channels=1, channels=4, cells=2),
        ModelSpec.from_arch(ARCH_B, num_classes=7),
        ModelSpec.from_arch(MacroArch(("conv3x3", "max3x3"), ((), (0,))), num_classes=3, channels=8),
    ]
    assert specs[0].space == micro_space.spec() and specs[0].arch == ARCH_A.key and specs[0].cells == 2
    assert specs[1].space == default_space(ARCH_B).spec() and specs[1].channels == 36 and specs[1].cells is None
    for i, spec in enumerate(specs):
        d = spec.to_dict()
        assert d["format"] == SPEC_FORMAT
        assert ModelSpec.from_dict(json.loads(json.dumps(d))) == spec
        path = spec.save(tmp_path / f"arch{i}.json")
        assert json.loads(path.read_text()) == d
        assert ModelSpec.load(path) == spec
        assert ModelSpec.load(str(path)) == spec
    space, arch = specs[0].resolve()
    assert isinstance(space, MicroSpace) and space.spec() == micro_space.spec() and arch == ARCH_A


def test_default_space():
    assert default_space(ARCH_A).spec() == {"space": "micro", "num_blocks": 3, "ops": list(MICRO_OPS), "cells": 2}
    assert default_space(MicroArch(ARCH_A.blocks[:1])).num_blocks == 1
    macro = default_space(MacroArch(("conv3x3", "max3x3"), ((), ())))
    assert isinstance(macro, MacroSpace) and macro.num_layers == 2
    with pytest.raises(TypeError):
        default_space("conv3x3")


def test_build_model_inputs(tmp_path):
    space = MicroSpace(3, ops=OPS4, cells=1)
    spec = ModelSpec.from_arch(ARCH_A, space, num_classes=10, in_channels=1, channels=4)
    spec.save(tmp_path / "a.json")

    def signature(m):
        return {n: tuple(p.shape) for n, p in m.state_dict().items()}

    ref = MicroNet(space, 10, 1, 4, arch=ARCH_A)
    built = [
        build_model(spec),
        build_model(spec.to_dict()),
        build_model(tmp_path / "a.json"),
        build_model(str(tmp_path / "a.json")),
        build_model(ARCH_A, num_classes=10, in_channels=1, channels=4, space=space),
        build_model(ARCH_A.key, num_classes=10, in_channels=1, channels=4, space=space),
        build_model(ARCH_A, num_classes=10, in_channels=1, channels=4, cells=1),  # default space, N given
    ]
    for m in built:
        assert isinstance(m, MicroNet) and m.arch == ARCH_A and len(m.cells) == 5
        assert signature(m) == signature(ref)
        assert m(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    # sizes given to build_model override the description's
    bigger = build_model(tmp_path / "a.json", channels=8, cells=2, num_classes=3)
    assert len(bigger.cells) == 8 and bigger.channels == 8 and bigger.classifier.out_features == 3
    # a default space uses N=2 and all seven ops
    default = build_model(ARCH_A, num_classes=10)
    assert len(default.cells) == 8 and default.channels == 36 and default.stem[0].in_channels == 3
    # macro, by key + space
    macro_space = MacroSpace(4)
    m = build_model("conv3x3 | max3x3[0]", num_classes=4, channels=8, space=macro_space)
    assert isinstance(m, MacroNet) and m.arch == macro_space.parse("conv3x3 | max3x3[0]")


def test_build_model_errors(tmp_path):
    space = MicroSpace(3, ops=OPS4, cells=1)
    good = ModelSpec.from_arch(ARCH_A, space, num_classes=10).to_dict()
    with pytest.raises(ValueError):
        build_model(MicroArch(()), num_classes=10)  # empty
    with pytest.raises(ValueError):
        ModelSpec(space=space.spec(), arch="", num_classes=10)
    with pytest.raises(ValueError):
        build_model({**good, "format": "something/else"})
    with pytest.raises(ValueError):
        build_model({k: v for k, v in good.items() if k != "format"})
    with pytest.raises(ValueError):
        build_model({**good, "depth": 3})  # unknown field
    with pytest.raises(ValueError):
        ModelSpec.from_dict(["not", "a", "dict"])
    with pytest.raises(ValueError):
        build_model({**good, "arch": "conv3x3(prev) + sep5x5(prev)"})  # op outside the space
    with pytest.raises(ValueError):
        build_model({**good, "num_classes": 0})
    with pytest.raises(ValueError):
        build_model({**good, "channels": True})
    with pytest.raises(ValueError):
        build_model(ARCH_A.key, num_classes=10)  # a key without its space
    with pytest.raises(ValueError):
        build_model(ARCH_A, space=space)  # no num_classes
    with pytest.raises(ValueError):
        build_model(ARCH_A.key, space=space)
    with pytest.raises(ValueError):
        build_model(ARCH_A, num_classes=10, space=MicroSpace(3, ops=("max3x3",)))  # arch not in space
    macro = MacroArch(("conv3x3", "max3x3"), ((), (0,)))
    with pytest.raises(ValueError):
        build_model(macro, num_classes=10, cells=2)  # cells is a micro setting
    with pytest.raises(ValueError):
        ModelSpec.from_arch(macro, num_classes=10, cells=2)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError):
        build_model(bad)
    with pytest.raises(TypeError):
        build_model(3.5)


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "2"])
def test_model_spec_rejects_bad_cells_up_front(bad):
    """ModelSpec validates its sizes on construction ("fail now, not when the model is built"):
    cells too, so that a bad value is never written to an architecture file."""
    space = MicroSpace(2, ops=OPS4)
    with pytest.raises(ValueError):
        ModelSpec(space=space.spec(), arch="conv3x3(prev) + max3x3(prev2)", num_classes=10, cells=bad)


@pytest.mark.parametrize("which", ["macro", "micro"])
def test_saved_weights_reload_into_a_fresh_model(tmp_path, which):
    if which == "micro":
        spec = ModelSpec.from_arch(ARCH_A, MicroSpace(3, ops=OPS4), num_classes=10, in_channels=1, channels=4,
                                   cells=1)
    else:
        spec = ModelSpec.from_arch(MacroArch(("conv3x3", "sep3x3", "max3x3", "conv5x5"), ((), (0,), (), (1, 2))),
                                   num_classes=10, in_channels=1, channels=4)
    spec.save(tmp_path / "arch.json")
    torch.manual_seed(0)
    model = build_model(tmp_path / "arch.json")
    x, y = images(16, 8, seed=7)
    train_steps(model, None, x, y, steps=3)  # trained weights and running statistics
    model.eval()
    torch.save(model.state_dict(), tmp_path / "model.pt")

    torch.manual_seed(1)
    fresh = build_model(ModelSpec.load(tmp_path / "arch.json"))
    fresh.eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(x), model(x))  # a different initialisation
    fresh.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    with torch.no_grad():
        a, b = model(x), fresh(x)
    assert torch.equal(a, b)
    assert (a - a.mean(0)).abs().max() > 1e-4
    for (n1, t1), (n2, t2) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert n1 == n2 and torch.equal(t1, t2)
