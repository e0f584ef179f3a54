"""Stage baselines: scikit-learn's classic classifiers on the MLP's own split, scored and drawn as the
MLP is, so that its numbers stand beside a linear model's, a nearest neighbour's, an SVM's...

Fits each classifier that datasets.<name>.baselines names (stages/classifiers.py) on train.csv's raw
x1, x2, with scikit-learn's defaults and every random state from the dataset's train seed; one whose
fit costs more than linearly (SVC, the forest) on at most baselines.max_train_points of them, a
sample stratified by class and seeded by the train seed. Writes metrics/baselines/<name>.json: for
each classifier, a section laid out and rounded as the MLP's metrics/<name>.json (train and test
accuracy, precision, recall, f1, each averaged over more than two classes as its METRICS entry in
stages/problems.py says; the accuracy on fresh.csv with its standard error, less the loss), led by
`fitted_on` where it was fitted on a sample; and plots/<name>/baselines.png: a panel per classifier,
each drawn as the plot stage draws boundary_test.png (stages/drawing.py: the same plane, size,
points and colours), which says so too. Every classifier is scored and drawn on every point of
train, test, fresh and the grid, in batches. The metrics are scikit-learn's, not torchmetrics': this
stage imports no torch.
"""

import functools
import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from sklearn import metrics

from stages.classifiers import CLASSIFIERS
from stages.drawing import LABEL_BOX, BoundaryFigure, Plane, counted, plt, shown_points
from stages.errors import UserError
from stages.files import data_path, plots_dir, read_points, write_bytes, write_json
from stages.functions import sigmoid, softmax
from stages.params import ModelConfig, load_params
from stages.problems import METRICS, generalization
from stages.runner import run


def scores(labels, predicted, problem):
    """Each metric of stages/problems.py's METRICS, by scikit-learn, averaged as the evaluate stage's."""
    values = {
        name: problem.sklearn_score(metrics, metric, labels, predicted) for name, metric in METRICS.items()
    }
    return {name: round(float(value), 6) for name, value in values.items()}


def metrics_path(name: str) -> Path:
    """metrics/baselines/<name>.json: beside metrics/<name>.json in `dvc exp show` and `dvc metrics
    diff`, a column per classifier and metric. In a folder of its own, it is never a dataset's own
    metrics file, whatever the dataset's name, nor among the metrics/*.json that sweep.py tabulates
    as the MLP's."""
    return Path("metrics") / "baselines" / f"{name}.json"


def fit_sample(labels, max_points: int, seed: int):
    """The indices, in train.csv's order, of the training points that a classifier whose fit costs
    more than linearly is fitted on: all of them up to max_points, else a sample of max_points drawn
    by scikit-learn's stratified splitting (each class in its share), seeded by `seed`."""
    if len(labels) <= max_points:
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split  # noqa: PLC0415 - only where it samples

    sample, _ = train_test_split(
        np.arange(len(labels)), train_size=max_points, stratify=labels, random_state=seed
    )
    return np.sort(sample)


def batched(method, points):
    """An estimator's method on every point, ModelConfig.INFERENCE_BATCH points a call: the memory of
    a call stays bounded (stages/memory.py counts it) and each point's result is its own."""
    size = ModelConfig.INFERENCE_BATCH
    return np.concatenate([method(points[start : start + size]) for start in range(0, len(points), size)])


def fitted(key, name, splits, grid, seed, classes, sample):
    """The classifier `key` fitted on the training set, or on its `sample` if its fit costs more than
    linearly: its predicted class of every point of each split, and its shading of the grid with the
    line that says what it is; or one line saying why it cannot be fitted."""
    points, labels = splits["train"]
    if CLASSIFIERS[key].sampled:
        points, labels = points[sample], labels[sample]
    try:
        estimator = CLASSIFIERS[key].build(seed).fit(points, labels)
        predicted = batched(estimator.predict, np.concatenate([each for each, _ in splits.values()] + [grid]))
    except ValueError as error:  # a single class, too few points (k-nearest finds out as it predicts)
        why = " ".join(str(error).split())
        raise UserError(
            f"datasets.{name}.baselines: {key} cannot be fitted on {data_path(name, 'train')} "
            f"({len(labels)} points): {why}"
        ) from None
    ends = np.cumsum([len(each) for each, _ in splits.values()])
    predicted = dict(zip([*splits, "grid"], np.split(predicted, ends), strict=True))
    return predicted, *probabilities(estimator, grid, predicted.pop("grid"), classes)


def probabilities(estimator, points, predicted, classes):
    """(n, classes) class probabilities of the fitted estimator at the points and, where it has none,
    what stands in for them, said in a line for the panel: its decision function through a sigmoid
    or a softmax where that picks its `predicted` classes there, else those classes."""
    field = np.zeros((len(points), classes))
    columns = estimator.classes_  # a class missing from the training set has no column
    if hasattr(estimator, "predict_proba"):
        field[:, columns] = batched(estimator.predict_proba, points)
        return field, None
    if hasattr(estimator, "decision_function"):
        decision = batched(estimator.decision_function, points)
        if decision.ndim == 1:  # two classes: the second's score
            positive = sigmoid(np, decision)
            field[:, columns] = np.column_stack([1.0 - positive, positive])
            how = "sigmoid"
        else:
            field[:, columns] = softmax(np, decision)
            how = "softmax"
        # SVC's multi-class decision function ranks the classes one against the rest, but it predicts
        # by one-against-one votes: where the votes tie, the two disagree, and the line would lie.
        if np.array_equal(field.argmax(axis=1), predicted):
            return field, f"shading: {how} of its decision function (no probabilities)"
        field[:] = 0.0
    field[np.arange(len(points)), predicted] = 1.0
    return field, "shading: its predicted class (no probabilities)"


def main(name):
    params = load_params()
    dataset, plot = params.dataset(name), params.plot
    problem = dataset.config.problem
    classes = problem.classes
    splits = {split: read_points(data_path(name, split), classes) for split in ("train", "test", "fresh")}
    (train_points, train_labels), (test_points, test_labels) = splits["train"], splits["test"]
    # What the plot stage draws boundary_test.png on: the plane around the train and test points, and
    # the test points it shows.
    plane = Plane(np.concatenate([train_points, test_points]), plot.resolution)
    shown = shown_points(len(train_labels), len(test_labels), plot.max_points)["test"]
    sample = fit_sample(train_labels, params.baselines.max_train_points, dataset.train.seed)

    # A thread per core: scikit-learn's compiled fits and predictions release the GIL, and each
    # classifier's results are its own, whatever ran beside it (docs/benchmarks.md has the figures).
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        fit = functools.partial(
            fitted,
            name=name,
            splits=splits,
            grid=plane.points,
            seed=dataset.train.seed,
            classes=classes,
            sample=sample,
        )
        fits = dict(zip(dataset.baselines, pool.map(fit, dataset.baselines), strict=True))

    results, panels = {}, []
    count = counted(len(shown), len(test_labels))
    figure = BoundaryFigure(plane, problem, plot.dpi)
    note = figure.axes.text(0.02, 0.02, "", transform=figure.axes.transAxes, fontsize=8, bbox=LABEL_BOX)
    for key, (predicted, field, shaded_by) in fits.items():
        # A sample's fit is never shown as the whole set's: its metrics and its panel say so.
        sampled = CLASSIFIERS[key].sampled and len(sample) < len(train_labels)
        results[key] = {"fitted_on": {"points": len(sample), "of": len(train_labels)}} if sampled else {}
        for split in ("train", "test"):
            results[key][split] = scores(splits[split][1], predicted[split], problem)
        results[key]["generalization"] = generalization(
            float(metrics.accuracy_score(splits["fresh"][1], predicted["fresh"])), len(splits["fresh"][1])
        )

        title = f"{name}: {CLASSIFIERS[key].estimator}, test set ({count} points)"
        caption = f"accuracy {(predicted['test'] == test_labels).mean():.1%}"
        figure.draw(
            field.reshape(*plane.x.shape, classes),
            test_points[shown],
            test_labels[shown],
            predicted["test"][shown],
            title,
            caption,
        )
        notes = [f"fit on {counted(len(sample), len(train_labels))} training points"] if sampled else []
        if shaded_by:
            notes.append(shaded_by)
        note.set_text("\n".join(notes))
        note.set_visible(bool(notes))
        figure.figure.canvas.draw()
        figure.figure.set_layout_engine("none")  # laid out once: the panels differ only inside the axes
        panels.append(np.asarray(figure.figure.canvas.buffer_rgba())[..., :3].copy())
    figure.close()

    write_json(metrics_path(name), results)
    write_bytes(plots_dir(name) / "baselines.png", tiled(panels, plot.dpi))


def tiled(panels, dpi: int) -> bytes:
    """Panels (h, w, 3) of one size as one PNG, in rows of ceil(sqrt(count)) from the top left, on
    white: four make a square."""
    across = math.ceil(math.sqrt(len(panels)))
    down = math.ceil(len(panels) / across)
    height, width, _ = panels[0].shape
    image = np.full((down * height, across * width, 3), 255, dtype=np.uint8)
    for i, panel in enumerate(panels):
        row, column = divmod(i, across)
        image[row * height : (row + 1) * height, column * width : (column + 1) * width] = panel
    buffer = io.BytesIO()
    plt.imsave(buffer, image, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


if __name__ == "__main__":
    run(main)
