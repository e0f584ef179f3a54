"""The checkpoint files, and the model they hold as NumPy computes it.

A checkpoint is the MLP's weights and, in the metadata, the config that rebuilds it (its features
included) and the device that trained it, written and read by the safetensors library. The
snapshots file is the same with every tensor stacked over the epochs of training that were kept,
and an `epoch` tensor naming them. Both are plain data, so loading one can never run code, and
NumPy reads them as readily as torch: the plot stages draw the model without importing torch and
its start-up (models.py turns a checkpoint into a torch MLP). The activations and the features are
stages/functions.py's, the same definitions the torch model uses.
"""

import json
from dataclasses import dataclass

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError, safe_open

from stages.errors import UserError
from stages.files import model_path, write_bytes
from stages.functions import ACTIVATIONS, features
from stages.params import DatasetParams, ModelConfig, ModelParams, ParamsError, validated


@dataclass(frozen=True)
class Checkpoint:
    config: ModelConfig
    weights: dict[str, np.ndarray]  # float32, of the shapes config.tensor_shapes() gives
    device: str = "unknown"  # the hardware that trained it, from the metadata

    def layers(self, points) -> list[np.ndarray]:
        """What each layer computes for (n, 2) points, in float64: the features, every hidden
        layer's activations, then the output's logits."""
        activation = ACTIVATIONS[self.config.activation].numpy
        x = features(np, np.asarray(points, dtype=np.float64), self.config.features)
        out = [x]
        *hidden, last = self.config.linear_layers()
        for layer, _, _ in hidden:
            out.append(activation(np, self._linear(layer, out[-1])))
        out.append(self._linear(last[0], out[-1]))
        return out

    def _linear(self, layer, x):
        return x @ self.weights[f"{layer}.weight"].T + self.weights[f"{layer}.bias"]

    def logits(self, points, batch_size: int = ModelConfig.INFERENCE_BATCH) -> np.ndarray:
        """(n, outputs) logits in float64, a batch at a time to bound memory."""
        points = np.asarray(points, dtype=np.float64)
        starts = range(0, len(points), batch_size)
        out = [self.layers(points[start : start + batch_size])[-1] for start in starts]
        return np.concatenate(out) if out else np.empty((0, self.config.problem.outputs))

    def probabilities(self, points) -> np.ndarray:
        """(n, classes) class probabilities in float64."""
        return self.config.problem.probabilities(np, self.logits(points))

    def predict(self, points) -> np.ndarray:
        return self.config.problem.predict(np, self.logits(points))

    def check(self, path, name: str, dataset: DatasetParams) -> "Checkpoint":
        """This checkpoint, if it was trained for what params.yaml gives the dataset now: its classes
        and model (a stage run by hand after an edit would otherwise draw or score a stale model)."""
        now = dataset.config
        for setting in ModelConfig.model_fields:
            trained, wanted = getattr(self.config, setting), getattr(now, setting)
            if trained != wanted:
                section = "model" if setting in ModelParams.model_fields else "data"
                raise UserError(
                    f"{path}: trained with {setting} {_shown(trained)}, but params.yaml has "
                    f"datasets.{name}.{section}.{setting} = {_shown(wanted)}; retrain it (`dvc repro`)"
                )
        return self


def _shown(value):
    return f"[{', '.join(map(str, value))}]" if isinstance(value, list) else str(value)


@dataclass(frozen=True)
class Snapshots:
    """The model at some epochs of its training: snapshots[i] is a Checkpoint, at epochs[i]."""

    config: ModelConfig
    epochs: list[int]
    weights: dict[str, np.ndarray]  # float32, (len(epochs), *shape) for each of config.tensor_shapes()
    device: str = "unknown"

    def __len__(self):
        return len(self.epochs)

    def __getitem__(self, i) -> Checkpoint:
        return Checkpoint(self.config, {name: array[i] for name, array in self.weights.items()}, self.device)

    check = Checkpoint.check


def snapshots_path(name: str):
    """models/<name>.snapshots.safetensors: never another dataset's checkpoint, as no name holds a dot."""
    return model_path(name).with_suffix(".snapshots.safetensors")


def write_checkpoint(path, config: ModelConfig, weights: dict[str, np.ndarray], device: str = "cpu") -> None:
    """The same bytes for the same weights, config and device: the library orders tensors by name.
    `device` (cpu, or cuda with the GPU's model) says which hardware computed the weights."""
    _write(
        path, config, {name: np.asarray(array, dtype=np.float32) for name, array in weights.items()}, device
    )


def write_snapshots(path, config: ModelConfig, epochs, weights: dict[str, np.ndarray], device="cpu") -> None:
    """Snapshots: `weights` holds each tensor stacked over `epochs`, as Snapshots.weights does."""
    tensors = {name: np.asarray(array, dtype=np.float32) for name, array in weights.items()}
    _write(path, config, tensors | {"epoch": np.asarray(epochs, dtype=np.int64)}, device)


def _write(path, config, tensors, device):
    tensors = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    write_bytes(path, safetensors.numpy.save(tensors, metadata=metadata_of(config, device)))  # atomic


def metadata_of(config: ModelConfig, device: str) -> dict[str, str]:
    """A checkpoint's safetensors metadata: the config and the device, as one JSON entry (the library
    writes several entries in a random order, a hash map, which would change the bytes)."""
    return {"config": json.dumps({**config.model_dump(), "device": device}, sort_keys=True)}


def config_of(metadata: dict | None) -> tuple[ModelConfig, str]:
    """metadata_of's inverse: the config, checked as params.yaml is, and the device."""
    try:
        config = json.loads((metadata or {})["config"])
    except (ValueError, KeyError):
        raise ParamsError("no JSON config in its safetensors metadata") from None
    device = config.pop("device", "unknown") if isinstance(config, dict) else "unknown"
    return validated(ModelConfig, config, "config"), str(device)


def read_checkpoint(path) -> Checkpoint:
    """A checkpoint, checked whole: the format by the library, then the config in its metadata, and an
    F32 tensor of the right shape for every layer."""
    config, weights, device = _read(path, stacked=False)
    return Checkpoint(config, weights, device)


def read_snapshots(path) -> Snapshots:
    """Snapshots, checked as a checkpoint is, with an I64 `epoch` tensor giving the stacks' length."""
    config, weights, device = _read(path, stacked=True)
    epochs = weights.pop("epoch").tolist()
    return Snapshots(config, epochs, weights, device)


def _read(path, stacked):
    def invalid(why):
        return UserError(
            f"{path}: not a Boundary Lab {'snapshots file' if stacked else 'checkpoint'} ({why})"
        )

    try:
        file = safe_open(path, framework="numpy")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found (run `dvc repro` to rebuild it)") from None
    except OSError as error:
        raise UserError(f"{path}: not a readable checkpoint ({error.strerror or error})") from None
    except SafetensorError as error:  # a bad header, offsets, gap, overlap, truncation: the library's word
        why = " ".join(str(error).removeprefix("Error while deserializing header: ").split())
        raise invalid(f"safetensors: {why}") from None
    with file:
        try:
            config, device = config_of(file.metadata())
        except ParamsError as error:
            raise invalid(error) from None
        expected = {name: ("F32", shape) for name, shape in config.tensor_shapes().items()}
        if stacked:
            epochs = file.get_slice("epoch") if "epoch" in file.keys() else None  # noqa: SIM118 (no __contains__)
            if epochs is None or epochs.get_dtype() != "I64" or len(epochs.get_shape()) != 1:
                raise invalid("no I64 vector named epoch")
            count = tuple(epochs.get_shape())
            expected = {name: (dtype, count + shape) for name, (dtype, shape) in expected.items()}
            expected["epoch"] = ("I64", count)
        if set(file.keys()) != set(expected):
            raise invalid(f"tensors {sorted(file.keys())}; the config needs {sorted(expected)}")
        for name, (dtype, shape) in expected.items():  # before loading: NumPy has no bfloat16, for one
            tensor = file.get_slice(name)
            if tensor.get_dtype() != dtype or tuple(tensor.get_shape()) != shape:
                raise invalid(
                    f"tensor {name} is {tensor.get_dtype()} {tensor.get_shape()}; "
                    f"expected {dtype} {list(shape)}"
                )
        weights = {name: file.get_tensor(name) for name in expected}
        return config, weights, device
