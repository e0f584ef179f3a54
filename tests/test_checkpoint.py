"""stages.checkpoint against oracles: the safetensors library for the file format, torch's own MLP
for the NumPy forward pass, math.erf for the erf behind GELU."""

import copy
import json
import math
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch
from conftest import ROOT, Exploit, model_config, perturbed_mlp
from safetensors import safe_open
from test_functions import BY_HAND, torch_oracle

from stages import functions, models
from stages.checkpoint import read_checkpoint, read_snapshots, write_checkpoint, write_snapshots
from stages.errors import UserError
from stages.functions import erf
from stages.params import ModelConfig, parse_params


def weights_of(model):
    return {name: tensor.detach().numpy() for name, tensor in model.state_dict().items()}


def metadata(model):
    """The metadata of a checkpoint of `model`, written here by hand: a config and no device."""
    return {"config": json.dumps(model.config.model_dump())}


def saved(tmp_path, model, name="m.safetensors"):
    path = tmp_path / name
    write_checkpoint(path, model.config, weights_of(model))
    return path


# ---------------------------------------------------------------------------------------------
# The file


@pytest.mark.parametrize(("activation", "classes"), [("pure_tanh", 3), ("relu", 2), ("gelu", 5)])
def test_round_trip_is_exact(tmp_path, activation, classes):
    model = perturbed_mlp(activation, classes)
    checkpoint = read_checkpoint(saved(tmp_path, model))
    assert checkpoint.config == model.config
    assert list(checkpoint.weights) == list(model.state_dict())
    for name, array in weights_of(model).items():
        assert checkpoint.weights[name].dtype == np.float32
        assert np.array_equal(checkpoint.weights[name], array)


@pytest.mark.parametrize("device", ["cpu", "cuda (NVIDIA H200)"])
def test_the_device_that_trained_it_is_recorded(tmp_path, device):
    model = perturbed_mlp()
    path = tmp_path / "m.safetensors"
    write_checkpoint(path, model.config, weights_of(model), device)
    assert read_checkpoint(path).device == device
    with safe_open(path, framework="numpy") as theirs:  # in the metadata any safetensors reader shows
        assert json.loads(theirs.metadata()["config"])["device"] == device


def test_bytes_depend_only_on_the_weights_and_config(tmp_path):
    """Not on the order of either's keys: the library sorts the tensors, and we the config."""
    model = perturbed_mlp()
    first, second = saved(tmp_path, model, "a.safetensors"), tmp_path / "b.safetensors"
    config = ModelConfig(**dict(reversed(model.config.model_dump().items())))
    write_checkpoint(second, config, dict(reversed(weights_of(model).items())))
    assert first.read_bytes() == second.read_bytes()


def test_the_safetensors_library_reads_what_we_write(tmp_path):
    model = perturbed_mlp("tanh", 2)
    path = saved(tmp_path, model)
    theirs = safetensors.numpy.load_file(path)
    assert theirs.keys() == weights_of(model).keys()
    assert all(np.array_equal(theirs[name], array) for name, array in weights_of(model).items())
    with safetensors.safe_open(path, framework="numpy") as file:
        assert json.loads(file.metadata()["config"]) == {**model.config.model_dump(), "device": "cpu"}


def test_we_read_what_the_safetensors_library_writes(tmp_path):
    """Its save_file, as any safetensors writer might, with the config's keys in whatever order."""
    model = perturbed_mlp("leaky_relu", 4)
    path = tmp_path / "theirs.safetensors"
    safetensors.numpy.save_file(weights_of(model), path, metadata=metadata(model))
    checkpoint = read_checkpoint(path)
    assert checkpoint.config == model.config
    assert all(np.array_equal(checkpoint.weights[k], v) for k, v in weights_of(model).items())


def test_missing_checkpoint_names_the_path(tmp_path):
    path = tmp_path / "models" / "nope.safetensors"
    with pytest.raises(UserError) as caught:
        read_checkpoint(path)
    assert str(caught.value) == f"{path}: file not found (run `dvc repro` to rebuild it)"


def encode(header, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def honest(model):
    """The header and body that write_checkpoint writes (the library's bytes), for the cases below to
    spoil by hand in ways no safetensors writer would."""
    with tempfile.TemporaryDirectory() as folder:
        raw = saved(Path(folder), model).read_bytes()
    (header_bytes,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + header_bytes]), raw[8 + header_bytes :]


def spoiled(change):
    model = perturbed_mlp()
    header, body = honest(model)
    header, body = change(header, body, model)
    return encode(header, body)


def with_config(**changes):
    def change(header, body, model):
        header["__metadata__"]["config"] = json.dumps({**model.config.model_dump(), **changes})
        return header, body

    return change


def with_entry(name, **changes):
    def change(header, body, model):
        header[name] = {**header[name], **changes}
        return header, body

    return change


def rewritten(change):
    """A file the library writes itself, and reads without complaint, of tensors not the config's."""
    model = perturbed_mlp()
    weights = change(weights_of(model))
    return safetensors.numpy.save(weights, metadata=metadata(model))


def without(name):
    return lambda weights: {key: array for key, array in weights.items() if key != name}


GARBAGE = {
    "empty": b"",
    "seven bytes": b"\x00" * 7,
    "random bytes": bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
    "text": b"this is not a checkpoint\n",
    "zero header": struct.pack("<Q", 0),
    "header not json": struct.pack("<Q", 4) + b"{{{{",
    "header a list": encode([1, 2], b""),
    "no metadata": encode({}, b""),
    "config not json": encode({"__metadata__": {"config": "{"}}, b""),
    "config a number": spoiled(lambda h, b, m: ({**h, "__metadata__": {"config": "3"}}, b)),
    "truncated": spoiled(lambda h, b, m: (h, b[:-4])),
    "trailing bytes": spoiled(lambda h, b, m: (h, b + b"\0\0\0\0")),
    "unknown activation": spoiled(with_config(activation="evil")),
    "zero width": spoiled(with_config(hidden=[0, 5])),
    "one class": spoiled(with_config(classes=1)),
    "extra config key": spoiled(with_config(dropout=0.5)),
    "config for other widths": spoiled(with_config(hidden=[7, 5])),
    "missing tensor": rewritten(without("net.2.bias")),
    "extra tensor": rewritten(lambda w: {**w, "net.6.bias": np.zeros(3, np.float32)}),
    "float64 tensor": rewritten(lambda w: {**w, "net.0.weight": w["net.0.weight"].astype(np.float64)}),
    "bfloat16 tensor": spoiled(with_entry("net.0.bias", dtype="BF16", shape=[12])),  # NumPy has none
    "dtype not its bytes": spoiled(with_entry("net.0.weight", dtype="F64")),
    "wrong shape": spoiled(with_entry("net.0.weight", shape=[2, 6])),
    "overlapping tensors": spoiled(with_entry("net.0.weight", data_offsets=[0, 48])),
    "offsets past the end": spoiled(with_entry("net.4.bias", data_offsets=[10**6, 10**6 + 12])),
    "negative offsets": spoiled(with_entry("net.0.weight", data_offsets=[-48, 0])),
    "offsets not numbers": spoiled(with_entry("net.0.weight", data_offsets=["0", "48"])),
    "entry a string": spoiled(lambda h, b, m: ({**h, "net.0.weight": "F32"}, b)),
    "huge header length": struct.pack("<Q", 2**63) + b"{}",
    "a torch.save archive": None,  # filled in below: what the project's checkpoints used to be
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_a_bad_checkpoint_is_one_line_naming_the_path(tmp_path, name):
    path = tmp_path / "bad.safetensors"
    if name == "a torch.save archive":
        model = perturbed_mlp()
        torch.save({"config": model.config, "state_dict": model.state_dict()}, path)
    else:
        path.write_bytes(GARBAGE[name])
    with pytest.raises(UserError) as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a Boundary Lab checkpoint (") and "\n" not in message
    assert "Error while deserializing" not in message  # the library's preamble, left out as noise


def test_a_pickle_holding_code_is_data_to_us_never_run(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"  # torch.load reads .safetensors by name
    torch.save({"config": Exploit(marker)}, path)
    with pytest.raises(UserError, match="not a Boundary Lab checkpoint"):
        read_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: an ordinary unpickling runs it
    assert marker.exists()


def test_a_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=f"^{tmp_path}: not a readable checkpoint"):
        read_checkpoint(tmp_path)


# ---------------------------------------------------------------------------------------------
# The model in NumPy


@pytest.mark.parametrize("activation", functions.ACTIVATIONS)
def test_numpy_activation_matches_torch(activation):
    x = np.concatenate([np.linspace(-30.0, 30.0, 6001), [0.0, 1e-8, -1e-8, 800.0, -800.0]])
    want = torch_oracle(activation)(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(functions.ACTIVATIONS[activation].numpy(np, x), want, rtol=0, atol=5e-7)


def test_erf_is_within_its_stated_error():
    x = np.linspace(-6.0, 6.0, 120001)
    exact = np.array([math.erf(v) for v in x])
    assert np.abs(erf(np, x) - exact).max() < 1.5e-7
    assert erf(np, np.array([0.0]))[0] == 0.0 and np.array_equal(erf(np, -x), -erf(np, x))


@pytest.mark.parametrize("activation", functions.ACTIVATIONS)
@pytest.mark.parametrize("classes", [2, 3])
def test_probabilities_match_the_torch_model(tmp_path, activation, classes):
    model = perturbed_mlp(activation, classes, hidden=(16, 16))
    points = np.random.default_rng(1).normal(scale=3.0, size=(4000, 2))
    with torch.no_grad():
        problem = model.config.problem
        in_float64 = problem.probabilities(torch, copy.deepcopy(model).double()(torch.tensor(points))).numpy()
        logits = model(torch.tensor(points, dtype=torch.float32))  # as train and evaluate run it
        in_float32 = problem.probabilities(torch, logits).double().numpy()
    got = read_checkpoint(saved(tmp_path, model)).probabilities(points)
    assert got.shape == (4000, classes) and got.dtype == np.float64
    # NumPy computes in float64, from the same float32 weights: it is the float64 torch model, to
    # rounding (and to the erf's 1.5e-7 for GELU), and closer to it than torch's float32 run.
    error = np.abs(got - in_float64).max()
    assert error < (2e-6 if activation == "gelu" else 1e-12)
    assert error < np.abs(in_float32 - in_float64).max()
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)
    assert np.array_equal(
        read_checkpoint(saved(tmp_path, model)).predict(points), problem.predict(torch, logits)
    )


def test_probabilities_in_batches_equal_one_pass(tmp_path):
    checkpoint = read_checkpoint(saved(tmp_path, perturbed_mlp()))
    points = np.random.default_rng(2).normal(size=(1000, 2))
    assert np.array_equal(checkpoint.logits(points, batch_size=37), checkpoint.logits(points))
    assert checkpoint.probabilities(points[:0]).shape == (0, 3)


def test_the_module_does_not_import_torch():
    code = "import sys, stages.checkpoint; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ---------------------------------------------------------------------------------------------
# Features, linear models, snapshots, and checkpoints against params.yaml


def by_hand(points, names):
    """The features written out by hand (test_functions' oracle), as columns."""
    return np.column_stack([BY_HAND[name](points[:, 0], points[:, 1]) for name in names])


@pytest.mark.parametrize(
    "features", [["x1", "x2"], ["x1^2", "x2^2"], ["x1*x2"], list(functions.FEATURES), ["sin(x2)", "x1"]]
)
@pytest.mark.parametrize("hidden", [(16, 16), ()])
def test_numpy_and_torch_models_agree_with_features(tmp_path, features, hidden):
    torch.manual_seed(5)
    model = models.MLP(model_config(hidden, "tanh", 3, features)).eval()
    points = np.random.default_rng(3).normal(scale=2.0, size=(3000, 2))
    with torch.no_grad():
        want = model.config.problem.probabilities(
            torch, copy.deepcopy(model).double()(torch.tensor(points))
        ).numpy()
    checkpoint = read_checkpoint(saved(tmp_path, model))
    assert checkpoint.config.features == features
    assert np.abs(checkpoint.probabilities(points) - want).max() < 1e-12
    inputs = checkpoint.layers(points)[0]
    np.testing.assert_allclose(inputs, by_hand(points, features), rtol=1e-15, atol=0)


def test_a_linear_model_is_one_affine_map_of_the_features(tmp_path):
    torch.manual_seed(6)
    model = models.MLP(model_config([], "relu", 2, ["x1^2", "x2^2"]))
    checkpoint = read_checkpoint(saved(tmp_path, model))
    points = np.random.default_rng(4).normal(size=(500, 2))
    weight, bias = checkpoint.weights["net.0.weight"], checkpoint.weights["net.0.bias"]
    logit = by_hand(points, ["x1^2", "x2^2"]) @ weight[0].astype(np.float64) + bias[0]
    np.testing.assert_allclose(checkpoint.probabilities(points)[:, 1], 1 / (1 + np.exp(-logit)), rtol=1e-12)
    assert len(checkpoint.layers(points)) == 2  # the features and the output


def test_snapshots_round_trip_and_index_to_checkpoints(tmp_path):
    model = perturbed_mlp("gelu", 3)
    weights = [weights_of(model)] * 3
    weights[1] = {name: array + 1 for name, array in weights[0].items()}
    stacked = {name: np.stack([w[name] for w in weights]) for name in weights[0]}
    path = tmp_path / "m.snapshots.safetensors"
    write_snapshots(path, model.config, [0, 4, 9], stacked, "cpu")
    snapshots = read_snapshots(path)
    assert len(snapshots) == 3 and snapshots.epochs == [0, 4, 9] and snapshots.config == model.config
    for i in range(3):
        assert all(np.array_equal(snapshots[i].weights[k], v) for k, v in weights[i].items())
    with safe_open(path, framework="numpy") as theirs:  # the library reads it as it reads any file
        assert theirs.get_tensor("epoch").tolist() == [0, 4, 9]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda t: {k: v for k, v in t.items() if k != "epoch"}, "no I64 vector named epoch"),
        (lambda t: {**t, "epoch": t["epoch"].astype(np.float32)}, "no I64 vector named epoch"),
        (
            lambda t: {**t, "net.0.bias": t["net.0.bias"][:2]},
            "tensor net.0.bias is F32 [2, 6]; expected F32 [3, 6]",
        ),
    ],
)
def test_a_bad_snapshots_file_is_one_line(tmp_path, change, why):
    model = perturbed_mlp()
    tensors = {name: np.stack([array] * 3) for name, array in weights_of(model).items()}
    tensors["epoch"] = np.array([0, 1, 2], dtype=np.int64)
    path = tmp_path / "bad.safetensors"
    path.write_bytes(safetensors.numpy.save(change(tensors), metadata=metadata(model)))
    with pytest.raises(UserError) as caught:
        read_snapshots(path)
    assert str(caught.value) == f"{path}: not a Boundary Lab snapshots file ({why})"


def dataset_params(classes=3, features=("x1", "x2"), hidden=(6, 5), activation="relu"):
    raw = {
        "data": {"kind": "spiral", "n_samples": 100, "classes": classes, "noise": 0.1, "seed": 1},
        "split": {"test_size": 0.2, "seed": 1},
        "model": {"hidden": list(hidden), "activation": activation, "features": list(features)},
        "train": {"epochs": 1, "lr": 0.1, "seed": 1},
        "baselines": ["logistic"],
    }
    return parse_params({"datasets": {"m": raw}}).dataset("m")


def test_a_checkpoint_that_agrees_with_params_is_accepted(tmp_path):
    path = saved(tmp_path, perturbed_mlp())
    checkpoint = read_checkpoint(path)
    assert checkpoint.check(path, "m", dataset_params()) is checkpoint


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        (dict(classes=4), "trained with classes 3, but params.yaml has datasets.m.data.classes = 4"),
        (dict(hidden=[6]), "trained with hidden [6, 5], but params.yaml has datasets.m.model.hidden = [6]"),
        (
            dict(activation="tanh"),
            "trained with activation relu, but params.yaml has datasets.m.model.activation = tanh",
        ),
        (
            dict(features=("x1^2", "x2^2")),
            "trained with features [x1, x2], but params.yaml has datasets.m.model.features = [x1^2, x2^2]",
        ),
    ],
)
def test_a_checkpoint_that_disagrees_with_params_is_refused_in_one_line(tmp_path, dataset, message):
    path = saved(tmp_path, perturbed_mlp())
    with pytest.raises(UserError) as caught:
        read_checkpoint(path).check(path, "m", dataset_params(**dataset))
    assert str(caught.value) == f"{path}: {message}; retrain it (`dvc repro`)"
