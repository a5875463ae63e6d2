"""MacroNet: shapes, weight sharing in the supernet, supernet path == stand-alone network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from optuna_epnas.nn import MacroNet, build_network, count_parameters
from optuna_epnas.spaces import MacroArch, MacroSpace

torch.set_num_threads(1)

# Six layers, reductions after layers 2 and 4: stages are {stem, 1, 2}, {3, 4}, {5, 6}.
ARCH_A = MacroArch(
    ("conv3x3", "sep3x3", "max3x3", "conv5x5", "avg3x3", "sep5x5"),
    ((), (0,), (), (1, 2), (0,), (3,)),
)
# Same op as A at layers 2 (sep3x3) and 4 (conv5x5); different ops and skips everywhere else.
ARCH_B = MacroArch(
    ("sep5x5", "sep3x3", "avg3x3", "conv5x5", "conv3x3", "max3x3"),
    ((), (), (0, 1), (), (2, 3), (0, 4)),
)


def digits_like(n: int = 32, size: int = 8, channels: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y


def supernet(space: MacroSpace, seed: int = 0, channels: int = 8, in_channels: int = 1) -> MacroNet:
    torch.manual_seed(seed)
    return MacroNet(space, num_classes=10, in_channels=in_channels, channels=channels)


def reduction_sizes(net: MacroNet, x: torch.Tensor, arch: MacroArch | None = None) -> list[int]:
    sizes: list[int] = []
    hooks = [
        net.reductions[k].register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
        for k in sorted(net.reductions, key=int)
    ]
    try:
        net(x) if arch is None else net(x, arch)
    finally:
        for h in hooks:
            h.remove()
    return sizes


# -- shapes --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "size,in_channels,expected_reductions",
    [(8, 1, [4, 2]), (28, 1, [14, 7]), (14, 1, [7, 4]), (9, 3, [5, 3]), (32, 3, [16, 8])],
)
def test_supernet_output_shapes(size, in_channels, expected_reductions):
    space = MacroSpace(6)
    net = supernet(space, in_channels=in_channels)
    x, _ = digits_like(4, size, in_channels)
    # full depth with skips crossing one (layer 4, 6) and two (layer 5 from the stem) reductions
    for arch in (ARCH_A, ARCH_B):
        out = net(x, arch)
        assert out.shape == (4, 10)
        assert torch.isfinite(out).all()
        assert reduction_sizes(net, x, arch) == expected_reductions
    # partial depths: before, at and after the first reduction
    for level in (1, 2, 3, 5):
        partial = MacroArch(ARCH_A.ops[:level], ARCH_A.skips[:level])
        assert net(x, partial).shape == (4, 10)
        assert len(reduction_sizes(net, x, partial)) == sum(p < level for p in (2, 4))


@pytest.mark.parametrize("size,in_channels", [(8, 1), (28, 1), (14, 1), (32, 3)])
def test_standalone_output_shapes(size, in_channels):
    space = MacroSpace(12)
    x, _ = digits_like(3, size, in_channels)
    # layer 12 skips from the stem and layers 3, 5 and 9: across two, two and one reductions
    skips = [()] * 12
    skips[11] = (0, 3, 5, 9)
    skips[8] = (0, 4, 7)
    arch = MacroArch(("conv3x3", "avg3x3") * 6, tuple(skips))
    for a in (arch, MacroArch(arch.ops[:5], arch.skips[:5]), MacroArch(arch.ops[:1], arch.skips[:1])):
        net = MacroNet(space, 10, in_channels, 8, arch=a)
        assert net(x).shape == (3, 10)
        assert len(net.layers) == a.level
        assert sorted(map(int, net.reductions)) == [p for p in (4, 8) if p < a.level]


# -- weight sharing ---------------------------------------------------------------------------------
def train_steps(net: MacroNet, arch: MacroArch, x, y, steps: int = 3) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    net.train()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x, arch), y)
        loss.backward()
        opt.step()


def test_weight_sharing_training_changes_exactly_the_path():
    space = MacroSpace(6)
    net = supernet(space)
    x, y = digits_like(32, 8)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}

    path_a = net.path_parameters(ARCH_A)
    path_ids = {id(p) for p in path_a}
    assert len(path_ids) == len(path_a)  # no duplicates
    all_ids = {id(p) for p in net.parameters()}
    assert path_ids < all_ids  # a strict subset of the supernet

    train_steps(net, ARCH_A, x, y)

    changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    on_path = {n for n, p in net.named_parameters() if id(p) in path_ids}
    assert changed <= on_path
    # every path parameter took part in A's backward pass, no other one did
    for n, p in net.named_parameters():
        assert (p.grad is not None) == (n in on_path), n
    # and every path parameter moved, except BN shifts that a following BN cancels exactly: the op BN
    # of a layer whose output is re-normalised by merge_bn (A's layers 2, 4, 6) and the second
    # reduction, which reaches layer 5's merge_bn only through avg3x3 (a shift-preserving pool).
    # Their gradient is zero up to float rounding (they move by ~1e-9 here), so not asserted.
    redundant = {"layers.1.ops.sep3x3.3.bias", "layers.3.ops.conv5x5.2.bias",
                 "layers.5.ops.sep5x5.3.bias", "reductions.4.2.bias"}
    assert redundant <= on_path
    moved = {n for n, p in net.named_parameters() if (p - before[n]).abs().max() > 1e-6}
    assert moved == on_path - redundant
    for n, p in net.named_parameters():
        if id(p) not in path_ids:
            assert torch.equal(p, before[n]), n  # bitwise unchanged
    # the path is what A uses: its op at every layer, merge BN where it has skips, stem, reductions, head
    assert any(n.startswith("layers.3.ops.conv5x5.") for n in on_path)
    assert any(n.startswith("layers.3.merge_bn.") for n in on_path)
    assert not any(n.startswith("layers.2.merge_bn.") for n in on_path)  # A's layer 3 has no skips
    assert not any(n.startswith("layers.3.ops.conv3x3.") for n in on_path)
    assert any(n.startswith("reductions.2.") for n in on_path)
    assert any(n.startswith("reductions.4.") for n in on_path)
    assert any(n.startswith("stem.") for n in on_path) and any(n.startswith("classifier.") for n in on_path)

    # B uses A's conv5x5 at layer 4: the very same tensors, holding A's trained values
    shared_a = list(net.layers[3].ops["conv5x5"].parameters())
    path_b_ids = {id(p) for p in net.path_parameters(ARCH_B)}
    for p in shared_a:
        assert id(p) in path_ids and id(p) in path_b_ids
    names = {id(p): n for n, p in net.named_parameters()}
    conv_w = net.layers[3].ops["conv5x5"][1].weight
    assert not torch.equal(conv_w, before[names[id(conv_w)]])  # trained by A
    # B's layer-4 parameters from its own path are A's tensor objects (same storage)
    path_b = {names[id(p)]: p for p in net.path_parameters(ARCH_B)}
    for n, p in net.named_parameters():
        if n.startswith("layers.3.ops.conv5x5."):
            assert path_b[n] is p and path_b[n].data_ptr() == p.data_ptr()
    # ...while B's layer-1 op (sep5x5; A used conv3x3 there) still holds its initial values
    assert torch.equal(path_b["layers.0.ops.sep5x5.1.weight"], before["layers.0.ops.sep5x5.1.weight"])

    # B's forward really reads the shared tensor: perturbing it changes B's output
    net.train()
    with torch.no_grad():
        out_b = net(x, ARCH_B)
        saved = conv_w.clone()
        conv_w.add_(torch.randn_like(conv_w) * 0.5)
        out_b_perturbed = net(x, ARCH_B)
        conv_w.copy_(saved)
        assert torch.equal(net(x, ARCH_B), out_b)
    assert not torch.allclose(out_b, out_b_perturbed, atol=1e-4)

    # whereas an op B does not use (conv3x3 at layer 4) does not affect B
    with torch.no_grad():
        unused = net.layers[3].ops["conv3x3"][1].weight
        unused.add_(1.0)
        assert torch.equal(net(x, ARCH_B), out_b)


def test_training_b_after_a_moves_shared_weights_only_on_b_path():
    space = MacroSpace(6)
    net = supernet(space, seed=1)
    x, y = digits_like(16, 8, seed=1)
    train_steps(net, ARCH_A, x, y, steps=2)
    after_a = {n: p.detach().clone() for n, p in net.named_parameters()}
    train_steps(net, ARCH_B, x, y, steps=2)
    path_b = {id(p) for p in net.path_parameters(ARCH_B)}
    for n, p in net.named_parameters():
        if id(p) not in path_b:
            assert torch.equal(p, after_a[n]), n  # A-only and unused weights keep their values
        else:
            assert p.grad is not None, n
    moved = {id(p) for n, p in net.named_parameters() if (p - after_a[n]).abs().max() > 1e-6}
    assert moved <= path_b and len(moved) > len(path_b) // 2
    # the shared layer-4 conv5x5 moved from A's trained values again
    assert not torch.equal(net.layers[3].ops["conv5x5"][1].weight, after_a["layers.3.ops.conv5x5.1.weight"])


# -- supernet path == stand-alone network -------------------------------------------------------
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.mark.parametrize(
    "arch",
    [ARCH_A, ARCH_B, MacroArch(ARCH_A.ops[:3], ARCH_A.skips[:3]), MacroArch(("sep5x5",), ((),))],
    ids=["A", "B", "A3", "one-layer"],
)
def test_supernet_path_equals_standalone(arch):
    space = MacroSpace(6)
    net = supernet(space, seed=2)
    x, y = digits_like(16, 8, seed=2)
    train_steps(net, ARCH_A, x, y, steps=2)  # non-initial weights

    torch.manual_seed(123)
    alone = MacroNet(space, 10, 1, 8, arch=arch)
    super_names = {n for n, _ in net.named_parameters()}
    alone_names = {n for n, _ in alone.named_parameters()}
    assert alone_names <= super_names
    assert alone_names == {n for n, p in net.named_parameters() if id(p) in {id(q) for q in net.path_parameters(arch)}}

    result = alone.load_state_dict(net.state_dict(), strict=False)
    assert result.missing_keys, "stand-alone BNs track running statistics"
    assert all(k.rsplit(".", 1)[1] in RUNNING_STATS for k in result.missing_keys)
    alone_modules = {n for n, _ in alone.named_modules()}
    used_prefixes = {f"layers.{i}.ops.{op}" for i, op in enumerate(arch.ops)}
    used_prefixes |= {f"layers.{i}.merge_bn" for i, s in enumerate(arch.skips) if s}
    assert result.unexpected_keys
    for k in result.unexpected_keys:
        module = k.rsplit(".", 1)[0]
        assert module.split(".")[0] in ("layers", "reductions"), k
        assert not any(module == u or module.startswith(u + ".") for u in used_prefixes), k
        assert module not in alone_modules, k
    for n, p in alone.named_parameters():
        assert torch.equal(p, net.get_parameter(n))

    net.train()
    alone.train()
    with torch.no_grad():
        a = net(x, arch)
        b = alone(x)
    assert a.shape == b.shape == (16, 10)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert (a - a.mean(0)).abs().max() > 1e-3  # a non-degenerate output was compared

    n_alone = sum(p.numel() for p in alone.parameters())
    assert count_parameters(space, arch, 10, 1, 8) == n_alone
    assert n_alone < sum(p.numel() for p in net.parameters())


def test_count_parameters_other_settings():
    space = MacroSpace(12)
    rng = np.random.default_rng(0)
    arch = space.root()
    for _ in range(12):
        arch = space.child(arch, int(rng.integers(space.num_children(arch))))
    for num_classes, in_channels, channels in [(10, 3, 24), (7, 1, 16)]:
        net = MacroNet(space, num_classes, in_channels, channels, arch=arch)
        assert count_parameters(space, arch, num_classes, in_channels, channels) == sum(
            p.numel() for p in net.parameters()
        )
    # an all-pooling arch without skips: stem, two reductions and the classifier only
    pools = MacroArch(("max3x3", "avg3x3") * 6, ((),) * 12)
    c = 24
    stem = 3 * c * 9 + 2 * c
    reduction = c * c * 9 + 2 * c
    assert count_parameters(space, pools, 10, 3, c) == stem + 2 * reduction + (c * 10 + 10)


# -- errors and build_network -------------------------------------------------------------------------
def test_supernet_needs_an_arch():
    net = supernet(MacroSpace(3))
    x, _ = digits_like(2, 8)
    with pytest.raises(ValueError):
        net(x)


def test_standalone_rejects_ops_outside_space():
    space = MacroSpace(3, ops=("conv3x3", "max3x3"))
    with pytest.raises(ValueError):
        MacroNet(space, 10, 1, 8, arch=MacroArch(("conv3x3", "sep3x3"), ((), ())))
    with pytest.raises(ValueError):
        MacroNet(space, 10, 1, 8, arch=space.root())
    with pytest.raises(ValueError):  # deeper than the space
        MacroNet(space, 10, 1, 8, arch=MacroArch(("conv3x3",) * 4, ((),) * 4))
    with pytest.raises(ValueError):
        count_parameters(space, MacroArch(("sep3x3",), ((),)), 10, 1, 8)


def test_supernet_holds_only_the_space_ops():
    space = MacroSpace(4, ops=("conv3x3", "max3x3", "sep5x5"))
    net = supernet(space)
    for layer in net.layers:
        assert list(layer.ops) == ["conv3x3", "max3x3", "sep5x5"]
        assert layer.merge_bn is not None
    assert sorted(map(int, net.reductions)) == list(space.reduction_layers())


def test_build_network():
    space = MacroSpace(4)
    net = build_network(space, num_classes=5, in_channels=3, channels=8)
    assert isinstance(net, MacroNet) and net.arch is None
    assert net.classifier.out_features == 5 and net.stem[0].in_channels == 3 and net.channels == 8
    arch = MacroArch(("conv3x3", "max3x3"), ((), (0,)))
    alone = build_network(space, 5, 3, 8, arch=arch)
    assert isinstance(alone, MacroNet) and alone.arch == arch and len(alone.layers) == 2
    assert alone(torch.zeros(2, 3, 8, 8) + 0.5).shape == (2, 5)
    with pytest.raises(TypeError):
        build_network(object(), 5, 3, 8)
    with pytest.raises(ValueError, match="cells is a setting of the micro space"):
        build_network(space, 5, 3, 8, cells=2)
