"""The LSTM surrogate of PNAS/EPNAS: predicts an architecture's validation accuracy from its tokens.

token (one-hot/multi-hot symbol vector) -> linear 100 -> LSTM 100 -> last hidden -> linear -> sigmoid.
Linear weights U[-1,1] (paper); Adam on an L1 loss.

Scoring is the hot path (a full L=12 expansion of K=25 architectures is ~300k candidates). The LSTM
is causal and every candidate is its parent plus one unit, so the parent's prefix is run once and
each candidate costs one LSTM step from the parent's state: exact, and ~L times cheaper.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Sequence

import numpy as np
import torch
from torch import nn


@contextlib.contextmanager
def _single_thread():
    # Batches of 32 through a 100-unit LSTM gain nothing from threads, and with other processes or
    # workers on the same cores OpenMP's spinning threads made fits 10-100x slower (seen here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Net(nn.Module):
    def __init__(self, token_dim: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Linear(token_dim, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        for linear in (self.embed, self.head):
            nn.init.uniform_(linear.weight, -1.0, 1.0)
            nn.init.uniform_(linear.bias, -1.0, 1.0)

    def run(self, tokens: torch.Tensor, state=None):
        out, state = self.lstm(self.embed(tokens), state)
        return out[:, -1], state

    def score(self, last_hidden: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(last_hidden)).squeeze(-1)

    def log_score(self, last_hidden: torch.Tensor) -> torch.Tensor:
        # log σ(z) stays finite and ordered where σ(z) underflows to 0 (a confident, saturated net)
        return torch.nn.functional.logsigmoid(self.head(last_hidden)).squeeze(-1)


class LSTMSurrogate:
    """Fit on (token sequence, accuracy) rows; predict accuracy for sequences or one-unit expansions.

    Args:
        token_dim: width of one token (``space.token_dim``).
        hidden: LSTM hidden units and token embedding width (paper: 100).
        steps: Adam steps per :meth:`fit`. Rows are few (tens to hundreds), so a fixed number of
            steps, not of epochs, is what makes the fit converge at every level.
        lr: Adam learning rate.
        batch_size: rows per Adam step.
        seed: makes initialisation and row order reproducible (the weights are drawn on the CPU, so
            they are the same whatever ``device``).
        device: where it is fitted and scores (a GPU's LSTM kernels give slightly different numbers).
    """

    def __init__(
        self, token_dim: int, hidden: int = 100, steps: int = 500, lr: float = 0.002,
        batch_size: int = 32, seed: int = 0, chunk: int = 65536, device: str | torch.device = "cpu",
    ) -> None:
        self.token_dim, self.hidden, self.steps = token_dim, hidden, steps
        self.lr, self.batch_size, self.seed, self.chunk = lr, batch_size, seed, chunk
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = _Net(token_dim, hidden, hidden).to(self.device)
        self.fitted = False

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).float().to(self.device)

    def fit(self, sequences: Sequence[np.ndarray], targets: Sequence[float]) -> "LSTMSurrogate":
        if len(sequences) != len(targets):
            raise ValueError(f"got {len(sequences)} sequences but {len(targets)} targets")
        if len(sequences) == 0:
            return self
        # Rows of equal length go in the same batch (the macro and micro spaces grow one unit a level).
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, seq in enumerate(sequences):
            by_length[len(seq)].append(i)
        groups = {n: (self._tensor(np.stack([sequences[i] for i in idx])),
                      torch.tensor([float(targets[i]) for i in idx], device=self.device))
                  for n, idx in by_length.items()}
        if not self.fitted:
            # U[-1,1] weights give logits of several units: the sigmoid starts saturated and Adam spends
            # hundreds of steps escaping (seen: train τ < 0 after 400 steps). Shifting the head's bias so
            # the mean initial prediction is the mean target removes that, the weights stay U[-1,1].
            with torch.no_grad():
                mean = float(np.clip(np.mean(targets), 1e-3, 1 - 1e-3))
                logits = torch.cat([self.net.head(self.net.run(x)[0]).squeeze(-1) for x, _ in groups.values()])
                self.net.head.bias += float(np.log(mean / (1 - mean))) - logits.mean()
        with _single_thread() if self.device.type == "cpu" else contextlib.nullcontext():
            self._train(groups)
        self.fitted = True
        return self

    def _train(self, groups: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        rng = np.random.default_rng(self.seed)
        # Single-tensor Adam: same numbers as the default multi-tensor one, 2x faster on these ~10 small
        # tensors (the per-step cost is dispatch, not arithmetic).
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, foreach=False)
        self.net.train()
        step = 0
        while step < self.steps:  # epochs of shuffled same-length minibatches until `steps` is reached
            batches = [(n, perm[i:i + self.batch_size])
                       for n, (x, _) in groups.items()
                       for perm in [rng.permutation(len(x))]
                       for i in range(0, len(x), self.batch_size)]
            for b in rng.permutation(len(batches))[: self.steps - step]:
                n, idx = batches[b]
                x, y = groups[n]
                rows = torch.from_numpy(idx).to(self.device)
                last, _ = self.net.run(x[rows])
                loss = (self.net.score(last) - y[rows]).abs().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1

    @torch.no_grad()
    def predict(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """Predicted accuracy of each token sequence (any lengths)."""
        self.net.eval()
        out = np.empty(len(sequences), dtype=np.float32)
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, seq in enumerate(sequences):
            by_length[len(seq)].append(i)
        for idx in by_length.values():
            for start in range(0, len(idx), self.chunk):
                part = idx[start:start + self.chunk]
                x = self._tensor(np.stack([sequences[i] for i in part]))
                out[part] = self.net.score(self.net.run(x)[0]).cpu().numpy()
        return out

    @torch.no_grad()
    def predict_children(
        self, prefixes: Sequence[np.ndarray], child_tokens: Sequence[np.ndarray], log: bool = False
    ) -> np.ndarray:
        """Scores of every child of every parent, concatenated in parent order (``log``: log-scores).

        ``prefixes[p]`` is parent p's token sequence (all the same length), ``child_tokens[p]``
        the (n_p, token_dim) tokens of the unit each child adds. Equals ``predict`` on the
        children's full sequences, at the cost of one LSTM step per child.
        """
        self.net.eval()
        counts = np.array([len(t) for t in child_tokens])
        if counts.sum() == 0:
            return np.empty(0, dtype=np.float32)
        n_parents = len(prefixes)
        if len(prefixes[0]):
            _, (h, c) = self.net.run(self._tensor(np.stack(prefixes)))
        else:  # children of the empty root: the LSTM starts from zeros
            h = c = torch.zeros(1, n_parents, self.hidden, device=self.device)
        owner = torch.from_numpy(np.repeat(np.arange(n_parents), counts)).to(self.device)
        tokens = self._tensor(np.concatenate(child_tokens))
        out = torch.empty(len(tokens), device=self.device)
        for start in range(0, len(tokens), self.chunk):
            sl = slice(start, start + self.chunk)
            who = owner[sl]
            last, _ = self.net.run(tokens[sl, None, :], (h[:, who].contiguous(), c[:, who].contiguous()))
            out[sl] = self.net.log_score(last) if log else self.net.score(last)
        return out.cpu().numpy()
