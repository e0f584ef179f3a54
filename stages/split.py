"""Stage split: a seeded, stratified train/test split of data/<name>/all.csv."""

import numpy as np

from stages.datasets import stratified_split
from stages.files import DataError, data_path, read_points, write_points
from stages.params import load_params
from stages.runner import run


def main(name):
    params = load_params()
    dataset = params.dataset(name)
    split = dataset.split

    points, labels = read_points(data_path(name, "all"), dataset.data.classes)
    train, test = stratified_split(labels, split.test_size, split.seed)
    check_every_class_in_both(name, dataset.data.classes, split.test_size, labels, train, test)
    write_points(data_path(name, "train"), points[train], labels[train])
    write_points(data_path(name, "test"), points[test], labels[test])


def check_every_class_in_both(name, classes, test_size, labels, train, test):
    """Refuse a split that leaves a class with no point in the train or the test set, as
    scikit-learn's stratified train_test_split does: the model could not learn the class, or its
    scores would be undefined (torchmetrics warns and returns zeros)."""
    key = f"datasets.{name}"
    for part, indices in (("train", train), ("test", test)):
        counts = np.bincount(labels[indices], minlength=classes)
        if counts.min() > 0:
            continue
        missing = int(np.argmin(counts))
        changes = [f"raise {key}.data.n_samples"]
        if np.count_nonzero(labels == missing) >= 2:  # with one point or none, no test_size can help
            changes[0] += (
                f" or {key}.split.test_size" if part == "test" else f", or lower {key}.split.test_size"
            )
        if classes > 2:
            changes.append(f"lower {key}.data.classes")
        raise DataError(
            f"{key}: a stratified split of {len(labels)} points with test_size {test_size} leaves class "
            f"{missing} with no point in the {part} set ({len(train)} train and {len(test)} test points, "
            f"{classes} classes); {', or '.join(changes)}"
        )


if __name__ == "__main__":
    run(main)
