"""Stage evaluate: score the trained model with torchmetrics.

Writes metrics/<name>.json (train, test: accuracy, loss, precision, recall, f1, macro-averaged
for more than two classes; generalization: accuracy on the fresh sample with its standard error),
plots/<name>/predictions.csv (actual, predicted on the test set) and plots/<name>/roc.csv: the
test set's ROC curve (false and true positive rates; one-vs-rest, micro-averaged, for more than
two classes).
"""

import math

import torch
from torchmetrics.functional import classification as tm

from stages.errors import run
from stages.files import data_path, metrics_path, model_path, plots_dir, read_points, write_json, write_table
from stages.models import configure_torch, load_checkpoint, logits_of, make_loss, predict, probabilities
from stages.params import load_params


def accuracy(logits, labels, classes):
    if classes == 2:
        return tm.binary_accuracy(probabilities(logits)[:, 1], labels)
    return tm.multiclass_accuracy(logits, labels, num_classes=classes, average="micro")


def scores(logits, labels, classes):
    metrics = {"accuracy": accuracy(logits, labels, classes), "loss": make_loss(classes)(logits, labels)}
    if classes == 2:
        positive = probabilities(logits)[:, 1]
        metrics |= {
            "precision": tm.binary_precision(positive, labels),
            "recall": tm.binary_recall(positive, labels),
            "f1": tm.binary_f1_score(positive, labels),
        }
    else:
        task = dict(num_classes=classes, average="macro")
        metrics |= {
            "precision": tm.multiclass_precision(logits, labels, **task),
            "recall": tm.multiclass_recall(logits, labels, **task),
            "f1": tm.multiclass_f1_score(logits, labels, **task),
        }
    return {k: round(float(v), 6) for k, v in metrics.items()}


def main(name):
    params = load_params()
    dataset = params.dataset(name)
    classes = dataset.data.classes

    configure_torch()
    model = load_checkpoint(model_path(name), name, dataset)
    logits = {}
    for split in ("train", "test", "fresh"):
        points, labels = read_points(data_path(name, split), classes)
        logits[split] = (logits_of(model, points), torch.from_numpy(labels))
    results = {split: scores(*logits[split], classes) for split in ("train", "test")}

    fresh_logits, fresh_labels = logits["fresh"]
    fresh_accuracy = float(accuracy(fresh_logits, fresh_labels, classes))
    results["generalization"] = {
        "accuracy": round(fresh_accuracy, 6),
        "stderr": round(math.sqrt(fresh_accuracy * (1.0 - fresh_accuracy) / len(fresh_labels)), 6),
        "n_samples": len(fresh_labels),
    }
    write_json(metrics_path(name), results)

    test_logits, test_labels = logits["test"]
    test_probabilities = probabilities(test_logits)
    write_table(
        plots_dir(name) / "predictions.csv",
        {"actual": test_labels.numpy(), "predicted": predict(test_logits).numpy()},
    )
    if classes == 2:
        fpr, tpr, threshold = tm.binary_roc(test_probabilities[:, 1], test_labels)
    else:
        fpr, tpr, threshold = tm.multiclass_roc(
            test_probabilities, test_labels, num_classes=classes, average="micro"
        )
    write_table(
        plots_dir(name) / "roc.csv", {"fpr": fpr.numpy(), "tpr": tpr.numpy(), "threshold": threshold.numpy()}
    )


if __name__ == "__main__":
    run(main)
