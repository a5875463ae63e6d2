"""The documentation site builds from docs/ and the docstrings with warnings as errors (mkdocs --strict:
a broken page link, an object the API page names that is gone, a docstring the renderer cannot read)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_site_builds_without_a_warning(tmp_path):
    pytest.importorskip("mkdocstrings")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "EPNASSampler" in api and "LSTMSurrogate" in api  # the docstrings are in it, not only the names


def test_the_readme_is_a_front_page_and_links_only_to_files_that_exist():
    import re

    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    links = [target for target in re.findall(r"\]\(([^)#]+)", text) if "://" not in target]
    assert links and [target for target in links if not (ROOT / target).exists()] == []
