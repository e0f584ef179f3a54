"""Shared fixtures: the project copied into a throwaway git + DVC repository."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Stages run `python -m stages...` and tests run `dvc`: both from this interpreter's environment.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ.setdefault("GIT_AUTHOR_NAME", "Boundary Lab tests")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@boundary-lab.invalid")
os.environ.setdefault("GIT_COMMITTER_NAME", "Boundary Lab tests")
os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@boundary-lab.invalid")


def sh(*args, cwd, check=True, **kwargs):
    """Run a command, returning the CompletedProcess; its output goes into the failure message."""
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def tracked_files():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [name for name in listed.stdout.split("\0") if name]


def copy_project(destination: Path) -> Path:
    """The project's committed files (its working-tree versions) in a new git repository."""
    for name in tracked_files():
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    sh("git", "init", "-q", "-b", "main", cwd=destination)
    sh("git", "add", "-A", cwd=destination)
    sh("git", "commit", "-q", "-m", "project", cwd=destination)
    return destination


@pytest.fixture
def project(tmp_path):
    return copy_project(tmp_path / "project")
