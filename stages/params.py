"""The one typed, validated view of params.yaml, and the model config it gives each dataset.

Every stage calls `load_params()` once, before doing any work. pydantic checks the whole file
against the models below: a wrong type, a value out of range or an unknown key (a typo such as
`epochz`) is a `ParamsError` of one line, naming the full key path, the value and what is allowed
(read from the same annotations that pydantic checks). The names a key may take come from their
registries: stages/datasets.py (kinds), stages/functions.py (activations, features),
stages/classifiers.py (baselines).

`ModelConfig` is the model's one description: params.yaml's model section with the data's class
count. models.MLP is built from it, a checkpoint's metadata is it, and its problem (binary or
multi-class, stages/problems.py) and its tensors' names and shapes come from it.
"""

import re
from itertools import pairwise
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from stages.classifiers import CLASSIFIERS
from stages.datasets import KINDS
from stages.errors import PARAMS_FILE, ParamsError
from stages.functions import ACTIVATIONS, FEATURES
from stages.memory import check_memory
from stages.problems import Classification, problem_of

DEVICES = ("cpu", "cuda", "auto")
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # used in file names and on command lines
SEED_MAX = 2**32 - 1  # scikit-learn's random_state (make_moons) takes no larger seed; one range for all
MAX_CLASSES = 10  # the plots colour each class from matplotlib's tab10, which has ten colours


def _not_a_bool(value):
    if isinstance(value, bool):  # YAML's true is no number
        raise PydanticCustomError("number_type", "not a number")
    return value


def _each_once(items):
    if len(set(items)) < len(items):
        raise PydanticCustomError("repeated", "an item is repeated")
    return items


# The kinds of value a key takes, each with the words that say so in a message.


def Integer(low=None, high=None):  # noqa: N802 - a type, as pydantic's conint is
    return Annotated[StrictInt, Field(ge=low, le=high, description=_range("an integer", ge=low, le=high))]


def Number(**bounds):  # noqa: N802 - as Integer; bounds: ge, gt, lt
    described = Field(allow_inf_nan=False, description=_range("a number", **bounds), **bounds)
    return Annotated[float, BeforeValidator(_not_a_bool), described]


def OneOf(names):  # noqa: N802 - as Integer
    return Annotated[Literal[tuple(names)], Field(description="one of " + ", ".join(names))]


def ListOf(item, min_length=0):  # noqa: N802 - as Integer; item: one of the above
    size = "a non-empty list" if min_length else "a list"
    words = next(arg.description for arg in get_args(item)[1:] if isinstance(arg, FieldInfo))
    return Annotated[list[item], Field(min_length=min_length, description=f"{size} of {words}")]


def _range(text, ge=None, gt=None, le=None, lt=None):
    low, high = (ge if gt is None else gt), (le if lt is None else lt)
    if low is not None and high is not None:
        left, right = "(" if gt is not None else "[", ")" if lt is not None else "]"
        return f"{text} in {left}{_bound(low)}, {_bound(high)}{right}"
    if low is not None:
        return f"{text} {'>' if gt is not None else '>='} {_bound(low)}"
    return text


def _bound(number):
    return str(number) if isinstance(number, int) else f"{number:g}"  # 4294967295, not 4.29497e+09


Seed = Integer(0, SEED_MAX)


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Schema):
    kind: OneOf(KINDS)
    n_samples: Integer(1)
    noise: Number(ge=0.0)
    seed: Seed
    classes: Integer(2, MAX_CLASSES) = 2


class SplitParams(Schema):
    test_size: Number(gt=0.0, lt=1.0)
    seed: Seed


class ModelParams(Schema):
    hidden: ListOf(Integer(1))  # none: a linear model of the features
    activation: OneOf(ACTIVATIONS)
    # The model's inputs, computed from (x1, x2).
    features: Annotated[ListOf(OneOf(FEATURES), min_length=1), AfterValidator(_each_once)] = ["x1", "x2"]


class ModelConfig(ModelParams):
    """What models.MLP is built from and a checkpoint records: the model section and the classes."""

    classes: Integer(2, MAX_CLASSES)

    INFERENCE_BATCH: ClassVar[int] = 65536  # points per forward pass when scoring or drawing

    @property
    def problem(self) -> Classification:
        return problem_of(self.classes)

    def linear_layers(self) -> list[tuple[str, int, int]]:
        """Each Linear layer's name, inputs and outputs, as MLP's nn.Sequential numbers them: a Linear
        and an activation per hidden layer, then the output Linear."""
        widths = [len(self.features), *self.hidden, self.problem.outputs]
        return [(f"net.{2 * i}", fan_in, fan_out) for i, (fan_in, fan_out) in enumerate(pairwise(widths))]

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """The name and shape of every tensor of the model, as its state_dict has them."""
        shapes = {}
        for layer, fan_in, fan_out in self.linear_layers():
            shapes |= {f"{layer}.weight": (fan_out, fan_in), f"{layer}.bias": (fan_out,)}
        return shapes


class TrainParams(Schema):
    epochs: Integer(1)
    lr: Number(gt=0.0)
    seed: Seed
    weight_decay: Number(ge=0.0) = 0.0
    l1: Number(ge=0.0) = 0.0  # rate of the L1 penalty on the weights (not the biases)
    batch_size: Integer(1) | None = None  # None: full batch
    log_every: Integer(1) = 10  # epochs between rows of the learning curves
    device: OneOf(DEVICES) = "cpu"

    SNAPSHOTS: ClassVar[int] = 200  # kept at most, after the untrained weights; animate draws some


class DatasetParams(Schema):
    data: DataParams
    split: SplitParams
    model: ModelParams
    train: TrainParams
    # scikit-learn's classifiers fitted beside the MLP (the baselines stage). No default: dvc.yaml
    # gives the stage this key, which DVC then needs in params.yaml.
    baselines: Annotated[ListOf(OneOf(CLASSIFIERS), min_length=1), AfterValidator(_each_once)]

    @property
    def config(self) -> ModelConfig:
        return ModelConfig(**self.model.model_dump(), classes=self.data.classes)


class GeneralizationParams(Schema):
    n_samples: Integer(1) = 100_000


class BaselinesParams(Schema):
    # The most training points a classifier whose fit costs more than linearly (stages/classifiers.py,
    # `sampled`) is fitted on: above it, a sample seeded by the dataset's train seed, stratified.
    max_train_points: Integer(100) = 10_000


class PlotParams(Schema):
    resolution: Integer(10, 2000) = 200  # grid cells per axis
    max_points: Integer(1) = 2000  # points drawn per figure, sampled when there are more
    dpi: Integer(30, 600) = 100
    frames: Integer(2, 200) = 40  # of the animation of training, at most one per snapshot
    frame_resolution: Integer(10, 2000) = 100  # the animation's grid cells per axis


class Params(Schema):
    datasets: dict[str, DatasetParams]
    generalization: GeneralizationParams = GeneralizationParams()
    baselines: BaselinesParams = BaselinesParams()
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
        return _checked(validated(Params, raw))
    except ParamsError as error:
        raise ParamsError(f"{source}: {error}") from None


def validated(schema: type[BaseModel], raw: Any, prefix: str = ""):
    """`raw` as a `schema`, or a ParamsError of one line naming its first bad key from `prefix`."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{prefix or 'the file'} must be a mapping, got {raw!r}")
    try:
        return schema.model_validate(raw)
    except ValidationError as error:
        # An unknown key first: a typo also makes the key it meant go missing.
        first = min(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise ParamsError(_message(schema, first, prefix)) from None


def _checked(params: Params) -> Params:
    """The checks that span several keys."""
    if not params.datasets:
        raise ParamsError("datasets is empty; define at least one dataset")
    taken = Classification.curves
    for name, dataset in params.datasets.items():
        check_dataset_name(name)
        if name in taken:
            raise ParamsError(f"dataset name {name!r} is taken by plots/{name}/; use another name")
        data = dataset.data
        makes = KINDS[data.kind].classes
        if makes is not None and data.classes != makes:
            raise ParamsError(
                f"datasets.{name}.data.classes = {data.classes}: "
                f"kind {data.kind} makes exactly {makes} classes"
            )
        if data.n_samples < 2 * data.classes:
            raise ParamsError(
                f"datasets.{name}.data.n_samples = {data.n_samples}: "
                f"must be at least 2 per class ({2 * data.classes} for {data.classes} classes)"
            )
    return params


def check_dataset_name(name: str) -> None:
    if not DATASET_NAME.fullmatch(name):
        raise ParamsError(f"dataset name {name!r} must be letters, digits, '_' or '-'")


# ---------------------------------------------------------------------------------------------
# pydantic's error, told in one line from the annotation of the key it names


def _message(schema, error, prefix) -> str:
    *parents, last = error["loc"]
    key = _join(prefix, *error["loc"])
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(_inner(_annotation_at(schema, parents)).model_fields)
        return f"unknown key {key}; allowed: {allowed}"
    expected = _expected(_annotation_at(schema, error["loc"]))
    if error["type"] == "missing":
        return f"missing key {key}: must be {expected}"
    if last == "[key]":
        return f"{_join(prefix, *parents[:-1])} has a key {error['input']!r} that is not a string"
    if error["type"] in ("model_type", "dict_type"):
        return f"{key} must be {expected}, got {error['input']!r}"
    repeated = ", each at most once" if error["type"] == "repeated" else ""
    return f"{key} = {error['input']!r}: must be {expected}{repeated}"


def _annotation_at(schema, loc):
    """The annotation that pydantic checked at `loc`: a field's (its FieldInfo) or an item's."""
    annotation = schema
    for step in loc:
        annotation = _inner(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = annotation.model_fields[step]
        elif get_origin(annotation) in (dict, list):
            annotation = get_args(annotation)[-1] if step != "[key]" else str
    return annotation


def _inner(annotation):
    """The type that a field, an optional (`X | None`) or an Annotated holds."""
    if isinstance(annotation, FieldInfo):
        annotation = annotation.annotation
    if get_origin(annotation) in (Union, UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _described(annotation) -> str | None:
    """The words of Integer, Number, OneOf or ListOf in an annotation, if it has them."""
    if isinstance(annotation, FieldInfo):
        return annotation.description or _described(annotation.annotation)
    if get_origin(annotation) in (Union, UnionType):
        return _described(next(arg for arg in get_args(annotation) if arg is not type(None)))
    infos = [arg for arg in get_args(annotation)[1:] if isinstance(arg, FieldInfo) and arg.description]
    return infos[0].description if get_origin(annotation) is Annotated and infos else None


def _expected(annotation) -> str:
    """What a key takes, in words: `an integer in [2, 10]`, `one of relu, tanh`, `a mapping of ...`."""
    kind = _inner(annotation)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return "a mapping of " + ", ".join(kind.model_fields)
    if get_origin(kind) is dict:
        return "a mapping of name to settings"
    return _described(annotation) or "a string"


def _join(*keys):
    # Keys that are not plain names are quoted, so that a message stays one readable line; list
    # indices are written key[i].
    path = ""
    for key in keys:
        if isinstance(key, int):
            path += f"[{key}]"
        elif key:
            shown = key if DATASET_NAME.fullmatch(key) else repr(key)
            path = f"{path}.{shown}" if path else shown
    return path
