"""Stage animate: the boundary over training, an animated PNG of the model at `plot.frames` of the
snapshots that stages/train.py kept, from epoch 0 (the untrained model) to the last (the final one).

Writes plots/<name>/boundary_training.png. Each frame is stages/drawing.py's picture over the
training points, with the epoch and that model's train and test accuracy. The frames are spread
evenly over the snapshots, which train.py keeps densest early on, where the boundary moves most.
"""

import io
from itertools import pairwise

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import Blend

from stages.checkpoint import read_snapshots, snapshots_path
from stages.drawing import BoundaryFigure, Plane, shown_points
from stages.files import data_path, plots_dir, read_points, write_bytes
from stages.params import load_params
from stages.runner import run

SIZE, SCALE = (4.8, 4.32), 0.8  # inches, and a share of plot.dpi: frames smaller than the final images
FRAME_MS, LAST_MS = 80, 2000  # the last frame, the final model, is held before the loop restarts


def main(name):
    params = load_params()
    dataset, plot = params.dataset(name), params.plot
    path = snapshots_path(name)
    snapshots = read_snapshots(path).check(path, name, dataset)
    problem = snapshots.config.problem
    splits = {split: read_points(data_path(name, split), problem.classes) for split in ("train", "test")}
    # A grid of its own: frames are smaller than the final images, and the field is most of their cost.
    plane = Plane(np.concatenate([points for points, _ in splits.values()]), plot.frame_resolution)
    points, labels = splits["train"]
    shown = shown_points(len(labels), len(splits["test"][1]), plot.max_points)["train"]

    figure = BoundaryFigure(plane, problem, round(SCALE * plot.dpi), SIZE)
    frames = []
    for i in chosen(len(snapshots), plot.frames):
        model, epoch = snapshots[i], snapshots.epochs[i]
        predicted = {split: model.predict(p) for split, (p, _) in splits.items()}
        train, test = ((predicted[split] == splits[split][1]).mean() for split in ("train", "test"))
        title = f"{name}: training, {snapshots.epochs[-1]} epochs"  # the same in every frame, see rgb()
        caption = f"epoch {epoch}\ntrain {train:.1%}  test {test:.1%}"
        figure.draw(
            plane.field(model), points[shown], labels[shown], predicted["train"][shown], title, caption
        )
        frames.append(figure.rgb())
    figure.close()

    write_bytes(
        plots_dir(name) / "boundary_training.png", apng(frames, [FRAME_MS] * (len(frames) - 1) + [LAST_MS])
    )


def apng(frames, durations) -> bytes:
    """An animated PNG of (height, width, 3) uint8 frames, each after the first holding only the pixels
    that changed (the others transparent, drawn over the previous frame): a fraction of the size."""
    # APNG in 24-bit colour: GIF's 256-colour palette would band the soft probability shading.
    opaque = np.full((*frames[0].shape[:2], 1), 255, dtype=np.uint8)
    images = [np.concatenate([frames[0], opaque], axis=-1)]
    for before, after in pairwise(frames):
        changed = np.concatenate([after, opaque], axis=-1)
        changed[(before == after).all(axis=-1)] = 0
        images.append(changed)
    first, *rest = (Image.fromarray(image, "RGBA") for image in images)
    buffer = io.BytesIO()
    # zlib level 3, not the default 6: faster to write, for a few more bytes (docs/benchmarks.md).
    options = dict(duration=durations, loop=0, blend=Blend.OP_OVER, compress_level=3)
    first.save(buffer, format="PNG", save_all=True, append_images=rest, **options)
    return buffer.getvalue()


def chosen(snapshots: int, frames: int) -> list[int]:
    """`frames` indices spread evenly over the snapshots, the first and the last included (all of
    them when there are fewer snapshots than frames)."""
    return sorted({round(i) for i in np.linspace(0, snapshots - 1, min(frames, snapshots))})


if __name__ == "__main__":
    run(main)
