"""Cheap synthetic architecture scores with a known best, for testing and comparing samplers.

No training: an objective scores the sampled macro architecture against a hidden target
architecture. Two kinds, to be honest about where progressive search helps and where it does not:

- ``"prefix"``: 0.9 × (length of the prefix of layers whose op matches the target) / L
  + 0.1 × (agreement of skip bits with the target). Models "a network is as good as its longest
  right beginning": partial architectures are informative about their extensions, as progressive
  search assumes; the layers interact (a right op after a wrong one earns nothing).
- ``"chain"``: 0.9 × (fraction of layers whose op is the one a hidden rule prescribes after the
  previous layer's op; a hidden start op for layer 1) + 0.1 × (skip agreement). A local rule that
  holds at every depth, as "what works after what" does in real networks: a sequence model can
  learn it from shallow architectures and apply it deeper. (Its best is still one fixed sequence,
  so per-layer marginals find it too: TPE beat EPNAS on it here.)
- ``"separable"``: the mean over layers of 0.5 × [op matches] + 0.5 × (skip agreement). Every
  parameter contributes independently: the easy case for TPE and for random search.

All three are 1.0 exactly at the target and in [0, 1] everywhere, like a validation accuracy.
"""

from __future__ import annotations

import numpy as np
import optuna

from optuna_epnas.spaces.macro import MacroArch, MacroSpace

KINDS = ("chain", "prefix", "separable")


class SyntheticScore:
    """Objective ``trial -> score`` on ``space`` with a hidden target drawn from ``seed``."""

    def __init__(self, space: MacroSpace, seed: int = 0, kind: str = "prefix") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        rng = np.random.default_rng(seed)
        self.space, self.kind = space, kind
        arch = space.root()
        for _ in range(space.num_layers):
            arch = space.child(arch, int(rng.integers(space.num_children(arch))))
        self._rule = {op: space.ops[int(rng.integers(len(space.ops)))] for op in space.ops}
        if kind == "chain":  # the target follows the rule from a hidden start op
            ops = [space.ops[int(rng.integers(len(space.ops)))]]
            for _ in range(space.num_layers - 1):
                ops.append(self._rule[ops[-1]])
            arch = MacroArch(tuple(ops), arch.skips)
        self.target = arch

    def best(self) -> MacroArch:
        """The architecture that scores 1.0."""
        return self.target

    def score(self, arch: MacroArch) -> float:
        L, target = self.space.num_layers, self.target
        skip_agree = [
            np.mean([(j in sources) == (j in target.skips[layer]) for j in range(layer)]) if layer else 1.0
            for layer, sources in enumerate(arch.skips)
        ]
        op_match = [op == t for op, t in zip(arch.ops, target.ops)]
        if self.kind == "chain":
            follows = [op == (target.ops[0] if i == 0 else self._rule[arch.ops[i - 1]]) for i, op in enumerate(arch.ops)]
            return float(0.9 * sum(follows) / L + 0.1 * sum(skip_agree) / L)
        if self.kind == "separable":
            return float(sum(0.5 * m + 0.5 * a for m, a in zip(op_match, skip_agree)) / L)
        prefix = next((i for i, m in enumerate(op_match) if not m), len(op_match))
        return float(0.9 * prefix / L + 0.1 * sum(skip_agree) / L)

    def __call__(self, trial: optuna.trial.Trial) -> float:
        arch = self.space.suggest(trial)
        trial.set_user_attr("level", arch.level)
        return self.score(arch)
