"""Stage plot: the decision boundary over the training set and over the test set.

Writes plots/<name>/boundary_train.png and plots/<name>/boundary_test.png. Both share axes and
colours: the shading is the model's class probabilities (deeper colour, more confident), the black
line is where the predicted class changes, points are coloured by their true class and those the
model gets wrong are drawn as crosses.
"""

import io

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from stages.checkpoint import read_checkpoint  # noqa: E402
from stages.errors import run  # noqa: E402
from stages.files import data_path, model_path, plots_dir, read_points, write_bytes  # noqa: E402
from stages.params import load_params  # noqa: E402

COLOURS = np.array(matplotlib.colormaps["tab10"].colors)


def probability_field(model, low, high, resolution):
    """Class probabilities on a resolution x resolution grid spanning [low, high]."""
    axes = [np.linspace(low[i], high[i], resolution) for i in range(2)]
    grid_x, grid_y = np.meshgrid(*axes)
    grid = np.column_stack([grid_x.ravel(), grid_y.ravel()])
    return model.probabilities(grid).reshape(resolution, resolution, -1)


def draw(field, low, high, points, labels, predicted, title, accuracy, dpi):
    classes = field.shape[-1]
    colours = COLOURS[:classes]
    light = 1.0 - 0.55 * (1.0 - colours)  # each class colour, blended towards white
    shading = np.clip(field @ light, 0.0, 1.0)

    figure, axes = plt.subplots(figsize=(6, 5.4), dpi=dpi, layout="constrained")
    extent = (low[0], high[0], low[1], high[1])
    # The field was sampled at the grid's points, from edge to edge: each pixel is centred on its
    # point, so the image reaches half a cell beyond [low, high] and lines up with the contours.
    half_cell = (high - low) / (2 * (np.array([field.shape[1], field.shape[0]]) - 1))  # x, y
    pixels = (low[0] - half_cell[0], high[0] + half_cell[0], low[1] - half_cell[1], high[1] + half_cell[1])
    axes.imshow(shading, origin="lower", extent=pixels, aspect="auto", interpolation="bilinear")
    grid_x, grid_y = np.meshgrid(
        np.linspace(low[0], high[0], field.shape[1]), np.linspace(low[1], high[1], field.shape[0])
    )
    for k in range(classes):
        # The boundary of class k: where its probability equals the best of the others.
        others = np.delete(field, k, axis=-1).max(axis=-1)
        axes.contour(grid_x, grid_y, field[..., k] - others, levels=[0.0], colors="black", linewidths=1.2)

    right = predicted == labels
    axes.scatter(*points[right].T, c=colours[labels[right]], s=18, edgecolors="white", linewidths=0.4)
    axes.scatter(
        *points[~right].T, c=colours[labels[~right]], s=60, marker="X", edgecolors="black", linewidths=0.8
    )
    handles = [axes.scatter([], [], c=[colours[k]], s=30, label=f"class {k}") for k in range(classes)]
    handles.append(
        axes.scatter([], [], c="white", s=60, marker="X", edgecolors="black", label="misclassified")
    )
    axes.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.85)

    axes.text(
        0.02,
        0.98,
        f"accuracy {accuracy:.1%}",
        transform=axes.transAxes,
        va="top",
        fontsize=11,
        fontweight="bold",
        bbox=dict(boxstyle="round", facecolor="white", alpha=0.85),
    )
    axes.set(xlim=extent[:2], ylim=extent[2:], xlabel="x1", ylabel="x2", title=title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def main(name):
    params = load_params()
    classes, plot = params.dataset(name).data.classes, params.plot

    model = read_checkpoint(model_path(name))  # the MLP run in NumPy: this stage needs no torch
    splits = {split: read_points(data_path(name, split), classes) for split in ("train", "test")}
    every_point = np.concatenate([points for points, _ in splits.values()])
    low, high = every_point.min(axis=0), every_point.max(axis=0)
    margin = 0.08 * (high - low)
    low, high = low - margin, high + margin
    field = probability_field(model, low, high, plot.resolution)

    sample = np.random.default_rng(0)
    for split, (points, labels) in splits.items():
        predicted = model.probabilities(points).argmax(axis=1)
        accuracy = (predicted == labels).mean()
        shown = np.arange(len(labels))
        if len(shown) > plot.max_points:  # a bounded, seeded sample keeps big sets readable and fast
            shown = np.sort(sample.choice(len(labels), plot.max_points, replace=False))
        count = (
            f"{len(labels)} points" if len(shown) == len(labels) else f"{len(shown)} of {len(labels)} points"
        )
        title = f"{name}: {split} set ({count})"
        png = draw(
            field, low, high, points[shown], labels[shown], predicted[shown], title, accuracy, plot.dpi
        )
        write_bytes(plots_dir(name) / f"boundary_{split}.png", png)


if __name__ == "__main__":
    run(main)
