"""Regenerate the example drawings in docs/images: ``python docs/make_examples.py [OUT_DIR] [--png]``.

Needs Graphviz's ``dot`` (``apt-get install graphviz``). The architectures are fixed, so re-running
gives the same pictures.
"""

from __future__ import annotations

import sys
from pathlib import Path

from optuna_epnas.standalone.draw import draw_arch
from optuna_epnas.spaces import MacroSpace, MicroSpace

# A 12-layer macro architecture with skips of every reach, including ones across both reductions.
MACRO = ("conv3x3 | sep5x5 | max3x3[0] | sep3x3[1] | conv5x5[0,2] | avg3x3[3] | sep5x5[1,4] | conv3x3[5] "
         "| sep3x3[0,6] | max3x3[2,7] | conv5x5[8] | sep5x5[4,9,10]")
# A 5-block cell: blocks read both inputs and earlier blocks; block 4 repeats one (input, op) branch.
MICRO = ("sep3x3(prev) + identity(prev2) | max3x3(prev) + sep5x5(b1) | conv3x3(prev2) + avg3x3(b2) "
         "| sep3x3(prev) + sep3x3(prev) | identity(b1) + sep5x5(b4)")


def main(argv: list[str]) -> None:
    png = "--png" in argv
    args = [a for a in argv if a != "--png"]
    out = Path(args[0]) if args else Path(__file__).resolve().parent / "images"
    out.mkdir(parents=True, exist_ok=True)
    suffix, extra = (".png", {"dpi": "110"}) if png else (".svg", {})
    macro_space, micro_space = MacroSpace(12), MicroSpace(5)
    for name, space, key in (("macro", macro_space, MACRO), ("micro", micro_space, MICRO)):
        path = draw_arch(space.parse(key), out / f"{name}_example{suffix}", space, **extra)
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
