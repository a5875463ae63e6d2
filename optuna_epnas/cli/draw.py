"""``epnas draw``: its options, and the command (:func:`optuna_epnas.standalone.draw.draw_arch` draws)."""

from __future__ import annotations

import argparse
from typing import Any

from optuna_epnas.cli.args import positive_int


def add_draw_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``draw`` to the subparsers object of the ``epnas`` parser; returns the subparser."""
    d = commands.add_parser(
        "draw", help="draw an architecture (SVG, PNG, PDF, or Graphviz source)",
        description="Draw the best full-size architecture of a search, one of its trials, a trained model's "
                    "arch.json, or an architecture key.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d.add_argument("what", nargs="?", default=None, metavar="ARCH_JSON", help="an arch.json written by epnas train")
    d.add_argument("--study", default=None, metavar="NAME", help="a search study (default: its best full-size trial)")
    d.add_argument("--storage", default="sqlite:///epnas.db", help="Optuna storage URL of --study")
    d.add_argument("--trial", type=int, default=None, help="with --study: draw this trial's architecture instead")
    d.add_argument("--arch", default=None, metavar="KEY", help="an architecture key")
    d.add_argument("--space", choices=("macro", "micro"), default=None, help="the space of an --arch key (default: macro)")
    d.add_argument("--layers", type=positive_int, default=12, help="macro --arch: layers of the space")
    d.add_argument("--blocks", type=positive_int, default=5, help="micro --arch: blocks of a cell")
    d.add_argument("--out", default="arch.svg", help="picture to write: .svg, .png, .pdf (Graphviz), .gv/.dot (source)")
    return d


def draw_command(args: argparse.Namespace) -> int:
    from optuna_epnas.standalone.draw import draw_arch
    from optuna_epnas.standalone.export import ModelSpec
    from optuna_epnas.standalone.retrain import load_search_study, resolve_source, trial_architecture

    if args.what is not None:
        if args.study is not None or args.arch is not None:
            raise ValueError("give one of ARCH_JSON, --study or --arch")
        target: object = ModelSpec.load(args.what)
        space = None
    elif args.study is not None and args.trial is not None:
        if args.arch is not None:
            raise ValueError("give one of ARCH_JSON, --study or --arch")
        space, target = trial_architecture(load_search_study(args.study, args.storage), args.trial)
    else:
        space, target, _, _ = resolve_source(study=args.study, storage=args.storage, arch=args.arch,
                                             space=args.space, layers=args.layers, blocks=args.blocks)
    path = draw_arch(target, args.out, space=space)
    print(f"drew {path}")
    return 0
