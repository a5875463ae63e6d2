"""``python -m optuna_epnas.cli`` (and ``torchrun -m optuna_epnas.cli``): the ``epnas`` command."""

import sys

from optuna_epnas.cli import main

sys.exit(main())
