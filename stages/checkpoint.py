"""The checkpoint file, and the model it holds as NumPy computes it.

A checkpoint is the MLP's weights and the config that rebuilds it, in the safetensors format: an
8-byte little-endian header length, a JSON header giving each tensor's dtype, shape and byte
range (plus string metadata), then the raw little-endian bytes. It is plain data, so loading one
can never run code, and NumPy reads it as readily as torch: the plot stage draws the model
without importing torch, two seconds of start-up (models.py turns it into a torch MLP).
"""

import json
import math
import struct
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from stages.errors import UserError
from stages.files import write_bytes
from stages.params import ACTIVATIONS, ParamsError, parse_section, spec

LEAKY_SLOPE = 0.01  # torch.nn.LeakyReLU's default
MAX_HEADER_BYTES = 1 << 20  # an MLP's header is a few hundred bytes


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
    weights: dict[str, np.ndarray]  # float32, read-only views of the file's bytes

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


def write_checkpoint(path, config: dict, weights: dict[str, np.ndarray]) -> None:
    header = {"__metadata__": {"config": json.dumps(config, sort_keys=True)}}
    chunks, offset = [], 0
    for name, array in weights.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(np.shape(array)),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format pads the header with spaces to 8 bytes
    write_bytes(path, struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks))


def read_checkpoint(path) -> Checkpoint:
    """A checkpoint, checked whole: its config, and a tensor of the right shape for every layer."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found (run `dvc repro` to rebuild it)") from None
    except OSError as error:
        raise UserError(f"{path}: not a readable checkpoint ({error.strerror})") from None

    def invalid(why):
        return UserError(f"{path}: not a Boundary Lab checkpoint ({why})")

    if len(raw) < 8:
        raise invalid(f"{len(raw)} bytes: shorter than the header's length field")
    (header_bytes,) = struct.unpack("<Q", raw[:8])
    if header_bytes > min(MAX_HEADER_BYTES, len(raw) - 8):
        raise invalid(
            f"a header of {header_bytes} bytes in a file of {len(raw)}: not safetensors, or truncated"
        )
    try:
        header = json.loads(raw[8 : 8 + header_bytes])
        config = json.loads(header.pop("__metadata__")["config"])
    except (ValueError, TypeError, KeyError, AttributeError):
        raise invalid("its header is not safetensors JSON with a config in its metadata") from None
    try:
        config = asdict(parse_section(ModelConfig, config, "config"))
    except ParamsError as error:
        raise invalid(error) from None

    body, weights, spans = memoryview(raw)[8 + header_bytes :], {}, []
    expected = layer_shapes(config)
    if set(header) != set(expected):
        raise invalid(f"tensors {sorted(header)}; the config needs {sorted(expected)}")
    for name, shape in expected.items():
        entry, size = header[name], 4 * math.prod(shape)
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            offsets is not None
            and entry.get("dtype") == "F32"
            and entry.get("shape") == list(shape)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(offset) is int for offset in offsets)
            and offsets[1] - offsets[0] == size
        ):
            raise invalid(f"tensor {name}: {json.dumps(entry)[:200]}; expected F32 of shape {list(shape)}")
        spans.append((offsets[0], offsets[1], name))
    # The tensors' bytes must tile the rest of the file exactly: no gap, no overlap, no excess.
    covered = 0
    for begin, end, name in sorted(spans):
        if begin != covered:
            raise invalid(f"tensor {name} starts at byte {begin}, not {covered}: a gap or an overlap")
        if end > len(body):
            raise invalid(f"tensor {name} ends at byte {end}, past the data's {len(body)}: truncated")
        weights[name] = np.frombuffer(body, "<f4", (end - begin) // 4, begin).reshape(expected[name])
        covered = end
    if covered != len(body):
        raise invalid(f"{len(body) - covered} bytes after the last tensor")
    return Checkpoint(config, weights)
