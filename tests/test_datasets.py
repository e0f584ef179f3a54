"""stages.datasets against oracles: scikit-learn's make_moons and train_test_split, the CS231n spiral
formula, and the geometric definitions in each generator's docstring."""

import math

import numpy as np
import pytest
from sklearn.datasets import make_moons
from sklearn.model_selection import train_test_split

from stages import datasets
from stages.datasets import KINDS, generate, independent_seed, stratified_split
from stages.params import SEED_MAX, DataParams


def classes_for(kind, wanted=3):
    return KINDS[kind].classes or wanted


def draw(kind, n=301, noise=0.1, seed=7, classes=None):
    return KINDS[kind].generator(n, noise, seed, classes_for(kind) if classes is None else classes)


# ---------------------------------------------------------------------------------------------
# Oracles


@pytest.mark.parametrize(("n", "noise", "seed"), [(1000, 0.2, 42), (101, 0.0, 0), (7, 0.5, 123)])
def test_moons_is_sklearn_make_moons(n, noise, seed):
    points, labels = datasets.moons(n, noise, seed)
    expected_points, expected_labels = make_moons(n_samples=n, noise=noise, random_state=seed)
    np.testing.assert_array_equal(points, expected_points)
    np.testing.assert_array_equal(labels, expected_labels)
    assert labels.dtype == np.int64


def cs231n_spiral(n, classes):
    """The noiseless CS231n spiral, written from the course notes (arm sizes as even as possible)."""
    points, labels = [], []
    for j in range(classes):
        count = n // classes + (1 if j < n % classes else 0)
        r = np.linspace(0.0, 1, count)
        t = np.linspace(j * 4, (j + 1) * 4, count)
        points.append(np.c_[r * np.sin(t), r * np.cos(t)])
        labels += [j] * count
    return np.concatenate(points), np.array(labels)


@pytest.mark.parametrize(("n", "classes"), [(300, 3), (301, 3), (302, 3), (1500, 3), (10, 2), (103, 5)])
def test_spiral_without_noise_is_the_cs231n_formula_exactly(n, classes):
    points, labels = datasets.spiral(n, 0.0, 42, classes)
    expected_points, expected_labels = cs231n_spiral(n, classes)
    np.testing.assert_array_equal(points, expected_points)
    np.testing.assert_array_equal(labels, expected_labels)


def test_spiral_noise_is_on_the_angle_only():
    n, classes, noise = 30_000, 3, 0.2
    points, labels = datasets.spiral(n, noise, 5, classes)
    clean, _ = cs231n_spiral(n, classes)
    # Radius untouched: |point| is exactly the CS231n radius (up to rounding of sin^2 + cos^2).
    np.testing.assert_allclose(np.hypot(*points.T), np.hypot(*clean.T), rtol=1e-15, atol=1e-15)
    # Angle shifted by N(0, noise): x = r sin t, y = r cos t, so t = atan2(x, y).
    shift = np.angle(np.exp(1j * (np.arctan2(*points.T) - np.arctan2(*clean.T))))
    shift = shift[np.hypot(*clean.T) > 1e-9]  # the arms' centres have no angle
    assert abs(shift.mean()) < 0.01
    assert shift.std() == pytest.approx(noise, rel=0.03)
    assert set(np.unique(labels)) == set(range(classes))


def test_spiral_noise_is_a_gaussian_draw_per_arm_from_the_seed():
    n, classes, noise, seed = 100, 4, 0.3, 9
    points, _ = datasets.spiral(n, noise, seed, classes)
    rng = np.random.default_rng(seed)
    expected = []
    for j in range(classes):
        count = n // classes
        r = np.linspace(0.0, 1.0, count)
        t = np.linspace(4.0 * j, 4.0 * (j + 1), count) + rng.normal(0.0, noise, count)
        expected.append(np.column_stack([r * np.sin(t), r * np.cos(t)]))
    np.testing.assert_array_equal(points, np.concatenate(expected))


def test_circles_without_noise_are_a_disc_inside_a_ring():
    points, labels = datasets.circles(2001, 0.0, 3)
    radius = np.hypot(*points.T)
    assert radius[labels == 0].max() <= 0.5 + 1e-12
    assert radius[labels == 1].min() >= 0.7 - 1e-12 and radius[labels == 1].max() <= 1.0 + 1e-12


def test_xor_without_noise_is_labelled_by_the_sign_of_the_product():
    points, labels = datasets.xor(2000, 0.0, 3)
    np.testing.assert_array_equal(labels, (points[:, 0] * points[:, 1] > 0).astype(np.int64))
    assert np.abs(points).min() >= 0.05 and np.abs(points).max() <= 1.05  # the gap along the axes


@pytest.mark.parametrize("classes", [2, 3, 5, 8, 13])
def test_blobs_any_number_of_classes_around_the_unit_circle(classes):
    n = 97 * classes + 3
    points, labels = datasets.blobs(n, 0.0, 1, classes)
    angle = 2 * math.pi * np.arange(classes) / classes
    centers = np.column_stack([np.cos(angle), np.sin(angle)])
    np.testing.assert_allclose(points, centers[labels], rtol=0, atol=1e-15)
    assert set(np.unique(labels)) == set(range(classes))

    points, labels = datasets.blobs(40_000 * classes, 0.1, 1, classes)
    for j in range(classes):
        cluster = points[labels == j]
        np.testing.assert_allclose(cluster.mean(axis=0), centers[j], atol=0.005)
        np.testing.assert_allclose(cluster.std(axis=0), [0.1, 0.1], rtol=0.03)


# ---------------------------------------------------------------------------------------------
# What every generator promises


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [12, 301, 1000])
def test_shapes_dtypes_labels_and_even_class_counts(kind, n):
    classes = classes_for(kind, 4)
    points, labels = draw(kind, n=n, classes=classes)
    assert points.shape == (n, 2) and points.dtype == np.float64
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert np.isfinite(points).all()
    counts = np.bincount(labels, minlength=classes)
    assert len(counts) == classes and labels.min() == 0  # labels in 0..classes-1, every one present
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    if kind != "moons":  # moons is sklearn's: there the second class gets the odd point
        assert counts.tolist() == [n // classes + (j < n % classes) for j in range(classes)]


@pytest.mark.parametrize("kind", KINDS)
def test_smallest_valid_dataset_has_two_points_of_every_class(kind):
    # 2 per class is the least parse_params lets through; the labels come in fixed blocks, so the
    # counts follow from n and classes alone, whatever the seed.
    classes = classes_for(kind)
    _, labels = draw(kind, n=2 * classes, classes=classes)
    assert np.bincount(labels, minlength=classes).tolist() == [2] * classes


@pytest.mark.parametrize("kind", KINDS)
def test_the_largest_seed_the_schema_allows_draws_and_splits(kind):
    """scikit-learn takes random_state < 2**32 (make_moons); the schema's bound is what it takes."""
    points, labels = draw(kind, seed=SEED_MAX)
    assert np.isfinite(points).all()
    train, test = stratified_split(labels, 0.2, SEED_MAX)
    assert len(train) + len(test) == len(labels)
    if kind == "moons":
        with pytest.raises(ValueError, match="random_state"):
            draw(kind, seed=SEED_MAX + 1)


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_for_a_seed_and_different_for_another(kind):
    first, second = draw(kind, seed=11), draw(kind, seed=11)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    other = draw(kind, seed=12)
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("kind", KINDS)
def test_labels_cover_every_class_for_a_large_sample(kind):
    classes = classes_for(kind, 6)
    points, labels = draw(kind, n=3000, classes=classes)
    assert points.shape == (3000, 2) and points.dtype == np.float64
    assert labels.shape == (3000,) and labels.dtype == np.int64
    assert set(np.unique(labels).tolist()) == set(range(classes))


@pytest.mark.parametrize("kind", KINDS)
def test_generate_dispatches_with_overrides(kind):
    data = DataParams(kind=kind, n_samples=50, noise=0.3, seed=4, classes=classes_for(kind, 5))
    for n, seed in [(None, None), (80, None), (None, 9), (33, 2)]:
        got = generate(data, n, seed)
        expected = KINDS[kind].generator(n or 50, 0.3, 4 if seed is None else seed, data.classes)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


def test_independent_seed():
    seeds = [independent_seed(seed) for seed in range(500)]
    assert seeds == [independent_seed(seed) for seed in range(500)]  # deterministic
    assert all(isinstance(s, int) and 0 <= s < 2**32 for s in seeds)
    assert all(s != seed for seed, s in enumerate(seeds))
    assert len(set(seeds)) == len(seeds)
    data = DataParams(kind="spiral", n_samples=300, noise=0.2, seed=42, classes=3)
    fresh, drawn = generate(data, seed=independent_seed(42)), generate(data)
    assert not np.array_equal(fresh[0], drawn[0])


# ---------------------------------------------------------------------------------------------
# stratified_split against scikit-learn


def split_cases():
    rng = np.random.default_rng(2024)
    cases = [
        ("balanced", np.repeat(np.arange(2), 500), 0.2),
        ("odd", np.repeat(np.arange(3), [500, 500, 501]), 0.2),
        ("spiral", np.repeat(np.arange(3), 500), 0.25),
        ("imbalanced", np.repeat(np.arange(3), [900, 90, 10]), 0.2),
        ("tiny", np.repeat(np.arange(2), [2, 3]), 0.4),
        ("ceil", np.repeat(np.arange(2), [5, 5]), 0.7),  # 0.7 * 10 = 7.000000000000001: 8 test points
        ("large test", np.repeat(np.arange(4), [40, 30, 20, 10]), 0.9),
    ]
    for i in range(25):
        k = int(rng.integers(2, 7))
        y = rng.choice(k, size=int(rng.integers(6 * k, 600)), p=rng.dirichlet(np.full(k, 2.0)))
        if np.bincount(y, minlength=k).min() >= 2:
            y = y[rng.permutation(len(y))]
            cases.append((f"random{i}", y, float(rng.choice([0.1, 0.2, 1 / 3, 0.5, 0.65]))))
    return cases


SPLITS = split_cases()


@pytest.mark.parametrize(("labels", "test_size"), [c[1:] for c in SPLITS], ids=[c[0] for c in SPLITS])
def test_stratified_split_matches_sklearn(labels, test_size):
    n, classes = len(labels), np.unique(labels)
    train, test = stratified_split(labels, test_size, 42)
    assert train.dtype.kind == test.dtype.kind == "i"
    assert len(np.intersect1d(train, test)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    assert len(test) == math.ceil(test_size * n)

    _, sk_test = train_test_split(np.arange(n), test_size=test_size, stratify=labels, random_state=42)
    assert len(test) == len(sk_test)
    ours = np.array([(labels[test] == c).sum() for c in classes])
    theirs = np.array([(labels[sk_test] == c).sum() for c in classes])
    assert np.abs(ours - theirs).max() <= 1, (ours, theirs)
    # Each class gets its share, rounded: never more than one point away from the exact proportion.
    share = np.array([(labels == c).sum() for c in classes]) * len(test) / n
    assert np.abs(ours - share).max() < 1


def test_stratified_split_is_deterministic_per_seed():
    labels = np.repeat(np.arange(3), 100)
    first, again = stratified_split(labels, 0.2, 1), stratified_split(labels, 0.2, 1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = stratified_split(labels, 0.2, 2)
    assert not np.array_equal(np.sort(first[1]), np.sort(other[1]))
    assert not np.array_equal(np.sort(first[1]), np.arange(60))  # shuffled, not the first points
