"""The LSTM surrogate of PNAS/EPNAS: predicts an architecture's validation accuracy from its tokens.

token (one-hot/multi-hot symbol vector) -> linear 100 -> LSTM 100 -> last hidden -> linear -> sigmoid.
Linear weights U[-1,1] (paper); Adam on an L1 loss.

An ensemble of such LSTMs (PNAS fits 5 per level) is one :class:`LSTMEnsemble`: every member's weights
stacked along a leading member axis, so that one batched matrix product per time step fits or scores all
of them. Fitted one after another, five small LSTMs cost five times the per-step dispatch of one; the
stacked model costs it once (issue 26). Each member keeps what made it a member before: its own seed's
initial weights and its own seed's order of minibatches; stacked, Adam updates each member's slice
exactly as a separate Adam would. What differs from separate ``nn.LSTM`` members is float rounding (the
embedding and the LSTM's input weights are applied as one product), and an L1 fit amplifies rounding
over hundreds of steps: the same seeds give close, not bitwise equal, surrogates.

Scoring is the hot path (a full L=12 expansion of K=25 architectures is ~300k candidates). The LSTM
is causal and every candidate is its parent plus one unit, so the parent's prefix is run once and
each candidate costs one LSTM step from the parent's state: exact, and ~L times cheaper. The parent's
recurrent term is computed once per parent, so a child costs its token's input product and the gates.
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from optuna.study import Study
from torch import nn

from optuna_epnas._checks import check_int
from optuna_epnas.settings import SAMPLER


@contextlib.contextmanager
def _compute_settings(device: torch.device):
    """How the surrogate computes: exact float32 products on CUDA; on the CPU, as many of torch's threads
    as there are cores the other processes leave free (the 1-minute load average, less this process).

    TF32 products (10-bit mantissas) made a CUDA fit drift 0.2 from the CPU's after 100 L1 steps
    (issue 26); the surrogate is tiny, full float32 costs nothing measurable. Threads, measured here
    (benchmarks/bench_planning.py, 2 cores): idle, 2 threads fit the ensemble 1.5x faster than 1; beside
    3 other busy processes 2 threads were 3.7x *slower* than 1 (OpenMP's threads spin waiting for a
    core). The results do not depend on the thread count (tests/test_surrogate.py)."""
    threads, before = torch.get_num_threads(), None
    if device.type == "cuda":
        before, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False
    elif threads > 1:
        others = max(0.0, os.getloadavg()[0] - 1.0) if hasattr(os, "getloadavg") else float(threads)
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - round(others))))
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if before is not None:
            torch.backends.cuda.matmul.allow_tf32 = before


def _initial_weights(token_dim: int, hidden: int, seed: int) -> dict[str, torch.Tensor]:
    """One member's initial weights: PyTorch's ``nn.LSTM`` init, the paper's U[-1,1] for the linears."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        embed, lstm, head = nn.Linear(token_dim, hidden), nn.LSTM(hidden, hidden, batch_first=True), nn.Linear(hidden, 1)
        for linear in (embed, head):
            nn.init.uniform_(linear.weight, -1.0, 1.0)
            nn.init.uniform_(linear.bias, -1.0, 1.0)
    # nn.LSTM's gate rows i, f, g, o reordered to o, i, f, g: the sigmoid gates are one slice, and so
    # are the three whose gradients go through the cell state (see _Recurrence.backward)
    order = torch.cat([torch.arange(3 * hidden, 4 * hidden), torch.arange(3 * hidden)])
    return {"embed_w": embed.weight, "embed_b": embed.bias, "w_ih": lstm.weight_ih_l0[order],
            "w_hh": lstm.weight_hh_l0[order], "b_ih": lstm.bias_ih_l0[order], "b_hh": lstm.bias_hh_l0[order],
            "head_w": head.weight[0], "head_b": head.bias}


class _Recurrence(torch.autograd.Function):
    """The LSTM recurrence of M members at once, with a hand-written backward through time.

    ``inputs`` (M, T, B, 4H) are the input products with the biases (gates in the order o, i, f, g),
    ``w_hh`` (M, H, 4H) the transposed recurrent weights, member m runs ``lengths[m]`` steps, longest
    first (so the members still running are a prefix). Returns each member's (h, c) after its own last
    step. Autograd through the per-step ops spent more on bookkeeping than on arithmetic (~30 small ops a
    step); here a step is 7 ops forward and 5 back, every factor of the backward is computed once over
    all steps, and the recurrent weights' gradient is one product."""

    @staticmethod
    def forward(ctx, inputs, w_hh, h0, c0, lengths, backward):
        members, steps, batch, four_h = inputs.shape
        hidden = four_h // 4
        # histories: step t reads h[:, t], c[:, t] and writes h[:, t + 1], c[:, t + 1] in place; h stays
        # zero where a member no longer runs (the weights' gradient sums over all steps), the rest of a
        # stopped member's history is never read
        h = inputs.new_zeros(members, steps + 1, batch, hidden)
        c, tanh_c = torch.empty_like(h), inputs.new_empty(members, steps, batch, hidden)
        h[:, 0], c[:, 0] = h0, c0
        squashed = torch.empty_like(inputs)
        sig, tanh = squashed.split([3 * hidden, hidden], dim=-1)
        o, i, f, g = squashed.chunk(4, dim=-1)
        for first, end, a in _runs(lengths):
            # the views of each step, made once per run of steps with the same members running
            hs, cs = h[:a, first:end + 1].unbind(1), c[:a, first:end + 1].unbind(1)
            views = (inputs[:a, first:end], sig[:a, first:end], tanh[:a, first:end], tanh_c[:a, first:end],
                     o[:a, first:end], i[:a, first:end], f[:a, first:end], g[:a, first:end])
            w_a = w_hh[:a]
            for k, (x_t, sig_t, tanh_t, tc_t, o_t, i_t, f_t, g_t) in enumerate(zip(*(v.unbind(1) for v in views))):
                pre_sig, pre_tanh = torch.baddbmm(x_t, hs[k], w_a).split([3 * hidden, hidden], dim=-1)
                torch.sigmoid(pre_sig, out=sig_t)
                torch.tanh(pre_tanh, out=tanh_t)
                torch.mul(f_t, cs[k], out=cs[k + 1]).addcmul_(i_t, g_t)
                torch.tanh(cs[k + 1], out=tc_t)
                torch.mul(o_t, tc_t, out=hs[k + 1])
        rows = torch.arange(members, device=inputs.device)
        last = torch.tensor(lengths, device=inputs.device)
        if backward:
            # d(pre-activation) = factor x (dh for o; dc for i, f, g), dc_t = dc_{t+1} f + dh through_tanh
            factor = torch.empty_like(inputs)
            slope = torch.addcmul(sig, sig, sig, value=-1)  # σ' = σ - σ²
            f_o, f_i, f_f, f_g = factor.chunk(4, dim=-1)
            torch.mul(tanh_c, slope[..., :hidden], out=f_o)
            torch.mul(g, slope[..., hidden:2 * hidden], out=f_i)
            torch.mul(c[:, :-1], slope[..., 2 * hidden:], out=f_f)
            torch.addcmul(i, i, g * g, value=-1, out=f_g)  # i tanh' = i - i g²
            through_tanh = torch.addcmul(o, o, tanh_c * tanh_c, value=-1)
            ctx.save_for_backward(w_hh, h, factor, squashed, through_tanh)
            ctx.lengths = lengths
        return h[rows, last], c[rows, last]

    @staticmethod
    def backward(ctx, grad_h, grad_c):
        w_hh, h, factor, squashed, through_tanh = ctx.saved_tensors
        members, steps, batch, hidden = through_tanh.shape
        dh = torch.zeros_like(h[:, 0]) if grad_h is None else grad_h.contiguous()  # a member's own last
        dc = torch.zeros_like(h[:, 0]) if grad_c is None else grad_c.contiguous()  # step seeds it
        d_gates = torch.zeros_like(factor)
        w_t = w_hh.transpose(1, 2)
        forget = squashed[..., 2 * hidden:3 * hidden]
        split = [hidden, 3 * hidden]
        for first, end, a in reversed(_runs(ctx.lengths)):
            dh_a, dc_a, w_a = dh[:a], dc[:a], w_t[:a]
            views = (d_gates[:a, first:end], factor[:a, first:end], through_tanh[:a, first:end], forget[:a, first:end])
            for dg, fac, tt, fg in reversed(list(zip(*(v.unbind(1) for v in views)))):
                d_c = torch.addcmul(dc_a, dh_a, tt)
                (fac_o, fac_cell), (dg_o, dg_cell) = fac.split(split, dim=-1), dg.split(split, dim=-1)
                torch.mul(fac_o, dh_a, out=dg_o)
                torch.mul(fac_cell.unflatten(-1, (3, hidden)), d_c[:, :, None], out=dg_cell.unflatten(-1, (3, hidden)))
                torch.mul(d_c, fg, out=dc_a)
                torch.bmm(dg, w_a, out=dh_a)
        d_w = torch.bmm(h[:, :-1].reshape(members, steps * batch, hidden).transpose(1, 2),
                        d_gates.view(members, steps * batch, 4 * hidden))
        return d_gates, d_w, dh, dc, None, None


def _runs(lengths: Sequence[int]) -> list[tuple[int, int, int]]:
    """(first step, end step, members running) for each run of steps with the same members running,
    members ordered longest first."""
    if list(lengths) != sorted(lengths, reverse=True):
        raise ValueError(f"members must come longest first, got lengths {list(lengths)}")
    runs: list[tuple[int, int, int]] = []
    for t in range(max(lengths, default=0)):
        a = sum(n > t for n in lengths)
        if runs and runs[-1][2] == a:
            runs[-1] = (runs[-1][0], t + 1, a)
        else:
            runs.append((t, t + 1, a))
    return runs


def _by_length(sequences: Sequence[np.ndarray]) -> dict[int, list[int]]:
    """The indices of ``sequences`` grouped by length (rows of one length run as one batch)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, seq in enumerate(sequences):
        groups[len(seq)].append(i)
    return groups


class LSTMEnsemble:
    """``len(seeds)`` LSTM surrogates fitted and scored as one batched model.

    Args:
        token_dim: width of one token (``space.token_dim``).
        seeds: one per member: its initial weights and its order of minibatches (the weights are drawn
            on the CPU, so they are the same whatever ``device``).
        hidden: LSTM hidden units and token embedding width (paper: 100).
        steps: Adam steps per :meth:`fit`. Rows are few (tens to hundreds), so a fixed number of
            steps, not of epochs, is what makes the fit converge at every level.
        lr: Adam learning rate.
        batch_size: rows per Adam step (of each member).
        chunk: candidates scored at once by :meth:`predict_children` (bounds its memory).
        device: where it is fitted and scores.
    """

    def __init__(
        self, token_dim: int, seeds: Sequence[int], hidden: int = 100, steps: int = 500, lr: float = 0.002,
        batch_size: int = 32, chunk: int = 1024, device: str | torch.device = "cpu",
    ) -> None:
        if not len(seeds):
            raise ValueError("an ensemble needs at least one seed")
        self.token_dim, self.hidden, self.steps, self.seeds = token_dim, hidden, steps, [int(s) for s in seeds]
        self.lr, self.batch_size, self.chunk = lr, batch_size, chunk
        self.device = torch.device(device)
        members = [_initial_weights(token_dim, hidden, s) for s in self.seeds]
        self.params = {name: torch.stack([m[name].detach() for m in members]).to(self.device).requires_grad_()
                       for name in members[0]}
        self.fitted = False

    def __len__(self) -> int:
        return len(self.seeds)

    # -- the model -------------------------------------------------------------------------------------
    def _input_map(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding and LSTM input weights as one (M, 4H, D) map and (M, 4H) bias: the same function."""
        p = self.params
        weight = torch.bmm(p["w_ih"], p["embed_w"])
        bias = torch.bmm(p["w_ih"], p["embed_b"].unsqueeze(-1)).squeeze(-1) + p["b_ih"] + p["b_hh"]
        return weight, bias

    def _last_hidden(self, x: torch.Tensor, lengths: Sequence[int] | None = None,
                     state: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, c) after each member's sequences: ``x`` is (M, B, T, D); member m's rows end at ``lengths[m]``
        (default T) and are zero-padded after it. Members stop at their own length, so padding costs nothing."""
        m_all, batch, steps, _ = x.shape
        lengths = [steps] * m_all if lengths is None else [int(n) for n in lengths]
        weight, bias = self._input_map()
        w_hh = self.params["w_hh"].transpose(1, 2)
        if state is None:
            state = (torch.zeros(m_all, batch, self.hidden, device=self.device),) * 2
        order = sorted(range(m_all), key=lambda m: -lengths[m])  # longest first: the running ones are a prefix
        permuted = order != list(range(m_all))
        if permuted:  # sorted before the input product: the small tensors are moved
            index = torch.tensor(order, device=self.device)
            x, weight, bias, w_hh, state = x[index], weight[index], bias[index], w_hh[index], (state[0][index], state[1][index])
        inputs = torch.baddbmm(bias[:, None, :], x.transpose(1, 2).reshape(m_all, steps * batch, -1),
                               weight.transpose(1, 2)).view(m_all, steps, batch, -1)  # every step's at once
        h, c = _Recurrence.apply(inputs, w_hh, *state, [lengths[m] for m in order], torch.is_grad_enabled())
        if permuted:
            back = torch.argsort(index)
            h, c = h[back], c[back]
        return h, c

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        """(M, N, H) last hidden states -> (M, N) logits."""
        return torch.baddbmm(self.params["head_b"][:, :, None], h, self.params["head_w"][:, :, None]).squeeze(-1)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(array, dtype=np.float32)).to(self.device)

    # -- fitting ---------------------------------------------------------------------------------------
    def fit(self, sequences: Sequence[np.ndarray], targets: Sequence[float]) -> "LSTMEnsemble":
        if len(sequences) != len(targets):
            raise ValueError(f"got {len(sequences)} sequences but {len(targets)} targets")
        if len(sequences) == 0:
            return self
        by_length = _by_length(sequences)
        longest = max(by_length)
        table = np.zeros((len(sequences), longest, self.token_dim), dtype=np.float32)  # zero-padded rows
        for i, seq in enumerate(sequences):
            table[i, :len(seq)] = seq
        x, y = self._tensor(table), torch.tensor([float(t) for t in targets], device=self.device)
        with _compute_settings(self.device):
            if not self.fitted:
                with torch.no_grad():
                    self._centre_head(x, by_length, float(np.mean(targets)))
            self._train(x, y, by_length)
        self.fitted = True
        return self

    def _centre_head(self, x: torch.Tensor, by_length: dict[int, list[int]], mean: float) -> None:
        # U[-1,1] weights give logits of several units: the sigmoid starts saturated and Adam spends
        # hundreds of steps escaping (seen: train τ < 0 after 400 steps). Shifting the head's bias so
        # the mean initial prediction is the mean target removes that, the weights stay U[-1,1].
        members = len(self)
        logits = [self._logits(self._last_hidden(x[idx, :n].expand(members, -1, -1, -1))[0])
                  for n, idx in by_length.items()]
        mean = float(np.clip(mean, 1e-3, 1 - 1e-3))
        self.params["head_b"] += float(np.log(mean / (1 - mean))) - torch.cat(logits, dim=1).mean(dim=1, keepdim=True)

    def _schedule(self, seed: int, by_length: dict[int, list[int]]):
        """Member ``seed``'s minibatches, one per step: (length, row indices), shuffled epochs of
        same-length rows (the macro and micro spaces grow one unit a level)."""
        rng, step = np.random.default_rng(seed), 0
        groups = [(n, np.asarray(idx)) for n, idx in by_length.items()]
        while step < self.steps:
            batches = [(n, idx[perm[i:i + self.batch_size]])
                       for n, idx in groups for perm in [rng.permutation(len(idx))]
                       for i in range(0, len(idx), self.batch_size)]
            for b in rng.permutation(len(batches))[: self.steps - step]:
                yield batches[b]
                step += 1

    def _train(self, x: torch.Tensor, y: torch.Tensor, by_length: dict[int, list[int]]) -> None:
        rows, weights, lengths = self._batches(by_length)
        rows, weights = torch.from_numpy(rows).to(self.device), self._tensor(weights)
        # One Adam over the stacked weights: elementwise, so each member's slice moves as its own Adam's would
        opt = torch.optim.Adam(self.params.values(), lr=self.lr, fused=True)
        for step, steps in enumerate(lengths.max(axis=1)):
            index = rows[step]
            h, _ = self._last_hidden(x[index][:, :, :steps], lengths[step])
            error = (torch.sigmoid(self._logits(h)) - y[index]).abs()
            loss = (error * weights[step]).sum()  # members' weights are disjoint: each gets its own gradient
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def _batches(self, by_length: dict[int, list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every step's minibatch of every member: row indices (steps, M, batch_size), their loss weights
        (1/rows of the member's batch; 0 pads a short batch) and the member's sequence length (steps, M)."""
        members = len(self)
        rows = np.zeros((self.steps, members, self.batch_size), dtype=np.int64)
        weights = np.zeros((self.steps, members, self.batch_size), dtype=np.float32)
        lengths = np.zeros((self.steps, members), dtype=np.int64)
        for m, seed in enumerate(self.seeds):
            for step, (n, batch) in enumerate(self._schedule(seed, by_length)):
                rows[step, m, :len(batch)], weights[step, m, :len(batch)], lengths[step, m] = batch, 1 / len(batch), n
        return rows, weights, lengths

    # -- scoring ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """Each member's predicted accuracy of each token sequence (any lengths): (members, sequences)."""
        out = np.empty((len(self), len(sequences)), dtype=np.float32)
        with _compute_settings(self.device):
            for idx in _by_length(sequences).values():
                for start in range(0, len(idx), self.chunk):
                    part = idx[start:start + self.chunk]
                    x = self._tensor(np.stack([sequences[i] for i in part]))[None].expand(len(self), -1, -1, -1)
                    out[:, part] = torch.sigmoid(self._logits(self._last_hidden(x)[0])).cpu().numpy()
        return out

    @torch.no_grad()
    def predict_children(
        self, prefixes: Sequence[np.ndarray], child_tokens: Sequence[np.ndarray], log: bool = False
    ) -> np.ndarray:
        """Each member's scores of every child of every parent, concatenated in parent order: (members,
        children); ``log``: log-scores, finite and ordered where the sigmoid underflows to 0.

        ``prefixes[p]`` is parent p's token sequence (all the same length), ``child_tokens[p]``
        the (n_p, token_dim) tokens of the unit each child adds. Equals ``predict`` on the
        children's full sequences, at the cost of one LSTM step per child.
        """
        counts = [len(t) for t in child_tokens]
        out = np.empty((len(self), sum(counts)), dtype=np.float32)
        if not sum(counts):
            return out
        members, n_parents = len(self), len(prefixes)
        with _compute_settings(self.device):
            if len(prefixes[0]):
                h, c = self._last_hidden(self._tensor(np.stack(prefixes))[None].expand(members, -1, -1, -1))
            else:  # children of the empty root: the LSTM starts from zeros
                h = c = torch.zeros(members, n_parents, self.hidden, device=self.device)
            weight, bias = self._input_map()
            recurrent = torch.baddbmm(bias[:, None, :], h, self.params["w_hh"].transpose(1, 2))  # (M, P, 4H)
            # a parent's recurrent term is a constant input: one more weight column against a column of ones
            ones = np.ones((sum(counts), 1), dtype=np.float32)
            tokens = self._tensor(np.concatenate([np.concatenate(child_tokens), ones], axis=1))
            starts = np.cumsum([0] + counts)
            for p in range(n_parents):
                # one product per gate: contiguous outputs, squashed in place
                gate_weights = torch.cat([weight, recurrent[:, p, :, None]], dim=2).transpose(1, 2).chunk(4, dim=2)
                for lo in range(starts[p], starts[p + 1], self.chunk):
                    hi = min(lo + self.chunk, starts[p + 1])
                    o, i, f, g = (torch.matmul(tokens[lo:hi], w) for w in gate_weights)
                    cell = f.sigmoid_().mul_(c[:, p, None, :]).add_(i.sigmoid_().mul_(g.tanh_()))
                    logits = self._logits(o.sigmoid_().mul_(cell.tanh_()))
                    out[:, lo:hi] = (torch.nn.functional.logsigmoid(logits) if log else logits.sigmoid_()).cpu().numpy()
        return out


class OneLSTM:
    """One LSTM surrogate (the paper's EPNAS): an :class:`LSTMEnsemble` of one member, whose ``predict``
    and ``predict_children`` return that member's scores as one vector."""

    def __init__(self, token_dim: int, seed: int = 0, **options: Any) -> None:
        """``options``: :class:`LSTMEnsemble`'s (hidden, steps, lr, batch_size, chunk, device)."""
        self.ensemble = LSTMEnsemble(token_dim, [seed], **options)

    @property
    def fitted(self) -> bool:
        return self.ensemble.fitted

    def fit(self, sequences: Sequence[np.ndarray], targets: Sequence[float]) -> "OneLSTM":
        self.ensemble.fit(sequences, targets)
        return self

    def predict(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        return self.ensemble.predict(sequences)[0]

    def predict_children(self, prefixes: Sequence[np.ndarray], child_tokens: Sequence[np.ndarray],
                         log: bool = False) -> np.ndarray:
        return self.ensemble.predict_children(prefixes, child_tokens, log=log)[0]


#: A callable ``(study, arch keys) -> (accuracies on the current supernet weights, MACs spent)``, such
#: as :meth:`optuna_epnas.SupernetObjective.rescore`.
Rescorer = Callable[[Study, Sequence[str]], tuple[Sequence[float], float]]


@dataclass(frozen=True)
class LSTMSurrogate:
    """The surrogate an :class:`~optuna_epnas.EPNASSampler` fits at each level: an ensemble of LSTMs
    (:class:`LSTMEnsemble`) on every distinct architecture measured so far.

    Args:
        members: LSTMs fitted per level (different seeds); their mean (and spread) is the prediction.
            1 is the paper's EPNAS; PNAS used 5. UCB and EI acquisitions need >= 2.
        steps: Adam steps per fit (one fit per level).
        device: where the surrogates are fitted and score the candidates (default the CPU; ``epnas
            search`` passes the search's device: a level-12 plan of K=25 fits 5 LSTMs with 500 Adam steps
            as one batched model and scores ~300k candidates, ~4 s on 2 idle CPU cores).
        rescore: before each fit, re-evaluate every distinct architecture measured so far on the
            *current* shared weights and fit on those values, which come from one moment of training and
            so compare with each other (the measurements themselves stay on the trials). A callable
            ``(study, keys) -> (accuracies, MACs)``: pass ``objective.rescore`` of the
            :class:`~optuna_epnas.SupernetObjective`; the re-scored values go into the level's stored
            plan and their cost is charged to the trial that planned. None by default: on a supernet
            trained one path at a time, the current weights favour the most recently trained path
            (measured on Fashion-MNIST: it re-scored best before 7 of 8 levels), which the surrogate would
            then learn.
    """

    members: int = SAMPLER.ensemble
    steps: int = SAMPLER.surrogate_steps
    device: str | None = None
    rescore: Rescorer | None = None

    def __post_init__(self) -> None:
        check_int("members", self.members, 1)
        check_int("steps", self.steps, 1)
        if self.rescore is not None and not callable(self.rescore):
            raise TypeError(f"rescore must be a callable (study, keys) -> (accuracies, MACs) such as "
                            f"objective.rescore, got {self.rescore!r}")
        # a string: the sampler pickles (torch.device does, but a study's settings compare as text)
        object.__setattr__(self, "device", str(torch.device(self.device or "cpu")))

    def config(self) -> dict[str, Any]:
        """These settings as a study stores them."""
        return {"surrogate": {"steps": self.steps, "ensemble": self.members}, "rescore": self.rescore is not None}

    def fit(self, token_dim: int, tokens: Sequence[np.ndarray], values: Sequence[float],
            seeds: Sequence[int]) -> LSTMEnsemble:
        """A fitted ensemble, one member per seed."""
        return LSTMEnsemble(token_dim, seeds, steps=self.steps, device=self.device).fit(tokens, values)
