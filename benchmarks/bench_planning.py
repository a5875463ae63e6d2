"""The time to plan one paper-size level (issue 26 item 3): what ``Planner.next_level`` spends on its
surrogate ensemble when it grows K=25 level-11 parents of ``MacroSpace(12)`` to level 12.

Two ways, side by side in one run, on the same rows, seeds and parents:

- ``sequential`` (the planner up to issue 26): five ``nn.LSTM`` surrogates, each fitted with 500 Adam
  steps in turn (single-threaded, as it was), then every child of the K parents (6 ops x 2^11 skip
  subsets = 12,288 each, 307,200 in all) scored by each with one LSTM step from its parent's state.
  Kept here, and only here, as the reference.
- ``batched`` (today's planner): ``LSTMEnsemble``, the five members stacked into one model, the LSTM's
  backward written by hand, scoring with each parent's recurrent term computed once.

Training rows: default ~300 random architectures of levels 1-11 with random targets (the fit's cost does
not depend on the values). Printed: fit, score and level seconds (median of ``--repeats`` after one
warm-up level each: a search plans many levels in one process), their ratio, and how alike the two
ensembles' mean scores are (Kendall τ on a sample of candidates, and how many of each one's top 25 the
other also ranks in its top 250): the two give close, not equal, plans (float rounding that 500 L1 steps
amplify).

    PYTHONPATH=. python benchmarks/bench_planning.py [--rows 300] [--parents 25] [--device cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import numpy as np
import torch
from scipy.stats import kendalltau
from torch import nn

from optuna_epnas.sampler.surrogate import LSTMEnsemble
from optuna_epnas.spaces import MacroSpace


class _Sequential:
    """The reference: the five ``nn.LSTM`` members as the planner fitted and scored them before issue 26."""

    def __init__(self, token_dim: int, seeds: list[int], steps: int, device: str) -> None:
        self.steps, self.seeds, self.device, self.nets = steps, seeds, torch.device(device), []
        for seed in seeds:
            torch.manual_seed(seed)
            net = nn.ModuleDict({"embed": nn.Linear(token_dim, 100), "lstm": nn.LSTM(100, 100, batch_first=True),
                                 "head": nn.Linear(100, 1)})
            for linear in (net["embed"], net["head"]):
                nn.init.uniform_(linear.weight, -1.0, 1.0)
                nn.init.uniform_(linear.bias, -1.0, 1.0)
            self.nets.append(net.to(self.device))

    @staticmethod
    def _run(net, x, state=None):
        out, state = net["lstm"](net["embed"](x), state)
        return out[:, -1], state

    def fit(self, sequences, targets) -> "_Sequential":
        by_length = defaultdict(list)
        for i, seq in enumerate(sequences):
            by_length[len(seq)].append(i)
        groups = {n: (torch.from_numpy(np.stack([sequences[i] for i in idx])).float().to(self.device),
                      torch.tensor([float(targets[i]) for i in idx], device=self.device)) for n, idx in by_length.items()}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for net, seed in zip(self.nets, self.seeds):
                with torch.no_grad():
                    mean = float(np.clip(np.mean(targets), 1e-3, 1 - 1e-3))
                    logits = torch.cat([net["head"](self._run(net, x)[0]).squeeze(-1) for x, _ in groups.values()])
                    net["head"].bias += float(np.log(mean / (1 - mean))) - logits.mean()
                rng, opt, step = np.random.default_rng(seed), torch.optim.Adam(net.parameters(), lr=0.002, foreach=False), 0
                while step < self.steps:
                    batches = [(n, perm[i:i + 32]) for n, (x, _) in groups.items()
                               for perm in [rng.permutation(len(x))] for i in range(0, len(x), 32)]
                    for b in rng.permutation(len(batches))[: self.steps - step]:
                        n, idx = batches[b]
                        x, y = groups[n]
                        rows = torch.from_numpy(idx).to(self.device)
                        loss = (torch.sigmoid(net["head"](self._run(net, x[rows])[0]).squeeze(-1)) - y[rows]).abs().mean()
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        step += 1
        finally:
            torch.set_num_threads(threads)
        return self

    @torch.no_grad()
    def predict_children(self, prefixes, child_tokens) -> np.ndarray:
        counts = np.array([len(t) for t in child_tokens])
        owner = torch.from_numpy(np.repeat(np.arange(len(prefixes)), counts)).to(self.device)
        tokens = torch.from_numpy(np.concatenate(child_tokens)).float().to(self.device)
        scores = []
        for net in self.nets:
            _, (h, c) = self._run(net, torch.from_numpy(np.stack(prefixes)).float().to(self.device))
            out = torch.empty(len(tokens), device=self.device)
            for start in range(0, len(tokens), 65536):
                sl = slice(start, start + 65536)
                last, _ = self._run(net, tokens[sl, None, :], (h[:, owner[sl]].contiguous(), c[:, owner[sl]].contiguous()))
                out[sl] = torch.sigmoid(net["head"](last)).squeeze(-1)
            scores.append(out.cpu().numpy())
        return np.stack(scores)


def _random_arch(space: MacroSpace, level: int, rng: np.random.Generator):
    arch = space.root()
    for _ in range(level):
        arch = space.child(arch, int(rng.integers(space.num_children(arch))))
    return arch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--rows", type=int, default=300, help="training rows of the level's surrogate fit")
    ap.add_argument("--parents", type=int, default=25, help="K: parents expanded")
    ap.add_argument("--ensemble", type=int, default=5)
    ap.add_argument("--steps", type=int, default=500, help="Adam steps per member (the sampler's default)")
    ap.add_argument("--repeats", type=int, default=3, help="timed levels per way, after one warm-up level")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    space, rng = MacroSpace(args.layers), np.random.default_rng(0)
    rows = [_random_arch(space, int(rng.integers(1, args.layers)), rng) for _ in range(args.rows)]
    tokens = [space.tokens(a) for a in rows]
    targets = rng.uniform(0.5, 0.9, len(rows)).tolist()
    parents = [_random_arch(space, args.layers - 1, rng) for _ in range(args.parents)]
    prefixes, children = [space.tokens(p) for p in parents], [space.child_tokens(p) for p in parents]
    n_children = sum(len(c) for c in children)
    seeds = [int(s.generate_state(1)[0] % 2**31) for s in np.random.SeedSequence([0, 1, args.layers]).spawn(1 + args.ensemble)[1:]]

    def sync() -> None:
        if torch.device(args.device).type == "cuda":
            torch.cuda.synchronize()

    def level(make):
        started = time.perf_counter()
        model = make().fit(tokens, targets)
        sync()
        fitted = time.perf_counter()
        scores = model.predict_children(prefixes, children)
        sync()
        return fitted - started, time.perf_counter() - fitted, scores

    ways = {"sequential": lambda: _Sequential(space.token_dim, seeds, args.steps, args.device),
            "batched": lambda: LSTMEnsemble(space.token_dim, seeds, steps=args.steps, device=args.device)}
    timings, scores = {}, {}
    for name, make in ways.items():
        level(make)  # warm-up: first-call costs (kernels, lazy imports) are paid once per search
        runs = [level(make) for _ in range(args.repeats)]
        timings[name] = [statistics.median(r[i] for r in runs) for i in range(2)]
        scores[name] = runs[-1][2].mean(axis=0)
    print(f"MacroSpace({args.layers}), {args.rows} rows, {args.parents} parents -> {n_children:,} candidates, "
          f"{args.ensemble} members x {args.steps} Adam steps, on {args.device} ({torch.get_num_threads()} threads); "
          f"median of {args.repeats} levels after a warm-up")
    for name, (fit, score) in timings.items():
        print(f"{name:>10}:  fit {fit:6.2f} s  score {score:6.2f} s  level {fit + score:6.2f} s")
    (f0, s0), (f1, s1) = timings["sequential"], timings["batched"]
    print(f"sequential / batched:  fit {f0 / f1:.2f}x  score {s0 / s1:.2f}x  level {(f0 + s0) / (f1 + s1):.2f}x")
    sample = np.random.default_rng(1).choice(n_children, min(n_children, 5000), replace=False)
    a, b = scores["sequential"], scores["batched"]
    top_a, top_b = np.argsort(-a)[:25], np.argsort(-b)
    print(f"alike: Kendall τ of the two ensembles' mean scores {kendalltau(a[sample], b[sample])[0]:.3f} "
          f"(5,000 candidates); of sequential's top 25, {np.isin(top_a, top_b[:250]).sum()} in batched's top 250")


if __name__ == "__main__":
    main()
