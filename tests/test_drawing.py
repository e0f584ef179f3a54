"""stages.drawing, and the neuron maps of stages.plot: the boundary's lines against the argmax they
separate, the plane's grid and pixels, the colours, the mosaic's layout, and the figure's bytes."""

import io

import numpy as np
import pytest
from conftest import perturbed_mlp
from PIL import Image

from stages.checkpoint import Checkpoint
from stages.drawing import BoundaryFigure, Plane, counted, shading, shown_points
from stages.plot import GAP, TILE, mosaic, neurons, unit_scaled
from stages.problems import problem_of


def random_field(classes, shape=(30, 40), seed=0):
    raw = np.random.default_rng(seed).random((*shape, classes))
    return raw / raw.sum(axis=-1, keepdims=True)


def test_plane_spans_the_points_with_a_margin_and_pixels_centred_on_the_grid():
    points = np.array([[0.0, -1.0], [2.0, 3.0]])
    plane = Plane(points, 5)
    np.testing.assert_allclose(plane.low, [-0.16, -1.32])
    np.testing.assert_allclose(plane.high, [2.16, 3.32])
    assert plane.points.shape == (25, 2) and plane.x.shape == (5, 5)
    assert np.array_equal(plane.points[:5, 0], np.linspace(-0.16, 2.16, 5))  # x across, row by row
    x0, x1, y0, y1 = plane.extent(5)
    cell = (plane.high - plane.low) / 4
    np.testing.assert_allclose(
        [x0, x1, y0, y1], [-0.16 - cell[0] / 2, 2.16 + cell[0] / 2, -1.32 - cell[1] / 2, 3.32 + cell[1] / 2]
    )
    assert Plane(points, 5, margin=0.0).extent() == (0.0, 2.0, -1.0, 3.0)


# tab10's first three colours, #1f77b4, #ff7f0e and #2ca02c, each 55 % colour and 45 % white, worked out
# by hand: 0.45 + 0.55 * 0x1f / 255 = 0.516863, and so on.
LIGHT = [[0.516863, 0.706667, 0.838235], [1.0, 0.723922, 0.480196], [0.544902, 0.795098, 0.544902]]


def test_shading_is_each_class_colour_towards_white_mixed_by_probability():
    np.testing.assert_allclose(shading(np.eye(3)), LIGHT, atol=1e-6)
    np.testing.assert_allclose(shading(np.full(3, 1 / 3)), np.mean(LIGHT, axis=0), atol=1e-6)
    np.testing.assert_allclose(shading(np.array([0.25, 0.75])), [0.879216, 0.719608, 0.569706], atol=1e-6)


def test_unit_scaled_maps_each_unit_into_minus_one_one():
    values = np.array([[1.0, -4.0, 0.0], [-2.0, 2.0, 0.0]])
    np.testing.assert_array_equal(unit_scaled(values), [[0.5, -1.0, 0.0], [-1.0, 0.5, 0.0]])


@pytest.mark.parametrize(
    ("units", "across", "down"), [(1, 1, 1), (2, 2, 1), (16, 4, 4), (64, 8, 8), (10, 4, 3)]
)
def test_mosaic_is_a_near_square_grid_of_tiles_first_unit_top_left(units, across, down):
    colours = np.zeros((TILE * TILE, units, 3))
    colours[:, 0] = 0.25  # the first unit
    tiled = mosaic(colours)
    assert tiled.shape == (down * (TILE + GAP) - GAP, across * (TILE + GAP) - GAP, 3)
    top = (down - 1) * (TILE + GAP)  # origin="lower": the last rows of the array are drawn on top
    assert (tiled[top : top + TILE, :TILE] == 0.25).all()
    assert (tiled[top : top + TILE, TILE : TILE + GAP] == 1.0).all()  # a white gap


def test_neuron_maps_are_a_png_of_every_layer_the_same_bytes_each_time():
    model = perturbed_mlp("tanh", 3, hidden=(64, 64))
    checkpoint = Checkpoint(model.config, {k: v.detach().numpy() for k, v in model.state_dict().items()})
    plane = Plane(np.array([[-1.0, -1.0], [1.0, 1.0]]), TILE, margin=0.0)
    png = neurons(checkpoint, plane, "spiral")
    assert png == neurons(checkpoint, plane, "spiral")
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.n_frames == 1 and image.width > 2 * 8 * TILE


def test_a_figure_drawn_again_is_the_same_as_one_drawn_fresh():
    """The plot stage draws the train and the test image on one figure: the second must not keep
    anything of the first (lines, points, caption)."""
    rng = np.random.default_rng(1)
    plane = Plane(rng.normal(size=(50, 2)), 30)
    fields = [random_field(3, (30, 30), seed) for seed in (2, 3)]
    points, labels = rng.normal(size=(40, 2)), rng.integers(0, 3, 40)
    args = [
        (fields[0], points, labels, labels, "first", "a"),
        (fields[1], points[:20], labels[:20], 2 - labels[:20], "second", "b"),
    ]
    reused = BoundaryFigure(plane, problem_of(3), 50)
    again = [reused.draw(*a).png() for a in args][-1]
    fresh = BoundaryFigure(plane, problem_of(3), 50).draw(*args[1]).png()
    assert again == fresh


@pytest.mark.parametrize(("train", "test"), [(5000, 3000), (5000, 1000), (800, 3000), (800, 200)])
def test_the_shown_points_are_one_generators_train_sample_then_test_sample(train, test):
    """What plot, animate and baselines draw: the train set's sample, then the test set's, from one
    generator seeded 0 (as the stages drew them before they shared the function), each sorted."""
    rng = np.random.default_rng(0)
    expected = {}
    for split, count in (("train", train), ("test", test)):
        expected[split] = (
            sorted(rng.choice(count, 2000, replace=False)) if count > 2000 else list(range(count))
        )
    shown = shown_points(train, test, 2000)
    assert {split: list(indices) for split, indices in shown.items()} == expected


def test_a_label_counts_a_part_of_a_set_or_the_whole_set():
    assert (counted(2000, 200000), counted(200, 200)) == ("2000 of 200000", "200")
