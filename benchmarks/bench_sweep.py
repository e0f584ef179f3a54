"""A sweep of moons (the grid LRS x SEEDS below) on CPUS CPUs, three ways, timed in one run against one
experiment alone.

    python benchmarks/bench_sweep.py [--epochs 1000]

1. DVC's own queue: `dvc exp run --queue -S ... -S ...`, `dvc queue start -j CPUS`, wait until done.
2. The Ray sweep: `python -m sweep -S ... -S ...` (local Ray, origin and DVC remote on this machine).
3. A notebook-style loop: the same models trained, evaluated and plotted in one process by calling
   the stages' main() functions (the work without DVC, git or process start-ups; one core).

and the reference: one point's `dvc exp run`, and its three stages run by hand (their own time). Each
way's time per experiment is its wall time x the CPUs it used / the grid's points; its overhead, that
minus the stages' own time. Every way works in its own copy of one cold-built snapshot of the project
(git-tracked files, working-tree versions), with its own cache and remote, so that every way computes
every point afresh.
"""

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import timed  # this folder is on sys.path when run as a script
from workspace import copy_project, sh, share

LRS, SEEDS, CPUS = "0.005,0.01,0.02,0.04", "1,2", 2
POINTS = len(LRS.split(",")) * len(SEEDS.split(","))  # the grid's experiments
NOTEBOOK = """import sys, time, yaml
sys.path.insert(0, ".")
from stages import evaluate, plot, train
start = time.perf_counter()
for lr in {lrs}:
    for seed in {seeds}:
        params = yaml.safe_load(open("params.yaml"))
        params["datasets"]["moons"]["train"].update(lr=lr, seed=seed, epochs={epochs})
        yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
        for stage in (train, evaluate, plot):
            stage.main("moons")
print(time.perf_counter() - start)
"""


def seconds(*cmd, cwd):
    return timed(*cmd, cwd=cwd).seconds


def snapshot(dest):
    """The project's tracked files in a new repository, cold-built and committed."""
    copy_project(dest)
    sh("dvc", "repro", "-q", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-q", "--allow-empty", "-m", "built", cwd=dest)  # a stale dvc.lock, refreshed
    return dest


def copy(snap, dest):
    shutil.copytree(snap, dest, symlinks=True)
    return dest


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    args = parser.parse_args()
    if importlib.util.find_spec("ray") is None:  # before minutes of the other ways
        sys.exit('error: the sweep needs Ray, the cluster extra: pip install -c constraints.txt ".[cluster]"')
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    grid = ["-S", f"datasets.moons.train.lr={LRS}", "-S", f"datasets.moons.train.seed={SEEDS}"]
    grid += ["-S", f"datasets.moons.train.epochs={args.epochs}"]
    one = [grid[0], grid[1].split(",")[0], grid[2], grid[3].split(",")[0], *grid[4:]]

    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as folder:
        tmp = Path(folder)
        started = time.perf_counter()
        snap = snapshot(tmp / "snapshot")
        print(f"snapshot built in {time.perf_counter() - started:.1f} s", file=sys.stderr)

        # One point alone: `dvc exp run`, then its three stages by hand (same params, their own time).
        alone = copy(snap, tmp / "alone")
        exp_run = seconds("dvc", "exp", "run", *one, cwd=alone)
        stages = {
            s: seconds(sys.executable, "-m", f"stages.{s}", "moons", cwd=alone)
            for s in ("train", "evaluate", "plot")
        }
        stage_time = sum(stages.values())

        queued = copy(snap, tmp / "queue")
        start = time.perf_counter()
        sh("dvc", "exp", "run", "--queue", *grid, cwd=queued)
        sh("dvc", "queue", "start", "-j", str(CPUS), cwd=queued)
        while any(word in sh("dvc", "queue", "status", cwd=queued).stdout for word in ("Queued", "Running")):
            time.sleep(1)
        queue_wall = time.perf_counter() - start
        status = sh("dvc", "queue", "status", cwd=queued).stdout
        sh("dvc", "queue", "stop", "--kill", cwd=queued)
        assert status.count("Success") == POINTS, status

        team = copy(snap, tmp / "ray")
        share(team, tmp, message="team remotes")
        ray_wall = seconds(sys.executable, "-m", "sweep", *grid, "--json", tmp / "sweep.json", cwd=team)
        trials = json.loads((tmp / "sweep.json").read_text())
        assert len(trials) == POINTS and all(t["ok"] for t in trials)

        notebook = copy(snap, tmp / "notebook")
        code = NOTEBOOK.format(lrs=f"[{LRS}]", seeds=f"[{SEEDS}]", epochs=args.epochs)
        notebook_wall = seconds(sys.executable, "-c", code, cwd=notebook)

    print(f"{POINTS}-point sweep of moons ({LRS} lr x {SEEDS} seeds, {args.epochs} epochs), {CPUS} CPUs")
    own = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in stages.items())
    print(f"one experiment: `dvc exp run` {exp_run:.2f} s; its stages' own time {stage_time:.2f} s ({own})")
    print(f"| way | wall | per experiment (wall x CPUs / {POINTS}) | overhead beyond its stages |")
    print("| --- | --- | --- | --- |")
    for way, wall, cpus in (
        (f"dvc exp run --queue + dvc queue start -j {CPUS}", queue_wall, CPUS),
        ("python -m sweep (Ray, local)", ray_wall, CPUS),
        ("notebook loop, one process", notebook_wall, 1),
    ):
        each = wall * cpus / POINTS
        print(f"| {way} | {wall:.1f} s | {each:.2f} s | {each - stage_time:+.2f} s |")
    steps = {step: sum(t["timings"][step] for t in trials) / POINTS for step in trials[0]["timings"]}
    print("Ray trial, mean per step: " + ", ".join(f"{step} {s:.2f} s" for step, s in steps.items()))
    for label, reference in (("`dvc exp run`", exp_run), ("its stages' own time", stage_time)):
        ideal = POINTS * reference / CPUS
        ratio = ray_wall / ideal
        print(f"Ray sweep / ({POINTS} x one experiment's {label} / {CPUS}) = {ray_wall:.1f} / {ideal:.1f} = "
              f"{ratio:.2f}x (target <= 1.3x: {'met' if ratio <= 1.3 else 'not met'})")  # fmt: skip


if __name__ == "__main__":
    main()
