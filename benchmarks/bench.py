"""Boundary Lab benchmarks: the pipeline against its notebook-style peer, plain PyTorch and itself.

    python benchmarks/bench.py [--project DIR] [--seed-workflow PEER.py] [--repeat N] [--scale] [--json PATH]
    python benchmarks/bench.py --stages-only [--project DIR]... [--repeat N]   # section 4 only
    python benchmarks/bench.py --playground [--project DIR] [--repeat N]       # section 7 only
    python benchmarks/bench.py --scale-only [--project DIR] [--repeat N]       # section 8 only

The sections, in the order they run, each figure with its ratio to its section's reference: 1. a forced
`dvc repro`: every stage in its own process, a first run (no warm worker alive) and with the worker warm
(/ the notebook-style peer, --seed-workflow); 2. the training loop (/ a plain PyTorch loop); 3. a
learner's `dvc exp run -S`, the worker on and off (/ the same stages in one warm process); 4. each
stage in its own process, and its import alone (with several --project, / the same of the first: they
run in turn); 5. a revisit restored from the run-cache (/ recomputing it); 6. a teammate's clone, pull
and repro (/ a first run); 7. the animation, neuron maps and snapshots (/ their budgets); 8. with
--scale, each stage of moons at 1e3 to 1e6 points, its time per point above its start-up, and its peak
memory above its imports against stages/memory.py's estimate.

Every figure is the median of --repeat runs. The checkout benchmarked (--project, by default this one;
an older commit's worktree works too: `git worktree add /tmp/old 12b9474`) is snapshotted once: its
git-tracked files, working-tree versions, in a new git repository; every run works on a fresh copy of
that snapshot, so nothing here touches the checkout. The seed workflow is only ever passed in.
"""

# ruff: noqa: PLC0415 - the workers import torch & co. only in their own process

import argparse
import contextlib
import io
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import workspace
import yaml
from workspace import HEAVY, ROOT, CommandFailed, copy_project, edit_params, own_stage_workers, sh, share

PY = sys.executable
SCALE = (1_000, 100_000, 1_000_000)
SCALE_TRAIN = dict(epochs=3, batch_size=1024)  # a few mini-batch epochs keep 1e6 points to minutes
MODULES = f"import sys; print('HEAVY', ','.join(m for m in {HEAVY} if m in sys.modules))"
EXIT = "import os; sys.stdout.flush(); os._exit(0)"  # as stages/errors.py ends a stage: no teardown


# ----------------------------------------------------------------------------- running things


@dataclass
class Run:
    """A command that ran to its end."""

    seconds: float  # wall time
    peak_mb: float  # peak RSS of it or of its largest child
    output: str  # stdout and stderr

    @property
    def ran(self):
        """How many stages a `dvc` command ran, and restored from the run-cache."""
        return len(workspace.ran(self.output))

    @property
    def restored(self):
        return len(workspace.restored(self.output))


def timed(*cmd, cwd=None, env=None) -> Run:
    """Run a command and time it; one that fails ends the benchmark with its output."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        process = subprocess.Popen(
            cmd, cwd=cwd, env=os.environ | (env or {}), stdout=log, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        log.seek(0)
        output = log.read().decode(errors="replace")
    if code := os.waitstatus_to_exitcode(status):
        sys.exit(f"{' '.join(map(str, cmd))} (in {cwd}) exited {code}:\n{output[-3000:]}")
    return Run(seconds, usage.ru_maxrss / 1024, output)


def worker(cwd, name, *args):
    """worker_<name>(*args) below, run in a fresh interpreter inside `cwd`: what it printed, as JSON."""
    return json.loads(timed(PY, __file__, "--worker", name, *map(str, args), cwd=cwd).output.splitlines()[-1])


@dataclass
class Snapshot:
    """A checkout's git-tracked files committed to a new repository, and fresh copies of it."""

    template: Path
    label: str  # the checkout's commit, and whether it had uncommitted changes
    copies: itertools.count

    @classmethod
    def of(cls, checkout: Path, tmp: Path):
        changes = sh("git", "status", "--porcelain", "-uno", "--", ".", ":!benchmarks", cwd=checkout).stdout
        label = sh("git", "rev-parse", "--short", "HEAD", cwd=checkout).stdout.strip()
        template = copy_project(Path(tempfile.mkdtemp(prefix="snapshot-", dir=tmp)), checkout)
        return cls(template, label + (" + uncommitted changes" if changes else ""), itertools.count())

    def fresh(self) -> Path:
        """A copy as a clone would have it: no DVC cache, no run-cache, no outputs."""
        return Path(shutil.copytree(self.template, f"{self.template}-{next(self.copies)}", symlinks=True))

    def stages_and_datasets(self):
        """The stages of its dvc.yaml and the datasets of its params.yaml, in their order."""
        stages = yaml.safe_load((self.template / "dvc.yaml").read_text())["stages"]
        return list(stages), list(yaml.safe_load((self.template / "params.yaml").read_text())["datasets"])


def repro(project, *flags, env=None) -> Run:
    run = timed("dvc", "repro", *flags, cwd=project, env=env)
    assert not run.restored, run.output
    return run


def median(samples):
    return statistics.median(s.seconds if isinstance(s, Run) else s for s in samples)


@dataclass
class Row:
    section: str
    name: str
    value: float  # the median of the samples
    unit: str
    peak_mb: float | None
    ratio: float | None  # value / the section's reference
    note: str
    samples: list[float]


class Report:
    """The figures, a row each, under the section that is running."""

    def __init__(self):
        self.rows, self.section = [], None

    def row(self, name, samples, ref=None, note="", unit="s") -> float:
        """A row with the median of `samples` (Runs, or plain numbers) and its ratio to `ref`."""
        value, seconds = median(samples), [s.seconds if isinstance(s, Run) else s for s in samples]
        peak = max((s.peak_mb for s in samples if isinstance(s, Run)), default=None)
        self.rows.append(
            Row(self.section, name, value, unit, peak, value / ref if ref else None, note, seconds)
        )
        return value

    def show(self):
        width = max(len(r.name) for r in self.rows) + 2
        for i, r in enumerate(self.rows):
            if i == 0 or r.section != self.rows[i - 1].section:
                print(f"\n{r.section}\n  {'':<{width}}{'median':>14}{'peak':>10}{'ratio':>9}   note")
            value = f"{r.value:,.0f} {r.unit}" if r.unit == "rows/s" else f"{r.value:.3f} {r.unit}"
            mb = f"{r.peak_mb:.0f} MB" if r.peak_mb else ""
            ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
            print(f"  {r.name:<{width}}{value:>14}{mb:>10}{ratio:>9}   {r.note}")


# ----------------------------------------------------------------------------- workers (in a subprocess)


def train_for(dataset, epochs, **train_params):
    """Seconds of stages.train.main in this process, for `epochs` with these train params."""
    from stages import train
    from stages.params import parse_params

    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["datasets"][dataset]["train"].update(epochs=epochs, **train_params)
    params = parse_params(raw)
    train.load_params = lambda: params
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        train.main(dataset)
    return time.perf_counter() - start


def thousand_epochs(dataset, **train_params):
    """t(main, 1001 epochs) - t(main, 1 epoch): reading the CSVs, building the model, saving the
    checkpoint and history cancel out; logging and snapshots stay in."""
    return train_for(dataset, 1001, **train_params) - train_for(dataset, 1, **train_params)


def evaluations(log_every: int) -> int:
    """The learning-curve rows, each an evaluation of both sets, that thousand_epochs() times: those of
    1001 epochs less those of 1 (stages/train.py logs every log_every epochs, and the last)."""

    def rows(epochs):
        return epochs // log_every + (epochs % log_every != 0)

    return rows(1001) - rows(1)


def worker_train_project(log_every, repeat):
    """stages.train.main itself, 1000 epochs of moons, with a curve row every `log_every` epochs."""
    train_for("moons", 1)  # warm-up: lazy imports (pandas), torch's first calls
    return [thousand_epochs("moons", log_every=int(log_every)) for _ in range(int(repeat))]


def worker_warm_stages(dataset, stages, repeat):
    """The stages' main() one after the other in this process, its imports paid by a first round."""
    import importlib

    modules = [importlib.import_module(f"stages.{stage}") for stage in stages.split(",")]
    times = []
    for _ in range(int(repeat) + 1):
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            for module in modules:
                module.main(dataset)
        times.append(time.perf_counter() - start)
    return times[1:]


def worker_train_snapshots(dataset, repeat):
    """1000 epochs with the snapshots and without (snapshot_epochs empty, nothing saved), interleaved,
    and the seconds the run with them spent in taking and saving them: [with, without, in snapshots]."""
    from stages import train

    kept, take, save = train.snapshot_epochs, train.weights_now, train.save_snapshots
    spent = [0.0]

    def timing(function):
        def timed(*args):
            start = time.perf_counter()
            result = function(*args)
            spent[0] += time.perf_counter() - start
            return result

        return timed

    def snapshots(on):
        train.snapshot_epochs = kept if on else (lambda epochs: set())
        train.weights_now, train.save_snapshots = timing(take), timing(save) if on else (lambda *args: None)
        spent[0] = 0.0

    train_for(dataset, 1)  # warm-up
    runs = []
    for _ in range(int(repeat)):
        snapshots(True)
        with_ = train_for(dataset, 1001)
        in_snapshots = spent[0]
        with_ -= train_for(dataset, 1)
        snapshots(False)
        runs.append([with_, thousand_epochs(dataset), in_snapshots])
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
    """Rows/s of the project's own CSV writer and validating reader, at n rows."""
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


def worker_estimate(name):
    """MB that stages/memory.py estimates for the dataset `name` of this project's params.yaml (the
    sum of its costs, as load_params compares it with the memory available)."""
    from stages.memory import memory_costs
    from stages.params import parse_params

    params = parse_params(yaml.safe_load(Path("params.yaml").read_text()))
    return sum(cost.bytes for cost in memory_costs(params, name, params.dataset(name))) / 2**20


# ----------------------------------------------------------------------------- the sections, in order


@dataclass
class Built:
    """What section 1 leaves for the sections after it."""

    project: Path  # built by the last forced run with no worker alive
    first: float  # those runs' median


def workers(fresh: bool) -> dict:
    """The environment of a run served by warm stage workers (docs/worker.md) in a new folder, where
    none is alive yet (fresh), or in the benchmark's own, where one stays warm between runs."""
    folder = tempfile.mkdtemp(dir=os.environ["BOUNDARY_LAB_WORKER_DIR"]) if fresh else None
    return {"BOUNDARY_LAB_WORKER_DIR": folder or os.environ["BOUNDARY_LAB_WORKER_DIR"]}


def stop_workers(env):
    timed(PY, "-m", "stages.worker", "stop", "--all", cwd=ROOT, env=env)


def cold(args, snap, report) -> Built:
    report.section = "1. dvc repro --force --no-run-cache in a fresh copy (ratio: / peer)"
    seed = Path(args.seed_workflow).resolve() if args.seed_workflow else None
    if seed and not seed.is_file():
        print(f"note: {seed} not found; the peer row is skipped", file=sys.stderr)
        seed = None
    off, first, warm, peer, peer1 = [], [], [], [], []
    warm_env = workers(fresh=False)
    repro(snap.fresh(), "--force", "--no-run-cache", env=warm_env)  # starts the warm worker
    for i in range(args.repeat):  # interleaved with the peer's, so that other users' load hits all alike
        off.append(repro(snap.fresh(), "--force", "--no-run-cache", env={"BOUNDARY_LAB_WORKER": "off"}))
        project, env = snap.fresh(), workers(fresh=True)
        first.append(repro(project, "--force", "--no-run-cache", env=env))
        stop_workers(env)
        warm.append(repro(snap.fresh(), "--force", "--no-run-cache", env=warm_env))
        if seed:
            peer.append(timed(PY, seed, project.parent / f"peer{i}"))
            peer1.append(timed(PY, seed, project.parent / f"peer1-{i}", env={"OMP_NUM_THREADS": "1"}))
        print(f"cold run {i + 1}/{args.repeat}: {first[-1].seconds:.1f} s", file=sys.stderr)
    ref, ran = median(peer) if peer else None, f"{first[-1].ran} stages ran"
    report.row("BOUNDARY_LAB_WORKER=off", off, ref, f"{ran}, each in a process of its own (before)")
    first_run = report.row("no worker alive: a first run", first, ref, f"{ran}; the first stage starts one")
    report.row("the worker warm", warm, ref, f"{ran}, every stage a child of the warm worker")
    if peer:
        report.row(f"python {seed.name} OUT (ref)", peer, ref, "the notebook-style peer, torch's own threads")
        report.row("  the same, OMP_NUM_THREADS=1", peer1, ref, "the peer on one torch thread")
    return Built(project, first_run)


def training_loop(args, snap, report):
    report.section = "2. training loop, 1000 full-batch epochs, moons (ratio: / plain)"
    trainer = snap.fresh()  # its own copy: main() overwrites the checkpoint and the curves
    for stage in ("generate", "split"):
        timed(PY, "-m", f"stages.{stage}", "moons", cwd=trainer)
    logged, quiet = 10, 10**6  # train.log_every: the default, and never before the last epoch
    project_times = worker(trainer, "train_project", logged, args.repeat)
    quiet_times = worker(trainer, "train_project", quiet, args.repeat)
    *plain, threads, n_points = worker(trainer, "train_plain", "default", args.repeat)
    *plain1, _, _ = worker(trainer, "train_plain", 1, args.repeat)
    ref, one = median(plain), median(plain1)
    for name, times, log_every in (
        ("project: stages.train.main", project_times, logged),
        (f"project, log_every {quiet:,}", quiet_times, quiet),
    ):
        note = f"in-process, t(1001 ep) - t(1 ep); {evaluations(log_every)} evaluations"
        report.row(name, times, ref, f"{note}; 1 thread: {median(times) / one:.2f}x the 1-thread loop")
    note = f"{n_points} points, torch.optim.Adam defaults (per-tensor on CPU), no evaluation"
    report.row(f"plain PyTorch loop (ref), {threads} threads", plain, ref, note)
    report.row("plain PyTorch loop, 1 thread", plain1, ref)


def experiment(args, built, report):
    report.section = "3. a learner's dvc exp run -S (ratio: / the same stages in one warm process)"
    stages = ("train", "evaluate", "plot", "animate")
    ref = median(worker(built.project, "warm_stages", "moons", ",".join(stages), args.repeat))
    runs = {"on": [], "off": []}
    for i in range(args.repeat):
        for switch, samples in runs.items():  # new lr values each time: nothing is restored
            lr = f"datasets.moons.train.lr={0.011 + 0.002 * i + 0.001 * (switch == 'off'):.3f}"
            env = workers(fresh=False) | {"BOUNDARY_LAB_WORKER": switch}
            samples.append(timed("dvc", "exp", "run", "-S", lr, cwd=built.project, env=env))
    ran = f"{runs['on'][-1].ran} stages ran ({', '.join(stages)} of moons)"
    report.row("dvc exp run -S, the worker warm", runs["on"], ref, ran)
    report.row("dvc exp run -S, BOUNDARY_LAB_WORKER=off", runs["off"], ref, "each stage in its own process")
    report.row("the same stages' main() in one warm process (ref)", [ref], ref, "imports paid before")


def stage_commands(args, snaps, report):
    """Each stage's command and its import alone, for each checkout in turn (so that load hits each
    alike), in fresh copies that a warm-up round builds (it also compiles every module once)."""
    several = len(snaps) > 1
    report.section = "4. each stage, default params, no DVC; its import alone"
    report.section += " (ratio: / the same of [1])" if several else ""
    stages, datasets = snaps[0].stages_and_datasets()
    imports = {"python -c pass": "pass", "import torch": "import torch"}
    imports |= {f"import stages.{s}": f"import stages.{s}" for s in stages}
    imports = {name: ("-c", f"{code}; {MODULES}; {EXIT}") for name, code in imports.items()}
    commands = {f"python -m stages.{s} {d}": ("-m", f"stages.{s}", d) for s in stages for d in datasets}
    projects = [snap.fresh() for snap in snaps]
    runs = {(name, i): [] for name in imports | commands for i in range(len(snaps))}
    for repeat in range(args.repeat + 1):
        for name, argv in (imports | commands).items():  # in stage order: each reads what the last wrote
            for i, project in enumerate(projects):
                run = timed(PY, *argv, cwd=project)
                if repeat:  # not the warm-up round
                    runs[name, i].append(run)
        print(f"stage commands: round {repeat} of {args.repeat} done", file=sys.stderr)
    totals = [sum(median(runs[name, i]) for name in commands) for i in range(len(snaps))]
    tag = (lambda i: f" [{i + 1}]") if several else (lambda i: "")
    for name in imports | commands:
        for i in range(len(snaps)):
            if name in commands:
                share_ = median(runs[f"import {name.split()[2]}", i]) / median(runs[name, i])
                note = f"its import {share_:.0%}"
            else:
                note = f"loads {runs[name, i][-1].output.split('HEAVY ')[-1].strip() or '-'}"
            report.row(name + tag(i), runs[name, i], median(runs[name, 0]) if several else None, note)
    for i, snap in enumerate(snaps):
        ref = totals[0] if several else None
        report.row(
            f"sum of the {len(commands)} stage commands{tag(i)}",
            [totals[i]],
            ref,
            f"[{i + 1}] is {snap.label}",
        )


def revisit(args, project, report):
    report.section = "5. computed once, restored after (ratio: / recomputing the same)"
    restore, recompute = [], []
    edit_params(project, lambda p: p["datasets"]["moons"]["train"].update(lr=0.02))
    timed("dvc", "repro", cwd=project)  # computes lr 0.02 once: from now on both params sets are known
    for _ in range(args.repeat):
        for lr, flags, samples in ((0.01, (), restore), (0.02, ("--no-run-cache",), recompute)):
            edit_params(project, lambda p, lr=lr: p["datasets"]["moons"]["train"].update(lr=lr))
            samples.append(timed("dvc", "repro", *flags, cwd=project))
    ref = median(recompute)
    note = f"{restore[-1].ran} stages ran, {restore[-1].restored} restored from the run-cache"
    report.row("revisit lr 0.01, restored", restore, ref, note)
    report.row("revisit lr 0.02, --no-run-cache (ref)", recompute, ref, f"{recompute[-1].ran} stages ran")


def teammate(args, built, report):
    report.section = "6. a teammate: git clone, dvc pull --run-cache, dvc repro (ratio: / a first run)"
    origin = share(built.project, built.project.parent, message="computed")
    samples, ref = [], built.first
    for i in range(args.repeat):
        clone = built.project.parent / f"teammate{i}"
        steps = [timed("git", "clone", "-q", origin, clone), timed("dvc", "pull", "--run-cache", cwd=clone),
                 timed("dvc", "repro", cwd=clone)]  # fmt: skip
        samples.append(sum(s.seconds for s in steps))
    clone_s, pull_s, repro_s = (step.seconds for step in steps)
    note = f"clone {clone_s:.1f} s, pull {pull_s:.1f} s, repro {repro_s:.1f} s: {steps[-1].ran} stages ran"
    report.row("clone + pull + repro", samples, ref, note)
    report.row("a first run, forced, no worker alive (ref)", [ref], ref)


# Section 7's budgets, each written once: the animation's seconds and megabytes, the neuron maps'
# seconds, and the share of a training run that taking and saving the snapshots may cost.
ANIMATION_S, ANIMATION_MB, NEURONS_S, SNAPSHOTS_SHARE = 5.0, 3.0, 1.0, 0.05


def playground(args, project, report):
    """What issue 16 added, on a built project: the animation's cost and size, the neuron maps' cost,
    training with snapshots against without."""
    budgets = f"{ANIMATION_S:g} s, {ANIMATION_MB:g} MB, {NEURONS_S:g} s, {SNAPSHOTS_SHARE:.0%}"
    report.section = f"7. boundary over training, neuron maps, snapshots (budgets: {budgets})"
    datasets = list(yaml.safe_load((project / "params.yaml").read_text())["datasets"])
    for dataset in datasets:
        samples = [timed(PY, "-m", "stages.animate", dataset, cwd=project) for _ in range(args.repeat)]
        size = (project / "plots" / dataset / "boundary_training.png").stat().st_size / 2**20
        note = f"{size:.2f} MB ({size / ANIMATION_MB:.0%} of {ANIMATION_MB:g} MB)"
        note += f"; ratio: / the {ANIMATION_S:g} s budget"
        report.row(f"python -m stages.animate {dataset}", samples, ANIMATION_S, note)
    for dataset in datasets:
        pairs = worker(project, "plot_neurons", dataset, args.repeat)
        with_, without = (median(column) for column in zip(*pairs, strict=True))
        note = f"plot.main {with_:.2f} s with, {without:.2f} s without; ratio: / the {NEURONS_S:g} s budget"
        report.row(
            f"neurons.png, {dataset} (plot.main with - without)", [a - b for a, b in pairs], NEURONS_S, note
        )
    for dataset in datasets:
        runs = worker(project, "train_snapshots", dataset, args.repeat)
        ratio = median([with_ / without for with_, without, _ in runs])
        spent = median([spent / with_ for with_, _, spent in runs])
        note = f"taking + saving them {spent:.1%} of the run (budget {SNAPSHOTS_SHARE:.0%})"
        note += f"; paired ratio {ratio - 1:+.1%}; ratio: / without"
        report.row(
            f"train {dataset}, 1000 epochs, with snapshots",
            [r[0] for r in runs],
            median([r[1] for r in runs]),
            note,
        )


def scale(args, snap, report):
    """Each stage of moons at 1e3, 1e5, 1e6 points, and the CSV writer and reader."""
    batch = "batch_size" in (snap.template / "stages" / "params.py").read_text()  # older commits: no batches
    train = SCALE_TRAIN if batch else {"epochs": SCALE_TRAIN["epochs"]}
    estimates = (snap.template / "stages" / "memory.py").exists()
    report.section = f"8. scale, moons, train {train}, fresh sample 1e5 (ratio: / n=1e3)"
    # Each stage's peak memory with its imports alone: its start-up, already in use when load_params
    # checks the estimate against the memory available; the estimate is what the params add to it.
    small, imported = {}, {}
    for n in SCALE:
        scaled = snap.fresh()

        def update(p, n=n):
            p["datasets"]["moons"]["data"]["n_samples"] = n
            p["datasets"]["moons"]["train"].update(train)

        edit_params(scaled, update)
        estimate = worker(scaled, "estimate", "moons") if estimates else None
        for stage in snap.stages_and_datasets()[0]:
            samples = [timed(PY, "-m", f"stages.{stage}", "moons", cwd=scaled) for _ in range(args.repeat)]
            ref = small.setdefault(stage, median(samples))
            extra = median(samples) - ref  # the cost the points add, over the fixed start-up at n=1e3
            notes = (
                [f"{extra:+.2f} s over n=1e3, {1e6 * extra / (n - SCALE[0]):.2f} us/point"] if extra else []
            )
            if estimate is not None:
                if stage not in imported:
                    imported[stage] = timed(PY, "-c", f"import stages.{stage}", cwd=scaled).peak_mb
                above = max(sample.peak_mb for sample in samples) - imported[stage]
                notes.append(
                    f"{above:.0f} MB over its imports, {above / estimate:.0%} of {estimate:.0f} MB estimated"
                )
            report.row(f"n={n:.0e} {stage}", samples, ref, "; ".join(notes))
        write, read, size = worker(scaled, "io", n, args.repeat)
        note = f"{size:.1f} MB, stages.files.write_points"
        report.row(f"n={n:.0e} write all.csv", [write], small.setdefault("write", write), note, unit="rows/s")
        note = "stages.files.read_points"
        report.row(f"n={n:.0e} read all.csv", [read], small.setdefault("read", read), note, unit="rows/s")
        shutil.rmtree(scaled)


# ----------------------------------------------------------------------------- the benchmark


def bench(args, snaps, report):
    """The sections, in their order; or the one that --stages-only or --playground asks for."""
    if args.stages_only:
        return stage_commands(args, snaps, report)
    [snap] = snaps
    if args.scale_only:
        return scale(args, snap, report)
    if args.playground:
        project = snap.fresh()
        repro(project, "--no-run-cache")
        return playground(args, project, report)
    built = cold(args, snap, report)
    training_loop(args, snap, report)
    experiment(args, built, report)
    stage_commands(args, snaps, report)
    revisit(args, built.project, report)
    teammate(args, built, report)
    playground(args, built.project, report)
    if args.scale:
        scale(args, snap, report)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", action="append", type=Path, metavar="DIR",
                        help="a checkout to bench (default: this one); several: --stages-only")  # fmt: skip
    parser.add_argument("--seed-workflow", help="the notebook-style peer script (row skipped without it)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; medians are reported")
    parser.add_argument("--scale", action="store_true", help="also time each stage at 1e3, 1e5, 1e6 points")
    parser.add_argument("--json", help="also write the rows, with every sample, to this file")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--stages-only", action="store_true", help="only section 4: each stage's figures")
    only.add_argument(
        "--playground", action="store_true", help="only section 7: animation, neurons, snapshots"
    )
    only.add_argument(
        "--scale-only", action="store_true", help="only section 8: each stage at 1e3 to 1e6 points"
    )
    args = parser.parse_args()
    checkouts = [path.resolve() for path in args.project or [ROOT]]
    if len(checkouts) > 1 and not args.stages_only:
        parser.error("several --project: only with --stages-only")
    for checkout in checkouts:
        if not (checkout / "stages").is_dir() or not (checkout / "dvc.yaml").is_file():
            parser.error(f"--project {checkout}: not a Boundary Lab checkout (no stages/ or dvc.yaml)")

    start, load, report = time.perf_counter(), os.getloadavg()[0], Report()
    with tempfile.TemporaryDirectory(prefix="boundary-bench-") as tmp, own_stage_workers():
        os.environ["DVC_SITE_CACHE_DIR"] = str(Path(tmp) / "dvc-site")  # no state shared with other runs
        try:
            snaps = [Snapshot.of(checkout, Path(tmp)) for checkout in checkouts]
            bench(args, snaps, report)
        except CommandFailed as error:
            sys.exit(str(error))
    labels = ", ".join(f"[{i}] {snap.label}" for i, snap in enumerate(snaps, 1))
    took, end = time.perf_counter() - start, os.getloadavg()[0]
    print(f"Boundary Lab benchmark of {labels}: --repeat {args.repeat}, {os.cpu_count()} CPUs, "
          f"load average {load:.1f} at start, {end:.1f} at end, {took:.0f} s")  # fmt: skip
    report.show()
    if args.json:
        rows = [asdict(row) for row in report.rows]
        summary = dict(args=vars(args) | dict(project=list(map(str, checkouts))), checkouts=labels, rows=rows)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        sys.path.insert(0, os.getcwd())  # the project copy's `stages`, not the checkout's
        print(json.dumps(globals()[f"worker_{sys.argv[2]}"](*sys.argv[3:])))
    else:
        main()
