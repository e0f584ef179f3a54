"""Stage generate: draw the dataset, and a large fresh sample for measuring generalization.

Writes data/<name>/all.csv and data/<name>/fresh.csv (columns x1,x2,label).
"""

from stages.datasets import generate, independent_seed
from stages.files import data_path, write_points
from stages.params import load_params
from stages.runner import run


def main(name):
    params = load_params()
    data = params.dataset(name).data

    write_points(data_path(name, "all"), *generate(data))
    # Same generator, an independent seed: far more points than the test set, so its accuracy
    # moves by less than a tenth of a point between runs and tells real gains from noise.
    fresh = generate(data, params.generalization.n_samples, independent_seed(data.seed))
    write_points(data_path(name, "fresh"), *fresh)


if __name__ == "__main__":
    run(main)
