"""The OptunaHub package folder (hub/samplers/epnas): loads with optunahub's own loader, has the
registry's front matter, and its example runs."""

from __future__ import annotations

import runpy
from pathlib import Path

import optunahub
import yaml

import optuna_epnas

HUB = Path(__file__).resolve().parents[1] / "hub"
PACKAGE = HUB / "samplers" / "epnas"


def test_optunahub_loads_the_package_as_a_wrapper_over_optuna_epnas():
    module = optunahub.load_local_module("samplers/epnas", registry_root=str(HUB))
    assert module.EPNASSampler is optuna_epnas.EPNASSampler
    assert set(module.__all__) <= set(dir(module))


def test_the_readme_front_matter_has_every_field_the_registry_needs():
    text = (PACKAGE / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert {"author", "title", "description", "tags", "optuna_versions", "license"} <= set(front)
    assert "sampler" in front["tags"]  # a package under samplers/ must carry the tag
    assert all(isinstance(front[k], str) for k in ("author", "title", "description", "license"))
    assert (PACKAGE / "LICENSE").exists() and (PACKAGE / "requirements.txt").exists()


def test_the_example_runs_a_whole_search(monkeypatch, capsys):
    # optunahub.load_module would fetch from GitHub: point it at the local folder instead
    monkeypatch.setattr(optunahub, "load_module",
                        lambda package, **_: optunahub.load_local_module(package, registry_root=str(HUB)))
    runpy.run_path(str(PACKAGE / "example.py"), run_name="__main__")
    assert "best complete architecture:" in capsys.readouterr().out
