"""The checkpoint file, and the model it holds as NumPy computes it.

A checkpoint is the MLP's weights and, in the metadata, the config that rebuilds it and the device
that trained it, written and read by the safetensors library. It is plain data, so loading one can
never run code, and NumPy reads it as readily as torch: the plot stage draws the model without
importing torch and its start-up (models.py turns it into a torch MLP).
"""

import json
import math
from dataclasses import asdict, dataclass
from itertools import pairwise

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError, safe_open

from stages.errors import UserError
from stages.files import write_bytes
from stages.params import ACTIVATIONS, ParamsError, parse_section, spec

LEAKY_SLOPE = 0.01  # torch.nn.LeakyReLU's default


@dataclass(frozen=True)
class ModelConfig:
    """What models.MLP is built from, as a checkpoint's metadata records it; checked as params are."""

    hidden: list[int] = spec(low=1)
    activation: str = spec(choices=ACTIVATIONS)
    classes: int = spec(low=2)
    in_features: int = spec(low=1)


def layer_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Each tensor's name and shape, as models.MLP's nn.Sequential names them: Linear layers at the
    even indices, an activation between each."""
    widths = [config["in_features"], *config["hidden"], 1 if config["classes"] == 2 else config["classes"]]
    shapes = {}
    for layer, (fan_in, fan_out) in enumerate(pairwise(widths)):
        shapes[f"net.{2 * layer}.weight"] = (fan_out, fan_in)
        shapes[f"net.{2 * layer}.bias"] = (fan_out,)
    return shapes


def _erf(x):
    """erf to within 1.5e-7 (Abramowitz & Stegun 7.1.26), a couple of float32 steps: NumPy has
    no erf, and scipy would cost the start-up this module saves."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


NUMPY_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)),  # 1 / (1 + e^-x), with no overflow
    "pure_tanh": np.tanh,  # the same function as tanh, only written differently in models.py
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "leaky_relu": lambda x: np.where(x > 0, x, LEAKY_SLOPE * x),
}


@dataclass(frozen=True)
class Checkpoint:
    config: dict
    weights: dict[str, np.ndarray]  # float32, of the shapes layer_shapes gives
    device: str = "unknown"  # the hardware that trained it, from the metadata

    def probabilities(self, points, batch_size: int = 65536) -> np.ndarray:
        """(n, classes) class probabilities in float64, a batch at a time to bound memory."""
        activation = NUMPY_ACTIVATIONS[self.config["activation"]]
        layers = len(self.config["hidden"]) + 1
        weights = [
            (self.weights[f"net.{2 * i}.weight"].T, self.weights[f"net.{2 * i}.bias"]) for i in range(layers)
        ]
        points = np.asarray(points, dtype=np.float64)
        out = []
        for start in range(0, len(points), batch_size):
            x = points[start : start + batch_size]
            for i, (weight, bias) in enumerate(weights):
                x = x @ weight + bias
                if i < layers - 1:
                    x = activation(x)
            out.append(_probabilities(x))
        return np.concatenate(out) if out else np.empty((0, self.config["classes"]))


def _probabilities(logits):
    if logits.shape[1] == 1:  # one logit, read through a sigmoid
        positive = NUMPY_ACTIVATIONS["sigmoid"](logits[:, 0])
        return np.column_stack([1.0 - positive, positive])
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def write_checkpoint(path, config: dict, weights: dict[str, np.ndarray], device: str = "cpu") -> None:
    """The same bytes for the same weights, config and device: the library orders tensors by name.
    `device` (cpu, or cuda with the GPU's model) says which hardware computed the weights."""
    weights = {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in weights.items()}
    # One metadata entry: the library writes several in a random order (a hash map), changing the bytes.
    metadata = {"config": json.dumps({**config, "device": device}, sort_keys=True)}
    write_bytes(path, safetensors.numpy.save(weights, metadata=metadata))  # atomic, unlike save_file


def read_checkpoint(path) -> Checkpoint:
    """A checkpoint, checked whole: the format by the library, then the config in its metadata, and an
    F32 tensor of the right shape for every layer."""

    def invalid(why):
        return UserError(f"{path}: not a Boundary Lab checkpoint ({why})")

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
            config = json.loads((file.metadata() or {})["config"])
        except (ValueError, KeyError):
            raise invalid("no JSON config in its safetensors metadata") from None
        device = config.pop("device", "unknown") if isinstance(config, dict) else "unknown"
        try:
            config = asdict(parse_section(ModelConfig, config, "config"))
        except ParamsError as error:
            raise invalid(error) from None
        expected = layer_shapes(config)
        if set(file.keys()) != set(expected):
            raise invalid(f"tensors {sorted(file.keys())}; the config needs {sorted(expected)}")
        for name, shape in expected.items():  # checked before loading: NumPy has no bfloat16, for one
            tensor = file.get_slice(name)
            if tensor.get_dtype() != "F32" or tuple(tensor.get_shape()) != shape:
                raise invalid(
                    f"tensor {name} is {tensor.get_dtype()} {tensor.get_shape()}; expected F32 {list(shape)}"
                )
        weights = {name: file.get_tensor(name) for name in expected}
        return Checkpoint(config, weights, str(device))
