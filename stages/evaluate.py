"""Stage evaluate: score the trained model with torchmetrics.

Writes metrics/<name>.json (train, test: accuracy, loss and the other metrics of stages/problems.py,
macro-averaged for more than two classes; generalization: accuracy on the fresh sample with its
standard error), plots/<name>/predictions.csv (actual, predicted on the test set) and
plots/<name>/roc.csv: the test set's ROC curve (false and true positive rates; one-vs-rest,
micro-averaged, for more than two classes).
"""

import torch
from torchmetrics.functional import classification as tm

from stages.files import data_path, metrics_path, model_path, plots_dir, read_points, write_json, write_table
from stages.models import configure_torch, load_checkpoint, logits_of
from stages.params import load_params
from stages.problems import METRICS, generalization
from stages.runner import run


def main(name):
    params = load_params()
    dataset = params.dataset(name)
    problem = dataset.config.problem

    configure_torch()
    model = load_checkpoint(model_path(name), name, dataset)
    loss = problem.loss(torch)
    logits = {}
    for split in ("train", "test", "fresh"):
        points, labels = read_points(data_path(name, split), problem.classes)
        logits[split] = (logits_of(model, points), torch.from_numpy(labels))
    results = {split: problem.scores(tm, *logits[split], loss) for split in ("train", "test")}

    fresh_logits, fresh_labels = logits["fresh"]
    fresh_accuracy = float(problem.metric(tm, METRICS["accuracy"], fresh_logits, fresh_labels))
    results["generalization"] = generalization(fresh_accuracy, len(fresh_labels))
    write_json(metrics_path(name), results)

    test_logits, test_labels = logits["test"]
    write_table(
        plots_dir(name) / "predictions.csv",
        {"actual": test_labels.numpy(), "predicted": problem.predict(torch, test_logits).numpy()},
    )
    fpr, tpr, threshold = problem.roc(tm, problem.probabilities(torch, test_logits), test_labels)
    write_table(
        plots_dir(name) / "roc.csv", {"fpr": fpr.numpy(), "tpr": tpr.numpy(), "threshold": threshold.numpy()}
    )


if __name__ == "__main__":
    run(main)
