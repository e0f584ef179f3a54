"""A project copied into a throwaway git + DVC repository, and a team's remotes for it: what the tests
(through tests/conftest.py) and the benchmarks share. It needs no more than README command 1 installs.

Importing it sets this process's environment for every command it starts: `dvc` and the stages'
`python` from this interpreter's venv, no DVC analytics, a git identity for commits when none is set.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
os.environ["DVC_NO_ANALYTICS"] = "1"
for _who in ("AUTHOR", "COMMITTER"):
    os.environ.setdefault(f"GIT_{_who}_NAME", "Boundary Lab workspace")
    os.environ.setdefault(f"GIT_{_who}_EMAIL", "workspace@boundary-lab.invalid")


class CommandFailed(AssertionError):
    """A command that had to succeed did not; the message holds its output."""


def sh(*args, cwd, check=True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command and capture its output; unless check=False, a non-zero exit raises CommandFailed."""
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise CommandFailed(
            f"{' '.join(map(str, args))} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


@contextlib.contextmanager
def own_stage_workers():
    """Warm stage workers (stages/worker.py) of this run's own, in a folder of its own, all stopped at
    the end: nothing is shared with the user's workers, and none is left running."""
    folder = tempfile.mkdtemp(prefix="boundary-lab-workers-")
    os.environ["BOUNDARY_LAB_WORKER_DIR"] = folder
    try:
        yield Path(folder)
    finally:
        sh(sys.executable, "-m", "stages.worker", "stop", "--all", cwd=ROOT)
        shutil.rmtree(folder, ignore_errors=True)


def tracked_files(root: Path = ROOT) -> list[str]:
    listed = sh("git", "ls-files", "-z", cwd=root)
    return [name for name in listed.stdout.split("\0") if name]


def copy_project(destination: Path, root: Path = ROOT) -> Path:
    """The committed files of the checkout at `root` (their working-tree versions) in a new git
    repository: no DVC cache, no run-cache, no outputs, as a fresh clone has it."""
    for name in tracked_files(root):
        if (root / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, destination / name)
    sh("git", "init", "-q", "-b", "main", cwd=destination)
    sh("git", "add", "-A", cwd=destination)
    sh("git", "commit", "-q", "-m", "project", cwd=destination)
    return destination


def edit_params(repo: Path, change) -> None:
    """Apply `change` (a function that edits the parsed dict in place) to repo's params.yaml."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    change(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def share(repo, where: Path, remote=None, message="the team's origin and DVC remote", push=True) -> Path:
    """Make `repo` a team's clone: a bare git `origin` in `where`, a default DVC remote (a local
    directory in `where`, or the given `dvc remote` commands), everything published to both
    (`push=False`: git only). Returns origin's path."""
    origin = where / "origin.git"
    sh("git", "init", "-q", "--bare", "-b", "main", origin, cwd=where)
    sh("git", "remote", "add", "origin", origin, cwd=repo)
    for command in remote or [("dvc", "remote", "add", "-d", "storage", where / "storage")]:
        sh(*command, cwd=repo)
    publish(repo, message, push)
    return origin


def publish(repo, message, push=True) -> None:
    """Commit everything; push the outputs and run-cache to the DVC remote first, then the commit."""
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", message, cwd=repo)
    if push:
        sh("dvc", "push", "-q", "--run-cache", cwd=repo)
    sh("git", "push", "-q", "origin", "main", cwd=repo)
