"""The two kinds of classification problem, each defined once: what the model outputs, its loss, its
probabilities and predictions, the torchmetrics calls that score it and draw its ROC curve, its
learning curves and its decision boundary.

`problem_of(classes)` is the one place that tells binary from multi-class: the model config hands
its problem to every stage, and no stage asks how many classes there are. Nothing here imports a
library: each method that computes is handed the one it needs, as in stages/functions.py (`xp`,
NumPy or torch; `tm`, torchmetrics.functional.classification), so the plot stages use the same
objects without importing torch.
"""

import math
from typing import NamedTuple

from stages.functions import sigmoid, softmax


class Metric(NamedTuple):
    torchmetrics: str  # the function after binary_ or multiclass_ in torchmetrics.functional
    sklearn: str  # the same metric in sklearn.metrics
    average: str  # how it averages over more than two classes


# What metrics/<name>.json holds for each set, besides the loss; a new metric is one entry.
METRICS = {
    "accuracy": Metric("accuracy", "accuracy_score", "micro"),
    "precision": Metric("precision", "precision_score", "macro"),
    "recall": Metric("recall", "recall_score", "macro"),
    "f1": Metric("f1_score", "f1_score", "macro"),
}


def generalization(accuracy: float, n_samples: int) -> dict:
    """The generalization section of a metrics file: the accuracy on the fresh sample, with its
    standard error (a binomial proportion's) and the sample's size."""
    return {
        "accuracy": round(accuracy, 6),
        "stderr": round(math.sqrt(accuracy * (1.0 - accuracy) / n_samples), 6),
        "n_samples": n_samples,
    }


class Classification:
    """What binary and multi-class classification share: a label per point, scored by METRICS."""

    curves = ("loss", "accuracy")  # the learning curves: folders of plots/ shared by every dataset

    def __init__(self, classes: int):
        self.classes = classes

    def sklearn_score(self, metrics, metric: Metric, labels, predicted):
        """The same metric by scikit-learn (`metrics`: sklearn.metrics), of predicted labels; 0 where
        it is undefined (a class never predicted), as torchmetrics has it."""
        function = getattr(metrics, metric.sklearn)
        if metric.average == "micro":  # over every point alike: one number, nothing to average
            return function(labels, predicted)
        return function(labels, predicted, average=self.average(metric), zero_division=0)

    def scores(self, tm, logits, labels, loss) -> dict:
        """Each metric of METRICS, and the loss after accuracy, as metrics/<name>.json has them."""
        values = {name: self.metric(tm, metric, logits, labels) for name, metric in METRICS.items()}
        values = {"accuracy": values.pop("accuracy"), "loss": loss(logits, labels)} | values
        return {name: round(float(value), 6) for name, value in values.items()}


class Binary(Classification):
    """Two classes: one logit, read through a sigmoid (BCEWithLogitsLoss)."""

    outputs = 1

    def loss(self, torch):
        bce = torch.nn.BCEWithLogitsLoss()
        return lambda logits, labels: bce(logits.squeeze(1), labels.to(logits.dtype))

    def probabilities(self, xp, logits):
        positive = sigmoid(xp, logits[:, 0])
        return xp.stack([1.0 - positive, positive], axis=1)

    def predict(self, xp, logits):
        return xp.where(logits[:, 0] > 0, 1, 0)

    def metric(self, tm, metric: Metric, logits, labels):
        return getattr(tm, f"binary_{metric.torchmetrics}")(logits[:, 0].sigmoid(), labels)

    def average(self, metric: Metric) -> str:
        return "binary"  # of the positive class, as torchmetrics' binary_ functions

    def roc(self, tm, probabilities, labels):
        return tm.binary_roc(probabilities[:, 1], labels)

    def margins(self, xp, field):
        """The function whose zero line is the boundary: p1 - p0."""
        return [field[..., 1] - field[..., 0]]


class Multiclass(Classification):
    """Three classes or more: one logit per class, read through a softmax (CrossEntropyLoss)."""

    @property
    def outputs(self):
        return self.classes

    def loss(self, torch):
        return torch.nn.CrossEntropyLoss()

    def probabilities(self, xp, logits):
        return softmax(xp, logits)

    def predict(self, xp, logits):
        return logits.argmax(1)

    def average(self, metric: Metric) -> str:
        return metric.average

    def metric(self, tm, metric: Metric, logits, labels):
        function = getattr(tm, f"multiclass_{metric.torchmetrics}")
        return function(logits, labels, num_classes=self.classes, average=metric.average)

    def roc(self, tm, probabilities, labels):
        return tm.multiclass_roc(probabilities, labels, num_classes=self.classes, average="micro")

    def margins(self, xp, field):
        """Each class's probability less the best of the others: the outline of where it wins."""
        others = [xp.delete(field, k, axis=-1).max(axis=-1) for k in range(self.classes)]
        return [field[..., k] - others[k] for k in range(self.classes)]


def problem_of(classes: int) -> Classification:
    return Binary(classes) if classes == 2 else Multiclass(classes)
