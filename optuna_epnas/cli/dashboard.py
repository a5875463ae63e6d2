"""``epnas dashboard``: its options, and the command (:func:`optuna_epnas.analysis.dashboard_server.serve_dashboard`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence


def add_dashboard_parser(commands: Any) -> argparse.ArgumentParser:
    """``epnas dashboard``: the subcommand's parser, added to ``commands`` (an argparse subparsers)."""
    d = commands.add_parser(
        "dashboard", help="look at searches in optuna-dashboard (notes and architecture drawings)",
        description="Serve optuna-dashboard on a study storage, with the architecture drawings that "
                    "`epnas search` attaches to trials (in <db>.artifacts/ beside a SQLite storage).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d.add_argument("--storage", default="sqlite:///epnas.db", help="Optuna storage URL")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    d.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free port)")
    d.add_argument("--artifact-dir", default=None,
                   help="folder of the drawings (default: <db>.artifacts beside a SQLite storage)")
    d.add_argument("--record", action="store_true",
                   help="first write notes and drawings for every study (searches run before they were recorded)")
    return d


def dashboard_command(args: argparse.Namespace) -> int:
    """Serve the dashboard until Ctrl-C."""
    from optuna_epnas.analysis import EXTRA_MODULES, INSTALL_EXTRA

    try:
        from optuna_epnas.analysis.dashboard_server import serve_dashboard
    except ImportError as err:  # the analysis extra is not installed: say what to install, not a traceback
        if err.name not in EXTRA_MODULES:
            raise
        raise RuntimeError(f"epnas dashboard needs {err.name}, which is not installed: {INSTALL_EXTRA}") from None
    return serve_dashboard(args.storage, args.host, args.port, args.artifact_dir, args.record)


def main(argv: Sequence[str] | None = None) -> int:
    """``epnas dashboard ARGV``, its errors raised (``python -m optuna_epnas.cli dashboard`` prints them)."""
    parser = argparse.ArgumentParser(prog="epnas")
    add_dashboard_parser(parser.add_subparsers(dest="command", required=True))
    return dashboard_command(parser.parse_args(["dashboard", *(sys.argv[1:] if argv is None else argv)]))
