"""argparse value types shared by the ``epnas`` subcommands."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_data_arguments(group: argparse._ActionsContainer, datasets: tuple[str, ...] | None,
                       dataset_default: str | None = "digits", dataset_help: str | None = None,
                       from_search: bool = False) -> None:
    """The data options every subcommand shares; ``datasets=None`` leaves ``--dataset`` out.

    ``from_search``: the command reads a search's study, whose settings fill what is not given.
    """
    if datasets is not None:
        group.add_argument("--dataset", choices=datasets, default=dataset_default, help=dataset_help)
    group.add_argument("--data-root", default=None, help="folder holding the data set files (fashion-mnist, cifar10)")
    group.add_argument("--max-train", type=positive_int, default=None, help="use at most this many training images")
    group.add_argument("--image-size", type=positive_int, default=None,
                       help="shrink images to this many pixels a side (a proxy task a CPU can search on)"
                       + ("; default: the search's size" if from_search else "; default: the data set's own"))
