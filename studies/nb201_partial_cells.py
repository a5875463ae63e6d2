"""How well does a partial NAS-Bench-201 cell predict its completions? The measurement behind NB201Space's
defaults (growth order, the op an ungrown edge stands as).

For each reading (ungrown op × growth order) and each level 1-5: Kendall τ between a partial cell's
validation accuracy (ungrown edges set to the op) and the best validation accuracy among its completions,
over every partial cell of the level; then a greedy beam over the exact partial accuracies (keep the B
best of each level, grow each by every op) and the test accuracy of the cell it ends on, with its rank by
validation (0 = the table's best-by-validation cell).

    python studies/nb201_partial_cells.py
"""

from __future__ import annotations

import itertools

from scipy.stats import kendalltau

from optuna_epnas.benchmarks import load_table
from optuna_epnas.spaces.nb201 import CANONICAL, NB201_OPS, NB201Space, OUTPUT_FIRST

ORDERS = {"canonical": CANONICAL, "default": OUTPUT_FIRST, "e4 e5 e6 e1 e2 e3": (3, 4, 5, 0, 1, 2)}


def main() -> None:
    table = load_table()
    ranked = sorted(table.val.values(), reverse=True)
    print("ungrown       order               Kendall τ, levels 1-5            beam 3 / 5 / 10 / 25: test (val rank)")
    for ungrown in NB201_OPS:
        for name, order in ORDERS.items():
            space = NB201Space(order=order, ungrown=ungrown)
            taus = []
            for level in range(1, 6):
                partial, best = [], []
                for prefix in itertools.product(NB201_OPS, repeat=level):
                    arch = space.root()
                    for op in prefix:
                        arch = space.child(arch, NB201_OPS.index(op))
                    partial.append(table.val[space.cell(arch)])
                    completions = itertools.product(NB201_OPS, repeat=6 - level)
                    best.append(max(table.val[_grow(space, arch, rest)] for rest in completions))
                taus.append(kendalltau(partial, best)[0])
            beams = []
            for width in (3, 5, 10, 25):
                beam = [space.root()]
                for _ in range(6):
                    children = [space.child(a, i) for a in beam for i in range(space.num_children(a))]
                    beam = sorted(children, key=lambda a: -table.val[space.cell(a)])[:width]
                cell = space.cell(beam[0])
                beams.append(f"{table.test[cell]:.2f} (r{sum(v > table.val[cell] for v in ranked)})")
            print(f"{ungrown:13s} {name:19s} " + " ".join(f"{t:+.2f}" for t in taus) + "   " + " / ".join(beams))


def _grow(space: NB201Space, arch, ops) -> tuple[str, ...]:
    for op in ops:
        arch = space.child(arch, NB201_OPS.index(op))
    return space.cell(arch)


if __name__ == "__main__":
    main()
