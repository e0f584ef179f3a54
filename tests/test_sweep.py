"""`python -m sweep`: a grid of DVC experiments on Ray, gathered through a git and a DVC remote.

Each test gives the built project a team's setup: a bare git repository as `origin` and a local
directory as the default DVC remote, both pushed, as a teammate's clone or a worker would find them.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import edit_params, experiments, sh

pytestmark = pytest.mark.e2e

SWEEP = (sys.executable, "-m", "sweep")
EPOCHS = "datasets.moons.train.epochs=40"  # a few epochs: these tests time the plumbing, not training


def shared(repo, tmp_path):
    """Make `repo` a team's clone: origin and the default DVC remote exist and hold its commit."""
    sh("git", "init", "-q", "--bare", "-b", "main", tmp_path / "origin.git", cwd=tmp_path)
    sh("git", "remote", "add", "origin", tmp_path / "origin.git", cwd=repo)
    sh("dvc", "remote", "add", "-d", "storage", tmp_path / "storage", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", "team setup", cwd=repo)
    sh("git", "push", "-q", "origin", "main", cwd=repo)
    return repo


@pytest.fixture
def team(rebuilt, tmp_path):
    repo = shared(rebuilt, tmp_path)
    sh("dvc", "push", "-q", "--run-cache", cwd=repo)
    return repo


def on_origin(repo) -> set[str]:
    """The names of the experiments on origin."""
    refs = sh("git", "ls-remote", "origin", "refs/exps/*", cwd=repo).stdout
    return {line.rsplit("/", 1)[-1] for line in refs.splitlines()}


def test_local_sweep_lands_in_origin_and_a_teammates_clone(team, tmp_path):
    grid = ["-S", "datasets.moons.train.lr=0.005,0.02", "-S", "datasets.moons.train.epochs=40,60"]
    result = sh(*SWEEP, *grid, "--json", tmp_path / "sweep.json", cwd=team)
    names = [f"sweep-{i}" for i in range(1, 5)]
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == 4 and all(" done in " in line for line in progress), result.stderr
    assert "moons test.accuracy" in result.stdout and all(f"| {name} " in result.stdout for name in names)
    assert "spiral" not in result.stdout  # only what differs between the experiments
    assert on_origin(team) == set(names)

    # A teammate's fresh clone sees all four, with their metrics, after `dvc exp pull`.
    clone = tmp_path / "teammate"
    sh("git", "clone", "-q", tmp_path / "origin.git", clone, cwd=tmp_path)
    sh("dvc", "exp", "pull", "origin", *names, cwd=clone)
    found = experiments(clone)
    assert set(found) == set(names)
    params = {name: found[name]["params"]["datasets"]["moons"]["train"] for name in names}
    assert params["sweep-4"]["lr"] == 0.02 and params["sweep-4"]["epochs"] == 60
    for data in found.values():
        assert 0.5 <= data["metrics"]["metrics/moons.json"]["test"]["accuracy"] <= 1.0
    sh("dvc", "pull", cwd=clone)  # the data behind the refs is on the DVC remote too

    # The same point run here, by plain `dvc exp run`, gives the same metrics as the worker did.
    sh("dvc", "exp", "run", "-n", "here", "-S", "datasets.moons.train.lr=0.02", "-S",
       "datasets.moons.train.epochs=60", cwd=team)  # fmt: skip
    here = experiments(team)["here"]["metrics"]["metrics/moons.json"]
    assert here == found["sweep-4"]["metrics"]["metrics/moons.json"]


def test_a_bad_value_fails_its_point_and_the_others_land(team):
    result = sh(*SWEEP, "-S", "datasets.moons.train.lr=0.01,-1", "-S", EPOCHS, "--name", "bad", cwd=team,
                check=False)  # fmt: skip
    assert result.returncode == 1
    error = "error: params.yaml: datasets.moons.train.lr = -1: must be a number > 0"
    assert f"bad-2 failed: {error}" in result.stderr
    assert "Traceback" not in result.stderr
    assert on_origin(team) == {"bad-1"}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """Two Ray nodes of one CPU each on 127.0.0.1, each `ray start --block` in its own process group,
    so that stopping them stops exactly this cluster (never `ray stop`, which stops every Ray here)."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    env = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # stop at once
    node = ("--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--block")
    commands = [
        (
            "ray",
            "start",
            "--head",
            "--port",
            str(port),
            "--include-dashboard=false",
            "--temp-dir",
            temp,
            *node,
        ),
        ("ray", "start", "--address", f"127.0.0.1:{port}", *node),  # a worker node shares the head's temp dir
    ]
    nodes = []
    saved = {key: os.environ.get(key) for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    try:
        for i, cmd in enumerate(commands):
            log = tmp_path / f"node{i}.log"
            with open(log, "w") as out:
                nodes.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=out, start_new_session=True))
            wait_for(nodes[-1], log, "Ray runtime started")
        os.environ.update({key: env[key] for key in saved})  # the driver needs the cluster's token
        yield f"127.0.0.1:{port}"
    finally:
        for process in reversed(nodes):
            os.killpg(process.pid, signal.SIGTERM)  # --block stops its node's processes on SIGTERM
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp, ignore_errors=True)


def wait_for(process, log, text, seconds=60):
    deadline = time.monotonic() + seconds
    while text not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{' '.join(process.args)}: no {text!r}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def test_sweep_on_a_two_node_cluster_uses_both_nodes(team, cluster, tmp_path):
    summary = tmp_path / "sweep.json"
    grid = ["-S", "datasets.moons.train.lr=0.004,0.03", "-S", EPOCHS]
    sh(*SWEEP, *grid, "--name", "c", "--address", cluster, "--json", summary, cwd=team)
    results = json.loads(summary.read_text())
    assert all(r["ok"] for r in results)
    assert len({r["node"] for r in results}) == 2  # one CPU each: the two trials ran side by side
    assert on_origin(team) == {"c-1", "c-2"}


# ----------------------------------------------------------------------------- refusals, before Ray


@pytest.fixture
def pushed(project, tmp_path):
    """A clean project whose commit is on origin, with a default DVC remote: nothing to refuse."""
    return shared(project, tmp_path)


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
