"""``epnas ranking``: its options, and the command (:func:`optuna_epnas.analysis.ranking_report.write_ranking`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from optuna_epnas.cli.args import add_data_arguments, add_device_argument, load_data, positive_int, quiet_optuna
from optuna_epnas.settings import RANKING_EPOCHS


def add_ranking_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``ranking`` to the subparsers object of the ``epnas`` parser; returns the subparser."""
    r = commands.add_parser(
        "ranking", help="measure how well the supernet and the surrogate rank architectures",
        description="Train a spread of a search's full-size architectures from scratch and rank-correlate their "
                    "stand-alone test accuracy with their supernet accuracy; rank-correlate the surrogate's "
                    "predictions with the measured accuracies on held-out architectures. Writes ranking.md and "
                    "ranking.json, and adds the report to the study's note in optuna-dashboard.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    r.add_argument("--study", required=True, metavar="NAME", help="a search study")
    r.add_argument("--storage", default="sqlite:///epnas.db", help="Optuna storage URL of --study")
    r.add_argument("--n", type=positive_int, default=20, help="full-size architectures to train stand-alone")
    r.add_argument("--epochs", type=positive_int, default=RANKING_EPOCHS, help="stand-alone training epochs each")
    r.add_argument("--channels", type=positive_int, default=None,
                   help="stand-alone width (default: the search's supernet width)")
    r.add_argument("--cells", type=positive_int, default=None,
                   help="micro: normal cells per stage (default: the search's)")
    r.add_argument("--seed", type=int, default=None,
                   help="initialisation, data order and validation split (default: the search's seed)")
    add_data_arguments(r, None, from_search=True)
    add_device_argument(r)
    r.add_argument("--surrogate-only", action="store_true", help="skip the stand-alone training (seconds, not minutes)")
    r.add_argument("--no-note", action="store_true", help="leave the study's optuna-dashboard note alone")
    r.add_argument("--out", default=None,
                   help="folder for ranking.md and ranking.json (default: epnas-ranking/<study>)")
    r.add_argument("--quiet", action="store_true", help="no per-architecture progress lines")
    return r


def ranking_command(args: argparse.Namespace) -> int:
    """``epnas ranking``: see :func:`add_ranking_parser` for the options."""
    from optuna_epnas.analysis.ranking_report import write_ranking
    from optuna_epnas.supernet.checkpoint import safe_name
    from optuna_epnas.standalone.retrain import load_search_study, search_spec
    from optuna_epnas.spaces import SearchSpace
    from optuna_epnas.storage.storages import public_url

    quiet_optuna()
    study = load_search_study(args.study, args.storage)
    spec = search_spec(study)
    space = SearchSpace.from_spec(spec["space"])
    out = Path(args.out) if args.out else Path("epnas-ranking") / safe_name(args.study)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    url = public_url(args.storage)
    if args.surrogate_only:
        return write_ranking(study, space, out, url, note=not args.no_note, quiet=args.quiet)
    seed = spec.get("seed", 0) if args.seed is None else args.seed
    data = load_data(args, spec["dataset"], seed, search=spec)
    return write_ranking(study, space, out, url, data, spec["dataset"], n=args.n, epochs=args.epochs,
                         channels=args.channels or int(spec["channels"]), cells=args.cells, seed=seed,
                         max_train=args.max_train, note=not args.no_note, quiet=args.quiet)
