"""End to end: `dvc repro` for real in a throwaway git repository (fixtures in conftest.py)."""

import importlib
import json
import math
import sys

import numpy as np
import pytest
import yaml
from conftest import (
    DATASETS,
    HEAVY,
    MOONS_MODEL_STAGES,
    ROOT,
    STAGES,
    edit_params,
    lock_outs,
    output_md5s,
    ran,
    sh,
)
from PIL import Image

from stages.checkpoint import read_checkpoint, read_snapshots

pytestmark = pytest.mark.e2e


def test_every_output_exists(built):
    for name in DATASETS:
        for split in ("all", "fresh", "train", "test"):
            header = (built / "data" / name / f"{split}.csv").read_text().splitlines()[0]
            assert header == "x1,x2,label"
        assert (built / "models" / f"{name}.safetensors").stat().st_size > 0
        assert (built / "models" / f"{name}.snapshots.safetensors").stat().st_size > 0
        for curve in ("loss", "accuracy"):
            rows = (built / "plots" / curve / f"{name}.csv").read_text().splitlines()
            assert rows[0] == "epoch,train,test"
            assert rows[1].startswith("0,") and rows[-1].startswith("1000,")
        for image in ("boundary_train", "boundary_test", "neurons", "boundary_training"):
            assert (built / "plots" / name / f"{image}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # The metrics, predictions and ROC curve, value for value: tests/test_evaluate.py.


def test_split_sizes_follow_params(built):
    params = yaml.safe_load((built / "params.yaml").read_text())
    for name in DATASETS:
        n = params["datasets"][name]["data"]["n_samples"]
        rows = {
            split: len((built / "data" / name / f"{split}.csv").read_text().splitlines()) - 1
            for split in ("all", "train", "test")
        }
        assert rows["all"] == n
        assert rows["train"] + rows["test"] == n
        assert rows["test"] == math.ceil(params["datasets"][name]["split"]["test_size"] * n)


@pytest.mark.parametrize(("name", "target"), [("moons", 0.96), ("spiral", 0.95)])
def test_accuracy_targets(built, name, target):
    metrics = json.loads((built / "metrics" / f"{name}.json").read_text())
    assert metrics["test"]["accuracy"] >= target
    assert metrics["generalization"]["accuracy"] >= target


def test_a_fresh_run_reproduces_the_committed_lock(built):
    """Same params and code, same bytes: the cold run's hashes are those committed in dvc.lock."""
    assert lock_outs(built) == lock_outs(ROOT)


def test_the_readme_shows_the_committed_results(built):
    """The README's pictures (copies in docs/, for code hosts) and results table are the pipeline's."""
    readme = (ROOT / "README.md").read_text()
    for name in DATASETS:
        picture = f"docs/{name}_boundary_test.png"
        assert f"]({picture})" in readme
        assert (ROOT / picture).read_bytes() == (built / "plots" / name / "boundary_test.png").read_bytes()
        metrics = json.loads((built / "metrics" / f"{name}.json").read_text())
        test, fresh = metrics["test"], metrics["generalization"]
        row = (
            f"| {test['accuracy']:.4g} | {test['f1']:.4g} | {fresh['accuracy']:.4f} ± {fresh['stderr']:.4f} |"
        )
        assert row in readme, row


def test_the_playground_page_shows_the_committed_outputs(built):
    """docs/playground.md's pictures are the pipeline's."""
    page = (ROOT / "docs" / "playground.md").read_text()
    for picture, output in [
        ("moons_boundary_training.png", "moons/boundary_training.png"),
        ("spiral_neurons.png", "spiral/neurons.png"),
    ]:
        assert f"]({picture})" in page
        assert (ROOT / "docs" / picture).read_bytes() == (built / "plots" / output).read_bytes(), picture


def test_the_playground_tables_are_what_its_script_prints(project, monkeypatch, capsys):
    """docs/playground.md's table is what `python benchmarks/playground.py` prints, row for row, and
    the README's is the same rows less the last column (and the lesson's model named shorter).

    The script's own params and table, its stages run in this process rather than by `dvc repro`
    (a quarter of the time: the same code on the same params writes the same bytes)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    playground = importlib.import_module("playground")
    edit_params(project, playground.lessons)
    monkeypatch.chdir(project)
    stages = [importlib.import_module(f"stages.{s}") for s in ("generate", "split", "train", "evaluate")]
    for name in playground.LESSONS:
        for stage in stages:
            stage.main(name)
    capsys.readouterr()  # training's progress lines
    printed = playground.table(project)
    page = (ROOT / "docs" / "playground.md").read_text()
    assert "```bash\npython benchmarks/playground.py\n```" in page
    start = page.index(printed[0] + "\n")
    assert page[start:].splitlines()[: len(printed)] == printed

    def cells(row, first, last):
        return [cell.strip() for cell in row.strip().strip("|").split("|")][first:last]

    readme = (ROOT / "README.md").read_text()
    start = readme.index("(`python benchmarks/playground.py`")
    rows = [line for line in readme[start:].split("\n\n")[1].splitlines()][2:]
    assert [cells(row, 1, None) for row in rows] == [cells(row, 1, -1) for row in printed[2:]]


def test_second_repro_runs_nothing(rebuilt):
    result = sh("dvc", "repro", cwd=rebuilt)
    assert ran(result) == set()
    assert sh("dvc", "status", cwd=rebuilt).stdout.strip() == "Data and pipelines are up to date."


def test_forced_rerun_reproduces_every_hash(rebuilt):
    """Every stage of one dataset run again in the same place writes the same bytes (the other's are
    held to the committed lock by each worker's cold run, test_a_fresh_run_reproduces_...)."""
    before = output_md5s(rebuilt)
    result = sh("dvc", "repro", "--force", "--no-run-cache", "--glob", "*@moons", cwd=rebuilt)
    assert ran(result) == {f"{stage}@moons" for stage in STAGES}
    assert output_md5s(rebuilt) == before


def test_plot_change_reruns_plots_only(rebuilt):
    edit_params(rebuilt, lambda p: p["plot"].update(resolution=120))
    assert ran(sh("dvc", "repro", cwd=rebuilt)) == {
        f"{stage}@{name}" for stage in ("plot", "baselines") for name in DATASETS
    }


def test_frame_grid_change_reruns_the_animations_only(rebuilt):
    edit_params(rebuilt, lambda p: p["plot"].update(frame_resolution=60))
    assert ran(sh("dvc", "repro", cwd=rebuilt)) == {f"animate@{name}" for name in DATASETS}
    with Image.open(rebuilt / "plots" / "moons" / "boundary_training.png") as smaller:
        assert smaller.n_frames == 40  # the same frames, each model sampled on 60 x 60 points


def test_frame_count_change_reruns_the_animations_only(rebuilt):
    edit_params(rebuilt, lambda p: p["plot"].update(frames=12))
    assert ran(sh("dvc", "repro", cwd=rebuilt)) == {f"animate@{name}" for name in DATASETS}
    for name in DATASETS:
        with Image.open(rebuilt / "plots" / name / "boundary_training.png") as image:
            assert image.n_frames == 12


def test_animation_holds_the_untrained_and_the_final_model(built):
    """Its first frame is epoch 0 and its last the checkpoint's: the snapshots at both ends."""
    for name in DATASETS:
        snapshots = read_snapshots(built / "models" / f"{name}.snapshots.safetensors")
        final = read_checkpoint(built / "models" / f"{name}.safetensors")
        assert snapshots.epochs[0] == 0 and snapshots.epochs[-1] == 1000
        assert all(np.array_equal(snapshots[-1].weights[k], v) for k, v in final.weights.items())
        with Image.open(built / "plots" / name / "boundary_training.png") as image:
            assert image.n_frames == 40 and image.info["loop"] == 0


@pytest.mark.parametrize("stage", ["evaluate", "plot", "animate"])
def test_a_stage_run_by_hand_after_a_features_edit_refuses_the_stale_checkpoint(rebuilt, stage):
    edit_params(rebuilt, lambda p: p["datasets"]["moons"]["model"].update(features=["x1^2", "x2^2"]))
    result = sh(sys.executable, "-m", f"stages.{stage}", "moons", cwd=rebuilt, check=False)
    file = "models/moons.snapshots.safetensors" if stage == "animate" else "models/moons.safetensors"
    assert result.returncode != 0
    assert result.stderr == (
        f"error: {file}: trained with features [x1, x2], but params.yaml has "
        "datasets.moons.model.features = [x1^2, x2^2]; retrain it (`dvc repro`)\n"
    )


def test_data_change_reruns_that_dataset_only(rebuilt):
    edit_params(rebuilt, lambda p: p["datasets"]["spiral"]["data"].update(noise=0.25))
    assert ran(sh("dvc", "repro", cwd=rebuilt)) == {f"{stage}@spiral" for stage in STAGES}


def test_shared_module_change_reruns_its_importers(rebuilt):
    """stages/drawing.py is imported by the three stages that draw a boundary, and by no other."""
    path = rebuilt / "stages" / "drawing.py"
    path.write_text(path.read_text() + "\n# a comment changes the file's hash\n")
    assert ran(sh("dvc", "repro", "--dry", cwd=rebuilt)) == {
        f"{stage}@{name}" for stage in ("plot", "animate", "baselines") for name in DATASETS
    }


def test_new_dataset_is_one_params_entry(rebuilt):
    def add_blobs(params):
        params["datasets"]["blobs"] = {
            "data": {"kind": "blobs", "n_samples": 300, "classes": 4, "noise": 0.3, "seed": 1},
            "split": {"test_size": 0.2, "seed": 1},
            "model": {"hidden": [8], "activation": "tanh", "features": ["x1", "x2", "x1*x2"]},
            "train": {"epochs": 50, "lr": 0.05, "seed": 1, "l1": 0.001},
            "baselines": ["logistic", "forest"],
        }

    edit_params(rebuilt, add_blobs)
    assert ran(sh("dvc", "repro", cwd=rebuilt)) == {f"{stage}@blobs" for stage in STAGES}
    metrics = json.loads((rebuilt / "metrics" / "blobs.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8

    # Its charts too, with dvc.yaml untouched: every dataset's nine, each drawn once.
    shown = json.loads(sh("dvc", "plots", "show", "--json", cwd=rebuilt).stdout)["data"]
    assert {path: len(charts) for path, charts in shown.items()} == {
        path: 1 for name in (*DATASETS, "blobs") for path in chart_files(name)
    }
    assert shown["plots/blobs/boundary_test.png"][0]["type"] == "image"
    assert shown["plots/blobs/boundary_training.png"][0]["type"] == "image"
    with Image.open(rebuilt / "plots" / "blobs" / "boundary_training.png") as image:
        assert image.n_frames == 40  # of the 51 snapshots of 50 epochs: epoch 0 and every epoch
    curves = shown["plots/loss/blobs.csv"][0]["content"]
    assert curves["encoding"]["strokeDash"]["scale"]["domain"] == ["test", "train"]  # two lines a chart


def chart_files(name):
    return [
        f"plots/loss/{name}.csv",
        f"plots/accuracy/{name}.csv",
        f"plots/{name}/predictions.csv",
        f"plots/{name}/roc.csv",
        f"plots/{name}/boundary_train.png",
        f"plots/{name}/boundary_test.png",
        f"plots/{name}/neurons.png",
        f"plots/{name}/boundary_training.png",
        f"plots/{name}/baselines.png",
    ]


# The stage's main() in-process (its runner would end the process at once), then the modules it loaded.
RUN_AND_LIST_IMPORTS = """
import importlib, sys
importlib.import_module(STAGE).main(sys.argv[1])
print(" ".join(sorted(set(sys.modules) & set(HEAVY))))
"""


@pytest.mark.parametrize(
    ("stage", "name", "allowed"),
    [
        ("generate", "moons", {"sklearn", "scipy", "pandas"}),  # make_moons and what sklearn.datasets loads
        ("generate", "spiral", set()),
        ("split", "moons", set()),
        ("train", "moons", {"torch"}),
        ("evaluate", "moons", {"torch", "torchmetrics", "scipy", "matplotlib"}),  # torchmetrics' own
        ("plot", "moons", {"matplotlib"}),  # the model runs in NumPy (stages/checkpoint.py)
        ("animate", "moons", {"matplotlib"}),
        # scikit-learn's own imports: scipy, and pandas where it is installed; no torch
        ("baselines", "moons", {"sklearn", "scipy", "pandas", "matplotlib"}),
    ],
)
def test_stage_imports_only_what_it_uses(rebuilt, stage, name, allowed):
    code = RUN_AND_LIST_IMPORTS.replace("STAGE", repr(f"stages.{stage}")).replace("HEAVY", repr(HEAVY))
    result = sh(sys.executable, "-c", code, name, cwd=rebuilt)
    assert set(result.stdout.split()) <= allowed


def test_mini_batch_training_is_seeded(rebuilt):
    edit_params(rebuilt, lambda p: p["datasets"]["moons"]["train"].update(batch_size=100, epochs=30))
    assert ran(sh("dvc", "repro", cwd=rebuilt)) == MOONS_MODEL_STAGES
    first = lock_outs(rebuilt)
    history = (rebuilt / "plots" / "loss" / "moons.csv").read_text().splitlines()
    assert history[-1].startswith("30,")
    sh("dvc", "repro", "--force", "--no-run-cache", "train@moons", cwd=rebuilt)
    assert lock_outs(rebuilt) == first
