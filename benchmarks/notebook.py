"""The notebook's two budgets: the Playground's change-to-picture time (<= 1 s for the default moons
on 2 cores) and the whole notebook, top to bottom (<= 120 s).

    python benchmarks/notebook.py [--rounds 5] [--skip-notebook]

1. In this process, as in the notebook's kernel: the Playground at params.yaml's values, warmed by
   one change, then `--rounds` rounds of changes, each control in turn moved off its default and
   back (two changes each): the time `Playground.change` takes from the call to the new PNG (the
   data when the noise moved, 1000 epochs of training, the picture). Needs params.yaml only.
2. The notebook executed by nbclient, as the tests run it, in a copy of the project (its git-tracked
   files) after a cold `dvc repro`: the whole run, and its slowest cells (nbclient's timestamps).

Needs the `notebook` extra. Run from anywhere; the project is this file's.
"""

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stages  # noqa: E402, F401 - the CPU pins, before torch and NumPy load, as in the notebook
from benchmarks.workspace import ROOT, copy_project, sh  # noqa: E402

# Each control moved off its default, one at a time: what a learner tries first.
MOVES = {
    "lr": 0.03,
    "epochs": 1500,
    "hidden": [8, 8],
    "activation": "tanh",
    "features": ["x1", "x2", "x1*x2"],
    "noise": 0.3,
    "l1": 0.001,
}


def playground(rounds: int) -> None:
    from notebooks.playground import Playground  # noqa: PLC0415

    os.chdir(ROOT)
    board = Playground("moons")
    start = time.perf_counter()
    board.change()
    print(f"first change (warm-up, at params.yaml's values): {time.perf_counter() - start:.3f} s")
    defaults = board.defaults()
    times = {control: [] for control in MOVES}
    cpu = {control: [] for control in MOVES}
    for _ in range(rounds):
        for control, value in MOVES.items():
            for moved in (value, defaults[control]):
                before = time.process_time()
                times[control].append(board.change(**{control: moved}).seconds)
                cpu[control].append(time.process_time() - before)
    every, every_cpu = (sum(table.values(), []) for table in (times, cpu))
    print(f"\nPlayground.change, {len(every)} changes ({rounds} rounds of each control off and back)")
    print("wall time from the call to the PNG (Picture.seconds); this process's CPU time (all its threads):")
    for control, seconds in times.items():
        print(
            f"  {control:10} wall median {statistics.median(seconds):.3f} s  max {max(seconds):.3f} s"
            f"   CPU median {statistics.median(cpu[control]):.3f} s"
        )
    print(
        f"  all        wall median {statistics.median(every):.3f} s  max {max(every):.3f} s"
        f"   CPU median {statistics.median(every_cpu):.3f} s  max {max(every_cpu):.3f} s"
    )
    print(f"  wall time at or under 1 s: {sum(t <= 1.0 for t in every)} of {len(every)}")


def notebook() -> None:
    import nbformat  # noqa: PLC0415
    from nbclient import NotebookClient  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as folder:
        repo = copy_project(Path(folder) / "project")
        start = time.perf_counter()
        sh("dvc", "repro", cwd=repo)
        print(f"\ncold dvc repro in the copy: {time.perf_counter() - start:.1f} s")
        notebook = nbformat.read(repo / "notebooks" / "boundary_lab.ipynb", as_version=4)
        start = time.perf_counter()
        client = NotebookClient(
            notebook, timeout=600, resources={"metadata": {"path": str(repo / "notebooks")}}
        )
        client.execute()
        total = time.perf_counter() - start
        print(f"the notebook, top to bottom (kernel start included): {total:.1f} s")
        cells = []
        for index, cell in enumerate(c for c in notebook.cells if c.cell_type == "code"):
            timing = cell.metadata.get("execution", {})
            began, ended = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
            if began and ended:
                seconds = (parse(ended) - parse(began)).total_seconds()
                cells.append((seconds, index, cell.source.splitlines()[0]))
        print("slowest code cells:")
        for seconds, index, first_line in sorted(cells, reverse=True)[:4]:
            print(f"  cell {index:2}: {seconds:5.1f} s  {first_line[:70]}")
        print(
            f"git status after it: {sh('git', 'status', '--porcelain', cwd=repo).stdout.strip() or 'clean'}"
        )


def parse(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-notebook", action="store_true", help="section 1 only")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.1f}")
    playground(args.rounds)
    if not args.skip_notebook:
        notebook()
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
