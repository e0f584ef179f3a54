"""The classic classifiers the MLP is compared with (the baselines stage), each defined once.

params.yaml's schema takes the names from here (`datasets.<name>.baselines`) and the baselines stage
builds the estimators. Adding one is one entry below: where scikit-learn keeps the class, its name,
whether its fit is bounded, and what it holds in memory. The module imports nothing heavy: an entry
names its module, imported only when it is built, so the schema reads the names for free and the
stage imports only the classifiers it fits.
"""

import importlib
from typing import NamedTuple


class Classifier(NamedTuple):
    module: str  # the scikit-learn module that holds the class
    estimator: str  # the class, built with scikit-learn's defaults
    # Its fit costs more than linearly in time or memory: it is fitted on a seeded, stratified sample of
    # at most `baselines.max_train_points` training points (all of them when there are fewer).
    sampled: bool = False
    # What the fitted estimator and its fit hold at most (stages/memory.py adds them up): bytes per
    # point it is fitted on, per such point and class, and a kernel cache of at most this many bytes,
    # never more than the whole kernel matrix (float32, a row and a column per point).
    point_bytes: int = 0
    point_class_bytes: int = 0
    cache_bytes: int = 0

    def build(self, seed: int):
        """The unfitted estimator, every random state it has (a nested one's too) set to `seed`."""
        estimator = getattr(importlib.import_module(self.module), self.estimator)()
        random_states = [key for key in estimator.get_params() if key.split("__")[-1] == "random_state"]
        return estimator.set_params(**dict.fromkeys(random_states, seed))

    def fitted_bytes(self, points: int, classes: int) -> int:
        cache = min(self.cache_bytes, 4 * points**2)
        return points * (self.point_bytes + classes * self.point_class_bytes) + cache


# A fully grown tree has at most two nodes per distinct point of its bootstrap sample (1 - 1/e of its
# draws, 0.64 rounded up): 64 bytes of scikit-learn's node, and a float64 per class; 100 trees.
FOREST_NODES_PER_POINT = 100 * 2 * 0.64

CLASSIFIERS = {
    # lbfgs's loss and gradient: a few float64 per point, and per point and class.
    "logistic": Classifier(
        "sklearn.linear_model", "LogisticRegression", point_bytes=64, point_class_bytes=32
    ),
    # Its k-d tree: the points, their indices and the labels, copied.
    "knn": Classifier("sklearn.neighbors", "KNeighborsClassifier", point_bytes=64),
    # An RBF kernel by default. libsvm's time grows at least quadratically with the points; it holds a
    # copy of them, its solver's arrays, the support vectors and their coefficients (per class), and
    # a kernel cache of `cache_size` (200 MiB by default).
    "svm": Classifier(
        "sklearn.svm", "SVC", sampled=True, point_bytes=256, point_class_bytes=8, cache_bytes=200 * 2**20
    ),
    # Fully grown trees: minutes and gigabytes at a million points.
    "forest": Classifier(
        "sklearn.ensemble",
        "RandomForestClassifier",
        sampled=True,
        point_bytes=round(FOREST_NODES_PER_POINT * 64),
        point_class_bytes=round(FOREST_NODES_PER_POINT * 8),
    ),
}
