"""What a user installs is what the tests ran: the bundled scenarios are package data.

The whole round trip (build a wheel, install it into a fresh venv, run a scenario by name
from outside the checkout) is ``.ci/wheel-check``; these tests keep its pieces honest.
"""

import fnmatch
import importlib.resources
from pathlib import Path

import pytest

from poolbench.scenario import BUNDLED_DIR

tomllib = pytest.importorskip("tomllib")
ROOT = Path(__file__).resolve().parent.parent


def test_bundled_scenarios_are_read_through_the_package():
    packaged = Path(str(importlib.resources.files("poolbench") / "scenarios")).resolve()
    assert packaged == BUNDLED_DIR
    assert (BUNDLED_DIR / "leaky-sessions.yaml").is_file()


def test_every_bundled_file_is_declared_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["poolbench"]
    files = [p for p in BUNDLED_DIR.iterdir() if p.is_file() and not p.name.startswith(".")]
    assert files
    missing = [
        p.name for p in files if not any(fnmatch.fnmatch(f"scenarios/{p.name}", g) for g in globs)
    ]
    assert missing == [], "add these to [tool.setuptools.package-data] in pyproject.toml"
