"""stages.params: the committed params.yaml parses, and every bad input is one clear ParamsError.

The oracle for a good file is the raw YAML itself (every value read back must equal it); for a bad
one, the message must name the full key path and what is allowed, on a single line.
"""

import copy
import math
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import DELETE, ROOT, assert_one_line, set_in

from stages import models, params
from stages.params import ParamsError, load_params, parse_params

PARAMS_YAML = ROOT / "params.yaml"

# The base that the tables below change one key of: fixed here, so that editing params.yaml (another
# dataset, other settings) does not move these tests. The committed file has its own tests.
BASE_YAML = """
datasets:
  moons:
    data: {kind: moons, n_samples: 1000, noise: 0.2, seed: 42}
    split: {test_size: 0.2, seed: 42}
    model: {hidden: [16, 16], activation: relu}
    train: {epochs: 1000, lr: 0.01, seed: 42}
  spiral:
    data: {kind: spiral, n_samples: 1500, classes: 3, noise: 0.2, seed: 42}
    split: {test_size: 0.2, seed: 42}
    model: {hidden: [64, 64], activation: relu}
    train: {epochs: 1000, lr: 0.01, seed: 42}
generalization: {n_samples: 100000}
plot: {resolution: 200, max_points: 2000, dpi: 100}
"""


@pytest.fixture
def raw():
    """BASE_YAML as plain data, a fresh copy per test."""
    return yaml.safe_load(BASE_YAML)


@pytest.fixture
def committed():
    return yaml.safe_load(PARAMS_YAML.read_text())


def mutated(raw, path, value):
    return set_in(copy.deepcopy(raw), path, value)


def assert_one_line_error(raw, *fragments):
    with pytest.raises(ParamsError) as caught:
        parse_params(raw)
    message = str(caught.value)
    assert_one_line(loose(message), *map(loose, fragments), start="params.yaml: ")
    return message


def loose(text):
    """Numbers compared as values, not spellings: `0.0` and `0`, `-1.0` and `-1` read the same."""
    return re.sub(r"(\d)\.0\b", r"\1", text)


# ---------------------------------------------------------------------------------------------
# The committed file


def test_committed_params_load_and_equal_the_yaml(committed, monkeypatch):
    monkeypatch.chdir(ROOT)
    loaded = load_params()
    assert loaded == load_params(str(PARAMS_YAML)) == parse_params(committed)
    assert list(loaded.datasets) == list(committed["datasets"])
    for name, sections in committed["datasets"].items():
        dataset = loaded.dataset(name)
        for section, values in sections.items():
            for key, value in values.items():
                got = getattr(getattr(dataset, section), key)
                if isinstance(got, float):  # an int (lr: 1) or a YAML 1.1 string (lr: 1e-3) becomes a float
                    assert got == float(value), (name, section, key, got, value)
                else:
                    assert got == value and type(got) is type(value), (name, section, key, got, value)
    for section in ("generalization", "plot"):
        for key, value in committed.get(section, {}).items():
            assert getattr(getattr(loaded, section), key) == value


def test_defaults_fill_optional_keys(raw):
    moons = parse_params(raw).dataset("moons")
    assert moons.data.classes == 2
    assert (moons.train.weight_decay, moons.train.batch_size, moons.train.log_every) == (0.0, None, 10)
    assert moons.train.device == "cpu"
    del raw["plot"], raw["generalization"]
    loaded = parse_params(raw)
    assert (loaded.plot.resolution, loaded.plot.max_points, loaded.plot.dpi) == (200, 2000, 100)
    assert loaded.generalization.n_samples == 100_000


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("datasets", "moons", "train", "lr"), "1e-3", 0.001),  # YAML 1.1 reads 1e-3 as a string
        (("datasets", "moons", "train", "lr"), " 2.5E-2 ", 0.025),
        (("datasets", "moons", "train", "lr"), 1, 1.0),  # an int where a float is wanted
        (("datasets", "moons", "data", "noise"), 0, 0.0),  # closed lower bound
        (("datasets", "moons", "split", "test_size"), 0.5, 0.5),
        (("datasets", "moons", "train", "batch_size"), None, None),
        (("datasets", "moons", "train", "batch_size"), 32, 32),
        (("datasets", "moons", "train", "device"), "auto", "auto"),
        (("plot", "resolution"), 10, 10),  # closed bounds of [10, 2000]
        (("plot", "resolution"), 2000, 2000),
        (("datasets", "spiral", "data", "n_samples"), 6, 6),  # exactly 2 per class for 3 classes
        (("datasets", "spiral", "data", "classes"), 10, 10),  # as many as the plots have colours
        (("datasets", "moons", "data", "seed"), 2**32 - 1, 2**32 - 1),  # the largest seed
        (("datasets", "moons", "train", "seed"), 0, 0),
    ],
)
def test_accepted_values(raw, path, value, expected):
    loaded = parse_params(mutated(raw, path, value))
    node = loaded
    for key in path:
        node = node[key] if isinstance(node, dict) else getattr(node, key)
    assert node == expected and type(node) is type(expected)


def test_lr_written_1e_3_in_yaml_is_accepted(tmp_path):
    text = BASE_YAML.replace("lr: 0.01", "lr: 1e-3", 1)
    assert "lr: 1e-3" in text
    assert yaml.safe_load(text)["datasets"]["moons"]["train"]["lr"] == "1e-3"  # why it matters
    (tmp_path / "params.yaml").write_text(text)
    lr = load_params(str(tmp_path / "params.yaml")).dataset("moons").train.lr
    assert lr == 0.001 and type(lr) is float


def test_unknown_dataset_names_the_defined_ones(raw):
    with pytest.raises(ParamsError, match=r"no dataset 'nope' under datasets \(defined: moons, spiral\)"):
        parse_params(raw).dataset("nope")


def test_activation_names_agree_with_the_models_module():
    assert tuple(models.ACTIVATIONS) == tuple(params.ACTIVATIONS)
    for name in params.ACTIVATIONS:
        models.MLP([3], name, 2)  # each one builds


# ---------------------------------------------------------------------------------------------
# Bad values: ParamsError, one line, full key path, the value and what is allowed

M, S = ("datasets", "moons"), ("datasets", "spiral")
KINDS = "one of moons, spiral, circles, xor, blobs"
ACTS = "one of " + ", ".join(params.ACTIVATIONS)
TRAIN_KEYS = "allowed: epochs, lr, seed, weight_decay, l1, batch_size, log_every, device"
SEEDS = "an integer in [0, 4294967295]"  # scikit-learn's random_state takes no more

BAD = [
    # id, path, value, what the message must hold besides the key path (values compared loosely: 0 == 0.0)
    ("n_samples str", (*M, "data", "n_samples"), "1000", "n_samples = '1000'", "an integer >= 1"),
    ("n_samples float", (*M, "data", "n_samples"), 1000.0, "n_samples = 1000", "an integer >= 1"),
    ("n_samples 0", (*M, "data", "n_samples"), 0, "n_samples = 0", "an integer >= 1"),
    ("n_samples -5", (*M, "data", "n_samples"), -5, "n_samples = -5", "an integer >= 1"),
    ("epochs bool", (*M, "train", "epochs"), True, "epochs = True", "an integer >= 1"),
    ("epochs 0", (*M, "train", "epochs"), 0, "epochs = 0", "an integer >= 1"),
    ("epochs 1.5", (*M, "train", "epochs"), 1.5, "epochs = 1.5", "an integer >= 1"),
    ("epochs str", (*M, "train", "epochs"), "10", "epochs = '10'", "an integer >= 1"),
    ("seed bool", (*M, "data", "seed"), False, "seed = False", SEEDS),
    ("seed negative", (*M, "split", "seed"), -1, "seed = -1", SEEDS),
    ("data seed 2**32", (*M, "data", "seed"), 2**32, "seed = 4294967296", SEEDS),
    ("split seed 2**64", (*M, "split", "seed"), 2**64, "seed = 18446744073709551616", SEEDS),
    ("train seed 2**64", (*M, "train", "seed"), 2**64, "seed = 18446744073709551616", SEEDS),
    ("lr 0", (*M, "train", "lr"), 0, "lr = 0", "a number > 0"),
    ("lr negative", (*M, "train", "lr"), -0.01, "lr = -0.01", "a number > 0"),
    ("lr bool", (*M, "train", "lr"), True, "lr = True", "a number > 0"),
    ("lr text", (*M, "train", "lr"), "fast", "lr = 'fast'", "a number > 0"),
    ("lr nan text", (*M, "train", "lr"), "nan", "lr = ", "a number > 0"),
    ("lr inf", (*M, "train", "lr"), math.inf, "lr = inf", "a number > 0"),
    ("lr list", (*M, "train", "lr"), [0.1], "lr = [0.1]", "a number > 0"),
    ("noise negative", (*S, "data", "noise"), -0.2, "noise = -0.2", "a number >= 0"),
    ("weight_decay neg", (*M, "train", "weight_decay"), -1e-4, "weight_decay = -0.0001", "a number >= 0"),
    ("test_size 0", (*M, "split", "test_size"), 0, "test_size = 0", "a number in (0, 1)"),
    ("test_size 1", (*M, "split", "test_size"), 1, "test_size = 1", "a number in (0, 1)"),
    ("test_size 1.5", (*M, "split", "test_size"), 1.5, "test_size = 1.5", "a number in (0, 1)"),
    ("hidden 0", (*S, "model", "hidden"), [64, 0], "hidden[1] = 0", "an integer >= 1"),
    ("hidden bool", (*S, "model", "hidden"), [True], "hidden[0] = True", "an integer >= 1"),
    ("hidden float", (*S, "model", "hidden"), [6.5], "hidden[0] = 6.5", "an integer >= 1"),
    ("hidden scalar", (*S, "model", "hidden"), 64, "hidden = 64", "a list of an integer >= 1"),
    ("classes 1", (*S, "data", "classes"), 1, "classes = 1", "an integer in [2, 10]"),
    ("classes 11", (*S, "data", "classes"), 11, "classes = 11", "an integer in [2, 10]"),
    ("classes 3 moons", (*M, "data", "classes"), 3, "classes = 3", "kind moons makes exactly 2 classes"),
    ("kind unknown", (*M, "data", "kind"), "moon", "kind = 'moon'", KINDS),
    ("kind not str", (*M, "data", "kind"), 3, "kind = 3", KINDS),
    ("activation", (*M, "model", "activation"), "softmax", "activation = 'softmax'", ACTS),
    ("activation case", (*M, "model", "activation"), "ReLU", "activation = 'ReLU'", ACTS),
    ("value with newline", (*M, "model", "activation"), "relu\ntanh", "activation = 'relu\\ntanh'", ACTS),
    ("device", (*M, "train", "device"), "tpu", "device = 'tpu'", "one of cpu, cuda, auto"),
    ("batch_size 0", (*M, "train", "batch_size"), 0, "batch_size = 0", "an integer >= 1"),
    ("log_every 0", (*M, "train", "log_every"), 0, "log_every = 0", "an integer >= 1"),
    ("resolution 5", ("plot", "resolution"), 5, "resolution = 5", "an integer in [10, 2000]"),
    ("resolution big", ("plot", "resolution"), 2001, "resolution = 2001", "an integer in [10, 2000]"),
    ("dpi", ("plot", "dpi"), 29, "dpi = 29", "an integer in [30, 600]"),
    ("max_points 0", ("plot", "max_points"), 0, "max_points = 0", "an integer >= 1"),
    ("generalization 0", ("generalization", "n_samples"), 0, "n_samples = 0", "an integer >= 1"),
    ("few per class", (*S, "data", "n_samples"), 5, "n_samples = 5", "at least 2 per class (6 for 3"),
    ("typo epochz", (*M, "train", "epochz"), 10, "unknown key datasets.moons.train.epochz", TRAIN_KEYS),
    ("typo section", (*M, "modle"), {}, "unknown key", "allowed: data, split, model, train"),
    ("top-level key", ("plots",), {}, "unknown key plots", "allowed: datasets, generalization, plot"),
    ("missing lr", (*M, "train", "lr"), DELETE, "missing key datasets.moons.train.lr"),
    ("missing split", (*M, "split"), DELETE, "missing key datasets.moons.split"),
    ("missing datasets", ("datasets",), DELETE, "missing key datasets"),
    ("section not map", (*M, "train"), [1], "datasets.moons.train must be a mapping", "[1]"),
    ("dataset not map", M, 3, "datasets.moons must be a mapping", "3"),
    ("datasets not map", ("datasets",), [1], "datasets must be a mapping"),
    ("datasets empty", ("datasets",), {}, "datasets is empty"),
]


@pytest.mark.parametrize(
    ("path", "value", "fragments"), [(r[1], r[2], r[3:]) for r in BAD], ids=[r[0] for r in BAD]
)
def test_bad_value_is_one_line_params_error(raw, path, value, fragments):
    assert_one_line_error(mutated(raw, path, value), ".".join(path), *fragments)


@pytest.mark.parametrize("name", ["my moons", "moons.v2", "-moons", "m/oons", ""])
def test_dataset_name_must_be_usable_in_file_names(raw, name):
    raw["datasets"][name] = copy.deepcopy(raw["datasets"]["moons"])
    assert_one_line_error(raw, f"dataset name '{name}'", "letters, digits, '_' or '-'")


@pytest.mark.parametrize("name", ["loss", "accuracy"])
def test_dataset_name_must_not_be_a_learning_curve_folder(raw, name):
    raw["datasets"][name] = copy.deepcopy(raw["datasets"]["moons"])
    assert_one_line_error(raw, f"dataset name '{name}' is taken by plots/{name}/", "use another name")


def test_the_whole_file_must_be_a_mapping():
    for value in (None, [], "datasets", 3):
        with pytest.raises(ParamsError, match=r"^params\.yaml: the file must be a mapping, got "):
            parse_params(value)


# ---------------------------------------------------------------------------------------------
# load_params: the file itself


def test_load_params_missing_file_names_it(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ParamsError) as caught:
        load_params(str(path))
    assert str(caught.value) == f"{path}: file not found (run from the project root)"


def test_load_params_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("datasets:\n  moons: [1,\n  spiral: }\n")
    with pytest.raises(ParamsError) as caught:
        load_params(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: not valid YAML at line ") and "\n" not in message


def test_load_params_tab_indentation_is_invalid_yaml(tmp_path):
    path = tmp_path / "tabs.yaml"
    path.write_text("datasets:\n\tmoons: {}\n")
    with pytest.raises(ParamsError, match=r"tabs\.yaml: not valid YAML"):
        load_params(str(path))


@pytest.mark.parametrize("kind", ["not utf-8", "directory"])
def test_load_params_unreadable_file_is_params_error(tmp_path, kind):
    path = tmp_path / "params.yaml"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"datasets:\n  caf\xe9: {}\n")
    with pytest.raises(ParamsError, match=re.escape(str(path))):
        load_params(str(path))


def test_load_params_validation_error_names_the_file_it_read(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text(BASE_YAML.replace("lr: 0.01", "lr: -1", 1))
    with pytest.raises(ParamsError, match=rf"^{re.escape(str(path))}: datasets\.moons\.train\.lr = -1"):
        load_params(str(path))


def test_huge_integer_for_a_float_is_params_error(raw):
    assert_one_line_error(mutated(raw, (*M, "train", "lr"), 10**400), "datasets.moons.train.lr")


@pytest.mark.parametrize("where", ["top level", "dataset name"])
def test_key_with_newline_still_gives_one_line(raw, where):
    if where == "top level":
        raw["plot\nx"] = 1
    else:
        raw["datasets"]["moons\nx"] = copy.deepcopy(raw["datasets"]["moons"])
    assert_one_line_error(raw)


def test_missing_key_says_what_is_expected(raw):
    assert_one_line_error(
        mutated(raw, (*M, "train", "lr"), DELETE), "datasets.moons.train.lr", "a number > 0"
    )


# ---------------------------------------------------------------------------------------------
# Sizes that pass the schema but cannot be allocated: refused by load_params, before any work

GB = 10**9

TOO_BIG = [
    # id, path, value, available bytes, the message after "params.yaml: "
    (
        "n_samples",
        (*M, "data", "n_samples"),
        10**10,
        23 * GB,
        "datasets.moons.data.n_samples = 10000000000: needs about 5,800 GB of memory (its points as CSV "
        "text and arrays), this machine has 23 GB available",
    ),
    (
        "generalization",
        ("generalization", "n_samples"),
        10**9,
        23 * GB,
        "generalization.n_samples = 1000000000: needs about 300 GB of memory (its points as CSV text "
        "and arrays), this machine has 23 GB available",
    ),
    (
        "hidden",
        (*M, "model", "hidden"),
        [100_000, 100_000],
        23 * GB,
        "datasets.moons.model.hidden = [100000, 100000]: needs about 32,508 GB of memory (10000500001 "
        "weights with their optimizer state and 201 snapshots), this machine has 23 GB available",
    ),
    (
        "hidden beyond any float",
        (*M, "model", "hidden"),
        [10**400],
        23 * GB,
        f"datasets.moons.model.hidden = [{10**400}]: needs over 1,000,000 GB of memory (the activations "
        "of 1000 points in a training step, 65536 in scoring), this machine has 23 GB available",
    ),
    (
        "epochs",
        (*M, "train", "epochs"),
        10**12,
        23 * GB,
        "datasets.moons.train.epochs = 1000000000000: needs about 25,600 GB of memory (a learning-curve "
        "row every log_every = 10 epochs), this machine has 23 GB available",
    ),
    (
        "resolution on a small machine",
        ("plot", "resolution"),
        2000,
        GB // 2,
        "plot.resolution = 2000: needs about 0.6 GB of memory (the probability grid), this machine has "
        "0.5 GB available",
    ),
    (
        "the animation's grid, larger than the plot's",
        ("plot", "frame_resolution"),
        2000,
        GB // 2,
        "plot.frame_resolution = 2000: needs about 0.6 GB of memory (the probability grid), this machine "
        "has 0.5 GB available",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "available", "expected"), [r[1:] for r in TOO_BIG], ids=[r[0] for r in TOO_BIG]
)
def test_a_size_that_cannot_be_allocated_is_refused_naming_the_key(raw, path, value, available, expected):
    parsed = parse_params(mutated(raw, path, value))  # the schema lets it through
    with pytest.raises(ParamsError) as caught:
        params.check_memory(parsed, available=available)
    assert str(caught.value) == f"params.yaml: {expected}"


def test_batch_size_is_named_when_its_training_step_is_what_does_not_fit(raw):
    raw["datasets"]["moons"]["data"]["n_samples"] = 10**6
    raw["datasets"]["moons"]["model"]["hidden"] = [20_000]
    raw["datasets"]["moons"]["train"]["batch_size"] = 100_000
    expected = r"train\.batch_size = 100000: needs about 27 GB of memory \(the activations of 100000 points"
    with pytest.raises(ParamsError, match=expected):
        params.check_memory(parse_params(raw), available=23 * GB)
    raw["datasets"]["moons"]["train"]["batch_size"] = 1_000
    params.check_memory(parse_params(raw), available=23 * GB)  # smaller steps fit


def test_the_committed_params_and_the_largest_seed_fit_in_a_small_machine(committed, raw):
    params.check_memory(parse_params(committed), available=GB)
    params.check_memory(parse_params(raw), available=GB)


def test_load_params_checks_memory_and_parse_params_does_not(tmp_path, monkeypatch):
    """parse_params also checks a sweep's points on the driver, which is not the machine that runs them."""
    path = tmp_path / "params.yaml"
    path.write_text(BASE_YAML.replace("n_samples: 1000,", "n_samples: 10000000000000,", 1))
    parse_params(yaml.safe_load(path.read_text()))
    with pytest.raises(ParamsError, match=rf"^{re.escape(str(path))}: datasets\.moons\.data\.n_samples = 1"):
        load_params(str(path))
    monkeypatch.setattr(params, "available_memory", lambda: None)  # nothing to compare with
    assert load_params(str(path)).dataset("moons").data.n_samples == 10**13


def test_available_memory_is_what_the_kernel_reports():
    available = params.available_memory()
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("no /proc/meminfo here")
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    reported = int(meminfo["MemAvailable"].split()[0]) * 1024
    assert 0 < available <= reported * 1.5 and available >= reported / 1.5  # it moves while we read


def test_snapshots_counted_are_those_train_keeps():
    train = pytest.importorskip("stages.train")
    assert params.SNAPSHOTS_KEPT == train.SNAPSHOTS + 1  # the untrained weights and the snapshots


MEASURE = """
import importlib
with open("/proc/self/clear_refs", "w") as file:
    file.write("5")  # the peak so far is the forked test process's; count from here
importlib.import_module(STAGE).main("spiral")  # main(), not its runner, which ends the process at once
with open("/proc/self/status") as file:
    print(next(line.split()[1] for line in file if line.startswith("VmHWM:")))
"""


@pytest.mark.e2e
def test_the_per_point_estimate_covers_a_real_stages_growth(project):
    """The peak memory of generate and split, each at two sizes: what a point adds is within POINT_BYTES."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("no /proc/self/clear_refs here (Linux only)")
    peaks = {}
    for n in (20_000, 400_000):
        text = (project / "params.yaml").read_text()
        raw = yaml.safe_load(text)
        raw["datasets"]["spiral"]["data"]["n_samples"] = n
        raw["generalization"]["n_samples"] = n
        (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        for stage in ("generate", "split"):
            code = MEASURE.replace("STAGE", repr(f"stages.{stage}"))
            result = subprocess.run(
                [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True
            )
            peaks[stage, n] = int(result.stdout.split()[-1]) * 1024
    for stage in ("generate", "split"):
        per_point = (peaks[stage, 400_000] - peaks[stage, 20_000]) / 380_000
        assert 0 < per_point <= params.POINT_BYTES, (stage, per_point, peaks)
