"""Stage train: fit the MLP with Adam, log learning curves, keep snapshots, save the checkpoint.

Writes models/<name>.safetensors, models/<name>.snapshots.safetensors (the weights at epoch 0, the
untrained model, at every epoch of snapshot_epochs(), densest early on, and at the last), and
plots/loss/<name>.csv and plots/accuracy/<name>.csv (columns epoch, train, test: a row every
`log_every` epochs, from epoch 0). The curves' loss is the data's; the L1 penalty is not in it.
"""

import math
import sys

import torch

from stages.checkpoint import snapshots_path
from stages.errors import UserError
from stages.files import curve_path, data_path, model_path, read_points, write_table
from stages.models import (
    MLP,
    Adam,
    configure_torch,
    device_name,
    l1_penalty,
    logits_of,
    resolve_device,
    save_checkpoint,
    save_snapshots,
    weights_now,
)
from stages.params import TrainParams, load_params
from stages.runner import run


def main(name):
    params = load_params()
    dataset = params.dataset(name)
    config, train = dataset.config, dataset.train
    problem = config.problem

    device = resolve_device(train.device, f"datasets.{name}.train.device")
    hardware = device_name(device)
    configure_torch(train.seed, device)
    train_set, test_set = (read_tensors(name, split, config.classes, device) for split in ("train", "test"))
    model = MLP(config).to(device)
    loss_fn = problem.loss(torch)
    optimizer = Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    shuffle = torch.Generator().manual_seed(train.seed)
    kept = snapshot_epochs(train.epochs)
    snapshots = [weights_now(model)]

    curves = {curve: {"epoch": [], "train": [], "test": []} for curve in problem.curves}
    log(curves, 0, model, train_set, test_set, loss_fn)
    stop_if_diverged(name, train, curves)
    report(name, hardware, curves, train.epochs)
    points, labels = train_set
    for epoch in range(1, train.epochs + 1):
        for batch in batches(len(labels), train.batch_size, shuffle, device):
            optimizer.zero_grad()
            loss = loss_fn(model(points[batch]), labels[batch])
            if train.l1:  # only then: the default's loss, and so its weights, stay bit for bit as before
                loss = loss + train.l1 * l1_penalty(model)
            loss.backward()
            optimizer.step()
        if epoch in kept:
            snapshots.append(weights_now(model))
        if epoch % train.log_every == 0 or epoch == train.epochs:
            previous = curves["loss"]["epoch"][-1]
            log(curves, epoch, model, train_set, test_set, loss_fn)
            stop_if_diverged(name, train, curves)
            if epoch * 10 // train.epochs > previous * 10 // train.epochs:  # ~10 lines a run
                report(name, hardware, curves, train.epochs)

    save_checkpoint(model_path(name), model, hardware)
    save_snapshots(snapshots_path(name), model, [0, *sorted(kept)], snapshots, hardware)
    for curve, columns in curves.items():
        write_table(curve_path(curve, name), columns)


def snapshot_epochs(epochs: int, count: int = TrainParams.SNAPSHOTS) -> set[int]:
    """Up to `count` epochs in 1..epochs, the last included, spaced geometrically in (epoch + k) with
    k = epochs / 100: every epoch at first, where the boundary moves fastest, then ever sparser."""
    k = max(epochs / 100, 1.0)
    ratio = ((epochs + k) / k) ** (1 / (count - 1))
    return {round(k * ratio**i - k) for i in range(1, count)} - {0} | {epochs}


def read_tensors(name, split, classes, device):
    points, labels = read_points(data_path(name, split), classes)
    return torch.tensor(points, dtype=torch.float32, device=device), torch.from_numpy(labels).to(device)


def batches(size, batch_size, shuffle, device):
    """One epoch's batches: the whole set in order (full batch), or shuffled slices of batch_size."""
    if batch_size is None or batch_size >= size:
        return [slice(None)]
    return torch.randperm(size, generator=shuffle).to(device).split(batch_size)


def log(curves, epoch, model, train_set, test_set, loss_fn):
    """A row of both curves: the current weights' loss and accuracy on both sets."""
    for columns in curves.values():
        columns["epoch"].append(epoch)
    for split, (points, labels) in (("train", train_set), ("test", test_set)):
        logits, targets = logits_of(model, points), labels.cpu()
        curves["loss"][split].append(loss_fn(logits, targets).item())
        predicted = model.config.problem.predict(torch, logits)
        curves["accuracy"][split].append((predicted == targets).double().mean().item())


def stop_if_diverged(name, train, curves):
    """Refuse a run once a logged loss is not finite: every later row, the checkpoint and the metrics
    would hold NaN. The row's losses are Python floats already: a GPU run pays no extra sync."""
    loss = curves["loss"]
    split = next((split for split in ("train", "test") if not math.isfinite(loss[split][-1])), None)
    if split is None:
        return
    epochs = loss["epoch"]
    if len(epochs) == 1:  # the untrained model's weights are small and finite: the points are too large
        raise UserError(
            f"training {name}: the untrained model's {split} loss is {loss[split][-1]} (epoch 0): the "
            f"points are too large for float32; lower datasets.{name}.data.noise"
        )
    key = f"datasets.{name}.train"
    causes = [f"{key}.lr = {train.lr:g}"]
    causes += [
        f"{key}.{rate} = {value:g}" for rate in ("weight_decay", "l1") if (value := getattr(train, rate))
    ]
    raise UserError(
        f"training {name} diverged: its {split} loss is {loss[split][-1]} at epoch {epochs[-1]}"
        f" (finite at epoch {epochs[-2]}); lower {' or '.join(causes)}"
    )


def report(name, hardware, curves, epochs):
    loss, accuracy = curves["loss"], curves["accuracy"]
    epoch = f"{loss['epoch'][-1]:>{len(str(epochs))}}/{epochs}"
    print(
        f"train {name} on {hardware}: epoch {epoch}  loss {loss['train'][-1]:.4f}"
        f"  accuracy {accuracy['train'][-1]:.3f}  test accuracy {accuracy['test'][-1]:.3f}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    run(main)
