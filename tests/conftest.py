import subprocess
import sys
import warnings

import optuna
import pytest


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """The uninterrupted one-process search of test_cli's SMALL set-up: (stage, arch, value) of each
    complete trial, what every kill, resume and multi-rank run must end with."""
    from test_cli import SMALL, _stages

    url = f"sqlite:///{tmp_path_factory.mktemp('ref')}/ref.db"
    subprocess.run([sys.executable, "-m", "optuna_epnas.cli"] + SMALL + ["--study-name", "k", "--storage", url],
                   check=True, capture_output=True)
    return _stages(url)
