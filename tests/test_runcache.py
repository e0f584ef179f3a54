"""DVC's run-cache: params computed once are restored, never computed again (fixtures in conftest.py).

Each test reads what DVC did from its output: "Running stage" for a stage it ran, "is cached -
skipping run" for one it restored from the run-cache. A failed run then fixed restores too: that is
test_errors.py's test_refused_through_dvc_repro_then_fixed_restores_every_hash.
"""

import pytest
from conftest import MOONS_MODEL_STAGES, edit_params, experiments, output_md5s, ran, restored, sh

pytestmark = pytest.mark.e2e


def snapshot(repo) -> tuple[str, dict[str, str]]:
    """dvc.lock's text and the md5 of every output file in the workspace."""
    return (repo / "dvc.lock").read_text(), output_md5s(repo)


def moons_lr(lr):
    return lambda params: params["datasets"]["moons"]["train"].update(lr=lr)


def test_params_changed_rerun_that_model_s_stages_and_changed_back_restore_every_output(rebuilt):
    before = snapshot(rebuilt)
    edit_params(rebuilt, moons_lr(0.02))
    assert ran(sh("dvc", "repro", cwd=rebuilt)) == MOONS_MODEL_STAGES  # the model's stages, no other
    edit_params(rebuilt, moons_lr(0.01))
    result = sh("dvc", "repro", cwd=rebuilt)
    assert ran(result) == set()
    assert restored(result) == MOONS_MODEL_STAGES
    assert snapshot(rebuilt) == before


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
    found = experiments(rebuilt)
    assert found["again"]["metrics"]["metrics/moons.json"] == found["first"]["metrics"]["metrics/moons.json"]
