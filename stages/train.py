"""Stage train: fit the MLP with Adam, log learning curves, save the checkpoint.

Writes models/<name>.safetensors, plots/loss/<name>.csv and plots/accuracy/<name>.csv (columns
epoch, train, test: a row every `log_every` epochs, from epoch 0, the untrained model).
"""

import sys

import torch

from stages.errors import run
from stages.files import curve_path, data_path, model_path, read_points, write_table
from stages.models import (
    MLP,
    Adam,
    configure_torch,
    device_name,
    logits_of,
    make_loss,
    predict,
    resolve_device,
    save_checkpoint,
)
from stages.params import CURVES, load_params


def main(name):
    params = load_params()
    dataset = params.dataset(name)
    classes, train = dataset.data.classes, dataset.train

    device = resolve_device(train.device, f"datasets.{name}.train.device")
    hardware = device_name(device)
    configure_torch(train.seed, device)
    train_set, test_set = (read_tensors(name, split, classes, device) for split in ("train", "test"))
    model = MLP(dataset.model.hidden, dataset.model.activation, classes).to(device)
    loss_fn = make_loss(classes)
    optimizer = Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    shuffle = torch.Generator().manual_seed(train.seed)

    history = [score(model, 0, train_set, test_set, loss_fn)]
    report(name, hardware, history[0], train.epochs)
    points, labels = train_set
    for epoch in range(1, train.epochs + 1):
        for batch in batches(len(labels), train.batch_size, shuffle, device):
            optimizer.zero_grad()
            loss_fn(model(points[batch]), labels[batch]).backward()
            optimizer.step()
        if epoch % train.log_every == 0 or epoch == train.epochs:
            history.append(score(model, epoch, train_set, test_set, loss_fn))
            if epoch * 10 // train.epochs > history[-2]["epoch"] * 10 // train.epochs:  # ~10 lines a run
                report(name, hardware, history[-1], train.epochs)

    save_checkpoint(model_path(name), model, hardware)
    for curve in CURVES:
        columns = {"epoch": [row["epoch"] for row in history]}
        columns |= {split: [row[split][curve] for row in history] for split in ("train", "test")}
        write_table(curve_path(curve, name), columns)


def read_tensors(name, split, classes, device):
    points, labels = read_points(data_path(name, split), classes)
    return torch.tensor(points, dtype=torch.float32, device=device), torch.from_numpy(labels).to(device)


def batches(size, batch_size, shuffle, device):
    """One epoch's batches: the whole set in order (full batch), or shuffled slices of batch_size."""
    if batch_size is None or batch_size >= size:
        return [slice(None)]
    return torch.randperm(size, generator=shuffle).to(device).split(batch_size)


def score(model, epoch, train_set, test_set, loss_fn):
    """The current weights' loss and accuracy on both sets."""
    row = {"epoch": epoch}
    for split, (points, labels) in (("train", train_set), ("test", test_set)):
        logits, targets = logits_of(model, points), labels.cpu()
        accuracy = (predict(logits) == targets).double().mean().item()
        row[split] = {"loss": loss_fn(logits, targets).item(), "accuracy": accuracy}
    return row


def report(name, hardware, row, epochs):
    train, test, epoch = row["train"], row["test"], f"{row['epoch']:>{len(str(epochs))}}/{epochs}"
    print(
        f"train {name} on {hardware}: epoch {epoch}  loss {train['loss']:.4f}"
        f"  accuracy {train['accuracy']:.3f}  test accuracy {test['accuracy']:.3f}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    run(main)
