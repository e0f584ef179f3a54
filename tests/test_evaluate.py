"""The evaluate stage's outputs against scikit-learn, as tests/test_baselines.py holds the baselines':
metrics/<name>.json, plots/<name>/predictions.csv and plots/<name>/roc.csv of the committed pipeline
(conftest.py's `built`, whose outputs are the committed dvc.lock's), recomputed from its checkpoint's
logits and the split files read by pandas."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import DATASETS, strict_json
from sklearn import metrics as sk
from sklearn.preprocessing import label_binarize

from stages.models import load_checkpoint, logits_of

pytestmark = pytest.mark.e2e


def read(repo, name, split):
    frame = pd.read_csv(repo / "data" / name / f"{split}.csv")
    return frame[["x1", "x2"]].to_numpy(), frame["label"].to_numpy()


def logits(repo, name, points) -> torch.Tensor:
    """The committed model's float32 logits (the model itself: tests/test_models.py)."""
    return logits_of(load_checkpoint(repo / "models" / f"{name}.safetensors"), points)


def probabilities(logits: torch.Tensor) -> np.ndarray:
    """(n, classes) probabilities: a sigmoid of one logit for two classes, a softmax of one per class."""
    if logits.shape[1] == 1:
        positive = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - positive, positive], dim=1).numpy()
    return torch.softmax(logits, dim=1).numpy()


def sklearn_scores(labels, logits, classes) -> dict:
    """What a metrics file's train or test section must hold, by scikit-learn: the accuracy over every
    point, the others of the positive class (two classes) or macro-averaged, the cross-entropy loss."""
    exact = probabilities(logits.double())
    predicted = exact.argmax(axis=1)
    average = dict(average="binary" if classes == 2 else "macro", zero_division=0)
    return {
        "accuracy": sk.accuracy_score(labels, predicted),
        "loss": sk.log_loss(labels, exact, labels=list(range(classes))),
        "precision": sk.precision_score(labels, predicted, **average),
        "recall": sk.recall_score(labels, predicted, **average),
        "f1": sk.f1_score(labels, predicted, **average),
    }


@pytest.mark.parametrize("name", DATASETS)
def test_metrics_are_scikit_learn_s_on_the_committed_model(built, name):
    written = strict_json((built / "metrics" / f"{name}.json").read_text())
    assert list(written) == ["train", "test", "generalization"]
    for split in ("train", "test"):
        points, labels = read(built, name, split)
        classes = int(labels.max()) + 1
        expected = sklearn_scores(labels, logits(built, name, points), classes)
        assert written[split] == pytest.approx(expected, abs=2e-6), split
        assert list(written[split]) == list(expected)  # and in this order

    points, labels = read(built, name, "fresh")
    accuracy = sk.accuracy_score(labels, probabilities(logits(built, name, points).double()).argmax(axis=1))
    assert written["generalization"] == pytest.approx(
        {
            "accuracy": accuracy,
            "stderr": math.sqrt(accuracy * (1 - accuracy) / len(labels)),
            "n_samples": len(labels),
        },
        abs=1e-6,
    )


@pytest.mark.parametrize("name", DATASETS)
def test_predictions_are_the_committed_model_s_on_the_test_set(built, name):
    points, labels = read(built, name, "test")
    written = pd.read_csv(built / "plots" / name / "predictions.csv")
    assert list(written.columns) == ["actual", "predicted"]
    assert np.array_equal(written["actual"], labels)
    assert np.array_equal(
        written["predicted"], probabilities(logits(built, name, points).double()).argmax(axis=1)
    )


@pytest.mark.parametrize("name", DATASETS)
def test_roc_is_scikit_learn_s_curve_of_the_test_set(built, name):
    """Two classes: the positive class's probability; more: every class's, one against the rest, pooled
    (micro-averaged). scikit-learn's first threshold is inf, torchmetrics' 1: the rows after it agree."""
    points, labels = read(built, name, "test")
    scores = probabilities(logits(built, name, points))  # float32, as the stage's: the same ties
    if scores.shape[1] == 2:
        truth, scores = labels, scores[:, 1]
    else:
        truth, scores = label_binarize(labels, classes=range(scores.shape[1])).ravel(), scores.ravel()
    fpr, tpr, threshold = sk.roc_curve(truth, scores, drop_intermediate=False)
    written = pd.read_csv(built / "plots" / name / "roc.csv")
    assert list(written.columns) == ["fpr", "tpr", "threshold"]
    np.testing.assert_allclose(written["fpr"], fpr, rtol=0, atol=1e-6)
    np.testing.assert_allclose(written["tpr"], tpr, rtol=0, atol=1e-6)
    np.testing.assert_allclose(written["threshold"][1:], threshold[1:], rtol=0, atol=1e-7)
