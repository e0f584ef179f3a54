"""`python -m sweep`: a grid of DVC experiments on Ray, gathered through a git and a DVC remote.

Each test gives the built project a team's setup: a bare git repository as `origin` and a local
directory as the default DVC remote, both pushed, as a teammate's clone or a worker would find them.
"""

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import psutil
import pytest
from conftest import edit_params, experiments, sh, share

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("ray")]  # one Ray at a time, on one worker

SWEEP = (sys.executable, "-m", "sweep")
EPOCHS = "datasets.moons.train.epochs=40"  # a few epochs: these tests time the plumbing, not training


@pytest.fixture
def team(rebuilt, tmp_path):
    share(rebuilt, tmp_path)
    return rebuilt


def on_origin(repo) -> set[str]:
    """The names of the experiments on origin."""
    refs = sh("git", "ls-remote", "origin", "refs/exps/*", cwd=repo).stdout
    return {line.rsplit("/", 1)[-1] for line in refs.splitlines()}


def test_local_sweep_lands_in_origin_and_a_teammates_clone_and_a_bad_or_diverging_point_fails_alone(
    team, tmp_path
):
    # Two trials, one round on the two CPUs: one lands, one diverges; the bad value never runs.
    grid = ["-S", "datasets.moons.train.lr=0.02,-1,1e30", "-S", "datasets.moons.train.epochs=60"]
    result = sh(*SWEEP, *grid, "--json", tmp_path / "sweep.json", cwd=team, check=False)
    assert result.returncode == 1, result.stderr  # the bad value's and the diverging point fail
    names = ["sweep-1"]
    error = "error: params.yaml: datasets.moons.train.lr = -1: must be a number > 0"
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == 3 and "Traceback" not in result.stderr, result.stderr
    assert f"sweep-2 failed: {error}" in result.stderr
    assert all(f"{name} done in " in result.stderr for name in names), result.stderr
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines()[2:]}
    assert "moons test.accuracy" in result.stdout and set(rows) == {*names, "sweep-2", "sweep-3"}
    assert "spiral" not in result.stdout  # only what differs between the experiments
    assert error in rows["sweep-2"]
    # lr 1e30: the train stage's own one line, in the progress line and the table, names the key to change.
    diverged = json.loads((tmp_path / "sweep.json").read_text())[2]
    assert not diverged["ok"] and diverged["error"].startswith("error: "), diverged
    assert "diverged" in diverged["error"] and "datasets.moons.train.lr" in diverged["error"], diverged
    assert f"sweep-3 failed: {diverged['error']}" in result.stderr
    assert diverged["error"] in rows["sweep-3"]
    assert on_origin(team) == set(names)

    # A teammate's fresh clone sees what landed, with its metrics, after `dvc exp pull`.
    clone = tmp_path / "teammate"
    sh("git", "clone", "-q", tmp_path / "origin.git", clone, cwd=tmp_path)
    sh("dvc", "exp", "pull", "origin", *names, cwd=clone)
    found = experiments(clone)
    assert set(found) == set(names)
    params = {name: found[name]["params"]["datasets"]["moons"]["train"] for name in names}
    assert params["sweep-1"]["lr"] == 0.02 and params["sweep-1"]["epochs"] == 60
    for data in found.values():
        assert 0.5 <= data["metrics"]["metrics/moons.json"]["test"]["accuracy"] <= 1.0
    sh("dvc", "pull", cwd=clone)  # the data behind the refs is on the DVC remote too

    # The same point run here, by plain `dvc exp run`, gives the same metrics as the worker did.
    sh("dvc", "exp", "run", "-n", "here", "-S", "datasets.moons.train.lr=0.02", "-S",
       "datasets.moons.train.epochs=60", cwd=team)  # fmt: skip
    here = experiments(team)["here"]["metrics"]["metrics/moons.json"]
    assert here == found["sweep-1"]["metrics"]["metrics/moons.json"]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Cluster:
    address: str
    env: dict  # the driver's environment: the cluster's auth token
    nodes: list  # each node's `ray start --block` process


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two Ray nodes of one CPU each on 127.0.0.1, each `ray start --block` in its own process group,
    so that stopping them stops exactly this cluster (never `ray stop`, which stops every Ray here).
    One cluster for this file's tests: each starts in seconds, but not in none."""
    logs = tmp_path_factory.mktemp("cluster")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    env = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # stop at once
    env["RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper"] = "true"  # as docs/sweep.md says
    node = ("--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--block")
    head = ("ray", "start", "--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp)
    commands = [(*head, *node), ("ray", "start", "--address", f"127.0.0.1:{port}", *node)]  # one temp dir
    nodes = []
    try:
        for i, cmd in enumerate(commands):
            log = logs / f"node{i}.log"
            with open(log, "w") as out:
                nodes.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=out, start_new_session=True))
            wait_for(nodes[-1], log, "Ray runtime started")
        yield Cluster(f"127.0.0.1:{port}", env, nodes)
    finally:
        for process in reversed(nodes):
            os.killpg(process.pid, signal.SIGTERM)  # --block stops its node's processes on SIGTERM
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def wait_for(process, log, text, seconds=60):
    deadline = time.monotonic() + seconds
    while text not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{' '.join(process.args)}: no {text!r}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


# ----------------------------------------------------------------------------- faults, really caused


# `python -m sweep` with Python's own Ctrl-C handler, even where this test started with SIGINT ignored.
INTERRUPTIBLE = (sys.executable, "-c", "import runpy, signal; "
                 "signal.signal(signal.SIGINT, signal.default_int_handler); "
                 "runpy.run_module('sweep', run_name='__main__', alter_sys=True)")  # fmt: skip


class Driver:
    """`python -m sweep` in the background, in a process group of its own with SIGINT at its default
    (as a terminal's foreground job: a plain background job starts with SIGINT ignored)."""

    def __init__(self, *args, cwd, logs, env=None):
        self.out, self.err = logs / "driver.out", logs / "driver.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen([*INTERRUPTIBLE, *map(str, args)], cwd=cwd, env=env, stdout=out,
                                            stderr=err, start_new_session=True)  # fmt: skip

    def stderr(self):
        return self.err.read_text()

    def finished(self):
        """The trials its progress lines report done."""
        return set(re.findall(r"^\[\d+/\d+\] (\S+) done in ", self.stderr(), re.MULTILINE))

    def wait(self, seconds):
        try:
            return self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise AssertionError(f"the sweep ran past {seconds} s:\n{self.stderr()}") from None


def until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {seconds} s")
        time.sleep(0.05)
    return found


def unique(prefix):
    """A sweep name no other sweep on this machine has: its trials' clones are /tmp/sweep-<name>-*."""
    return f"{prefix}{secrets.token_hex(3)}"


def of_sweep(name) -> list[psutil.Process]:
    """The live processes working in one of this sweep's clones (git, dvc, a stage, a hook's sleep)."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd", "status"]):
        where = f"{process.info['cwd'] or ''} {' '.join(process.info['cmdline'] or [])}"
        if f"/sweep-{name}-" in where and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def ray_trials(roots) -> list[psutil.Process]:
    """Ray workers under these processes that are running a trial (Ray titles them `ray::trial`)."""
    found = []
    for root in roots:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(root).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if " ".join(child.cmdline()).startswith("ray::trial"):
                        found.append(child)
    return found


def alive(processes):
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def most_at_once(intervals):
    """The most of these (start, end) intervals that overlap at any moment."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = [0]
    for _, change in events:
        running.append(running[-1] + change)
    return max(running)


def nothing_left(name, processes, roots):
    """Nothing of the sweep runs: not in its clones, not among `processes`, no Ray task under `roots`."""
    with contextlib.suppress(AssertionError):
        until(lambda: not (of_sweep(name) or alive(processes) or ray_trials(roots)), 10, "end")
    left = of_sweep(name) + alive(processes) + ray_trials(roots)
    assert not left, [" ".join(p.cmdline()) for p in left]


@pytest.mark.parametrize("where", ["local", "cluster"])
def test_ctrl_c_exits_130_leaves_nothing_running_and_origin_holds_exactly_what_finished(
    team, where, request, tmp_path
):
    name, env, address, roots = unique("int"), None, [], []
    if where == "cluster":
        cluster = request.getfixturevalue("cluster")
        env, address, roots = cluster.env, ["--address", cluster.address], [n.pid for n in cluster.nodes]
    grid = ["-S", "datasets.moons.train.lr=0.002,0.004,0.008,0.016", "-S", EPOCHS]
    summary = tmp_path / "sweep.json"
    driver = Driver(*grid, "--name", name, *address, "--json", summary, cwd=team, logs=tmp_path, env=env)
    until(lambda: len(driver.finished()) >= (2 if where == "cluster" else 1), 180, "finished trial")
    assert until(lambda: of_sweep(name), 30, "running trial")  # the next trials have started
    started = psutil.Process(driver.process.pid).children(recursive=True)  # local Ray's too
    interrupted = time.monotonic()
    os.killpg(driver.process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground group
    status = driver.wait(60)
    took = time.monotonic() - interrupted
    assert status == 130 and took < 20, (status, took, driver.stderr())
    assert "Traceback" not in driver.stderr() and "interrupted: " in driver.stderr()
    nothing_left(name, started, roots)

    results = {r["name"]: r for r in json.loads(summary.read_text())}
    landed = {n for n, r in results.items() if r["ok"]}
    assert driver.finished() <= landed and 1 <= len(landed) < 4, driver.stderr()
    assert on_origin(team) == landed  # exactly: nothing half-pushed, nothing finished and missing
    assert all(r["error"] == "cancelled" for r in results.values() if not r["ok"]), results
    if where == "cluster":  # one CPU each: the first two trials ran side by side, one on each node
        assert len({results[n]["node"] for n in driver.finished()}) == 2
    # A trial keeps its CPU while it asks whether to stop: never more trials at once than CPUs.
    ran = [(r["started"], r["ended"]) for r in results.values() if r["started"]]
    assert most_at_once(ran) <= (2 if where == "cluster" else os.cpu_count()), ran
    table = driver.out.read_text()
    for n in landed:  # pulled here, and in the table with its accuracy (or `landed` if its result was lost)
        row = next(line for line in table.splitlines() if line.startswith(f"| {n} "))
        accuracy = (
            str(results[n]["metrics"]["moons.json"]["test"]["accuracy"])
            if results[n]["metrics"]
            else "landed"
        )
        assert f" {accuracy} " in row, row
    assert landed <= set(experiments(team))

    # Each is complete: a fresh clone pulls it, applies it, and reads the metrics the trial reported.
    clone = tmp_path / "fresh"
    sh("git", "clone", "-q", tmp_path / "origin.git", clone, cwd=tmp_path)
    sh("dvc", "exp", "pull", "origin", *landed, cwd=clone)
    for n in landed:
        sh("dvc", "exp", "apply", n, cwd=clone)
        metrics = json.loads((clone / "metrics" / "moons.json").read_text())
        assert results[n]["note"] or metrics == results[n]["metrics"]["moons.json"]
        assert 0.5 <= metrics["test"]["accuracy"] <= 1


def test_a_killed_worker_is_retried_and_a_failed_trial_pushes_its_run_cache(team, tmp_path):
    name = unique("k")
    grid = ["-S", "datasets.moons.train.lr=0.003,0.006", "-S", EPOCHS]
    driver = Driver(*grid, "--name", name, "--json", tmp_path / "sweep.json", cwd=team, logs=tmp_path)
    killed = {}  # trial: the pid of what was killed
    while driver.process.poll() is None and len(killed) < 2:
        for process in of_sweep(name):
            with contextlib.suppress(psutil.Error):
                command = " ".join(process.cmdline())
                if (
                    f"{name}-1" not in killed
                    and " exp run " in command
                    and f"/sweep-{name}-1-" in process.cwd()
                ):
                    worker = (
                        process.parent()
                    )  # the Ray worker running the trial: SIGKILL, as the OOM killer does
                    assert worker.cmdline()[0].startswith("ray::trial"), worker.cmdline()
                    worker.kill()
                    killed[f"{name}-1"] = worker.pid
                if (
                    f"{name}-2" not in killed
                    and "-m stages evaluate" in command  # the stage as DVC runs it: its client
                    and f"/sweep-{name}-2-" in process.cwd()
                ):
                    process.kill()  # the second trial's stage dies after its training finished
                    killed[f"{name}-2"] = process.pid
        time.sleep(0.05)
    assert driver.wait(180) == 1, (killed, driver.stderr(), (tmp_path / "sweep.json").read_text())
    nothing_left(name, [], [])  # the killed worker's `dvc exp run` and stage included
    assert set(killed) == {f"{name}-1", f"{name}-2"}, driver.stderr()

    results = {r["name"]: r for r in json.loads((tmp_path / "sweep.json").read_text())}
    assert driver.stderr().count(f"] {name}-1 ") == 1 and driver.finished() == {f"{name}-1"}, driver.stderr()
    assert results[f"{name}-1"]["pid"] != killed[f"{name}-1"]  # retried, in another worker, and landed once
    assert on_origin(team) == {f"{name}-1"}
    error = results[f"{name}-2"]["error"]
    assert "evaluate@moons" in error and "\n" not in error and "worker died" not in error, error
    assert results[f"{name}-2"]["restored"] == []

    # Rerun the failed point: its training, which finished, comes back from the remote's run-cache.
    rerun = sh(*SWEEP, "-S", "datasets.moons.train.lr=0.006", "-S", EPOCHS, "--name", unique("r"),
               "--json", tmp_path / "rerun.json", cwd=team)  # fmt: skip
    [again] = json.loads((tmp_path / "rerun.json").read_text())
    assert again["ok"] and "train@moons" in again["restored"], rerun.stderr
    assert "evaluate@moons" not in again["restored"]


RAISES = """import sys, sweep
real, broken = sweep.trial, sys.argv[1]
def trial(plan, result, stop):  # pickled by value, with `broken`: the workers run this one
    if result.name == broken:
        raise ValueError("a bug in trial")
    return real(plan, result, stop)
sweep.trial = trial
sweep.main(sys.argv[2:])
"""


def test_a_raising_trial_and_a_failed_pull_are_one_line_each(team, tmp_path):
    name = unique("f")
    # This clone's cache cannot be written: the final `dvc exp pull` fails, after every trial has run.
    sh("dvc", "config", "--local", "cache.dir", "/dev/null/cache", cwd=team)
    grid = ["-S", "datasets.moons.train.lr=0.005,0.01", "-S", EPOCHS]
    summary = tmp_path / "sweep.json"
    result = sh(sys.executable, "-c", RAISES, f"{name}-2", *grid, "--name", name, "--json", summary, cwd=team,
                check=False)  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].endswith(f"{name}-2 failed: trial raised ValueError: a bug in trial"), result.stderr
    assert f"{name}-1 done in " in lines[1] and lines[2].startswith("error: dvc exp pull: ERROR: "), (
        result.stderr
    )
    results = json.loads(summary.read_text())
    assert [r["ok"] for r in results] == [True, False] and "moons.json" in results[0]["metrics"]
    rows = [line.split("|")[1].strip() for line in result.stdout.splitlines()[2:]]
    assert rows == [f"{name}-1", f"{name}-2"], result.stdout
    assert on_origin(team) == {f"{name}-1"}


def test_a_hung_command_is_killed_at_the_timeout_in_one_line(team, tmp_path):
    name = unique("h")
    # The trial's `git checkout` runs a hook that never ends, as an unanswered credential prompt would not.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "post-checkout").write_text(
        f'#!/bin/sh\ncase "$PWD" in */sweep-{name}-*) exec sleep 600;; esac\n'
    )
    (hooks / "post-checkout").chmod(0o755)
    (tmp_path / "gitconfig").write_text(f"[core]\n\thooksPath = {hooks}\n")
    env = os.environ | {"GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig")}
    summary = tmp_path / "sweep.json"
    result = sh(*SWEEP, "-S", EPOCHS, "--name", name, "--timeout", "5", "--json", summary, cwd=team, env=env,
                check=False)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == f"[1/1] {name}-1 failed: checkout: no end in 5 s (--timeout); killed\n"
    nothing_left(name, [], [])  # the hook's sleep too
    [failed] = json.loads(summary.read_text())
    assert not failed["ok"] and failed["timings"]["checkout"] >= 5
    assert f"| {name}-1 " in result.stdout and on_origin(team) == set()


# ----------------------------------------------------------------------------- refusals, before Ray


@pytest.fixture
def pushed(project, tmp_path):
    """A clean project whose commit is on origin, with a default DVC remote: nothing to refuse."""
    share(project, tmp_path, push=False)
    return project


def dirty(repo):
    edit_params(repo, lambda params: params["datasets"]["moons"]["train"].update(lr=0.5))


def unpushed(repo):
    sh("git", "commit", "-q", "--allow-empty", "-m", "local only", cwd=repo)


def no_remote(repo):
    sh("dvc", "remote", "default", "--unset", cwd=repo)
    sh("git", "commit", "-q", "-am", "no default remote", cwd=repo)
    sh("git", "push", "-q", "origin", "main", cwd=repo)


@pytest.mark.parametrize(
    ("spoil", "param", "message"),
    [
        (dirty, EPOCHS, "error: the workspace has changes (git status)"),
        (unpushed, EPOCHS, "is not on origin"),
        (no_remote, EPOCHS, "error: no default DVC remote in .dvc/config"),
        (
            None,
            "datasets.moons.train.epochz=5,6",
            "error: params.yaml: unknown key datasets.moons.train.epochz; allowed: epochs, lr, seed,",
        ),
        (
            None,
            "datasets.moons.train.l1=0.1",  # in the schema, not in params.yaml: `dvc exp run` refuses it
            "error: -S datasets.moons.train.l1=0.1: params.yaml has no datasets.moons.train.l1; "
            "+datasets.moons.train.l1 adds it",
        ),
    ],
)
def test_refusals_are_one_line_before_anything_runs(pushed, spoil, param, message):
    if spoil:
        spoil(pushed)
    result = sh(*SWEEP, "-S", "datasets.moons.train.lr=0.01,0.02", "-S", param, cwd=pushed, check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert result.stdout == ""
    assert on_origin(pushed) == set()


# `python -m sweep` where the module named first cannot be imported, as when its extra is not installed.
WITHOUT = (sys.executable, "-c", "import runpy, sys; sys.modules[sys.argv.pop(1)] = None; "
           "runpy.run_module('sweep', run_name='__main__', alter_sys=True)")  # fmt: skip


def s3_remote(repo):
    sh("dvc", "remote", "add", "--force", "-d", "storage", "s3://boundary-lab/sweep", cwd=repo)
    sh("git", "commit", "-q", "-am", "the team's DVC remote on S3", cwd=repo)
    sh("git", "push", "-q", "origin", "main", cwd=repo)


@pytest.mark.parametrize(
    ("module", "spoil", "message"),
    [
        (
            "ray",
            None,
            'error: the sweep needs Ray, the cluster extra: pip install -c constraints.txt ".[cluster]"',
        ),
        (
            "dvc_s3",
            s3_remote,
            "error: DVC remote 'storage' is on S3, which needs dvc-s3, the s3 extra: "
            'pip install -c constraints.txt ".[s3]"',
        ),
    ],
)
def test_a_missing_extra_is_one_line_with_its_pip_command(pushed, module, spoil, message):
    if spoil:
        spoil(pushed)
    result = sh(*WITHOUT, module, "-S", EPOCHS, cwd=pushed, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"{message}\n")
    assert on_origin(pushed) == set()
