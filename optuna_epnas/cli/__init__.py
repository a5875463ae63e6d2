"""The ``epnas`` command: ``search`` runs (or resumes) an architecture search and summarises it; ``train``
trains a found architecture from scratch and reports its test accuracy; ``draw`` draws an architecture;
``dashboard`` shows searches in optuna-dashboard; ``ranking`` measures how well the supernet and the
surrogate rank architectures; ``compare`` runs EPNAS, PNAS, TPE and random search on the same budget,
over seeds; ``benchmark nb201`` compares samplers at equal queries on NAS-Bench-201's table."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any, Sequence

from optuna_epnas.cli.benchmark import add_benchmark_parser, benchmark_command
from optuna_epnas.cli.compare import add_compare_parser, compare_command
from optuna_epnas.cli.dashboard import add_dashboard_parser, dashboard_command
from optuna_epnas.cli.draw import add_draw_parser, draw_command
from optuna_epnas.cli.ranking import add_ranking_parser, ranking_command
from optuna_epnas.cli.search import add_search_parser, search_command
from optuna_epnas.cli.train import add_train_parser, train_command

# Each subcommand's module builds its parser from light imports only; what a command runs (the analysis
# libraries: scipy, matplotlib, optuna-dashboard, graphviz) is imported when it runs.
COMMANDS = {
    "search": (add_search_parser, search_command),
    "train": (add_train_parser, train_command),
    "dashboard": (add_dashboard_parser, dashboard_command),
    "ranking": (add_ranking_parser, ranking_command),
    "compare": (add_compare_parser, compare_command),
    "draw": (add_draw_parser, draw_command),
    "benchmark": (add_benchmark_parser, benchmark_command),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="epnas", description=__doc__.replace("``", ""))
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_parser, _ in COMMANDS.values():
        add_parser(commands)
    return parser


def _version() -> str:
    from optuna_epnas import __version__

    return __version__


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that it stops as Ctrl-C does: the running trial undone,
    what is finished stored, the checkpoint written (a scheduler's SIGTERM, then a resume, loses nothing)."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()  # only there can it take signals
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return COMMANDS[args.command][1](args)
    except (ValueError, FileNotFoundError, RuntimeError, OSError, ArithmeticError) as err:
        print(f"epnas: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        term = isinstance(err, Terminated)
        print(f"\nepnas: {'terminated (SIGTERM)' if term else 'interrupted'}; what had finished is stored: "
              "re-run the same command to resume", file=sys.stderr)
        return 143 if term else 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
