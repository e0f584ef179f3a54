"""A team remote: what one person pushes, a teammate's clone pulls, reruns, shows and diffs.

Each test runs twice, against a local-directory DVC remote and an S3 one (moto's server on
127.0.0.1, dummy credentials in the environment), with a bare git repository as `origin`.
"""

import csv
import json
import logging
import uuid

import pytest
from conftest import (
    MOONS_MODEL_STAGES,
    edit_params,
    experiments,
    lock_outs,
    output_md5s,
    publish,
    ran,
    restored,
    sh,
    share,
)

pytestmark = pytest.mark.e2e

QUICK_MOONS = {"lr": 0.02, "epochs": 100}  # a second params set for moons, fast to train
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent",  # no profile or real credential of this machine is read
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
}


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 on a free port of 127.0.0.1, with dummy credentials for the dvc subprocesses."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - only the S3 runs pay for moto

    werkzeug = logging.getLogger("werkzeug")  # the server's log: a line per request
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in DUMMY_AWS.items():
                env.setenv(name, value)
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
                env.delenv(name, raising=False)
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
    finally:
        server.stop()
        werkzeug.setLevel(level)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> list[tuple[str, ...]]:
    """The commands that make the team's default DVC remote (its config is committed, never a secret)."""
    if request.param == "local":
        return [("dvc", "remote", "add", "-d", "storage", str(tmp_path / "storage"))]
    import boto3  # noqa: PLC0415

    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"team-{uuid.uuid4().hex}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return [
        ("dvc", "remote", "add", "-d", "storage", f"s3://{bucket}/cache"),
        ("dvc", "remote", "modify", "storage", "endpointurl", endpoint),
    ]


@pytest.fixture
def team(rebuilt, storage, tmp_path):
    """The first clone (a cold `dvc repro` done) with its results published, and the git origin."""
    return rebuilt, share(rebuilt, tmp_path, storage, "results, and the team's DVC remote")


def clone(origin, path):
    sh("git", "clone", "-q", origin, path, cwd=path.parent)
    return path


def curve_epochs(repo) -> list[int]:
    """The epochs in moons' learning curve, in the workspace."""
    with open(repo / "plots" / "loss" / "moons.csv", newline="") as curve:
        return [int(row["epoch"]) for row in csv.DictReader(curve)]


def quick_moons(params):
    params["datasets"]["moons"]["train"].update(QUICK_MOONS)


def test_a_teammate_pulls_and_repro_runs_nothing(team, tmp_path):
    first, origin = team
    second = clone(origin, tmp_path / "second")
    sh("dvc", "pull", "--run-cache", cwd=second)
    assert ran(sh("dvc", "repro", cwd=second)) == set()
    assert output_md5s(second) == output_md5s(first) == lock_outs(first)


def test_params_one_clone_ran_and_pushed_are_restored_in_the_other(team, tmp_path):
    """New params one clone ran and pushed are not computed again in the other, to the same bytes.

    `dvc push` sends the objects of the workspace's outputs and `--run-cache` the records of the
    stages' runs (not the objects they name: push while the workspace holds the params to share);
    `dvc repro --pull` fetches what a record names.
    """
    first, origin = team
    edit_params(first, quick_moons)
    assert ran(sh("dvc", "repro", cwd=first)) == MOONS_MODEL_STAGES
    computed = output_md5s(first)
    sh("dvc", "push", "--run-cache", cwd=first)  # the workspace is at the new params

    second = clone(origin, tmp_path / "second")
    sh("dvc", "pull", "--run-cache", cwd=second)
    edit_params(second, quick_moons)
    result = sh("dvc", "repro", "--pull", cwd=second)
    assert ran(result) == set()
    assert restored(result) == MOONS_MODEL_STAGES
    assert output_md5s(second) == computed


def test_an_experiment_pushed_by_one_is_shown_and_applied_by_the_other(team, tmp_path):
    first, origin = team
    quick = ("-S", "datasets.moons.train.lr=0.05", "-S", "datasets.moons.train.epochs=100")
    sh("dvc", "exp", "run", "-n", "quick", *quick, cwd=first)
    sh("dvc", "exp", "push", "--run-cache", "origin", "quick", cwd=first)

    second = clone(origin, tmp_path / "second")
    sh("dvc", "exp", "pull", "origin", "quick", cwd=second)
    theirs = experiments(second)
    assert theirs == experiments(first)
    assert theirs["quick"]["params"]["datasets"]["moons"]["train"] == {"epochs": 100, "lr": 0.05, "seed": 42}

    # Compared with the commit it came from, in the clone that did not run it.
    metrics = json.loads(sh("dvc", "metrics", "diff", "HEAD", "quick", "--json", cwd=second).stdout)
    assert set(metrics) == {"metrics/moons.json"}
    plots = json.loads(sh("dvc", "plots", "diff", "HEAD", "quick", "--json", cwd=second).stdout)
    assert "errors" not in plots
    assert set(plots["data"]["plots/loss/moons.csv"][0]["revisions"]) == {"HEAD", "quick"}

    # The experiment's cached outputs came along: applying it checks out what the first clone made.
    sh("dvc", "exp", "apply", "quick", cwd=second)
    assert output_md5s(second) == output_md5s(first)
    shown = json.loads((second / "metrics" / "moons.json").read_text())
    assert theirs["quick"]["metrics"]["metrics/moons.json"] == shown  # what `dvc exp show` listed


def test_a_fresh_clone_diffs_metrics_and_plots_of_two_commits_without_a_pull(team, tmp_path):
    first, origin = team
    epochs = {"HEAD~1": curve_epochs(first)}  # moons' learning curve at each revision, as trained
    edit_params(first, quick_moons)
    sh("dvc", "repro", cwd=first)
    publish(first, "moons: lr 0.02, 100 epochs")
    epochs["HEAD"] = curve_epochs(first)

    # Metrics and plots are not in git: DVC reads both revisions' from the default remote itself (a
    # local one in place; from S3 it downloads just what it reads into .dvc/cache), no fetch or pull.
    fresh = clone(origin, tmp_path / "fresh")
    metrics = json.loads(sh("dvc", "metrics", "diff", "HEAD~1", "HEAD", "--json", cwd=fresh).stdout)
    assert set(metrics) == {"metrics/moons.json"}  # spiral did not change
    assert metrics["metrics/moons.json"]["train.loss"]["diff"] != 0

    plots = json.loads(sh("dvc", "plots", "diff", "HEAD~1", "HEAD", "--json", cwd=fresh).stdout)
    assert "errors" not in plots
    values = plots["data"]["plots/loss/moons.csv"][0]["content"]["data"]["values"]
    for rev in ("HEAD~1", "HEAD"):
        assert sorted({int(point["epoch"]) for point in values if point["rev"] == rev}) == epochs[rev]
    for name in ("predictions.csv", "roc.csv", "boundary_train.png", "boundary_test.png"):
        items = plots["data"][f"plots/moons/{name}"]
        assert {rev for item in items for rev in item["revisions"]} == {"HEAD~1", "HEAD"}
    assert not (fresh / "plots").exists()  # and left the workspace as git made it
