"""stages.params: the committed params.yaml parses, and every bad input is one clear ParamsError.

The oracle for a good file is the raw YAML itself (every value read back must equal it); for a bad
one, the message must name the full key path and what is allowed, on a single line.
"""

import copy
import math
import re

import pytest
import yaml
from conftest import DELETE, ROOT, assert_one_line, set_in

from stages.datasets import KINDS
from stages.functions import ACTIVATIONS, FEATURES
from stages.params import ModelConfig, ParamsError, load_params, parse_params

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
    baselines: [logistic, knn, svm, forest]
  spiral:
    data: {kind: spiral, n_samples: 1500, classes: 3, noise: 0.2, seed: 42}
    split: {test_size: 0.2, seed: 42}
    model: {hidden: [64, 64], activation: relu}
    train: {epochs: 1000, lr: 0.01, seed: 42}
    baselines: [logistic, knn, svm, forest]
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


def test_load_params_reads_the_working_directory_s_file_or_the_one_named(raw, tmp_path, monkeypatch):
    """A stage runs from the project root: params.yaml there, not this checkout's or another."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(mutated(raw, "datasets.moons.train.lr", 0.5)))
    monkeypatch.chdir(tmp_path)
    assert load_params().dataset("moons").train.lr == 0.5
    committed_lr = yaml.safe_load(PARAMS_YAML.read_text())["datasets"]["moons"]["train"]["lr"]
    assert committed_lr != 0.5 and load_params(str(PARAMS_YAML)).dataset("moons").train.lr == committed_lr


def test_committed_params_load_and_equal_the_yaml(committed):
    loaded = load_params(str(PARAMS_YAML))
    assert list(loaded.datasets) == list(committed["datasets"])
    for name, sections in committed["datasets"].items():
        dataset = loaded.dataset(name)
        for section, values in sections.items():
            if not isinstance(values, dict):  # a list: baselines
                assert getattr(dataset, section) == values
                continue
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
    assert (moons.train.device, moons.train.l1, moons.model.features) == ("cpu", 0.0, ["x1", "x2"])
    del raw["plot"], raw["generalization"]
    loaded = parse_params(raw)
    assert (loaded.plot.resolution, loaded.plot.max_points, loaded.plot.dpi) == (200, 2000, 100)
    assert (loaded.plot.frames, loaded.plot.frame_resolution) == (40, 100)
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
        (("datasets", "moons", "train", "l1"), "1e-3", 0.001),
        (("datasets", "moons", "model", "hidden"), [], []),  # a linear model of the features
        (("datasets", "moons", "model", "activation"), "linear", "linear"),
        (("datasets", "moons", "model", "features"), list(FEATURES), list(FEATURES)),
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


# ---------------------------------------------------------------------------------------------
# Bad values: ParamsError, one line, full key path, the value and what is allowed

M, S = ("datasets", "moons"), ("datasets", "spiral")
KINDS_ALLOWED = "one of " + ", ".join(KINDS)  # the registries' names, in their order
ACTS = "one of " + ", ".join(ACTIVATIONS)
FEATS = "one of " + ", ".join(FEATURES)
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
    ("feature unknown", (*M, "model", "features"), ["x3"], "features[0] = 'x3'", FEATS),
    ("features empty", (*M, "model", "features"), [], "features = []", "a non-empty list of " + FEATS),
    ("features str", (*M, "model", "features"), "x1", "features = 'x1'", "a non-empty list of " + FEATS),
    (
        "feature twice",
        (*M, "model", "features"),
        ["x1", "x1"],
        f"a non-empty list of {FEATS}, each at most once",
    ),
    ("l1 negative", (*M, "train", "l1"), -0.1, "l1 = -0.1", "a number >= 0"),
    ("l1 text", (*M, "train", "l1"), "lots", "l1 = 'lots'", "a number >= 0"),
    ("frames 1", ("plot", "frames"), 1, "frames = 1", "an integer in [2, 200]"),
    ("frames 40.5", ("plot", "frames"), 40.5, "frames = 40.5", "an integer in [2, 200]"),
    (
        "frame_resolution 9",
        ("plot", "frame_resolution"),
        9,
        "frame_resolution = 9",
        "an integer in [10, 2000]",
    ),
    ("classes 1", (*S, "data", "classes"), 1, "classes = 1", "an integer in [2, 10]"),
    ("classes 11", (*S, "data", "classes"), 11, "classes = 11", "an integer in [2, 10]"),
    ("classes 3 moons", (*M, "data", "classes"), 3, "classes = 3", "kind moons makes exactly 2 classes"),
    ("kind unknown", (*M, "data", "kind"), "moon", "kind = 'moon'", KINDS_ALLOWED),
    ("kind not str", (*M, "data", "kind"), 3, "kind = 3", KINDS_ALLOWED),
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
    (
        "top-level key",
        ("plots",),
        {},
        "unknown key plots",
        "allowed: datasets, generalization, baselines, plot",
    ),
    ("missing lr", (*M, "train", "lr"), DELETE, "missing key datasets.moons.train.lr"),
    ("missing baselines", (*M, "baselines"), DELETE, "missing key datasets.moons.baselines: must be a non"),
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
# The model config: params.yaml's model section with the data's classes


def test_the_model_config_is_the_model_section_and_the_classes(raw):
    spiral = parse_params(raw).dataset("spiral")
    assert spiral.config == ModelConfig(hidden=[64, 64], activation="relu", features=["x1", "x2"], classes=3)
    assert spiral.config.problem.outputs == 3
    assert parse_params(raw).dataset("moons").config.problem.outputs == 1  # one logit for two classes


def test_the_config_names_each_layers_tensors_with_their_shapes():
    config = ModelConfig(hidden=[5, 4], activation="tanh", features=["x1", "x2", "x1*x2"], classes=3)
    assert config.tensor_shapes() == {
        "net.0.weight": (5, 3),
        "net.0.bias": (5,),
        "net.2.weight": (4, 5),
        "net.2.bias": (4,),
        "net.4.weight": (3, 4),
        "net.4.bias": (3,),
    }
