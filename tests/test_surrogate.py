"""The LSTM surrogate (OneLSTM, LSTMEnsemble): paper architecture, exact prefix-cached child scoring, fitting, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from torch import nn

from optuna_epnas.spaces import MacroSpace
from optuna_epnas.sampler.surrogate import LSTMEnsemble, OneLSTM, _Recurrence

torch.set_num_threads(1)


def random_arch(space, level, rng):
    arch = space.root()
    for _ in range(level):
        arch = space.child(arch, int(rng.integers(space.num_children(arch))))
    return arch


def synthetic_accuracy(arch) -> float:
    return 0.3 + 0.5 * sum(op == "conv3x3" for op in arch.ops) / arch.level


def dataset(space, n, seed, levels=(1, 2, 3, 4)):
    """Distinct random archs of the given levels, their token sequences and synthetic accuracies."""
    rng = np.random.default_rng(seed)
    archs, keys = [], set()
    while len(archs) < n:
        arch = random_arch(space, int(rng.choice(levels)), rng)
        if space.key(arch) not in keys:
            keys.add(space.key(arch))
            archs.append(arch)
    return archs, [space.tokens(a) for a in archs], np.array([synthetic_accuracy(a) for a in archs])


# -- architecture -----------------------------------------------------------------------------------
def test_paper_architecture_and_init():
    space = MacroSpace(12)
    p = OneLSTM(space.token_dim, seed=0).ensemble.params
    # one member: embedding D -> 100, LSTM 100 -> 100 (4 gates), head 100 -> 1
    assert p["embed_w"].shape == (1, 100, space.token_dim) and p["embed_b"].shape == (1, 100)
    assert p["w_ih"].shape == p["w_hh"].shape == (1, 400, 100)
    assert p["b_ih"].shape == p["b_hh"].shape == (1, 400)
    assert p["head_w"].shape == (1, 100) and p["head_b"].shape == (1, 1)
    for name in ("embed_w", "embed_b", "head_w", "head_b"):
        assert p[name].min() >= -1.0 and p[name].max() <= 1.0
    # really U[-1, 1], not PyTorch's default U[-1/sqrt(fan_in), 1/sqrt(fan_in)] (0.26 and 0.1 here)
    w = p["embed_w"].detach()
    assert w.min() < -0.95 and w.max() > 0.95
    assert 0.5 < w.std() < 0.65  # std of U[-1, 1] is 0.577
    assert p["head_w"].abs().max() > 0.8
    assert p["head_w"].std() > 0.4
    assert p["embed_b"].abs().max() > 0.8
    assert p["w_hh"].abs().max() <= 0.1  # the LSTM keeps PyTorch's U[-1/sqrt(100), 1/sqrt(100)]


def test_each_member_is_the_paper_network_of_its_seed():
    """Before fitting, member m computes exactly linear -> nn.LSTM -> linear -> sigmoid with its seed's
    weights (the gates reordered and the embedding folded into the input weights change rounding only)."""
    space = MacroSpace(6)
    _, seqs, _ = dataset(space, 30, seed=4, levels=(1, 3, 6))
    ensemble = LSTMEnsemble(space.token_dim, [11, 12, 13])
    got = ensemble.predict(seqs)
    assert got.shape == (3, 30)
    for m, seed in enumerate([11, 12, 13]):
        torch.manual_seed(seed)
        embed, lstm, head = nn.Linear(space.token_dim, 100), nn.LSTM(100, 100, batch_first=True), nn.Linear(100, 1)
        for linear in (embed, head):
            nn.init.uniform_(linear.weight, -1.0, 1.0)
            nn.init.uniform_(linear.bias, -1.0, 1.0)
        with torch.no_grad():
            expected = [torch.sigmoid(head(lstm(embed(torch.from_numpy(s)[None]))[0][0, -1])).item() for s in seqs]
        np.testing.assert_allclose(got[m], expected, atol=2e-6, rtol=0)


def test_the_recurrence_gradient_matches_finite_differences():
    """The hand-written backward through time, members of different lengths (run in float64)."""
    torch.manual_seed(0)
    members, steps, batch, hidden = 3, 4, 2, 3
    inputs = torch.randn(members, steps, batch, 4 * hidden, dtype=torch.float64, requires_grad=True)
    w_hh = torch.randn(members, hidden, 4 * hidden, dtype=torch.float64, requires_grad=True)
    h0, c0 = (torch.randn(members, batch, hidden, dtype=torch.float64, requires_grad=True) for _ in range(2))
    for lengths in [(4, 2, 1), (4, 4, 4), (3, 3, 1)]:
        assert torch.autograd.gradcheck(lambda *a: _Recurrence.apply(*a, lengths, True), (inputs, w_hh, h0, c0))


def test_a_member_fits_as_it_would_alone():
    """Members share nothing: a seed's member in an ensemble follows that seed's fit alone (float rounding
    of the batched products aside, which an L1 fit amplifies slowly: checked after 30 steps)."""
    space = MacroSpace(4)
    _, seqs, y = dataset(space, 60, seed=2)
    together = LSTMEnsemble(space.token_dim, [5, 6, 7], steps=30).fit(seqs[:40], y[:40]).predict(seqs[40:])
    alone = OneLSTM(space.token_dim, seed=6, steps=30).fit(seqs[:40], y[:40]).predict(seqs[40:])
    np.testing.assert_allclose(together[1], alone, atol=1e-4)
    assert not np.allclose(together[0], together[1], atol=1e-2)  # and the members do differ


def test_predictions_in_unit_interval():
    space = MacroSpace(12)
    s = OneLSTM(space.token_dim, seed=3)
    _, seqs, _ = dataset(space, 40, seed=0, levels=(1, 5, 12))
    pred = s.predict(seqs)
    assert pred.shape == (40,) and pred.dtype == np.float32
    assert ((pred > 0) & (pred < 1)).all()
    assert np.unique(pred).size > 1  # depends on the input
    assert s.predict([]).shape == (0,)


# -- predict_children == predict ---------------------------------------------------------------------
def logit(p):
    p = np.asarray(p, dtype=np.float64)
    return np.log(p) - np.log1p(-p)


@pytest.mark.parametrize("level,n_parents,fitted", [(0, 1, False), (1, 3, False), (3, 4, False), (6, 2, False),
                                                    (0, 2, True), (2, 3, True)])
def test_predict_children_equals_predict(level, n_parents, fitted):
    space = MacroSpace(8)
    rng = np.random.default_rng(level)
    s = OneLSTM(space.token_dim, seed=1, chunk=37)  # small chunk: several chunks, ragged end
    if fitted:  # the trained net too, not only the initial one
        _, seqs, y = dataset(space, 40, seed=9, levels=(1, 2, 3))
        s.fit(seqs, y)
    parents = [random_arch(space, level, rng) for _ in range(n_parents)]
    prefixes = [space.tokens(p) for p in parents]
    child_tokens = [space.child_tokens(p) for p in parents]
    if level == 0:
        assert prefixes[0].shape == (0, space.token_dim)
    scores = s.predict_children(prefixes, child_tokens)
    full = [space.tokens(c) for p in parents for c in space.children(p)]
    assert scores.shape == (len(full),) == (n_parents * 6 * 2**level,)
    expected = s.predict(full)
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0)
    # also before the sigmoid, where near-0/1 scores would hide differences
    np.testing.assert_allclose(logit(scores), logit(expected), atol=1e-3, rtol=1e-4)
    assert np.ptp(expected) > 1e-2  # the children really are scored differently
    assert 0.05 < np.median(expected) < 0.95  # not a saturated net


def test_predict_children_root_with_several_parents_and_empty():
    space = MacroSpace(4)
    s = OneLSTM(space.token_dim, seed=2)
    root = space.root()
    prefixes = [space.tokens(root)] * 3
    child_tokens = [space.child_tokens(root), space.child_tokens(root)[:2], space.child_tokens(root)[3:]]
    scores = s.predict_children(prefixes, child_tokens)
    expected = s.predict([t[None, :] for ct in child_tokens for t in ct])
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0)
    full = space.tokens(random_arch(space, 4, np.random.default_rng(0)))
    assert s.predict_children([full], [space.child_tokens(space.parse(""))[:0]]).shape == (0,)


# -- fitting -------------------------------------------------------------------------------------------
def test_fit_learns_a_ranking():
    space = MacroSpace(4)
    archs, seqs, y = dataset(space, 200, seed=0)
    train, test = slice(0, 150), slice(150, 200)
    s = OneLSTM(space.token_dim, seed=0)  # the default 500 Adam steps
    before = s.predict(seqs[test])
    l1_before = np.abs(before - y[test]).mean()
    assert s.fit(seqs[train], y[train]) is s
    assert s.fitted
    after = s.predict(seqs[test])
    tau, _ = kendalltau(after, y[test])
    assert tau > 0.5, tau
    l1_after = np.abs(after - y[test]).mean()
    assert l1_after < l1_before
    assert l1_after < 0.1, l1_after
    tau_before, _ = kendalltau(before, y[test])
    assert tau > tau_before + 0.2


def test_fit_is_reproducible_per_seed():
    space = MacroSpace(4)
    _, seqs, y = dataset(space, 60, seed=1)

    def fitted(seed):
        return OneLSTM(space.token_dim, seed=seed, steps=20).fit(seqs[:40], y[:40]).predict(seqs[40:])

    a, b, c = fitted(0), fitted(0), fitted(1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(logit(a), logit(c), atol=1e-2)  # compared before the sigmoid: never saturated


def test_construction_does_not_touch_global_rng():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    OneLSTM(10, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_fit_errors_and_empty():
    space = MacroSpace(3)
    _, seqs, y = dataset(space, 5, seed=0, levels=(1, 2))
    s = OneLSTM(space.token_dim, steps=3)
    with pytest.raises(ValueError):
        s.fit(seqs, y[:4])
    with pytest.raises(ValueError):
        s.fit(seqs[:2], y)
    before = [p.detach().clone() for p in s.ensemble.params.values()]
    s.fit([], [])
    assert not s.fitted
    assert all(torch.equal(p, q) for p, q in zip(s.ensemble.params.values(), before))


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    """The surrogate uses torch's threads when the cores are idle and one when they are loaded: that
    must not change a plan."""
    monkeypatch.setattr("os.getloadavg", lambda: (0.0, 0.0, 0.0))  # idle: the threads are used
    space = MacroSpace(5)
    _, seqs, y = dataset(space, 50, seed=3, levels=(1, 3, 5))
    parents = [random_arch(space, 2, np.random.default_rng(0)) for _ in range(3)]
    got = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        e = LSTMEnsemble(space.token_dim, [1, 2], steps=40).fit(seqs, y)
        got.append(e.predict_children([space.tokens(p) for p in parents], [space.child_tokens(p) for p in parents]))
    torch.set_num_threads(1)
    np.testing.assert_array_equal(got[0], got[1])
