"""Stage train: fit the MLP with Adam, log learning curves, save the checkpoint.

Writes models/<name>.safetensors and plots/<name>/history.csv (epoch, train/test loss and accuracy).
"""

import sys

import torch

from stages.errors import run
from stages.files import data_path, model_path, plots_dir, read_points, write_table
from stages.models import (
    MLP,
    Adam,
    configure_torch,
    logits_of,
    make_loss,
    predict,
    resolve_device,
    save_checkpoint,
)
from stages.params import load_params

COLUMNS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")


def main(name):
    params = load_params()
    dataset = params.dataset(name)
    classes, train = dataset.data.classes, dataset.train

    device = resolve_device(train.device, f"datasets.{name}.train.device")
    configure_torch(train.seed, device)
    splits = {split: read_points(data_path(name, split), classes) for split in ("train", "test")}
    tensors = {
        split: (torch.tensor(points, dtype=torch.float32), torch.from_numpy(labels))
        for split, (points, labels) in splits.items()
    }
    points, labels = (t.to(device) for t in tensors["train"])

    model = MLP(dataset.model.hidden, dataset.model.activation, classes).to(device)
    loss_fn = make_loss(classes)
    optimizer = Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    shuffle = torch.Generator().manual_seed(train.seed)
    full_batch = train.batch_size is None or train.batch_size >= len(labels)
    report_every = max(1, train.epochs // 10)

    history = []
    for epoch in range(train.epochs + 1):
        if full_batch:
            # The forward pass of this epoch's step scores the weights after `epoch` steps on the
            # whole training set, so the training half of the history costs nothing.
            logits = model(points)
            loss = loss_fn(logits, labels)
        if epoch % train.log_every == 0 or epoch % report_every == 0 or epoch == train.epochs:
            with torch.no_grad():
                seen = (
                    (loss.item(), accuracy(logits, labels))
                    if full_batch
                    else score(model, points, labels, loss_fn)
                )
                row = dict(
                    zip(COLUMNS, (epoch, *seen, *score(model, *tensors["test"], loss_fn)), strict=True)
                )
            if epoch % train.log_every == 0 or epoch == train.epochs:
                history.append(row)
            if epoch % report_every == 0:
                print(
                    f"train {name}: epoch {epoch:>{len(str(train.epochs))}}/{train.epochs}"
                    f"  loss {row['train_loss']:.4f}  accuracy {row['train_accuracy']:.3f}"
                    f"  test accuracy {row['test_accuracy']:.3f}",
                    file=sys.stderr,
                )
        if epoch == train.epochs:
            break
        if full_batch:
            step(optimizer, loss)
        else:
            order = torch.randperm(len(labels), generator=shuffle).to(device)
            for batch in order.split(train.batch_size):
                step(optimizer, loss_fn(model(points[batch]), labels[batch]))

    save_checkpoint(model_path(name), model)
    write_table(plots_dir(name) / "history.csv", {k: [row[k] for row in history] for k in COLUMNS})


def step(optimizer, loss):
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def accuracy(logits, labels):
    return (predict(logits) == labels).double().mean().item()


def score(model, points, labels, loss_fn):
    """Loss and accuracy of the model's current weights on a whole set, a batch at a time."""
    logits = logits_of(model, points)
    return loss_fn(logits, labels.cpu()).item(), accuracy(logits, labels.cpu())


if __name__ == "__main__":
    run(main)
