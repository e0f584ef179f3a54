"""Boundary Lab benchmarks: the pipeline against its notebook-style peer, plain PyTorch and itself.

    python benchmarks/bench.py --seed-workflow ../shared/reference/seed_workflow.py [--repeat N] [--scale]
                               [--json PATH]
    python benchmarks/bench.py --playground [--repeat N]   # section 7 only: animation, neuron maps, snapshots

Every figure is the median of --repeat runs, with its ratio to the reference of its section, measured in
the same invocation. The project is snapshotted once (its git-tracked files, working-tree versions, in a new
git repository) and every run works on a fresh copy of that snapshot, so nothing here touches the checkout.
The seed workflow is only ever passed in: without it, the peer row is skipped.
"""

# ruff: noqa: PLC0415 - the workers import torch & co. only in their own process

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
HEAVY = ("torch", "torchmetrics", "sklearn", "matplotlib", "pandas", "scipy")
STAGES = ("generate", "split", "train", "evaluate", "plot", "animate")
DATASETS = ("moons", "spiral")
SCALE = (1_000, 100_000, 1_000_000)
SCALE_TRAIN = dict(epochs=3, batch_size=1024)  # a few mini-batch epochs keep 1e6 points to minutes
GIT_ID = {"NAME": "bench", "EMAIL": "bench@invalid"}
ENV = os.environ | {f"GIT_{who}_{k}": v for who in ("AUTHOR", "COMMITTER") for k, v in GIT_ID.items()}
ENV["DVC_NO_ANALYTICS"] = "1"
ENV["PATH"] = f"{Path(PY).parent}{os.pathsep}{ENV['PATH']}"  # `dvc` and stage `python` from this venv
MODULES = f"import sys; print('HEAVY', ','.join(m for m in {HEAVY} if m in sys.modules))"
EXIT = "import os; sys.stdout.flush(); os._exit(0)"  # as stages/errors.py ends a stage: no teardown


# ----------------------------------------------------------------------------- running things


def sh(*cmd, cwd=None, env=None):
    """Run a command: (wall seconds, peak RSS in MB of it or its largest child, its output)."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=ENV | (env or {}), stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        out = log.read().decode(errors="replace")
    if proc.returncode:
        sys.exit(f"{' '.join(map(str, cmd))} (in {cwd}) exited {proc.returncode}:\n{out[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, out


def worker(cwd, name, *args):
    """Run worker_<name>(*args) below in a fresh interpreter inside `cwd`; returns what it printed as JSON."""
    _, _, out = sh(PY, __file__, "--worker", name, *map(str, args), cwd=cwd)
    return json.loads(out.strip().splitlines()[-1])


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def snapshot(dest):
    """The project's git-tracked files (working-tree versions) committed to a new git repository,
    and which commit of the checkout that was."""
    commit = git("rev-parse", "--short", "HEAD").strip()
    commit += (
        " + uncommitted changes" if git("status", "--porcelain", "-uno", "--", ".", ":!benchmarks") else ""
    )
    for name in filter(None, git("ls-files", "-z").split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        sh("git", *cmd, cwd=dest)
    return dest, commit


def fresh(template, dest):
    """A copy of the snapshot as a clone would have it: no DVC cache, no run-cache, no outputs."""
    shutil.copytree(template, dest, symlinks=True)
    assert not (dest / ".dvc" / "cache").exists() and not (dest / "models" / "moons.safetensors").exists()
    return dest


def set_params(project, update):
    import yaml

    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    update(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def repro(project, *flags):
    seconds, mb, out = sh("dvc", "repro", *flags, cwd=project)
    assert "is cached" not in out, out  # nothing was restored from a run-cache
    return seconds, mb, out.count("Running stage '")


def median(samples):
    return statistics.median(samples)


# ----------------------------------------------------------------------------- workers (in a subprocess)


def worker_train_project(log_every, repeat):
    """stages.train.main itself: 1000 epochs = t(main, 1001 epochs) - t(main, 1 epoch), so reading the
    CSVs, building the model, saving the checkpoint and history cancel out; logging stays in."""
    import yaml

    from stages import train
    from stages.params import parse_params

    raw = yaml.safe_load(Path("params.yaml").read_text())

    def timed(epochs):
        raw["datasets"]["moons"]["train"].update(epochs=epochs, log_every=int(log_every))
        params = parse_params(raw)
        train.load_params = lambda: params
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            train.main("moons")
        return time.perf_counter() - start

    timed(1)  # warm-up: lazy imports (pandas), torch's first calls
    return [timed(1001) - timed(1) for _ in range(int(repeat))]


def worker_train_snapshots(dataset, repeat):
    """stages.train.main of 1000 epochs (t(1001) - t(1), as above), with its snapshots and without
    (snapshot_epochs empty, nothing saved), interleaved, and the seconds the run with them spent in
    taking and saving them: [with, without, in snapshots] for each repeat."""
    import yaml

    from stages import train
    from stages.params import parse_params

    kept, take, save = train.snapshot_epochs, train.weights_now, train.save_snapshots
    spent = [0.0]

    def timing(function):
        def timed(*args):
            start = time.perf_counter()
            result = function(*args)
            spent[0] += time.perf_counter() - start
            return result

        return timed

    def timed(epochs, snapshots):
        train.weights_now, train.save_snapshots = timing(take), timing(save)
        if not snapshots:
            train.snapshot_epochs, train.save_snapshots = (lambda e: set()), (lambda *args: None)
        else:
            train.snapshot_epochs = kept
        spent[0] = 0.0
        raw = yaml.safe_load(Path("params.yaml").read_text())
        raw["datasets"][dataset]["train"]["epochs"] = epochs
        train.load_params = lambda: parse_params(raw)
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            train.main(dataset)
        return time.perf_counter() - start

    timed(1, True)  # warm-up
    runs = []
    for _ in range(int(repeat)):
        with_ = timed(1001, True)
        in_snapshots = spent[0]
        with_ -= timed(1, True)
        runs.append([with_, timed(1001, False) - timed(1, False), in_snapshots])
    return runs


def worker_plot_neurons(dataset, repeat):
    """stages.plot.main in-process, with neurons.png and without (neurons() returning no bytes)."""
    from stages import plot

    drawn = plot.neurons

    def timed(neurons):
        plot.neurons = drawn if neurons else (lambda *args: b"")
        start = time.perf_counter()
        plot.main(dataset)
        return time.perf_counter() - start

    timed(True)  # warm-up: matplotlib's fonts, caches
    return [[timed(True), timed(False)] for _ in range(int(repeat))]


def worker_train_plain(threads, repeat):
    """The minimal loop: nn.Sequential, BCEWithLogitsLoss, Adam (defaults but lr), full batch."""
    import numpy as np
    import torch
    import yaml
    from torch import nn

    if threads != "default":
        torch.set_num_threads(int(threads))
    moons = yaml.safe_load(Path("params.yaml").read_text())["datasets"]["moons"]
    table = np.loadtxt("data/moons/train.csv", delimiter=",", skiprows=1)
    x = torch.tensor(table[:, :2], dtype=torch.float32)
    y = torch.tensor(table[:, 2:], dtype=torch.float32)

    def timed(epochs):
        torch.manual_seed(0)
        layers, width = [], 2
        for size in moons["model"]["hidden"]:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        model = nn.Sequential(*layers, nn.Linear(width, 1))
        loss_fn = nn.BCEWithLogitsLoss()
        optimizer = torch.optim.Adam(model.parameters(), lr=moons["train"]["lr"])
        start = time.perf_counter()
        for _ in range(epochs):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    timed(20)  # warm-up
    return [timed(1000) for _ in range(int(repeat))] + [torch.get_num_threads(), len(x)]


def worker_io(n, repeat):
    """Rows/s of the project's own CSV writer and validating reader, at n rows (pandas imported first)."""
    import numpy as np

    from stages.files import read_points, write_points

    rng = np.random.default_rng(0)
    points, labels = rng.normal(size=(int(n), 2)), rng.integers(0, 2, int(n))
    write_points("warm.csv", points[:10], labels[:10])
    read_points("warm.csv", 2)
    writes, reads = [], []
    for _ in range(int(repeat)):
        start = time.perf_counter()
        write_points("io.csv", points, labels)
        writes.append(time.perf_counter() - start)
        start = time.perf_counter()
        read_points("io.csv", 2)
        reads.append(time.perf_counter() - start)
    return [int(n) / median(writes), int(n) / median(reads), Path("io.csv").stat().st_size / 2**20]


# ----------------------------------------------------------------------------- the benchmark


def bench(args, tmp):
    rows = []

    def row(section, name, samples, ref=None, note="", unit="s"):
        """A table row: the median of `samples` (seconds, or sh()'s (seconds, MB, ...)) and its ratio."""
        times = [s[0] if isinstance(s, tuple) else s for s in samples]
        mb = max((s[1] for s in samples if isinstance(s, tuple)), default=None)
        value = median(times)
        ratio = value / ref if ref else None
        rows.append(dict(section=section, name=name, value=value, unit=unit, peak_mb=mb, ratio=ratio,
                         note=note, samples=times))  # fmt: skip
        return value

    template, commit = snapshot(tmp / "template")
    copies = iter(range(10**6))

    def new():
        return fresh(template, tmp / f"run{next(copies)}")

    seed = Path(args.seed_workflow).resolve() if args.seed_workflow else None
    if seed and not seed.is_file():
        print(f"note: {seed} not found; the peer row is skipped", file=sys.stderr)
        seed = None

    # 1. cold runs, interleaved with the peer's so that other users' load hits both alike
    clone_runs, forced, peer, peer1 = [], [], [], []
    for i in range(args.repeat):
        clone_runs.append(repro(new(), "--no-run-cache"))
        project = new()
        forced.append(repro(project, "--force", "--no-run-cache"))
        if seed:
            peer.append(sh(PY, seed, tmp / f"peer{i}"))
            peer1.append(sh(PY, seed, tmp / f"peer1-{i}", env={"OMP_NUM_THREADS": "1"}))
        print(f"cold run {i + 1}/{args.repeat}: {forced[-1][0]:.1f} s", file=sys.stderr)
    section = "1. cold dvc repro in a fresh clone (ratio: / peer)"
    ref = median([s for s, *_ in peer]) if peer else None
    every = len(STAGES) * len(DATASETS)
    ran_ = clone_runs[-1][2]
    skipped = "; the rest skipped: committed outputs match dvc.lock" if ran_ < every else ""
    row(section, "dvc repro --no-run-cache", clone_runs, ref, f"{ran_}/{every} stages ran{skipped}")
    cold = row(section, "dvc repro --force --no-run-cache", forced, ref,
               f"{forced[-1][2]}/{every} stages ran: the peer's work and more")  # fmt: skip
    if peer:
        row(
            section,
            f"python {seed.name} OUT (ref)",
            peer,
            ref,
            "the notebook-style peer, torch's own threads",
        )
        row(section, "  the same, OMP_NUM_THREADS=1", peer1, ref, "the peer on one torch thread")

    # 2. the training loop, on its own copy: main() overwrites the checkpoint and the curves
    section = "2. training loop, 1000 full-batch epochs, moons (ratio: / plain)"
    trainer = new()
    for stage in ("generate", "split"):
        sh(PY, "-m", f"stages.{stage}", "moons", cwd=trainer)
    project_times = worker(trainer, "train_project", 10, args.repeat)
    quiet_times = worker(trainer, "train_project", 10**6, args.repeat)
    *plain, threads, n_points = worker(trainer, "train_plain", "default", args.repeat)
    *plain1, _, _ = worker(trainer, "train_plain", 1, args.repeat)
    ref = median(plain)
    one = median(plain1)
    for name, times, note in (
        ("project: stages.train.main", project_times, "in-process, t(1001 ep) - t(1 ep); 100 evaluations"),
        ("project, log_every 1e6", quiet_times, "10 of those 100 evaluations left"),
    ):
        row(section, name, times, ref, f"{note}; 1 thread: {median(times) / one:.2f}x the 1-thread loop")
    row(section, f"plain PyTorch loop (ref), {threads} threads", plain, ref,
        f"{n_points} points, torch.optim.Adam defaults (per-tensor on CPU), no evaluation")  # fmt: skip
    row(section, "plain PyTorch loop, 1 thread", plain1, ref)

    # 3. incremental runs, on the last forced-cold project
    section = "3. incremental dvc repro (ratio: / cold --force)"
    changed, noop, original = [], [], (project / "params.yaml").read_text()
    for i in range(args.repeat):
        set_params(project, lambda p, r=201 + i: p["plot"].update(resolution=r))
        changed.append(repro(project))
        noop.append(repro(project))
    (project / "params.yaml").write_text(original)
    row(section, "plot.resolution changed", changed, cold, f"{changed[-1][2]} stages ran (plot@*)")
    row(section, "no-op", noop, cold, f"{noop[-1][2]} stages ran: dvc's own start-up and checks")

    # 4. start-up (at least 3 runs: 4b divides by it): a bare interpreter, torch, each stage module
    section = "4. start-up: python -c 'import ...' (ratio: / bare python)"
    imports = {"bare python (ref)": "pass", "import torch": "import torch"}
    imports |= {f"import stages.{s}": f"import stages.{s}" for s in STAGES}
    repeat = max(3, args.repeat)
    runs = {name: [sh(PY, "-c", f"{code}; {MODULES}; {EXIT}", cwd=project) for _ in range(repeat)]
            for name, code in imports.items()}  # fmt: skip
    ref = median([s for s, *_ in runs["bare python (ref)"]])
    startup = {name: row(section, name, samples, ref, f"loads {loaded(samples)}")
               for name, samples in runs.items()}  # fmt: skip

    section = "4b. stage commands, default params, no DVC (ratio: / cold --force)"
    total = 0.0
    for stage in STAGES:
        for dataset in DATASETS:
            samples = [sh(PY, "-m", f"stages.{stage}", dataset, cwd=project) for _ in range(args.repeat)]
            value = median([s for s, *_ in samples])
            note = f"import {startup[f'import stages.{stage}'] / value:.0%}"
            total += row(section, f"python -m stages.{stage} {dataset}", samples, cold, note)
    commands = f"sum of the {len(STAGES) * len(DATASETS)} stage commands"
    row(section, commands, [total], cold, f"cold run less this: {cold - total:+.1f} s")

    # 6. computed once: a revisit restored from the run-cache, and a teammate's clone of a pushed project
    section = "6. computed once, restored after (ratio: / recomputing the same)"
    restore, recompute = [], []
    set_params(project, lambda p: p["datasets"]["moons"]["train"].update(lr=0.02))
    sh("dvc", "repro", cwd=project)  # computes lr 0.02 once: from now on both params sets are known
    for _ in range(args.repeat):
        for lr, flags, samples in ((0.01, (), restore), (0.02, ("--no-run-cache",), recompute)):
            set_params(project, lambda p, lr=lr: p["datasets"]["moons"]["train"].update(lr=lr))
            seconds, mb, out = sh("dvc", "repro", *flags, cwd=project)
            samples.append((seconds, mb, out.count("Running stage '"), out.count("is cached")))
    recomputed = median([s for s, *_ in recompute])
    row(section, "revisit lr 0.01, restored", restore, recomputed,
        f"{restore[-1][2]} stages ran, {restore[-1][3]} restored from the run-cache")  # fmt: skip
    row(section, "revisit lr 0.02, --no-run-cache (ref)", recompute, recomputed,
        f"{recompute[-1][2]} stages ran: train, evaluate, plot of moons")  # fmt: skip

    section = "6b. a teammate: git clone + dvc pull --run-cache + dvc repro (ratio: / cold, fresh clone)"
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import share  # the tests' team set-up: a bare origin and a local DVC remote

    origin = share(project, tmp, message="computed")
    teammate = []
    for i in range(args.repeat):
        clone = tmp / f"teammate{i}"
        steps = [sh("git", "clone", "-q", origin, clone), sh("dvc", "pull", "--run-cache", cwd=clone)]
        steps.append(sh("dvc", "repro", cwd=clone))
        teammate.append((sum(s for s, *_ in steps), max(mb for _, mb, _ in steps), *(s for s, *_ in steps),
                         steps[-1][2].count("Running stage '")))  # fmt: skip
    cold_clone = median([s for s, *_ in clone_runs])
    row(
        section,
        "clone + pull + repro",
        teammate,
        cold_clone,
        "git clone {:.1f} s, dvc pull {:.1f} s, dvc repro {:.1f} s: {} stages ran".format(*teammate[-1][2:]),
    )
    row(section, "cold dvc repro --no-run-cache in a fresh clone (ref)", clone_runs, cold_clone)

    playground(args, project, row)

    # 5. scale: each stage of moons at 1e3, 1e5, 1e6 points
    if args.scale:
        batch = "batch_size" in (template / "stages" / "params.py").read_text()
        train = SCALE_TRAIN if batch else {"epochs": SCALE_TRAIN["epochs"]}
        section = f"5. scale, moons, train {train}, fresh sample 1e5 (ratio: / n=1e3)"
        small = {}
        for n in SCALE:
            scaled = new()

            def update(p, n=n):
                p["datasets"]["moons"]["data"]["n_samples"] = n
                p["datasets"]["moons"]["train"].update(train)

            set_params(scaled, update)
            for stage in STAGES:
                samples = [sh(PY, "-m", f"stages.{stage}", "moons", cwd=scaled) for _ in range(args.repeat)]
                value = median([s for s, *_ in samples])
                small.setdefault(stage, value)
                extra = value - small[stage]  # the cost the points add, over the fixed start-up at n=1e3
                note = (
                    f"{extra:+.2f} s over n=1e3, {1e6 * extra / (n - SCALE[0]):.2f} us/point" if extra else ""
                )
                row(section, f"n={n:.0e} {stage}", samples, small[stage], note)
            write, read, size = worker(scaled, "io", n, args.repeat)
            small.setdefault("write", write)
            small.setdefault("read", read)
            row(section, f"n={n:.0e} write all.csv", [write], small["write"],
                f"{size:.1f} MB, stages.files.write_points", unit="rows/s")  # fmt: skip
            row(section, f"n={n:.0e} read all.csv", [read], small["read"],
                "stages.files.read_points", unit="rows/s")  # fmt: skip
            shutil.rmtree(scaled)
    return commit, rows


def playground(args, project, row):
    """7. What issue 16 added, on a project built with default params: the animation's cost and size, the
    neuron maps' cost, training with snapshots against without."""
    section = "7. boundary over training, neuron maps, snapshots (budgets: 5 s, 3 MB, 1 s, 5%)"
    for dataset in DATASETS:
        samples = [sh(PY, "-m", "stages.animate", dataset, cwd=project) for _ in range(args.repeat)]
        animation = project / "plots" / dataset / "boundary_training.png"
        size = animation.stat().st_size / 2**20
        row(section, f"python -m stages.animate {dataset}", samples, 5.0,
            f"{size:.2f} MB ({size / 3:.0%} of 3 MB); ratio: / the 5 s budget")  # fmt: skip
    for dataset in DATASETS:
        pairs = worker(project, "plot_neurons", dataset, args.repeat)
        added = [with_ - without for with_, without in pairs]
        row(section, f"neurons.png, {dataset} (in-process plot.main, with - without)", added, 1.0,
            f"plot.main {median([p[0] for p in pairs]):.2f} s with, {median([p[1] for p in pairs]):.2f} s "
            "without; ratio: / the 1 s budget")  # fmt: skip
    for dataset in DATASETS:
        pairs = worker(project, "train_snapshots", dataset, args.repeat)
        ratio = median([with_ / without for with_, without, _ in pairs])
        without = median([p[1] for p in pairs])
        share = median([spent / with_ for with_, _, spent in pairs])
        note = f"taking + saving them {share:.1%} of the run; paired ratio {ratio - 1:+.1%}; ratio: / without"
        row(section, f"train {dataset}, 1000 epochs, with snapshots", [p[0] for p in pairs], without, note)


def playground_only(args, tmp):
    """Section 7 alone (--playground): a fresh copy built once with dvc repro, then the figures."""
    rows = []

    def row(section, name, samples, ref=None, note="", unit="s"):
        value = median(samples if not isinstance(samples[0], tuple) else [s[0] for s in samples])
        rows.append(dict(section=section, name=name, value=value, unit=unit, peak_mb=None,
                         ratio=value / ref if ref else None, note=note, samples=[]))  # fmt: skip

    template, commit = snapshot(tmp / "template")
    project = fresh(template, tmp / "run")
    repro(project, "--no-run-cache")
    playground(args, project, row)
    return commit, rows


def loaded(samples):
    """The heavy libraries that the MODULES snippet found in sys.modules."""
    return samples[-1][2].split("HEAVY ")[-1].strip() or "-"


def show(rows):
    width = max(len(r["name"]) for r in rows) + 2
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            print(f"\n{section}\n  {'':<{width}}{'median':>14}{'peak':>10}{'ratio':>9}   note")
        value = f"{r['value']:,.0f} {r['unit']}" if r["unit"] == "rows/s" else f"{r['value']:.3f} {r['unit']}"
        mb = f"{r['peak_mb']:.0f} MB" if r["peak_mb"] else ""
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else ""
        print(f"  {r['name']:<{width}}{value:>14}{mb:>10}{ratio:>9}   {r['note']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-workflow", help="the notebook-style peer script (row skipped without it)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; medians are reported")
    parser.add_argument("--scale", action="store_true", help="also time each stage at 1e3, 1e5, 1e6 points")
    parser.add_argument("--json", help="also write the rows, with every sample, to this file")
    parser.add_argument(
        "--playground", action="store_true", help="only section 7 (animation, neurons, snapshots)"
    )
    args = parser.parse_args()
    start, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="boundary-bench-") as tmp:
        ENV["DVC_SITE_CACHE_DIR"] = str(Path(tmp) / "dvc-site")  # no state shared with other runs
        commit, rows = (playground_only if args.playground else bench)(args, Path(tmp))
    print(
        f"Boundary Lab benchmark of {commit}: --repeat {args.repeat}, {os.cpu_count()} CPUs, "
        f"load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end, "
        f"{time.perf_counter() - start:.0f} s"
    )
    show(rows)
    if args.json:
        Path(args.json).write_text(
            json.dumps(dict(args=vars(args), commit=commit, rows=rows), indent=2) + "\n"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        sys.path.insert(0, os.getcwd())  # the project copy's `stages`, not the checkout's
        print(json.dumps(globals()[f"worker_{sys.argv[2]}"](*sys.argv[3:])))
    else:
        main()
