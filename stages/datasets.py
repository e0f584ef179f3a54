"""The 2-D point generators and the stratified split, in NumPy.

Each generator returns `(points, labels)`: float64 of shape (n, 2) and int64 labels in
0..classes-1, fully determined by its seed. `noise` is the standard deviation of Gaussian noise:
on the coordinates for every kind but spiral, on the angle for spiral (as in CS231n).
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np


def generate(data, n_samples: int | None = None, seed: int | None = None):
    """Draw a dataset as `data` (params.DataParams) describes it; `n_samples` and `seed` override its own."""
    n = data.n_samples if n_samples is None else n_samples
    seed = data.seed if seed is None else seed
    return KINDS[data.kind].generator(n, data.noise, seed, data.classes)


def independent_seed(seed: int) -> int:
    """A seed for a second sample whose stream is independent of the one `seed` starts."""
    return int(np.random.SeedSequence(seed).spawn(1)[0].generate_state(1)[0])


def moons(n, noise, seed, classes=2):
    # The exercise's own dataset: scikit-learn's make_moons, imported only when a moons set is drawn.
    from sklearn.datasets import make_moons  # noqa: PLC0415

    points, labels = make_moons(n_samples=n, noise=noise, random_state=seed)
    return points, labels.astype(np.int64)


def spiral(n, noise, seed, classes=3):
    """CS231n's spiral: arm j has radius 0..1 and angle linspace(4j, 4(j+1)) plus noise."""
    rng = np.random.default_rng(seed)
    points, labels = [], []
    for arm, count in enumerate(_per_class(n, classes)):
        radius = np.linspace(0.0, 1.0, count)
        angle = np.linspace(4.0 * arm, 4.0 * (arm + 1), count) + rng.normal(0.0, noise, count)
        points.append(np.column_stack([radius * np.sin(angle), radius * np.cos(angle)]))
        labels.append(np.full(count, arm, dtype=np.int64))
    return np.concatenate(points), np.concatenate(labels)


def circles(n, noise, seed, classes=2):
    """A disc of radius 0.5 (class 0) inside a ring of radius 0.7..1 (class 1)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(2, dtype=np.int64), _per_class(n, 2))
    low, high = np.where(labels == 0, 0.0, 0.7), np.where(labels == 0, 0.5, 1.0)
    radius = rng.uniform(low, high)
    angle = rng.uniform(0.0, 2.0 * math.pi, n)
    points = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    return points + rng.normal(0.0, noise, points.shape), labels


def xor(n, noise, seed, classes=2):
    """Points in the four quadrants of [-1, 1]^2, class 1 where x1 and x2 have the same sign."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(2, dtype=np.int64), _per_class(n, 2))
    # A magnitude away from the axes (a small gap, as in TensorFlow Playground) and a sign per
    # coordinate; the second coordinate's sign follows from the first and the class.
    magnitude = rng.uniform(0.05, 1.0, (n, 2))
    first = rng.choice([-1.0, 1.0], n)
    second = np.where(labels == 1, first, -first)
    points = magnitude * np.column_stack([first, second])
    return points + rng.normal(0.0, noise, points.shape), labels


def blobs(n, noise, seed, classes=3):
    """Gaussian clusters of standard deviation `noise` around points evenly spaced on the unit circle."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes, dtype=np.int64), _per_class(n, classes))
    angle = 2.0 * math.pi * labels / classes
    centers = np.column_stack([np.cos(angle), np.sin(angle)])
    return centers + rng.normal(0.0, noise, centers.shape), labels


class Kind(NamedTuple):
    generator: Callable  # (n, noise, seed, classes) -> (points, labels)
    classes: int | None  # the classes it always makes; None: as many as data.classes asks


# The kinds params.yaml's data.kind names; a new kind is one generator and one entry.
KINDS = {
    "moons": Kind(moons, 2),
    "spiral": Kind(spiral, None),
    "circles": Kind(circles, 2),
    "xor": Kind(xor, 2),
    "blobs": Kind(blobs, None),
}


def _per_class(n, classes):
    """n split as evenly as possible; the first n % classes classes get one more."""
    return [n // classes + (j < n % classes) for j in range(classes)]


def stratified_split(labels: np.ndarray, test_size: float, seed: int):
    """Indices (train, test) with each class in the same proportion in both.

    The test set has ceil(test_size * n) points, as in scikit-learn; each class gets its share,
    the remainder going to the classes with the largest fractional share.
    """
    n = len(labels)
    n_test = math.ceil(test_size * n)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * n_test / n
    per_class = np.floor(share).astype(np.int64)
    left = n_test - per_class.sum()
    per_class[np.argsort(-(share - per_class), kind="stable")[:left]] += 1

    rng = np.random.default_rng(seed)
    train, test = [], []
    for label, count in zip(classes, per_class, strict=True):
        members = rng.permutation(np.flatnonzero(labels == label))
        test.append(members[:count])
        train.append(members[count:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
