"""DVC's run-cache: params computed once are restored, never computed again (fixtures in conftest.py).

Each test reads what DVC did from its output: "Running stage" for a stage it ran, "is cached -
skipping run" for one it restored from the run-cache.
"""

import hashlib
import json
import re

import pytest
from conftest import edit_params, lock_outs, ran, sh

pytestmark = pytest.mark.e2e

MOONS_MODEL_STAGES = {"train@moons", "evaluate@moons", "plot@moons"}


def restored(result) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' is cached - skipping run", result.stdout))


def snapshot(repo) -> tuple[str, dict[str, str]]:
    """dvc.lock's text and the md5 of every output file in the workspace."""
    outputs = {path: hashlib.md5((repo / path).read_bytes()).hexdigest() for path in lock_outs(repo)}
    return (repo / "dvc.lock").read_text(), outputs


def moons_lr(lr):
    return lambda params: params["datasets"]["moons"]["train"].update(lr=lr)


def test_params_changed_and_changed_back_restore_every_output(rebuilt):
    before = snapshot(rebuilt)
    edit_params(rebuilt, moons_lr(0.02))
    assert ran(sh("dvc", "repro", cwd=rebuilt)) == MOONS_MODEL_STAGES
    edit_params(rebuilt, moons_lr(0.01))
    result = sh("dvc", "repro", cwd=rebuilt)
    assert ran(result) == set()
    assert restored(result) == MOONS_MODEL_STAGES
    assert snapshot(rebuilt) == before


def test_a_failed_stage_then_fixed_params_run_nothing_and_restore_every_output(rebuilt):
    before = snapshot(rebuilt)
    edit_params(rebuilt, lambda params: params["datasets"]["moons"]["train"].update(epochz=5))
    failed = sh("dvc", "repro", cwd=rebuilt, check=False)
    assert failed.returncode != 0
    assert "unknown key datasets.moons.train.epochz" in failed.stderr
    assert not (rebuilt / "models" / "moons.safetensors").exists()  # DVC removed them before the run

    edit_params(rebuilt, lambda params: params["datasets"]["moons"]["train"].pop("epochz"))
    result = sh("dvc", "repro", cwd=rebuilt)
    assert ran(result) == set()
    assert "train@moons" in restored(result)
    assert snapshot(rebuilt) == before


def experiment_metrics(repo, name) -> dict:
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=repo).stdout)
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for revision in exp["revs"]:
                if revision.get("name") == name:
                    return revision["data"]["metrics"]["metrics/moons.json"]["data"]
    raise AssertionError(f"no experiment {name}")


def test_exp_run_of_params_already_run_restores_instead_of_training(rebuilt):
    sh("git", "add", "-A", cwd=rebuilt)
    sh("git", "commit", "-q", "--allow-empty", "-m", "baseline", cwd=rebuilt)

    first = sh("dvc", "exp", "run", "-n", "first", "-S", "datasets.moons.train.lr=0.02", cwd=rebuilt)
    assert ran(first) == MOONS_MODEL_STAGES
    # Back to the committed params (computed by the cold run), then to the first experiment's again.
    back = sh("dvc", "exp", "run", "-n", "back", "-S", "datasets.moons.train.lr=0.01", cwd=rebuilt)
    again = sh("dvc", "exp", "run", "-n", "again", "-S", "datasets.moons.train.lr=0.02", cwd=rebuilt)
    for result in (back, again):
        assert ran(result) == set()
        assert restored(result) == MOONS_MODEL_STAGES
    assert experiment_metrics(rebuilt, "again") == experiment_metrics(rebuilt, "first")
