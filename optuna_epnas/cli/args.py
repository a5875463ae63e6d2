"""What the ``epnas`` subcommands share: argparse value types, the help formatter, the data options and
the loader that reads them."""

from __future__ import annotations

import argparse
import logging
import math
import warnings
from typing import Any, Mapping

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna_epnas.data.device import DeviceData


def _int_at_least(text: str, minimum: int, what: str) -> int:
    value = int(text)
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "0 or a positive integer")


def positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be 0 or a positive finite number, got {text}")
    return value


def accuracy(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be an accuracy in (0, 1], got {text}")
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except ``None``: those options say in their help what they default to."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


class _TrialFailuresInOneLine(logging.Filter):
    """Optuna logs a failed trial with its parameters (~80 at full depth) and traceback, then its value:
    one line instead -- ``trial N failed: <error>`` -- and none for an interrupt (the command says it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if " failed with value " in message:
            return False
        if " failed with parameters: " not in message:
            return True
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            return False
        trial, number = message.split()[:2]  # "Trial 7 failed with parameters: ..."
        reason = message.split("because of the following error: ", 1)[-1].rstrip(".")
        record.msg, record.args, record.exc_info, record.exc_text = f"{trial} {number} failed: {reason}", (), None, None
        return True


def _optuna_loggers() -> list[logging.Logger]:
    """Optuna's logger and those of its modules (one per module, made when it is imported): the one that
    logs finished trials is among them, under a module name Optuna keeps private."""
    known = logging.Logger.manager.loggerDict
    names = sorted(name for name, item in list(known.items())
                   if name.startswith("optuna.") and isinstance(item, logging.Logger))
    return [logging.getLogger("optuna"), *(logging.getLogger(name) for name in names)]


def quiet_optuna(log: bool = False) -> None:
    """Optuna's warnings only, no experimental-feature warnings; ``log``: warnings of every logger, one line each."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # A logger's filter sees the records logged on it, before any handler (a handler's sees only its own):
    # on each of Optuna's loggers, it shortens the failed-trial lines and passes everything else as it is.
    for logger in _optuna_loggers():
        if not any(isinstance(f, _TrialFailuresInOneLine) for f in logger.filters):
            logger.addFilter(_TrialFailuresInOneLine())
    if log:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def add_device_argument(group: argparse._ActionsContainer) -> None:
    group.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")


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


def load_data(args: argparse.Namespace, dataset: str, seed: int,
              search: Mapping[str, Any] | None = None) -> DeviceData:
    """The data the options of :func:`add_data_arguments` (and ``--device``) ask for; ``search``: the
    settings a search recorded, whose image size is used unless ``--image-size`` is given."""
    import torch

    from optuna_epnas.data.device import default_device, load_dataset

    device = default_device() if args.device == "auto" else torch.device(args.device)
    image_size = args.image_size or (search or {}).get("image_size")
    # On a GPU the images stay 8-bit (4x less memory; normalised per batch): at the native size only,
    # as a resized image is no longer 8-bit. The CPU keeps float32, which needs no conversion per batch.
    return load_dataset(dataset, root=args.data_root, device=device, seed=seed, max_train=args.max_train,
                        image_size=image_size, uint8=device.type == "cuda" and image_size is None)
