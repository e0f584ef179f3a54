"""Stage split: a seeded, stratified train/test split of data/<name>/all.csv."""

from stages.datasets import stratified_split
from stages.errors import run
from stages.files import DataError, data_path, read_points, write_points
from stages.params import load_params


def main(name):
    params = load_params()
    dataset = params.dataset(name)
    split = dataset.split

    points, labels = read_points(data_path(name, "all"), dataset.data.classes)
    train, test = stratified_split(labels, split.test_size, split.seed)
    if len(train) == 0 or len(test) == 0:
        raise DataError(
            f"datasets.{name}.split.test_size = {split.test_size} leaves the "
            f"{'train' if len(train) == 0 else 'test'} set of {len(labels)} points empty"
        )
    write_points(data_path(name, "train"), points[train], labels[train])
    write_points(data_path(name, "test"), points[test], labels[test])


if __name__ == "__main__":
    run(main)
