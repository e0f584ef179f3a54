"""What params cost in memory. Sizes the schema accepts can still need more memory than the machine
has: the stage would fail inside NumPy or torch with a traceback, or be killed by the kernel with no
message at all. load_params (not parse_params: what fits depends on the machine the stage runs on)
estimates each dataset's largest allocations from its params and refuses, naming the key, before a
stage allocates anything.

The estimates are per item (a point, a weight, a logged epoch), rounded up from what the stages
allocate, so they refuse what cannot fit rather than what is close; tests/test_memory.py holds the
per-point one against a real stage's peak memory. The counts come from their owners: the model's
tensors, the inference batch and the snapshots kept from the config that the model and training read;
what each baseline classifier holds, and which of them are fitted on a bounded sample, from
stages/classifiers.py. The costs of all the stages are added up, as if one process ran them all.
"""

from __future__ import annotations

import os
from math import prod
from typing import TYPE_CHECKING, NamedTuple

from stages.classifiers import CLASSIFIERS
from stages.errors import PARAMS_FILE, ParamsError

if TYPE_CHECKING:  # the schema checks params before this module reads them: no import back at run time
    from stages.params import DatasetParams, Params

POINT_BYTES = 300  # a CSV row read: the file's bytes, its text, NumPy's parse, the arrays
ACTIVATION_BYTES = 8  # per point per unit in a forward and backward pass: outputs and gradients
WEIGHT_BYTES = 24  # per weight: float32 value, gradient, Adam's two moments, the checkpoint's bytes
SNAPSHOT_BYTES = 16  # per weight and snapshot: the copy kept and its share of the snapshots file
CURVE_ROW_BYTES = 256  # a logged epoch: its loss and accuracy rows, as Python numbers in lists
GRID_BYTES = 16  # per grid point and (class + 8): probabilities, colours and the points, in float64
# The baselines stage: every train, test and fresh point in one array to predict and the stratified
# sample's draw (per point); each classifier's predictions, batched then split (per point and
# classifier); each classifier's field on the grid, kept until drawn (per grid point and class + 1);
# what a call on a batch allocates (per point of a batch: a forest's per-tree probabilities, the
# nearest neighbours' distances and indices...), a batch per classifier (at most a thread each).
BASELINE_POINT_BYTES = 64
PREDICTION_BYTES = 16
FIELD_BYTES = 8
BATCH_POINT_BYTES = 512


class Cost(NamedTuple):
    key: str  # the key of params.yaml that sets its size
    value: object
    bytes: int
    what: str


def check_memory(params: Params, source: str = PARAMS_FILE, available: int | None = None) -> None:
    """Refuse a dataset whose estimated memory exceeds what this machine has available, naming the key
    that costs the most."""
    available = available_memory() if available is None else available
    if available is None:  # nothing to compare with: the stage runs and the library has the word
        return
    for name, dataset in params.datasets.items():
        costs = memory_costs(params, name, dataset)
        total = sum(cost.bytes for cost in costs)
        if total > available:
            worst = max(costs, key=lambda cost: cost.bytes)
            raise ParamsError(
                f"{source}: {worst.key} = {worst.value!r}: needs {_gigabytes(total)} of memory "
                f"({worst.what}), this machine has {_gigabytes(available).removeprefix('about ')} available"
            )


def memory_costs(params: Params, name: str, dataset: DatasetParams) -> list[Cost]:
    """Each allocation that grows with a value of params.yaml."""
    data, model, train, config = dataset.data, dataset.model, dataset.train, dataset.config
    path = f"datasets.{name}"
    weights = sum(prod(shape) for shape in config.tensor_shapes().values())
    units = sum(fan_in for _, fan_in, _ in config.linear_layers()) + config.problem.outputs
    at_once = min(train.batch_size or data.n_samples, data.n_samples)  # points in one training step
    snapshots = min(train.epochs + 1, train.SNAPSHOTS + 1)  # with the untrained weights
    batch = config.INFERENCE_BATCH
    rows = train.epochs // train.log_every + 2
    # The larger of the two probability grids: the plot and the animation draw in separate processes.
    grids = {"plot.resolution": params.plot.resolution, "plot.frame_resolution": params.plot.frame_resolution}
    grid = max(grids, key=grids.get)
    points = max(data.n_samples, params.generalization.n_samples)
    points_key = f"{path}.data.n_samples" if data.n_samples >= points else "generalization.n_samples"
    activation_key = (
        (f"{path}.train.batch_size", train.batch_size)
        if train.batch_size is not None and train.batch_size < data.n_samples
        else (f"{path}.model.hidden", model.hidden)
    )
    return [
        Cost(points_key, points, points * POINT_BYTES, "its points as CSV text and arrays"),
        Cost(
            f"{path}.model.hidden",
            model.hidden,
            weights * (WEIGHT_BYTES + SNAPSHOT_BYTES * snapshots),
            f"{weights} weights with their optimizer state and {snapshots} snapshots",
        ),
        Cost(
            *activation_key,
            (at_once + batch) * units * ACTIVATION_BYTES,
            f"the activations of {at_once} points in a training step, {batch} in scoring",
        ),
        Cost(
            f"{path}.train.epochs",
            train.epochs,
            rows * CURVE_ROW_BYTES,
            f"a learning-curve row every log_every = {train.log_every} epochs",
        ),
        Cost(grid, grids[grid], grids[grid] ** 2 * (data.classes + 8) * GRID_BYTES, "the probability grid"),
        *baselines_costs(params, name, dataset),
    ]


def baselines_costs(params: Params, name: str, dataset: DatasetParams) -> list[Cost]:
    """The baselines stage's: each classifier fitted (on the points its sample bound leaves it), and
    every point predicted and every grid point drawn by each, in batches."""
    data, path, bound = dataset.data, f"datasets.{name}", params.baselines.max_train_points
    costs = []
    for key in dataset.baselines:
        classifier = CLASSIFIERS[key]
        if classifier.sampled and bound < data.n_samples:  # the training points are fewer than n_samples
            sized_by, fit = ("baselines.max_train_points", bound), bound
        else:
            sized_by, fit = (f"{path}.data.n_samples", data.n_samples), data.n_samples
        fitted = classifier.fitted_bytes(fit, data.classes)
        costs.append(Cost(*sized_by, fitted, f"{classifier.estimator} fitted on at most {fit} points"))
    points = data.n_samples + params.generalization.n_samples  # the train, test and fresh points
    each = points * PREDICTION_BYTES + params.plot.resolution**2 * (data.classes + 1) * FIELD_BYTES
    batches = (
        len(dataset.baselines) * dataset.config.INFERENCE_BATCH * BATCH_POINT_BYTES
    )  # at most a thread each
    costs.append(
        Cost(
            f"{path}.baselines",
            dataset.baselines,
            points * BASELINE_POINT_BYTES + len(dataset.baselines) * each + batches,
            "each one's predictions of every point and its field on the grid, a batch per thread",
        )
    )
    return costs


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
