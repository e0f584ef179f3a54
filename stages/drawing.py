"""The picture of a model's boundary, shared by the plot stage (the final model's images) and the
animate stage (one frame per snapshot of training): the same plane, shading, lines and points.

The shading is the model's class probabilities (deeper colour, more confident), the black line is
where the predicted class changes, points are coloured by their true class and those the model
gets wrong are drawn as crosses.
"""

import io

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = np.array(matplotlib.colormaps["tab10"].colors)


def shading(field):
    """(..., classes) probabilities as colours: each class's colour blended towards white, mixed."""
    colours = COLOURS[: field.shape[-1]]
    return np.clip(field @ (1.0 - 0.55 * (1.0 - colours)), 0.0, 1.0)


def shown_points(train: int, test: int, max_points: int) -> dict[str, np.ndarray]:
    """The indices of the training and test points that a figure draws: all of a set, or a seeded
    sample of max_points in their order (readable and fast for big sets). One generator draws the
    train set's sample, then the test set's: plot, animate and baselines draw the same points."""
    rng = np.random.default_rng(0)
    return {
        split: np.arange(count)
        if count <= max_points
        else np.sort(rng.choice(count, max_points, replace=False))
        for split, count in (("train", train), ("test", test))
    }


def counted(part: int, whole: int) -> str:
    """How many of a set's points a label speaks of: "part of whole", or "whole" if that is all."""
    return f"{part} of {whole}" if part < whole else f"{whole}"


LABEL_BOX = dict(boxstyle="round", facecolor="white", alpha=0.85)  # text over the shading, readable


class Plane:
    """The part of the plane drawn, around `points` with a margin (a share of their span), and the
    grid the model is sampled on there: resolution x resolution points from edge to edge."""

    def __init__(self, points, resolution: int, margin: float = 0.08):
        low, high = points.min(axis=0), points.max(axis=0)
        margin = margin * (high - low)
        self.low, self.high = low - margin, high + margin
        self.x, self.y = np.meshgrid(*(np.linspace(self.low[i], self.high[i], resolution) for i in range(2)))
        self.points = np.column_stack([self.x.ravel(), self.y.ravel()])

    def field(self, model):
        """The model's class probabilities on the grid, (resolution, resolution, classes)."""
        return model.probabilities(self.points).reshape(*self.x.shape, -1)

    def extent(self, cells: int = 0):
        """xmin, xmax, ymin, ymax; with `cells`, for an image of that many pixels a side, whose
        pixels are centred on the grid's points: half a cell more on every side."""
        half = (self.high - self.low) / (2 * (cells - 1)) if cells else np.zeros(2)
        return (self.low[0] - half[0], self.high[0] + half[0], self.low[1] - half[1], self.high[1] + half[1])


class BoundaryFigure:
    """One figure drawn again for each model, points and title: draw(), then png() or rgb()."""

    def __init__(self, plane: Plane, problem, dpi: int, size=(6, 5.4)):
        """`problem`: the model's (stages/problems.py), which says where its boundary lies."""
        self.plane, self.problem, self.colours = plane, problem, COLOURS[: problem.classes]
        self.figure, self.axes = plt.subplots(figsize=size, dpi=dpi, layout="constrained")
        self.image = None
        self.lines = []
        self.background = None  # rgb()'s: the figure less what draw() changes
        self.right = self.axes.scatter(np.empty(0), np.empty(0), s=18, edgecolors="white", linewidths=0.4)
        self.wrong = self.axes.scatter(
            np.empty(0), np.empty(0), s=60, marker="X", edgecolors="black", linewidths=0.8
        )
        handles = [
            self.axes.scatter([], [], c=[colour], s=30, label=f"class {k}")
            for k, colour in enumerate(self.colours)
        ]
        handles.append(
            self.axes.scatter([], [], c="white", s=60, marker="X", edgecolors="black", label="misclassified")
        )
        self.axes.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.85)
        self.caption = self.axes.text(
            0.02,
            0.98,
            "",
            transform=self.axes.transAxes,
            va="top",
            fontsize=11,
            fontweight="bold",
            bbox=LABEL_BOX,
        )
        extent = plane.extent()
        self.axes.set(xlim=extent[:2], ylim=extent[2:], xlabel="x1", ylabel="x2")

    def draw(self, field, points, labels, predicted, title: str, caption: str) -> "BoundaryFigure":
        colours = shading(field)
        if self.image is None:
            self.image = self.axes.imshow(
                colours,
                origin="lower",
                extent=self.plane.extent(len(colours)),
                aspect="auto",
                interpolation="bilinear",
            )
        self.image.set_data(colours)
        for line in self.lines:
            line.remove()
        self.lines = [
            self.axes.contour(
                self.plane.x, self.plane.y, margin, levels=[0.0], colors="black", linewidths=1.2
            )
            for margin in self.problem.margins(np, field)
        ]
        right = predicted == labels
        for dots, chosen in ((self.right, right), (self.wrong, ~right)):
            dots.set_offsets(points[chosen])
            dots.set_facecolor(self.colours[labels[chosen]])
        self.caption.set_text(caption)
        self.axes.set_title(title)
        return self

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", metadata={"Software": None})
        return buffer.getvalue()

    def rgb(self) -> np.ndarray:
        """The figure's pixels, (height, width, 3) uint8, drawn as for an animation (matplotlib's
        blitting): after the first call only what draw() changes is drawn again, over a copy of the
        rest, so the title must stay as it is; the legend is opaque, its pixels copied once."""
        canvas, legend = self.figure.canvas, self.axes.get_legend()
        changing = [self.image, *self.lines, self.right, self.wrong, self.caption, *self.axes.spines.values()]
        if self.background is None:
            legend.get_frame().set_alpha(1.0)
            for artist in changing:
                artist.set_animated(True)  # left out of canvas.draw(): the background
            legend.set_animated(True)
            canvas.draw()
            self.figure.set_layout_engine("none")  # the layout is done: positions stay as they are
            self.background = canvas.copy_from_bbox(self.figure.bbox)
            self.figure.draw_artist(legend)
            self.legend = canvas.copy_from_bbox(legend.get_window_extent())
        canvas.restore_region(self.background)
        for artist in changing:
            artist.set_animated(True)
            self.figure.draw_artist(artist)
        canvas.restore_region(self.legend)
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    def close(self):
        plt.close(self.figure)
