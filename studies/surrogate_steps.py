"""How many Adam steps the surrogate ensemble needs (issue 26 item 3: would early stopping make planning
cheaper?). The planner's ensemble (5 members, batched) fitted on 150 random architectures of every level
with their values, then Kendall τ of its mean prediction against the truth on 200 held-out full-depth
architectures, after 100, 200, 300 and 500 Adam steps (500: the default); 3 draws of the rows.
Values: NAS-Bench-201's CIFAR-10 validation accuracy, and the synthetic score of MacroSpace(8).

    python studies/surrogate_steps.py        # ~3 min on 2 cores; results: studies/results/surrogate-steps.md
"""
import numpy as np, torch
from scipy.stats import kendalltau
from optuna_epnas.benchmarks.nb201 import load_table
from optuna_epnas.spaces.nb201 import NB201Space
from optuna_epnas.spaces import MacroSpace
from optuna_epnas.testing.synthetic import SyntheticScore
from optuna_epnas.sampler.surrogate import LSTMEnsemble
torch.set_num_threads(1)
def archs_of(space, n, rng, full=False):
    out = []
    while len(out) < n:
        a = space.root()
        for _ in range(space.max_level if full else int(rng.integers(1, space.max_level + 1))):
            a = space.child(a, int(rng.integers(space.num_children(a))))
        out.append(a)
    return out
table = load_table()
nb = NB201Space()
syn_space = MacroSpace(8); syn = SyntheticScore(syn_space, seed=100)
for name, space, value in (("nb201", nb, lambda a: table.val[nb.cell(a)] / 100), ("synthetic", syn_space, syn.score)):
    for rep in range(3):
        rng = np.random.default_rng(rep)
        train = archs_of(space, 150, rng); test = archs_of(space, 200, rng, full=True)
        xs, ys = [space.tokens(a) for a in train], [value(a) for a in train]
        xt, yt = [space.tokens(a) for a in test], [value(a) for a in test]
        row = []
        for steps in (100, 200, 300, 500):
            e = LSTMEnsemble(space.token_dim, [11, 12, 13, 14, 15], steps=steps).fit(xs, ys)
            row.append(kendalltau(e.predict(xt).mean(0), yt)[0])
        print(name, rep, " ".join(f"{s}:{t:.3f}" for s, t in zip((100, 200, 300, 500), row)), flush=True)
