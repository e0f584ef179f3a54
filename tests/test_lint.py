"""ruff, as configured in pyproject.toml: lint and format, so that `pytest` alone checks both."""

import sys
from pathlib import Path

import pytest
from conftest import ROOT, sh

RUFF = Path(sys.executable).with_name("ruff")


@pytest.mark.parametrize("command", [("check", "."), ("format", "--check", ".")])
def test_ruff(command):
    sh(RUFF, *command, cwd=ROOT)
