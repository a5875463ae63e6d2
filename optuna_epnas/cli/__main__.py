"""``python -m optuna_epnas.cli`` (and ``torchrun -m optuna_epnas.cli``): the ``epnas`` command."""

import logging
import os
import sys

from optuna_epnas.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # A torchrun rank, its work done and the process group left: skip the interpreter's teardown. There a
    # native thread (gloo's or torch's) is sometimes destroyed still joinable, and the process aborts
    # ("terminate called without an active exception", SIGABRT) after a complete search, 1 run in 16
    # under load here, so torchrun reports a failure. Nothing is left to write: Optuna committed every
    # trial, the checkpoint is on disk; the streams and log handlers are flushed here.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
sys.exit(code)
