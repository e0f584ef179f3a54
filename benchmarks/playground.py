"""The TensorFlow Playground lesson, from a real run: docs/playground.md's table.

    python benchmarks/playground.py

Copies the project's git-tracked files (working-tree versions) into a throwaway git + DVC repository,
puts the datasets below into its params.yaml (the checkout's is untouched), runs `dvc repro` of
their evaluate stages (generate, split, train, evaluate), and prints the table: each model's test
accuracy, how many of its weights training left at ~0, and the sum of their magnitudes.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import safetensors.numpy
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = os.environ | {
    "DVC_NO_ANALYTICS": "1",
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
}
ENV |= {
    f"GIT_{who}_{k}": v
    for who in ("AUTHOR", "COMMITTER")
    for k, v in (("NAME", "pg"), ("EMAIL", "pg@invalid"))
}
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
EVERY = ["x1", "x2", "x1^2", "x2^2", "x1*x2", "sin(x1)", "sin(x2)"]


def sh(*cmd, cwd):
    done = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def main():
    with tempfile.TemporaryDirectory(prefix="boundary-playground-") as tmp:
        repo = Path(tmp) / "project"
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True).stdout
        for name in filter(None, files.split("\0")):
            if (ROOT / name).is_file():
                (repo / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, repo / name)
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["datasets"] = {}
        for name, (_, data, model, train) in LESSONS.items():
            params["datasets"][name] = {
                "data": data,
                "split": {"test_size": 0.2, "seed": 1},
                "model": {"activation": "tanh", "features": EVERY, **model},
                "train": {"epochs": 1000, "lr": 0.01, "seed": 1, **train},
            }
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        sh("git", "init", "-q", "-b", "main", cwd=repo)
        sh("dvc", "repro", *(f"evaluate@{name}" for name in LESSONS), cwd=repo)
        print("| dataset, model | features | train.l1 | test accuracy | weights under 1e-3 | sum of abs(w) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, (lesson, _, _, _) in LESSONS.items():
            spec = params["datasets"][name]
            metrics = json.loads((repo / "metrics" / f"{name}.json").read_text())
            weights = safetensors.numpy.load_file(repo / "models" / f"{name}.safetensors")
            w = np.concatenate([v.ravel() for k, v in weights.items() if k.endswith("weight")])
            features = ", ".join(spec["model"]["features"]) if spec["model"]["features"] != EVERY else "all 7"
            zeros = f"{(np.abs(w) < ZERO).sum()} of {w.size}"
            print(
                f"| {lesson} | {features} | {spec['train'].get('l1', 0)} "
                f"| {metrics['test']['accuracy']:.3f} | {zeros} | {np.abs(w).sum():.1f} |"
            )


if __name__ == "__main__":
    main()
