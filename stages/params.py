"""The one typed, validated view of params.yaml.

Every stage calls `load_params()` once, before doing any work. The whole file is checked against
the dataclasses below: a wrong type, a value out of range or an unknown key (a typo such as
`epochz`) is a `ParamsError` naming the full key path, the value and what is allowed.
"""

import math
import os
import re
from dataclasses import MISSING, dataclass, field, fields
from itertools import pairwise
from typing import Any, get_args, get_origin

from stages.classifiers import CLASSIFIERS
from stages.errors import UserError
from stages.functions import ACTIVATIONS, FEATURES

PARAMS_FILE = "params.yaml"

KINDS = ("moons", "spiral", "circles", "xor", "blobs")
BINARY_KINDS = ("moons", "circles", "xor")  # these generators make exactly two classes
DEVICES = ("cpu", "cuda", "auto")
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # used in file names
CURVES = ("loss", "accuracy")  # folders of plots/ shared by every dataset's learning curves
SEED_MAX = 2**32 - 1  # scikit-learn's random_state (make_moons) takes no larger seed; one range for all
MAX_CLASSES = 10  # the plots colour each class from matplotlib's tab10, which has ten colours


class ParamsError(UserError):
    pass


def spec(default=MISSING, *, low=None, high=None, low_open=False, high_open=False, choices=None, min_items=1):
    """A field with the range or the choices its value (a list's every item) must fall in, and a
    list's least length."""
    check = dict(low=low, high=high, low_open=low_open, high_open=high_open, choices=choices)
    check["min_items"] = min_items
    return field(default=default, metadata=check)


@dataclass(frozen=True)
class DataParams:
    kind: str = spec(choices=KINDS)
    n_samples: int = spec(low=1)
    noise: float = spec(low=0.0)
    seed: int = spec(low=0, high=SEED_MAX)
    classes: int = spec(2, low=2, high=MAX_CLASSES)


@dataclass(frozen=True)
class SplitParams:
    test_size: float = spec(low=0.0, high=1.0, low_open=True, high_open=True)
    seed: int = spec(low=0, high=SEED_MAX)


@dataclass(frozen=True)
class ModelParams:
    hidden: list[int] = spec(low=1, min_items=0)  # none: a linear model of the features
    activation: str = spec(choices=ACTIVATIONS)
    features: list[str] = spec(("x1", "x2"), choices=FEATURES)  # the model's inputs, from (x1, x2)


@dataclass(frozen=True)
class TrainParams:
    epochs: int = spec(low=1)
    lr: float = spec(low=0.0, low_open=True)
    seed: int = spec(low=0, high=SEED_MAX)
    weight_decay: float = spec(0.0, low=0.0)
    l1: float = spec(0.0, low=0.0)  # rate of the L1 penalty on the weights (not the biases)
    batch_size: int | None = spec(None, low=1)  # None: full batch
    log_every: int = spec(10, low=1)  # epochs between rows of the learning curves
    device: str = spec("cpu", choices=DEVICES)


@dataclass(frozen=True)
class DatasetParams:
    data: DataParams
    split: SplitParams
    model: ModelParams
    train: TrainParams
    # scikit-learn's classifiers fitted beside the MLP (stages/classifiers.py, the baselines stage)
    baselines: list[str] = spec(("logistic", "knn", "svm", "forest"), choices=CLASSIFIERS)


@dataclass(frozen=True)
class GeneralizationParams:
    n_samples: int = spec(100_000, low=1)


@dataclass(frozen=True)
class PlotParams:
    resolution: int = spec(200, low=10, high=2000)  # grid cells per axis
    max_points: int = spec(2000, low=1)  # points drawn per figure, sampled when there are more
    dpi: int = spec(100, low=30, high=600)
    frames: int = spec(40, low=2, high=200)  # of the animation of training, at most one per snapshot
    frame_resolution: int = spec(100, low=10, high=2000)  # the animation's grid cells per axis


@dataclass(frozen=True)
class Params:
    datasets: dict[str, DatasetParams]
    generalization: GeneralizationParams = GeneralizationParams()
    plot: PlotParams = PlotParams()

    def dataset(self, name: str) -> DatasetParams:
        if name not in self.datasets:
            raise ParamsError(
                f"{PARAMS_FILE}: no dataset '{name}' under datasets (defined: {', '.join(self.datasets)})"
            )
        return self.datasets[name]


def load_params(path: str = PARAMS_FILE) -> Params:
    import yaml  # noqa: PLC0415 - keeps `import stages.params` free for tests that build dicts

    try:
        with open(path, encoding="utf-8") as file:
            raw = yaml.safe_load(file)
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found (run from the project root)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ParamsError(f"{path}: cannot be read ({type(error).__name__})") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise ParamsError(f"{path}: not valid YAML{line}") from None
    params = parse_params(raw, path)
    check_memory(params, path)
    return params


def parse_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    """Params from the parsed YAML; every error message starts with `source`."""
    try:
        return _checked(parse_section(Params, raw, ""))
    except ParamsError as error:
        raise ParamsError(f"{source}: {error}") from None


def _checked(params: Params) -> Params:
    """The checks that span several keys."""
    if not params.datasets:
        raise ParamsError("datasets is empty; define at least one dataset")
    for name, dataset in params.datasets.items():
        if not DATASET_NAME.fullmatch(name):
            raise ParamsError(f"dataset name {name!r} must be letters, digits, '_' or '-'")
        if name in CURVES:
            raise ParamsError(f"dataset name {name!r} is taken by plots/{name}/; use another name")
        data = dataset.data
        if data.kind in BINARY_KINDS and data.classes != 2:
            raise ParamsError(
                f"datasets.{name}.data.classes = {data.classes}: kind {data.kind} makes exactly 2 classes"
            )
        if data.n_samples < 2 * data.classes:
            raise ParamsError(
                f"datasets.{name}.data.n_samples = {data.n_samples}: "
                f"must be at least 2 per class ({2 * data.classes} for {data.classes} classes)"
            )
    return params


def parse_section(cls, raw, path: str):
    """`raw` checked against the dataclass `cls` (types, ranges, unknown and missing keys), as every
    section of params.yaml is; messages name keys from `path`."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{path or 'the file'} must be a mapping, got {raw!r}")
    known = [f.name for f in fields(cls)]
    for key in raw:
        if key not in known:
            raise ParamsError(f"unknown key {_join(path, key)}; allowed: {', '.join(known)}")
    values = {}
    for f in fields(cls):
        key = _join(path, f.name)
        if f.name in raw:
            values[f.name] = _value(f.type, raw[f.name], key, f.metadata)
        elif f.default is MISSING:
            raise ParamsError(f"missing key {key}: must be {_expected(f.type, f.metadata)}")
    return cls(**values)


def _value(kind, value, key, check):
    if hasattr(kind, "__dataclass_fields__"):
        return parse_section(kind, value, key)
    origin = get_origin(kind)
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key} must be a mapping of name to settings")
        item_type = get_args(kind)[1]
        return {str(name): _value(item_type, item, _join(key, name), check) for name, item in value.items()}
    if origin is list:
        if not isinstance(value, list) or len(value) < check.get("min_items", 1):
            _reject(key, value, _expected(kind, check))
        if check.get("choices") is not None and len(set(map(repr, value))) < len(value):
            _reject(key, value, _expected(kind, check) + ", each at most once")
        return [_value(get_args(kind)[0], item, f"{key}[{i}]", check) for i, item in enumerate(value)]
    if get_args(kind) and type(None) in get_args(kind):  # an optional setting
        return None if value is None else _value(get_args(kind)[0], value, key, check)
    return _scalar(kind, value, key, check)


def _scalar(kind, value, key, check):
    written = value  # errors quote the value as the user wrote it
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _reject(key, value, _describe(kind, check))
    elif kind is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` as a string; accept what is clearly a number
            try:
                value = float(value)
            except ValueError:
                _reject(key, value, _describe(kind, check))
        if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
            _reject(key, written, _describe(kind, check))
        value = float(value)
    elif kind is str and not isinstance(value, str):
        _reject(key, value, _describe(kind, check))
    if not _allowed(value, check):
        _reject(key, written, _describe(kind, check))
    return value


def _finite(number):
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer too large for a float
        return False


def _allowed(value, check):
    if check.get("choices") is not None:
        return value in check["choices"]
    low, high = check.get("low"), check.get("high")
    if low is not None and (value <= low if check["low_open"] else value < low):
        return False
    if high is not None and (value >= high if check["high_open"] else value > high):
        return False
    return True


def _describe(kind, check):
    if check.get("choices") is not None:
        return "one of " + ", ".join(check["choices"])
    text = {int: "an integer", float: "a number", str: "a string"}[kind]
    low, high = check.get("low"), check.get("high")
    if low is not None and high is not None:
        left, right = "(" if check["low_open"] else "[", ")" if check["high_open"] else "]"
        return f"{text} in {left}{_bound(low)}, {_bound(high)}{right}"
    if low is not None:
        return f"{text} {'>' if check['low_open'] else '>='} {_bound(low)}"
    return text


def _bound(number):
    return str(number) if isinstance(number, int) else f"{number:g}"  # 4294967295, not 4.29497e+09


def _expected(kind, check):
    if hasattr(kind, "__dataclass_fields__"):
        return "a mapping of " + ", ".join(f.name for f in fields(kind))
    if get_origin(kind) is dict:
        return "a mapping of name to settings"
    if get_origin(kind) is list:
        size = "a non-empty list" if check.get("min_items", 1) else "a list"
        return f"{size} of {_describe(get_args(kind)[0], check)}"
    return _describe(kind, check)


def _reject(key, value, allowed):
    raise ParamsError(f"{key} = {value!r}: must be {allowed}")


def _join(path, key):
    # Keys that are not plain names are quoted, so that a message stays one readable line.
    key = str(key) if DATASET_NAME.fullmatch(str(key)) else repr(key)
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------------------------------------
# What the values cost. Sizes the schema accepts can still need more memory than the machine has:
# the stage would fail inside NumPy or torch with a traceback, or be killed by the kernel with no
# message at all. load_params (not parse_params: what fits depends on the machine the stage runs
# on) estimates each dataset's largest allocations from its params and refuses, naming the key,
# before a stage allocates anything. The estimates are per item (a point, a weight, a logged epoch),
# rounded up from what the stages allocate, so they refuse what cannot fit rather than what is close;
# tests/test_params.py holds the per-point one against a real stage's peak memory.

POINT_BYTES = 300  # a CSV row read: the file's bytes, its text, NumPy's parse, the arrays
ACTIVATION_BYTES = 8  # per point per unit in a forward and backward pass: outputs and gradients
INFERENCE_BATCH = 65536  # points per forward pass when scoring or drawing (models.py, checkpoint.py)
WEIGHT_BYTES = 24  # per weight: float32 value, gradient, Adam's two moments, the checkpoint's bytes
SNAPSHOT_BYTES = 16  # per weight and snapshot: the copy kept and its share of the snapshots file
SNAPSHOTS_KEPT = 201  # stages/train.py keeps the untrained weights and up to 200 snapshots
CURVE_ROW_BYTES = 256  # a logged epoch: its loss and accuracy rows, as Python numbers in lists


def check_memory(params: Params, source: str = PARAMS_FILE, available: int | None = None) -> None:
    """Refuse a dataset whose estimated memory exceeds what this machine has available, naming the key
    that costs the most."""
    available = available_memory() if available is None else available
    if available is None:  # nothing to compare with: the stage runs and the library has the word
        return
    for name, dataset in params.datasets.items():
        costs = memory_costs(params, name, dataset)
        total = sum(need for _, _, need, _ in costs)
        if total > available:
            key, value, _, why = max(costs, key=lambda cost: cost[2])
            raise ParamsError(
                f"{source}: {key} = {value!r}: needs {_gigabytes(total)} of memory ({why}), "
                f"this machine has {_gigabytes(available).removeprefix('about ')} available"
            )


def memory_costs(params: Params, name: str, dataset: DatasetParams) -> list[tuple[str, Any, int, str]]:
    """(key, value, bytes, what for) of each allocation that grows with a value of params.yaml."""
    data, model, train = dataset.data, dataset.model, dataset.train
    path = f"datasets.{name}"
    widths = [len(model.features), *model.hidden, 1 if data.classes == 2 else data.classes]
    weights = sum(fan_in * fan_out + fan_out for fan_in, fan_out in pairwise(widths))
    at_once = min(train.batch_size or data.n_samples, data.n_samples)  # points in one training step
    snapshots = min(train.epochs + 1, SNAPSHOTS_KEPT)
    rows = train.epochs // train.log_every + 2
    # The larger of the two probability grids: the plot and the animation draw in separate processes.
    grids = {"plot.resolution": params.plot.resolution, "plot.frame_resolution": params.plot.frame_resolution}
    grid = max(grids, key=grids.get)
    points = max(data.n_samples, params.generalization.n_samples)
    points_key = (
        f"{path}.data.n_samples" if data.n_samples >= points else "generalization.n_samples",
        points,
    )
    activation_key = (
        (f"{path}.train.batch_size", train.batch_size)
        if train.batch_size is not None and train.batch_size < data.n_samples
        else (f"{path}.model.hidden", model.hidden)
    )
    return [
        (*points_key, points * POINT_BYTES, "its points as CSV text and arrays"),
        (
            f"{path}.model.hidden",
            model.hidden,
            weights * (WEIGHT_BYTES + SNAPSHOT_BYTES * snapshots),
            f"{weights} weights with their optimizer state and {snapshots} snapshots",
        ),
        (
            *activation_key,
            (at_once + INFERENCE_BATCH) * sum(widths) * ACTIVATION_BYTES,
            f"the activations of {at_once} points in a training step, {INFERENCE_BATCH} in scoring",
        ),
        (
            f"{path}.train.epochs",
            train.epochs,
            rows * CURVE_ROW_BYTES,
            f"a learning-curve row every log_every = {train.log_every} epochs",
        ),
        (grid, grids[grid], grids[grid] ** 2 * (data.classes + 8) * 16, "the probability grid"),
    ]


def available_memory() -> int | None:
    """Bytes this process can allocate: the kernel's MemAvailable, within a container's (cgroup v2)
    limit; the physical memory where there is no /proc (macOS); None if neither can be read."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        try:
            available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            return None
    try:
        with (
            open("/sys/fs/cgroup/memory.max", encoding="ascii") as limit,
            open("/sys/fs/cgroup/memory.current", encoding="ascii") as used,
        ):
            left = int(limit.read()) - int(used.read())  # "max" (no limit) is not an int
        available = left if available is None else min(available, left)
    except (OSError, ValueError):
        pass
    return available


def _gigabytes(size: int) -> str:
    """In integers: a width of 10**400 has no float."""
    if size < 10 * 10**9:
        return f"about {size // 10**8 / 10:.1f} GB"
    return f"about {size // 10**9:,} GB" if size < 10**15 else "over 1,000,000 GB"
