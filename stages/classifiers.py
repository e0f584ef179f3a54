"""The classic classifiers the MLP is compared with (the baselines stage), each defined once.

params.yaml's schema takes the names from here (`datasets.<name>.baselines`) and the baselines stage
builds the estimators. Adding one is one entry below: where scikit-learn keeps the class, and its
name. The module imports nothing heavy: an entry names its module, imported only when it is built,
so the schema reads the names for free and the stage imports only the classifiers it fits.
"""

import importlib
from typing import NamedTuple


class Classifier(NamedTuple):
    module: str  # the scikit-learn module that holds the class
    estimator: str  # the class, built with scikit-learn's defaults

    def build(self, seed: int):
        """The unfitted estimator, every random state it has (a nested one's too) set to `seed`."""
        estimator = getattr(importlib.import_module(self.module), self.estimator)()
        random_states = [key for key in estimator.get_params() if key.split("__")[-1] == "random_state"]
        return estimator.set_params(**dict.fromkeys(random_states, seed))


CLASSIFIERS = {
    "logistic": Classifier("sklearn.linear_model", "LogisticRegression"),
    "knn": Classifier("sklearn.neighbors", "KNeighborsClassifier"),
    "svm": Classifier("sklearn.svm", "SVC"),  # an RBF kernel by default
    "forest": Classifier("sklearn.ensemble", "RandomForestClassifier"),
}
