"""Stage plot: the final model's decision boundary over the training and the test set, and what
each of its neurons computes.

Writes plots/<name>/boundary_train.png and plots/<name>/boundary_test.png (stages/drawing.py's
picture: both share axes and colours), and plots/<name>/neurons.png: as TensorFlow Playground draws
them beside the network, a small map over the same plane of each input feature, of every hidden
unit's activation, layer by layer, and of the output. The model runs in NumPy (stages/checkpoint.py):
this stage needs no torch.
"""

import io
import math

import numpy as np

from stages.checkpoint import read_checkpoint
from stages.drawing import BoundaryFigure, Plane, counted, plt, shading, shown_points
from stages.files import data_path, model_path, plots_dir, read_points, write_bytes
from stages.params import load_params
from stages.runner import run

TILE = 48  # grid points a side of each neuron's map, drawn one pixel each (at NEURONS_DPI)
NEURONS_DPI = 100  # the neuron maps' own, whatever plot.dpi: their tiles are pixels, not inches
GAP = 4  # white pixels between the tiles of a block
UNITS = plt.get_cmap("RdBu")  # Playground's diverging colours: one sign red, the other blue


def main(name):
    params = load_params()
    dataset, plot = params.dataset(name), params.plot
    path = model_path(name)
    model = read_checkpoint(path).check(path, name, dataset)
    problem = model.config.problem
    splits = {split: read_points(data_path(name, split), problem.classes) for split in ("train", "test")}
    plane = Plane(np.concatenate([points for points, _ in splits.values()]), plot.resolution)
    for split, picture in boundary_pngs(name, model, splits, plane, plot).items():
        write_bytes(plots_dir(name) / f"boundary_{split}.png", picture)
    write_bytes(
        plots_dir(name) / "neurons.png",
        neurons(model, Plane(np.stack([plane.low, plane.high]), TILE, margin=0.0), name),
    )


def boundary_pngs(name, model, splits, plane, plot, drawn=("train", "test")) -> dict[str, bytes]:
    """The boundary_<split>.png of each split in `drawn`, of splits {"train": (points, labels),
    "test": ...}: `model`'s (a Checkpoint) shading and boundary over `plane`, the split's points on
    it. The notebook draws with it too."""
    field = plane.field(model)
    figure = BoundaryFigure(plane, model.config.problem, plot.dpi)
    samples = shown_points(len(splits["train"][1]), len(splits["test"][1]), plot.max_points)
    pictures = {}
    for split in drawn:
        points, labels = splits[split]
        predicted = model.predict(points)
        shown = samples[split]
        title = f"{name}: {split} set ({counted(len(shown), len(labels))} points)"
        caption = f"accuracy {(predicted == labels).mean():.1%}"
        figure.draw(field, points[shown], labels[shown], predicted[shown], title, caption)
        pictures[split] = figure.png()
    figure.close()
    return pictures


def neurons(model, plane, name) -> bytes:
    """One block per layer, each unit's map a tile in a near-square grid of them: the features, every
    hidden layer (each unit scaled to its own largest |value|, 0 white), and the output's shading."""
    *layers, logits = model.layers(plane.points)
    config = model.config
    names = [f"inputs: {', '.join(config.features)}"]
    names += [f"layer {i + 1}: {width} {config.activation}" for i, width in enumerate(config.hidden)]
    blocks = [mosaic(UNITS(0.5 + 0.5 * unit_scaled(values))[..., :3]) for values in layers]
    blocks.append(mosaic(shading(config.problem.probabilities(np, logits))[:, None, :]))
    names.append("output")
    columns = [block.shape[1] for block in blocks]
    inches = (
        (sum(columns) + 2 * TILE) / NEURONS_DPI + 0.3 * len(blocks),
        max(b.shape[0] for b in blocks) / NEURONS_DPI + 0.8,
    )
    figure, axes = plt.subplots(
        1, len(blocks), figsize=inches, dpi=NEURONS_DPI, width_ratios=columns, squeeze=False
    )
    for ax, block, title in zip(axes[0], blocks, names, strict=True):
        ax.imshow(block, origin="lower", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    figure.suptitle(f"{name}: what each neuron computes over the plane (x1 across, x2 up)", fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def unit_scaled(values):
    """(n, units) scaled into [-1, 1] per unit by its largest |value| (a unit 0 everywhere stays 0)."""
    peak = np.abs(values).max(axis=0)
    return values / np.where(peak > 0, peak, 1.0)


def mosaic(colours):
    """(TILE^2, units, 3) colours as tiles of TILE x TILE pixels, rows of ceil(sqrt(units)), GAP apart
    on white."""
    units = colours.shape[1]
    across = math.ceil(math.sqrt(units))
    down = math.ceil(units / across)
    size = TILE + GAP
    out = np.ones((down * size - GAP, across * size - GAP, 3))
    for unit in range(units):
        row, column = divmod(unit, across)
        row = down - 1 - row  # origin="lower": the first unit at the top left
        out[row * size : row * size + TILE, column * size : column * size + TILE] = colours[:, unit].reshape(
            TILE, TILE, 3
        )
    return out


if __name__ == "__main__":
    run(main)
