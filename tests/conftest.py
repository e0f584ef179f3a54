"""Shared fixtures: the project copied into a throwaway git + DVC repository.

One cold `dvc repro` of the default pipeline (`built`) is shared by the whole session; tests that
change anything work on a copy of it (`rebuilt`, cache included), so each sees exactly which
stages its change reruns.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("moons", "spiral")
STAGES = ("generate", "split", "train", "evaluate", "plot", "animate", "baselines")

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
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def perturbed_mlp(activation="relu", classes=3, hidden=(6, 5)):
    """A seeded MLP whose weights are not its initial ones: larger and less regular."""
    import torch  # noqa: PLC0415 - only the tests that build models pay for torch

    from stages.models import MLP  # noqa: PLC0415

    torch.manual_seed(4)
    model = MLP(list(hidden), activation, classes)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    return model.eval()


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


def ran(result) -> set[str]:
    """The stages a `dvc repro` ran, read from its output."""
    return set(re.findall(r"Running stage '([^']+)'", result.stdout))


def restored(result) -> set[str]:
    """The stages a `dvc repro` or `dvc exp run` restored from the run-cache instead of running."""
    return set(re.findall(r"Stage '([^']+)' is cached - skipping run", result.stdout))


def edit_params(repo, change):
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    change(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def lock_outs(repo) -> dict[str, str]:
    """Every output path in dvc.lock with its md5."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def output_md5s(repo) -> dict[str, str]:
    """The md5 of every output file dvc.lock lists, hashed from the workspace."""
    return {path: hashlib.md5((repo / path).read_bytes()).hexdigest() for path in lock_outs(repo)}


def experiments(repo) -> dict[str, dict]:
    """Each experiment's name with its params and metrics, from `dvc exp show --json`."""
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=repo).stdout)
    found = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for revision in exp["revs"]:
                data = revision.get("data") or {}
                if revision.get("name") and data:
                    found[revision["name"]] = {
                        "params": data["params"]["params.yaml"]["data"],
                        "metrics": {path: m["data"] for path, m in (data.get("metrics") or {}).items()},
                    }
    return found


def share(repo, where: Path, remote=None, message="the team's origin and DVC remote", push=True) -> Path:
    """Make `repo` a team's clone: a bare git `origin` in `where`, a default DVC remote (a local
    directory in `where`, or the given `dvc remote` commands), everything published to both
    (`push=False`: git only). The tests and benchmarks/ set up every team this way."""
    origin = where / "origin.git"
    sh("git", "init", "-q", "--bare", "-b", "main", origin, cwd=where)
    sh("git", "remote", "add", "origin", origin, cwd=repo)
    for command in remote or [("dvc", "remote", "add", "-d", "storage", where / "storage")]:
        sh(*command, cwd=repo)
    publish(repo, message, push)
    return origin


def publish(repo, message, push=True):
    """Commit everything; push the outputs and run-cache to the DVC remote first, then the commit."""
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", message, cwd=repo)
    if push:
        sh("dvc", "push", "-q", "--run-cache", cwd=repo)
    sh("git", "push", "-q", "origin", "main", cwd=repo)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The project after a cold `dvc repro`: no cache, no run-cache."""
    repo = copy_project(tmp_path_factory.mktemp("built") / "project")
    result = sh("dvc", "repro", cwd=repo)
    assert ran(result) == {f"{stage}@{name}" for stage in STAGES for name in DATASETS}
    return repo


@pytest.fixture
def rebuilt(built, tmp_path):
    """A copy of the built project to change."""
    repo = tmp_path / "copy"
    shutil.copytree(built, repo, symlinks=True)
    return repo


# ---------------------------------------------------------------------------------------------
# Bad input: one helper each for what several test files do


class _Delete:
    def __repr__(self):  # a stable test id: pytest-xdist's workers must collect the same names
        return "DELETE"


DELETE = _Delete()  # as a value of set_in: remove the key


def set_in(tree, path, value):
    """`tree` (parsed params) with the key at `path` (dotted, or a tuple of keys) set to `value`, or
    removed when `value` is DELETE; changed in place and returned."""
    *parents, last = path.split(".") if isinstance(path, str) else path
    node = tree
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return tree


def assert_one_line(message, *fragments, start=""):
    """A user-facing error: a single line that starts with `start` and holds every fragment."""
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    assert message.startswith(start), f"{message!r} does not start with {start!r}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def assert_one_line_error(result, *fragments):
    """A process that failed as a bad input should: non-zero exit, no traceback, one line on stderr."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    return assert_one_line(result.stderr.strip(), "error: ", *fragments)


RUN_STAGE = """
import runpy, sys
sys.argv = ["stages.{module}", {name!r}]
{before}
runpy.run_module("stages.{module}", run_name="__main__", alter_sys=True)
"""


def stage_command(module, name="moons", before=""):
    """The command that runs a stage as `python -m stages.<module> <name>` does, after the Python code
    `before` (a hook a test installs in the stage's own process)."""
    return [sys.executable, "-c", RUN_STAGE.format(module=module, name=name, before=before)]


def run_stage(repo, module, name="moons", before=""):
    """A stage run to its end in `repo`: the CompletedProcess, its exit status not checked."""
    return sh(*stage_command(module, name, before), cwd=repo, check=False)


class Exploit:
    """Unpickling this creates `marker`: what a tampered pickle-based checkpoint could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))
