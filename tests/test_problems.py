"""stages.problems against oracles: torch's own losses, NumPy's sigmoid and softmax written out,
scikit-learn's metrics and ROC curve for the torchmetrics scores, and the argmax that the boundary
lines separate."""

import numpy as np
import pytest
import torch
from sklearn import metrics as sk
from sklearn.preprocessing import label_binarize
from torch import nn
from torchmetrics.functional import classification as tm

from stages.problems import METRICS, Binary, Multiclass, problem_of

CLASSES = [2, 3, 5]


def logits_and_labels(classes, n=300, seed=0):
    generator = torch.Generator().manual_seed(seed)
    problem = problem_of(classes)
    logits = torch.randn(n, problem.outputs, dtype=torch.float64, generator=generator) * 3
    labels = torch.randint(0, classes, (n,), generator=generator)
    return problem, logits, labels


def test_two_classes_are_binary_with_one_logit_more_are_multiclass_with_one_each():
    assert isinstance(problem_of(2), Binary) and problem_of(2).outputs == 1
    for classes in (3, 10):
        assert isinstance(problem_of(classes), Multiclass) and problem_of(classes).outputs == classes


def test_binary_loss_is_bce_with_logits():
    problem, logits, labels = logits_and_labels(2)
    got = problem.loss(torch)(logits, labels)
    torch.testing.assert_close(got, nn.BCEWithLogitsLoss()(logits[:, 0], labels.double()), rtol=0, atol=0)
    p = torch.sigmoid(logits[:, 0])
    formula = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()
    torch.testing.assert_close(got, formula, rtol=1e-12, atol=0)


@pytest.mark.parametrize("classes", [3, 7])
def test_multiclass_loss_is_cross_entropy(classes):
    problem, logits, labels = logits_and_labels(classes)
    got = problem.loss(torch)(logits, labels)
    formula = -torch.log_softmax(logits, dim=1)[torch.arange(len(labels)), labels].mean()
    torch.testing.assert_close(got, formula, rtol=1e-12, atol=0)


def test_binary_probabilities_are_the_sigmoid_in_torch_and_numpy():
    logits = torch.tensor([[-30.0], [-2.0], [-1e-3], [0.0], [1e-3], [2.0], [30.0]], dtype=torch.float64)
    p = 1 / (1 + np.exp(-logits[:, 0].numpy()))
    for xp, values in ((torch, logits), (np, logits.numpy())):
        probs = np.asarray(Binary(2).probabilities(xp, values))
        assert probs.shape == (7, 2)
        np.testing.assert_allclose(probs[:, 1], p, rtol=1e-15, atol=2e-16)  # NumPy: through tanh
        np.testing.assert_allclose(probs[:, 0], 1 - p, rtol=1e-15, atol=2e-16)
    assert Binary(2).predict(torch, logits).tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert Binary(2).predict(torch, logits).dtype == torch.int64


@pytest.mark.parametrize("classes", [3, 5])
def test_multiclass_probabilities_are_the_softmax_in_torch_and_numpy(classes):
    problem, logits, _ = logits_and_labels(classes)
    e = np.exp(logits.numpy() - logits.numpy().max(axis=1, keepdims=True))
    for xp, values in ((torch, logits), (np, logits.numpy())):
        probs = np.asarray(problem.probabilities(xp, values))
        np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("classes", CLASSES)
def test_predictions_are_the_most_probable_class_in_torch_and_numpy(classes):
    problem, logits, _ = logits_and_labels(classes)
    want = problem.probabilities(torch, logits).argmax(dim=1)
    assert torch.equal(problem.predict(torch, logits), want)
    assert np.array_equal(problem.predict(np, logits.numpy()), want.numpy())


@pytest.mark.parametrize("classes", CLASSES)
def test_scores_are_scikit_learns_metrics(classes):
    """The oracle: scikit-learn's metric of the same name, on the same predictions."""
    problem, logits, labels = logits_and_labels(classes, seed=classes)
    scores = problem.scores(tm, logits.float(), labels, problem.loss(torch))
    assert list(scores) == ["accuracy", "loss", *(name for name in METRICS if name != "accuracy")]
    predicted = problem.predict(torch, logits).numpy()
    average = {} if classes == 2 else {"average": "macro"}
    for name, metric in METRICS.items():
        options = {} if name == "accuracy" else average
        want = getattr(sk, metric.sklearn)(labels.numpy(), predicted, **options)
        assert scores[name] == pytest.approx(want, abs=1e-6), name
    want_loss = sk.log_loss(
        labels.numpy(), problem.probabilities(torch, logits).numpy(), labels=range(classes)
    )
    assert scores["loss"] == pytest.approx(want_loss, abs=1e-5)


@pytest.mark.parametrize("classes", CLASSES)
def test_roc_is_scikit_learns(classes):
    """Binary: sklearn's roc_curve of P(class 1); more classes: micro-averaged one-vs-rest, sklearn's
    roc_curve of every (point, class) pair."""
    problem, logits, labels = logits_and_labels(classes, seed=10 + classes)
    probabilities = problem.probabilities(torch, logits)
    fpr, tpr, _ = problem.roc(tm, probabilities, labels)
    if classes == 2:
        truth, scores = labels.numpy(), probabilities[:, 1].numpy()
    else:
        truth = label_binarize(labels.numpy(), classes=range(classes)).ravel()
        scores = probabilities.numpy().ravel()
    want_fpr, want_tpr, _ = sk.roc_curve(truth, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr.numpy(), want_fpr, rtol=0, atol=1e-6)
    np.testing.assert_allclose(tpr.numpy(), want_tpr, rtol=0, atol=1e-6)
    assert sk.auc(fpr.numpy(), tpr.numpy()) == pytest.approx(sk.roc_auc_score(truth, scores), abs=1e-6)


@pytest.mark.parametrize("classes", CLASSES)
def test_margins_change_sign_exactly_where_the_predicted_class_changes(classes):
    raw = np.random.default_rng(0).random((30, 40, classes))
    field = raw / raw.sum(axis=-1, keepdims=True)
    found = problem_of(classes).margins(np, field)
    assert len(found) == (1 if classes == 2 else classes)
    winner = field.argmax(axis=-1)
    if classes == 2:
        assert np.array_equal(found[0] > 0, winner == 1)
    else:
        for k, margin in enumerate(found):
            assert np.array_equal(margin > 0, winner == k)
