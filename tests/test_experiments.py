"""The users' daily loop, for real: dvc exp run -S, exp show, metrics diff, a queued sweep."""

import json
import time

import pytest
from conftest import experiments, sh

pytestmark = pytest.mark.e2e

FEW_EPOCHS = "datasets.moons.train.epochs=100"


def test_exp_run_then_show_and_metrics_diff(rebuilt):
    sh("git", "add", "-A", cwd=rebuilt)
    sh("git", "commit", "-q", "--allow-empty", "-m", "baseline", cwd=rebuilt)
    for lr in ("0.05", "0.002"):
        sh(
            "dvc",
            "exp",
            "run",
            "-n",
            f"lr-{lr}",
            "-S",
            f"datasets.moons.train.lr={lr}",
            "-S",
            FEW_EPOCHS,
            cwd=rebuilt,
        )

    found = experiments(rebuilt)
    assert set(found) == {"lr-0.05", "lr-0.002"}
    for name, exp in found.items():
        assert exp["params"]["datasets"]["moons"]["train"]["lr"] == float(name.removeprefix("lr-"))
        assert 0.5 <= exp["metrics"]["metrics/moons.json"]["test"]["accuracy"] <= 1.0

    table = sh("dvc", "exp", "show", "--only-changed", "--md", cwd=rebuilt).stdout
    assert "lr-0.05" in table
    assert "datasets.moons.train.lr" in table

    # The workspace holds the last experiment's results: compared with HEAD, moons' metrics move.
    workspace = sh("dvc", "metrics", "diff", "--json", cwd=rebuilt).stdout
    changed = json.loads(workspace)["metrics/moons.json"]
    assert "test.accuracy" in changed and "generalization.accuracy" in changed
    assert "metrics/spiral.json" not in json.loads(workspace)  # spiral was not touched

    between = json.loads(sh("dvc", "metrics", "diff", "lr-0.05", "lr-0.002", "--json", cwd=rebuilt).stdout)
    assert between["metrics/moons.json"]["train.loss"]["diff"] != 0


def test_queued_sweep_on_two_workers(rebuilt):
    sh("git", "add", "-A", cwd=rebuilt)
    sh("git", "commit", "-q", "--allow-empty", "-m", "baseline", cwd=rebuilt)
    sh(
        "dvc",
        "exp",
        "run",
        "--queue",
        "-S",
        "datasets.moons.train.lr=0.001,0.01,0.1",
        "-S",
        FEW_EPOCHS,
        cwd=rebuilt,
    )
    sh("dvc", "queue", "start", "-j", "2", cwd=rebuilt)

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = sh("dvc", "queue", "status", cwd=rebuilt).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    sh("dvc", "queue", "stop", "--kill", cwd=rebuilt, check=False)
    assert "Failed" not in status, status

    found = experiments(rebuilt)
    lrs = sorted(exp["params"]["datasets"]["moons"]["train"]["lr"] for exp in found.values())
    assert lrs == [0.001, 0.01, 0.1]
    # Each trained with its own lr: three models, three train losses (the files' values: test_evaluate.py).
    assert len({exp["metrics"]["metrics/moons.json"]["train"]["loss"] for exp in found.values()}) == 3
