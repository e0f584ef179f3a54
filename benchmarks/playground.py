"""The TensorFlow Playground lesson, from a real run: docs/playground.md's table.

    python benchmarks/playground.py

Copies the project's git-tracked files (working-tree versions) into a throwaway git + DVC repository,
puts the datasets below into its params.yaml (the checkout's is untouched), runs `dvc repro` of
their evaluate stages (generate, split, train, evaluate), and prints the table: each model's test
accuracy, how many of its weights training left at ~0, and the sum of their magnitudes.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import safetensors.numpy
from workspace import ROOT, CommandFailed, copy_project, edit_params, sh

sys.path.insert(0, str(ROOT))
from stages.functions import FEATURES  # noqa: E402 - the one list of the features, from the checkout

ZERO = 1e-3  # |w| below this counts as a weight L1 switched off

CIRCLES = {"kind": "circles", "n_samples": 1000, "noise": 0.1, "seed": 1}
XOR = {"kind": "xor", "n_samples": 1000, "noise": 0.1, "seed": 1}
SPIRAL = {"kind": "spiral", "n_samples": 1000, "classes": 2, "noise": 0.2, "seed": 1}
SPIRAL_LESSON = "spiral (2 classes), [8, 8] tanh"
# name: (lesson, data, model, train)
LESSONS = {
    "circles_x": ("circles, no hidden layer", CIRCLES, {"hidden": [], "features": ["x1", "x2"]}, {}),
    "circles_sq": ("circles, no hidden layer", CIRCLES, {"hidden": [], "features": ["x1^2", "x2^2"]}, {}),
    "xor_x": ("xor, no hidden layer", XOR, {"hidden": [], "features": ["x1", "x2"]}, {}),
    "xor_prod": ("xor, no hidden layer", XOR, {"hidden": [], "features": ["x1*x2"]}, {}),
    "spiral_l0": (SPIRAL_LESSON, SPIRAL, {"hidden": [8, 8]}, {"l1": 0.0}),
    "spiral_l1": (SPIRAL_LESSON, SPIRAL, {"hidden": [8, 8]}, {"l1": 0.003}),
    "spiral_l1x": (SPIRAL_LESSON, SPIRAL, {"hidden": [8, 8]}, {"l1": 0.03}),
}
EVERY = list(FEATURES)


def lessons(params):
    params["datasets"] = {
        name: {
            "data": data,
            "split": {"test_size": 0.2, "seed": 1},
            "model": {"activation": "tanh", "features": EVERY, **model},
            "train": {"epochs": 1000, "lr": 0.01, "seed": 1, **train},
            "baselines": ["logistic"],  # required by the schema; its stage is not run here
        }
        for name, (_, data, model, train) in LESSONS.items()
    }


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="boundary-playground-") as tmp:
        repo = copy_project(Path(tmp) / "project")
        edit_params(repo, lessons)
        try:
            sh("dvc", "repro", *(f"evaluate@{name}" for name in LESSONS), cwd=repo)
        except CommandFailed as error:
            sys.exit(str(error))
        print("\n".join(table(repo)))


def table(repo) -> list[str]:
    """The table's lines, from each lesson's metrics and checkpoint in `repo` (tests/test_pipeline.py
    runs the same stages in-process and holds docs/playground.md's table to these lines)."""
    lines = ["| dataset, model | features | train.l1 | test accuracy | weights under 1e-3 | sum of abs(w) |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for name, (lesson, _, model, train) in LESSONS.items():
        metrics = json.loads((repo / "metrics" / f"{name}.json").read_text())
        weights = safetensors.numpy.load_file(repo / "models" / f"{name}.safetensors")
        w = np.concatenate([v.ravel() for k, v in weights.items() if k.endswith("weight")])
        features = ", ".join(model["features"]) if "features" in model else f"all {len(EVERY)}"
        zeros = f"{(np.abs(w) < ZERO).sum()} of {w.size}"
        lines.append(
            f"| {lesson} | {features} | {train.get('l1', 0)} "
            f"| {metrics['test']['accuracy']:.3f} | {zeros} | {np.abs(w).sum():.1f} |"
        )
    return lines


if __name__ == "__main__":
    main()
