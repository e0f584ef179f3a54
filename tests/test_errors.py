"""Bad input and faults through the real CLI: one clear line, a non-zero exit, nothing lost."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, edit_params, lock_outs, sh

pytestmark = pytest.mark.e2e


def stage(repo, module, name="moons"):
    return sh(sys.executable, "-m", f"stages.{module}", name, cwd=repo, check=False)


def assert_one_line_error(result, expected):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


def set_key(path, value):
    """A change to params: the dotted path's value replaced, or deleted when value is DELETE."""

    def change(params):
        *parents, last = path.split(".")
        for key in parents:
            params = params[key]
        if value is DELETE:
            del params[last]
        else:
            params[last] = value

    return change


DELETE = object()

BAD_PARAMS = [
    ("datasets.moons.train.epochs", 0, "datasets.moons.train.epochs = 0: must be an integer >= 1"),
    ("datasets.moons.train.epochs", 2.5, "datasets.moons.train.epochs = 2.5: must be an integer >= 1"),
    ("datasets.moons.train.epochs", "ten", "datasets.moons.train.epochs = 'ten': must be an integer >= 1"),
    ("datasets.moons.train.lr", 0, "datasets.moons.train.lr = 0: must be a number > 0"),
    ("datasets.moons.train.lr", -0.1, "datasets.moons.train.lr = -0.1: must be a number > 0"),
    ("datasets.moons.data.noise", -0.2, "datasets.moons.data.noise = -0.2: must be a number >= 0"),
    ("datasets.moons.data.n_samples", 0, "datasets.moons.data.n_samples = 0: must be an integer >= 1"),
    ("datasets.moons.data.n_samples", True, "datasets.moons.data.n_samples = True: must be an integer >= 1"),
    (
        "datasets.moons.split.test_size",
        1.0,
        "datasets.moons.split.test_size = 1.0: must be a number in (0, 1)",
    ),
    (
        "datasets.moons.split.test_size",
        0,
        "datasets.moons.split.test_size = 0: must be a number in (0, 1)",
    ),
    ("datasets.moons.model.hidden", [], "datasets.moons.model.hidden = []: must be a non-empty list of"),
    ("datasets.moons.model.hidden", [16, 0], "datasets.moons.model.hidden[1] = 0: must be an integer >= 1"),
    ("datasets.spiral.data.classes", 1, "datasets.spiral.data.classes = 1: must be an integer >= 2"),
    ("datasets.moons.data.classes", 3, "datasets.moons.data.classes = 3: kind moons makes exactly 2 classes"),
    ("datasets.moons.data.kind", "swirl", "datasets.moons.data.kind = 'swirl': must be one of moons, spiral"),
    (
        "datasets.moons.model.activation",
        "Relu",
        "datasets.moons.model.activation = 'Relu': must be one of relu, tanh, sigmoid, pure_tanh",
    ),
    (
        "datasets.moons.train.device",
        "gpu",
        "datasets.moons.train.device = 'gpu': must be one of cpu, cuda, auto",
    ),
    ("plot.resolution", 2, "plot.resolution = 2: must be an integer in [10, 2000]"),
    ("datasets.moons.train.epochz", 10, "unknown key datasets.moons.train.epochz; allowed: epochs, lr, seed"),
    ("plots", {"resolution": 10}, "unknown key plots; allowed: datasets, generalization, plot"),
    ("datasets.moons.split", DELETE, "missing key datasets.moons.split"),
    ("datasets.moons.model", [16, 16], "datasets.moons.model must be a mapping, got [16, 16]"),
]


@pytest.mark.parametrize(
    ("key", "value", "expected"), BAD_PARAMS, ids=[f"{k}={v!r}" for k, v, _ in BAD_PARAMS]
)
def test_bad_params_are_refused_before_any_work(rebuilt, key, value, expected):
    before = (rebuilt / "data" / "moons" / "train.csv").read_bytes()
    edit_params(rebuilt, set_key(key, value))
    assert_one_line_error(stage(rebuilt, "split"), f"error: params.yaml: {expected}")
    assert (rebuilt / "data" / "moons" / "train.csv").read_bytes() == before


def test_params_that_are_not_yaml(rebuilt):
    (rebuilt / "params.yaml").write_text("datasets: {moons: [\n")
    assert_one_line_error(stage(rebuilt, "split"), "error: params.yaml: not valid YAML at line 2")


def test_typo_through_dvc_repro_then_fixed_restores_every_hash(rebuilt):
    before = lock_outs(rebuilt)
    edit_params(rebuilt, set_key("datasets.moons.train.epochz", 5))
    failed = sh("dvc", "repro", cwd=rebuilt, check=False)
    assert failed.returncode != 0
    assert "error: params.yaml: unknown key datasets.moons.train.epochz" in failed.stderr
    assert "Traceback" not in failed.stderr

    edit_params(rebuilt, set_key("datasets.moons.train.epochz", DELETE))
    sh("dvc", "repro", cwd=rebuilt)  # restores what the failed run removed, from the cache
    assert lock_outs(rebuilt) == before
    assert (rebuilt / "models" / "moons.safetensors").exists()
    assert sh("dvc", "status", cwd=rebuilt).stdout.strip() == "Data and pipelines are up to date."


def test_no_cuda_is_a_clear_error(rebuilt):
    import torch  # noqa: PLC0415

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    edit_params(rebuilt, set_key("datasets.moons.train.device", "cuda"))
    result = stage(rebuilt, "train")
    assert_one_line_error(result, "datasets.moons.train.device = 'cuda': this torch (")


BAD_DATA = [
    ("missing", None, "data/moons/all.csv: file not found"),
    ("empty file", "", "data/moons/all.csv: not a readable CSV"),
    ("header only", "x1,x2,label\n", "data/moons/all.csv: has no rows"),
    ("wrong columns", "a,b,c\n1,2,0\n", "data/moons/all.csv: columns are a,b,c; expected x1,x2,label"),
    ("non-numeric", "x1,x2,label\n0.1,0.2,0\n0.3,abc,1\n", "row 3, column x2: 'abc' is not a finite number"),
    ("NaN", "x1,x2,label\n0.1,nan,0\n", "data/moons/all.csv: row 2, column x2: nan is not a finite number"),
    ("label too big", "x1,x2,label\n0.1,0.2,0\n0.3,0.4,2\n", "column label: 2 is not a class label in 0..1"),
    ("label not integer", "x1,x2,label\n0.1,0.2,0.5\n", "column label: 0.5 is not a class label in 0..1"),
]


@pytest.mark.parametrize(("case", "text", "expected"), BAD_DATA, ids=[case for case, _, _ in BAD_DATA])
def test_bad_data_files_are_named_with_the_problem(rebuilt, case, text, expected):
    path = rebuilt / "data" / "moons" / "all.csv"
    if text is None:
        path.unlink()
    else:
        path.write_text(text)
    before = (rebuilt / "data" / "moons" / "train.csv").read_bytes()
    assert_one_line_error(stage(rebuilt, "split"), expected)
    assert (rebuilt / "data" / "moons" / "train.csv").read_bytes() == before


def test_a_split_that_leaves_a_set_empty(rebuilt):
    edit_params(rebuilt, set_key("datasets.moons.split.test_size", 0.0001))
    edit_params(rebuilt, set_key("datasets.moons.data.n_samples", 4))
    (rebuilt / "data" / "moons" / "all.csv").write_text("x1,x2,label\n0,0,0\n1,1,1\n0,1,0\n1,0,1\n")
    result = stage(rebuilt, "split")
    assert result.returncode == 0  # one test point: ceil(0.0001 * 4)
    edit_params(rebuilt, set_key("datasets.moons.split.test_size", 0.9999))
    assert_one_line_error(
        stage(rebuilt, "split"), "test_size = 0.9999 leaves the train set of 4 points empty"
    )


class Exploit:
    """Unpickling this runs a shell command: what a tampered pickle-based checkpoint could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("module", ["evaluate", "plot"])
def test_a_checkpoint_holding_code_is_refused_not_run(rebuilt, module):
    import torch  # noqa: PLC0415

    marker = rebuilt / "exploited"
    torch.save({"config": Exploit(marker), "state_dict": {}}, rebuilt / "models" / "moons.safetensors")
    assert_one_line_error(stage(rebuilt, module), "models/moons.safetensors: not a Boundary Lab checkpoint")
    assert not marker.exists()


def test_a_truncated_checkpoint_is_refused(rebuilt):
    path = rebuilt / "models" / "moons.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    for module in ("evaluate", "plot"):
        assert_one_line_error(
            stage(rebuilt, module), "models/moons.safetensors: not a Boundary Lab checkpoint"
        )


def test_killed_training_leaves_no_partial_file_and_repro_recovers(rebuilt):
    before = lock_outs(rebuilt)
    old_model = (rebuilt / "models" / "moons.safetensors").read_bytes()
    edit_params(rebuilt, set_key("datasets.moons.train.epochs", 4000))
    run = subprocess.Popen(
        ["dvc", "repro", "train@moons"],
        cwd=rebuilt,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    for line in run.stdout:  # wait until training is under way
        if "train moons on cpu: epoch  400/4000" in line:
            break
    time.sleep(0.5)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    run.stdout.close()

    model = rebuilt / "models" / "moons.safetensors"
    assert not model.exists() or model.read_bytes() == old_model  # never half a checkpoint
    edit_params(rebuilt, set_key("datasets.moons.train.epochs", 1000))
    sh("dvc", "repro", cwd=rebuilt)
    assert lock_outs(rebuilt) == before
    assert [p for p in rebuilt.rglob("*.tmp") if ".dvc" not in p.parts] == []


def test_killed_write_keeps_the_old_file(tmp_path):
    """SIGKILL while a big file is being written: the old file stays whole."""
    path = tmp_path / "points.csv"
    path.write_text("old\n")
    code = (
        "import numpy as np, sys\n"
        "from stages.files import write_points\n"
        "print('writing', flush=True)\n"
        "n = 3_000_000\n"
        f"write_points({str(path)!r}, np.random.default_rng(0).normal(size=(n, 2)), np.zeros(n, int))\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    time.sleep(0.5)
    writer.kill()
    writer.wait()
    writer.stdout.close()
    assert path.read_text() == "old\n"
    # The next write replaces the file and clears what the killed writer left behind.
    from stages.files import write_bytes  # noqa: PLC0415

    write_bytes(path, b"new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["points.csv"]
