"""Bad input and faults through the real CLI: one clear line, a non-zero exit, nothing lost."""

import math
import os
import signal
import subprocess
import sys
import warnings

import pytest
import yaml
from conftest import (
    DATASETS,
    DELETE,
    ROOT,
    Exploit,
    assert_one_line_error,
    edit_params,
    lock_outs,
    ran,
    run_stage,
    set_in,
    sh,
    stage_command,
    strict_json,
)

from stages.errors import one_line_warning

pytestmark = pytest.mark.e2e


def stage(repo, module, name="moons"):
    return run_stage(repo, module, name)


def set_key(path, value):
    """A change to params for edit_params: the dotted path's value replaced, or deleted for DELETE."""
    return lambda params: set_in(params, path, value)


# Each message is tested in test_params.py and test_memory.py, in-process; here, one of each kind
# through a stage's command line: one line, exit 1, no traceback, nothing written.
BAD_PARAMS = [
    ("datasets.moons.train.epochs", 2.5, "datasets.moons.train.epochs = 2.5: must be an integer >= 1"),
    ("datasets.moons.train.epochz", 10, "unknown key datasets.moons.train.epochz; allowed: epochs, lr, seed"),
    ("datasets.moons.data.classes", 3, "datasets.moons.data.classes = 3: kind moons makes exactly 2 classes"),
    (
        "datasets.moons.model.hidden",
        [2**63],
        "datasets.moons.model.hidden = [9223372036854775808]: needs over 1,000,000 GB of memory (the "
        "activations of 1000 points in a training step, 65536 in scoring), this machine has ",
    ),
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


MOONS = yaml.safe_load((ROOT / "params.yaml").read_text())["datasets"]["moons"]
RULE = "must be letters, digits, '_' or '-'"

# Refused through `dvc repro`, as the stage's one line after its progress lines (if any) and before
# DVC's own `ERROR: failed to reproduce ...`: what follows `error: `.
REFUSED_THEN_FIXED = [
    ("datasets.moons.train.epochz", 5, DELETE, "params.yaml: unknown key datasets.moons.train.epochz"),
    ("datasets.moons.data.seed", 2**32, 42, "params.yaml: datasets.moons.data.seed = 4294967296: must be"),
    (
        "datasets.moons.data.n_samples",
        10**13,
        1000,
        "params.yaml: datasets.moons.data.n_samples = 10000000000000: needs",
    ),
    # What goes wrong once the stages run: a name DVC's shell splits, divergence, a split too small
    (("datasets", "my moons"), MOONS, DELETE, f"params.yaml: dataset name 'my moons' {RULE}"),
    (
        "datasets.moons.train.lr",
        1e30,
        0.01,
        "training moons diverged: its train loss is nan at epoch 10 (finite at epoch 0); "
        "lower datasets.moons.train.lr = 1e+30",
    ),
    (
        "datasets.moons.data.n_samples",
        5,
        1000,
        "datasets.moons: a stratified split of 5 points with test_size 0.2 leaves class 0 with no point "
        "in the test set (4 train and 1 test points, 2 classes); raise datasets.moons.data.n_samples or "
        "datasets.moons.split.test_size",
    ),
]


def ends_in_one_line_error(stderr, expected, by_dvc=False):
    """A failed stage's stderr: its progress lines, then one line `error: <expected>...`, then (run by
    `dvc repro`) DVC's own; no traceback, no warning. Returns the error line."""
    *progress, error = stderr.strip().splitlines()
    if by_dvc:
        assert error.startswith("ERROR: failed to reproduce "), stderr
        *progress, error = progress
    assert error.startswith(f"error: {expected}"), stderr
    assert all(line.startswith("train moons on ") for line in progress), stderr
    return error


@pytest.mark.parametrize(
    ("key", "bad", "good", "expected"),
    REFUSED_THEN_FIXED,
    ids=[f"{'.'.join(k) if isinstance(k, tuple) else k}={v!r:.20}" for k, v, _, _ in REFUSED_THEN_FIXED],
)
def test_refused_through_dvc_repro_then_fixed_restores_every_hash(rebuilt, key, bad, good, expected):
    before = lock_outs(rebuilt)
    edit_params(rebuilt, set_key(key, bad))
    failed = sh("dvc", "repro", cwd=rebuilt, check=False)
    assert failed.returncode != 0
    ends_in_one_line_error(failed.stderr, expected, by_dvc=True)

    edit_params(rebuilt, set_key(key, good))
    fixed = sh("dvc", "repro", cwd=rebuilt)  # restores what the failed run removed, from the cache
    assert ran(fixed) == set()
    assert lock_outs(rebuilt) == before
    assert (rebuilt / "models" / "moons.safetensors").exists()
    assert sh("dvc", "status", cwd=rebuilt).stdout.strip() == "Data and pipelines are up to date."


TRAINED = ["models/moons.safetensors", "models/moons.snapshots.safetensors"]
TRAINED += ["plots/loss/moons.csv", "plots/accuracy/moons.csv"]
DIVERGED = [
    ("datasets.moons.train.lr", 1e30, "lower datasets.moons.train.lr = 1e+30"),
    (
        "datasets.moons.train.weight_decay",
        1e39,
        "lower datasets.moons.train.lr = 0.01 or datasets.moons.train.weight_decay = 1e+39",
    ),
    (
        "datasets.moons.train.l1",
        1e39,
        "lower datasets.moons.train.lr = 0.01 or datasets.moons.train.l1 = 1e+39",
    ),
]


@pytest.mark.parametrize(("key", "value", "keys"), DIVERGED, ids=[f"{k}={v!r}" for k, v, _ in DIVERGED])
def test_training_that_diverges_stops_in_one_line_and_writes_nothing(rebuilt, key, value, keys):
    before = {path: (rebuilt / path).read_bytes() for path in TRAINED}
    edit_params(rebuilt, set_key(key, value))
    result = stage(rebuilt, "train")
    assert result.returncode == 1
    expected = f"training moons diverged: its train loss is nan at epoch 10 (finite at epoch 0); {keys}"
    assert ends_in_one_line_error(result.stderr, expected) == f"error: {expected}"
    assert {path: (rebuilt / path).read_bytes() for path in TRAINED} == before


def test_points_too_large_for_float32_stop_training_at_epoch_0(rebuilt):
    before = {path: (rebuilt / path).read_bytes() for path in TRAINED}
    edit_params(rebuilt, set_key("datasets.moons.data.noise", 1e39))
    for module in ("generate", "split"):
        assert stage(rebuilt, module).returncode == 0
    assert_one_line_error(
        stage(rebuilt, "train"),
        "error: training moons: the untrained model's train loss is nan (epoch 0): the points are too "
        "large for float32; lower datasets.moons.data.noise",
    )
    assert {path: (rebuilt / path).read_bytes() for path in TRAINED} == before


def test_no_output_of_a_run_holds_nan_or_infinity(built):
    """Every metrics file parses as a browser's JSON.parse reads it, and every plot CSV is numbers."""
    metrics = sorted((built / "metrics").glob("*.json"))
    assert [path.stem for path in metrics] == sorted(DATASETS)
    for path in metrics:
        strict_json(path.read_text())
    tables = sorted((built / "plots").rglob("*.csv"))
    assert len(tables) == 4 * len(DATASETS)  # the loss and accuracy curves, predictions, ROC
    for path in tables:
        _, *rows = path.read_text().splitlines()
        cells = [cell for row in rows for cell in row.split(",")]
        assert cells and all(math.isfinite(float(cell)) for cell in cells), path


def test_a_model_of_nan_writes_no_metrics(rebuilt):
    """A checkpoint whose weights are NaN (valid safetensors): evaluate refuses to write NaN metrics."""
    import numpy as np  # noqa: PLC0415
    from safetensors import safe_open  # noqa: PLC0415
    from safetensors.numpy import save_file  # noqa: PLC0415

    path = rebuilt / "models" / "moons.safetensors"
    with safe_open(path, framework="numpy") as file:
        metadata, weights = file.metadata(), {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    save_file({name: np.full_like(array, np.nan) for name, array in weights.items()}, path, metadata=metadata)
    metrics = rebuilt / "metrics" / "moons.json"
    before = metrics.read_bytes()
    assert_one_line_error(
        stage(rebuilt, "evaluate"),
        "error: metrics/moons.json: train.loss = nan is not a finite number (JSON has none); nothing written",
    )
    assert metrics.read_bytes() == before


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
    (
        "underscore",
        "x1,x2,label\n0.1,1_0,0\n",
        "data/moons/all.csv: row 2, column x2: '1_0' is not a finite number",
    ),
    (
        "overflow",
        "x1,x2,label\n1e999,0.2,0\n",
        "data/moons/all.csv: row 2, column x1: 1e999 is not a finite number",
    ),
    (
        "byte-order mark",
        "\ufeffx1,x2,label\n0.1,0.2,0\n",
        "data/moons/all.csv: starts with a byte-order mark",
    ),
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


TOO_SMALL = [
    (
        {"datasets.moons.data.n_samples": 5},
        "moons",
        "datasets.moons: a stratified split of 5 points with test_size 0.2 leaves class 0 with no point in "
        "the test set (4 train and 1 test points, 2 classes); raise datasets.moons.data.n_samples or "
        "datasets.moons.split.test_size",
    ),
    (
        {"datasets.moons.data.n_samples": 4, "datasets.moons.split.test_size": 0.9},
        "moons",
        "datasets.moons: a stratified split of 4 points with test_size 0.9 leaves class 0 with no point in "
        "the train set (0 train and 4 test points, 2 classes); raise datasets.moons.data.n_samples, or "
        "lower datasets.moons.split.test_size",
    ),
    (
        {"datasets.spiral.data.n_samples": 6},
        "spiral",
        "datasets.spiral: a stratified split of 6 points with test_size 0.2 leaves class 2 with no point in "
        "the test set (4 train and 2 test points, 3 classes); raise datasets.spiral.data.n_samples or "
        "datasets.spiral.split.test_size, or lower datasets.spiral.data.classes",
    ),
]


@pytest.mark.parametrize(
    ("changes", "name", "expected"), TOO_SMALL, ids=["test set", "train set", "three classes"]
)
def test_data_too_small_for_its_split_is_refused(rebuilt, changes, name, expected):
    """Drawn by the real generator, then split: refused before anything is written."""
    sets = [rebuilt / "data" / name / f"{part}.csv" for part in ("train", "test")]
    before = [path.read_bytes() for path in sets]
    for key, value in changes.items():
        edit_params(rebuilt, set_key(key, value))
    assert stage(rebuilt, "generate", name).returncode == 0
    result = stage(rebuilt, "split", name)
    assert_one_line_error(result, expected)
    assert result.stderr == f"error: {expected}\n"
    assert [path.read_bytes() for path in sets] == before


def test_a_library_warning_is_one_line(rebuilt):
    """torchmetrics warns in Python's two lines when a test set lacks a class (which the split now
    refuses; a test set written by hand still can): each warning reaches the terminal as one line."""
    path = rebuilt / "data" / "moons" / "test.csv"
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header, *(row for row in rows if row.endswith(",1"))]) + "\n")
    result = stage(rebuilt, "evaluate")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith("warning: UserWarning: ") for line in lines), result.stderr
    assert (
        "warning: UserWarning: No negative samples in targets, false positive value should be meaningless. "
        "Returning zero tensor in false positive score"
    ) in lines


def test_a_warning_of_many_lines_is_shown_as_its_first(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = one_line_warning  # as stages.runner.run sets it
        warnings.warn("first line\n  second line\nthird", RuntimeWarning, stacklevel=1)
        warnings.warn("\n", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == "warning: RuntimeWarning: first line\nwarning: UserWarning: \n"


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


# ---------------------------------------------------------------------------------------------
# Killed while writing. A hook in the writer's own process lets the write of `target` put half its
# bytes on disk, says so on stdout, and waits: the kill then lands exactly while the file is being
# written, after the temporary file exists and before the rename, every run. The same test runs with
# the project's writer replaced by a plain `open(path, "wb")` one, and must catch that.

STALL_WRITES = """
import contextlib, os, time
from stages import files

TARGET, AFTER, PLAIN = {target!r}, {after!r}, {plain!r}
written = 0


class Stalling:
    def __init__(self, file):
        self.file = file

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.file.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def write(self, data):
        global written
        if written + len(data) <= AFTER:
            written += len(data)
            return self.file.write(data)
        self.file.write(data[: max(AFTER - written, len(data) // 2)])
        self.file.flush()
        os.fsync(self.file.fileno())
        print("stalled", os.path.basename(self.file.name), flush=True)
        time.sleep(600)


def stalling_open(path, mode="r", *args, **kwargs):
    file = open(path, mode, *args, **kwargs)
    name = os.path.basename(path)
    if "w" in mode and (name == TARGET or name.startswith("." + TARGET + ".")):
        return Stalling(file)
    return file


files.open = stalling_open
if PLAIN:
    @contextlib.contextmanager
    def plain(path):
        with files.open(path, "wb") as file:
            yield file

    files.atomic_file = plain
"""


def kill_while_writing(command, cwd, target):
    """Start `command` (a writer with STALL_WRITES installed), SIGKILL its process group once the write
    of `target` has begun; return the name of the file it was writing."""
    writer = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        line = writer.stdout.readline()  # blocks until the hook reports, or the writer exits
        assert line.startswith("stalled "), f"the writer never wrote {target}: {writer.stderr.read()}"
    finally:
        os.killpg(writer.pid, signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL
    return line.split()[1]


def assert_whole(path, old: bytes):
    """What a killed writer must leave at `path`: the old file, byte for byte."""
    assert path.read_bytes() == old, f"{path.name}: {path.stat().st_size} bytes of a half-written file"


WRITE_POINTS = """
import numpy as np
from stages.files import write_points
n = 300_000
write_points({path!r}, np.random.default_rng(0).normal(size=(n, 2)), np.zeros(n, np.int64))
"""


@pytest.mark.parametrize("writer", ["atomic", "plain"])
def test_a_writer_killed_mid_file_leaves_the_old_file(tmp_path, writer):
    """SIGKILL with 2 MB of a CSV written: the old file stays whole; a plain writer's does not."""
    path = tmp_path / "points.csv"
    old = b"x1,x2,label\n0.5,0.25,1\n"
    path.write_bytes(old)
    hook = STALL_WRITES.format(target=path.name, after=2_000_000, plain=writer == "plain")
    code = hook + WRITE_POINTS.format(path=str(path))
    writing = kill_while_writing([sys.executable, "-c", code], ROOT, path.name)

    if writer == "plain":  # the same check, against a writer that truncates the file in place
        assert writing == path.name
        with pytest.raises(AssertionError, match="half-written"):
            assert_whole(path, old)
        return
    assert_whole(path, old)
    assert writing.startswith(f".{path.name}.") and writing.endswith(".tmp")  # killed before the rename
    assert (tmp_path / writing).stat().st_size >= 2_000_000
    # The next write replaces the file and clears what the killed writer left behind.
    from stages.files import write_bytes  # noqa: PLC0415

    write_bytes(path, b"new\n")
    assert path.read_bytes() == b"new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["points.csv"]


@pytest.mark.parametrize("writer", ["atomic", "plain"])
def test_training_killed_while_writing_its_checkpoint_loses_nothing(rebuilt, writer):
    """Train with new params, SIGKILLed once its checkpoint's bytes are going to disk: the old
    checkpoint stays whole and readable; a plain writer leaves half of the new one. Then `dvc repro`
    recovers, and the committed params restore every output from the run-cache."""
    before = lock_outs(rebuilt)
    model = rebuilt / "models" / "moons.safetensors"
    old = model.read_bytes()
    edit_params(rebuilt, set_key("datasets.moons.train.epochs", 999))
    hook = STALL_WRITES.format(target=model.name, after=0, plain=writer == "plain")
    writing = kill_while_writing(stage_command("train", "moons", hook), rebuilt, model.name)

    if writer == "plain":
        assert writing == model.name
        with pytest.raises(AssertionError, match="half-written"):
            assert_whole(model, old)
        assert_one_line_error(stage(rebuilt, "evaluate"), "models/moons.safetensors: not a Boundary Lab")
        return
    assert_whole(model, old)
    assert writing.startswith(".moons.safetensors.") and writing.endswith(".tmp")
    assert (model.parent / writing).exists()  # killed between the temporary file and the rename
    assert stage(rebuilt, "evaluate").returncode == 0  # the old checkpoint still loads

    sh("dvc", "repro", "train@moons", cwd=rebuilt)  # the rerun finishes and clears the stale file
    assert [p.name for p in model.parent.iterdir() if p.name.endswith(".tmp")] == []
    edit_params(rebuilt, set_key("datasets.moons.train.epochs", 1000))
    restored = sh("dvc", "repro", cwd=rebuilt)
    assert "Stage 'train@moons' is cached - skipping run" in restored.stdout
    assert lock_outs(rebuilt) == before
    assert model.read_bytes() == old
