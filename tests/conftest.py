"""Shared fixtures: the project copied into a throwaway git + DVC repository.

One cold `dvc repro` of the default pipeline (`built`) is shared by the whole session; tests that
change anything work on a copy of it (`rebuilt`, cache included), so each sees exactly which
stages its change reruns.
"""

import hashlib
import json
import re
import shutil
import sys

import pytest
import yaml

# The helpers benchmarks/ uses too, there without pytest; the test modules import them from here.
from benchmarks.workspace import (  # noqa: F401
    ROOT,
    copy_project,
    edit_params,
    own_stage_workers,
    publish,
    sh,
    share,
    tracked_files,
)

DATASETS = ("moons", "spiral")
STAGES = ("generate", "split", "train", "evaluate", "plot", "animate", "baselines")


def model_config(hidden=(6, 5), activation="relu", classes=3, features=("x1", "x2")):
    from stages.params import ModelConfig  # noqa: PLC0415

    return ModelConfig(hidden=list(hidden), activation=activation, classes=classes, features=list(features))


def perturbed_mlp(activation="relu", classes=3, hidden=(6, 5), features=("x1", "x2")):
    """A seeded MLP whose weights are not its initial ones: larger and less regular."""
    import torch  # noqa: PLC0415 - only the tests that build models pay for torch

    from stages.models import MLP  # noqa: PLC0415

    torch.manual_seed(4)
    model = MLP(model_config(hidden, activation, classes, features))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    return model.eval()


@pytest.fixture(scope="session", autouse=True)
def stage_workers():
    """The stages that DVC runs in the tests are served by warm workers of the session's own."""
    with own_stage_workers() as folder:
        yield folder


@pytest.fixture
def project(tmp_path):
    return copy_project(tmp_path / "project")


def ran(result) -> set[str]:
    """The stages a `dvc repro` ran, read from its output."""
    return set(re.findall(r"Running stage '([^']+)'", result.stdout))


def restored(result) -> set[str]:
    """The stages a `dvc repro` or `dvc exp run` restored from the run-cache instead of running."""
    return set(re.findall(r"Stage '([^']+)' is cached - skipping run", result.stdout))


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


def strict_json(text):
    """JSON as a browser's JSON.parse reads it: NaN, Infinity and -Infinity are not JSON."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


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
