"""Stage train: fit the MLP with Adam, log learning curves, save the checkpoint.

Writes models/<name>.pt and plots/<name>/history.csv (epoch, train/test loss and accuracy).
"""

import sys

import torch

from stages.errors import run
from stages.files import data_path, model_path, plots_dir, read_points, write_table
from stages.models import MLP, configure_torch, logits_of, make_loss, predict, resolve_device, save_checkpoint
from stages.params import load_params


def main(name):
    params = load_params()
    dataset = params.dataset(name)
    classes, train = dataset.data.classes, dataset.train

    configure_torch(train.seed)
    device = resolve_device(train.device, f"datasets.{name}.train.device")
    splits = {split: read_points(data_path(name, split), classes) for split in ("train", "test")}
    tensors = {
        split: (torch.tensor(points, dtype=torch.float32), torch.from_numpy(labels))
        for split, (points, labels) in splits.items()
    }
    points, labels = (t.to(device) for t in tensors["train"])

    model = MLP(dataset.model.hidden, dataset.model.activation, classes).to(device)
    loss_fn = make_loss(classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay, fused=True)
    shuffle = torch.Generator().manual_seed(train.seed)
    batch_size = train.batch_size or len(labels)
    report_every = max(1, train.epochs // 10)

    history = []
    for epoch in range(train.epochs + 1):
        if epoch > 0:
            order = (
                torch.randperm(len(labels), generator=shuffle).to(device)
                if batch_size < len(labels)
                else None
            )
            for start in range(0, len(labels), batch_size):
                batch = slice(None) if order is None else order[start : start + batch_size]
                loss = loss_fn(model(points[batch]), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        if epoch % train.log_every == 0 or epoch % report_every == 0 or epoch == train.epochs:
            row = {"epoch": epoch}
            for split, (split_points, split_labels) in tensors.items():
                logits = logits_of(model, split_points)
                row[f"{split}_loss"] = loss_fn(logits, split_labels).item()
                row[f"{split}_accuracy"] = (predict(logits) == split_labels).double().mean().item()
            if epoch % train.log_every == 0 or epoch == train.epochs:
                history.append(row)
            if epoch % report_every == 0:
                print(
                    f"train {name}: epoch {epoch:>{len(str(train.epochs))}}/{train.epochs}"
                    f"  loss {row['train_loss']:.4f}  accuracy {row['train_accuracy']:.3f}"
                    f"  test accuracy {row['test_accuracy']:.3f}",
                    file=sys.stderr,
                )

    save_checkpoint(model_path(name), model)
    write_table(plots_dir(name) / "history.csv", {k: [row[k] for row in history] for k in history[0]})


if __name__ == "__main__":
    run(main)
