"""NAS-Bench-201's CIFAR-10 table (12-epoch schedule) and an objective that looks cells up in it.

The table ships with the package (``data/nb201-cifar10-12epoch.csv.gz``; source and MIT license beside
it): validation and test accuracy (%) of each of the 15,625 cells. :class:`TabularObjective` is an
ordinary Optuna objective over :class:`~optuna_epnas.spaces.nb201.NB201Space`'s parameters, so any
Optuna sampler searches it; a search is judged, as NB201's protocol has it, by the *test* accuracy of
the cell it found best by *validation* accuracy.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Mapping

import optuna

from optuna_epnas.spaces.nb201 import NB201_EDGES, NB201_OPS, NB201Space

TABLE_FILE = "nb201-cifar10-12epoch.csv.gz"
COLUMNS = ("e1", "e2", "e3", "e4", "e5", "e6", "cifar10-val", "cifar10-test")
#: User attr of a tabular trial: the test accuracy (%) of the cell it looked up (NB201's reported number).
TEST_ATTR = "test_accuracy"


@dataclass(frozen=True)
class NB201Table:
    """Validation and test accuracy (%) of every NB201 cell (a tuple of 6 ops, canonical edge order)."""

    val: Mapping[tuple[str, ...], float]
    test: Mapping[tuple[str, ...], float]

    def best_by_validation(self) -> tuple[str, ...]:
        """The cell of highest validation accuracy: the best any search judged by validation can find."""
        return max(self.val, key=lambda cell: (self.val[cell], cell))


def load_table(path: str | Path | None = None) -> NB201Table:
    """The shipped table (or the CSV/CSV.gz at ``path``), after checking it is whole: the header, every
    one of the 5^6 cells exactly once, accuracies finite percentages. ValueError says what is wrong."""
    if path is None:
        raw = resources.files("optuna_epnas.benchmarks").joinpath("data", TABLE_FILE).read_bytes()
        name = TABLE_FILE
    else:
        raw, name = Path(path).read_bytes(), str(path)
    text = gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()
    rows = csv.reader(io.StringIO(text))
    header = tuple(next(rows, ()))
    if header != COLUMNS:
        raise ValueError(f"{name}: expected the columns {','.join(COLUMNS)}, got {','.join(header) or 'none'}")
    val: dict[tuple[str, ...], float] = {}
    test: dict[tuple[str, ...], float] = {}
    for line, row in enumerate(rows, start=2):
        if len(row) != len(COLUMNS):
            raise ValueError(f"{name}, line {line}: expected {len(COLUMNS)} fields, got {len(row)}")
        cell = tuple(row[:6])
        if any(op not in NB201_OPS for op in cell):
            raise ValueError(f"{name}, line {line}: unknown op in {cell}; NB201's ops are {list(NB201_OPS)}")
        if cell in val:
            raise ValueError(f"{name}, line {line}: cell {cell} is listed twice")
        try:
            v, t = float(row[6]), float(row[7])
        except ValueError:
            raise ValueError(f"{name}, line {line}: accuracies must be numbers, got {row[6:]}") from None
        if not all(math.isfinite(x) and 0.0 <= x <= 100.0 for x in (v, t)):
            raise ValueError(f"{name}, line {line}: accuracies must be percentages in [0, 100], got {row[6:]}")
        val[cell], test[cell] = v, t
    expected = len(NB201_OPS) ** len(NB201_EDGES)
    if len(val) != expected:
        missing = next(c for c in itertools.product(NB201_OPS, repeat=len(NB201_EDGES)) if c not in val)
        raise ValueError(f"{name}: {len(val)} cells, NB201 has {expected} (missing e.g. {missing}); "
                         "the table is incomplete")
    return NB201Table(val, test)


class TabularObjective:
    """``trial -> validation accuracy`` (a fraction, as :class:`~optuna_epnas.SupernetObjective` returns)
    of the cell ``space.suggest(trial)`` stands for (:meth:`NB201Space.cell`), looked up in ``table``.

    Records as user attrs the ``arch`` key, its ``level`` and the cell's ``test_accuracy`` (%); a
    query trains nothing (``cost_macs`` 0). Deterministic: the same cell always gives the same value.
    """

    deterministic = True

    def __init__(self, space: NB201Space | None = None, table: NB201Table | None = None) -> None:
        self.space = NB201Space() if space is None else space
        if not isinstance(self.space, NB201Space):
            raise TypeError(f"TabularObjective looks up NB201 cells: space must be an NB201Space, got {self.space!r}")
        self.table = load_table() if table is None else table

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        arch = self.space.suggest(trial)
        cell = self.space.cell(arch)
        trial.set_user_attr("arch", self.space.key(arch))
        trial.set_user_attr("level", self.space.level(arch))
        trial.set_user_attr(TEST_ATTR, self.table.test[cell])
        return self.table.val[cell] / 100.0
