"""stages.models against oracles: a tanh MLP for a pure_tanh one, torch's own modules for the
activations and state_dict for the config's tensor shapes, torch.optim.Adam bit for bit, and a
save/load round trip through the checkpoint (whose file format tests/test_checkpoint.py checks)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, model_config, perturbed_mlp
from test_functions import torch_oracle
from torch import nn

from stages.checkpoint import read_snapshots
from stages.datasets import moons
from stages.errors import UserError
from stages.models import (
    ACTIVATIONS,
    MLP,
    Adam,
    device_name,
    l1_penalty,
    load_checkpoint,
    logits_of,
    resolve_device,
    save_checkpoint,
    save_snapshots,
    weights_now,
)
from stages.problems import problem_of

DTYPES = [torch.float32, torch.float64]


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: at this size it is the fastest, and results do not depend on the core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# pure_tanh in a model (its values and gradients: tests/test_functions.py)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pure_tanh_mlp_trains_like_a_tanh_mlp(dtype):
    points, labels = moons(200, 0.2, 0)
    x, y = torch.tensor(points, dtype=dtype), torch.from_numpy(labels)
    runs = []
    for activation in ("tanh", "pure_tanh"):
        torch.manual_seed(0)
        model = MLP(model_config([16, 16], activation, 2)).to(dtype)
        first = model(x).detach()
        optimizer, loss_fn, losses = (
            torch.optim.Adam(model.parameters(), lr=0.01),
            problem_of(2).loss(torch),
            [],
        )
        for _ in range(100):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        runs.append((first, torch.tensor(losses), model(x).detach()))
    (first_a, losses_a, last_a), (first_b, losses_b, last_b) = runs
    tight = {torch.float32: 1e-5, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(first_b, first_a, rtol=tight, atol=tight)
    torch.testing.assert_close(losses_b, losses_a, rtol=tight, atol=0)
    torch.testing.assert_close(last_b, last_a, rtol=tight, atol=tight)
    assert losses_a[-1] < 0.5 * losses_a[0]  # it did learn


# ---------------------------------------------------------------------------------------------
# MLP


@pytest.mark.parametrize(("classes", "outputs"), [(2, 1), (3, 3), (5, 5)])
@pytest.mark.parametrize("hidden", [[16, 16], [3], [4, 7, 2]])
def test_mlp_layers(hidden, classes, outputs):
    model = MLP(model_config(hidden, "relu", classes))
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    widths = [2, *hidden, outputs]
    assert [(m.in_features, m.out_features) for m in linears] == list(zip(widths, widths[1:], strict=False))
    assert [type(m) for m in model.net] == [t for _ in hidden for t in (nn.Linear, nn.ReLU)] + [nn.Linear]
    assert model(torch.zeros(9, 2)).shape == (9, outputs)
    assert {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()} == (
        model.config.tensor_shapes()
    )


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_mlp_uses_the_named_activation(activation):
    """After each hidden layer, a module that computes what torch's own module of that name does."""
    model = MLP(model_config([5, 5], activation, 3)).double()
    x = torch.linspace(-4.0, 4.0, 81, dtype=torch.float64)
    modules = model.net[1::2]
    assert len(modules) == 2 and all(type(m) is type(modules[0]) for m in modules)
    torch.testing.assert_close(modules[0](x), torch_oracle(activation)(x), rtol=1e-15, atol=1e-15)


def test_logits_of_batches_equal_one_pass():
    torch.manual_seed(3)
    model = MLP(model_config([8], "tanh", 3)).eval()
    points = np.random.default_rng(0).normal(size=(1000, 2))  # float64, as read from the CSV files
    whole = logits_of(model, points)
    assert whole.dtype == torch.float32 and whole.shape == (1000, 3) and not whole.requires_grad
    torch.testing.assert_close(logits_of(model, points, batch_size=7), whole, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(whole, model(torch.tensor(points, dtype=torch.float32)), rtol=0, atol=0)


@pytest.mark.parametrize("available", [True, False])
def test_auto_is_cuda_when_present(monkeypatch, available):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert resolve_device("auto", "k") == torch.device("cuda" if available else "cpu")
    assert resolve_device("cpu", "k") == torch.device("cpu")


def test_cuda_on_a_cpu_only_build_says_so_and_how_to_get_one(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(
        UserError, match=r"^datasets\.m\.train\.device = 'cuda': this torch \(.*\) is a CPU-only"
    ):
        resolve_device("cuda", "datasets.m.train.device")


def test_cuda_build_without_a_gpu_says_no_device(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"^datasets\.m\.train\.device = 'cuda': no CUDA device is available"):
        resolve_device("cuda", "datasets.m.train.device")
    assert resolve_device("auto", "k") == torch.device("cpu")


def test_the_device_name_is_cpu_or_cuda_with_the_gpu_model(monkeypatch):
    assert device_name(torch.device("cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert device_name(torch.device("cuda", 0)) == "cuda (NVIDIA H200)"


# ---------------------------------------------------------------------------------------------
# Checkpoints


def test_a_saved_model_loads_as_the_same_model_in_eval_mode(tmp_path):
    """The torch side: state_dict in, MLP out (the file's round trip, for every activation and
    problem type: tests/test_checkpoint.py)."""
    model = perturbed_mlp("leaky_relu", 5)
    path = tmp_path / "models" / "m.safetensors"
    save_checkpoint(path, model)
    assert os.listdir(path.parent) == ["m.safetensors"]  # no temporary file left behind
    loaded = load_checkpoint(path)
    assert isinstance(loaded, MLP) and not loaded.training
    x = torch.randn(50, 2)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_matches_torch_adam_bit_for_bit(weight_decay):
    points = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    labels = (points[:, 0] * points[:, 1] > 0).long()
    trajectories = []
    for make in (
        lambda p: Adam(p, lr=0.01, weight_decay=weight_decay),
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=weight_decay, fused=True),
    ):
        torch.manual_seed(0)
        model = MLP(model_config([8, 8], "tanh", 2))
        optimizer, loss_fn = make(model.parameters()), problem_of(2).loss(torch)
        for _ in range(50):
            loss = loss_fn(model(points), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        trajectories.append([p.detach().clone() for p in model.parameters()])
    ours, theirs = trajectories
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_training_does_not_load_torch_dynamo():
    """torch.optim imports torch._dynamo (seconds of start-up); the stage's Adam must not."""
    code = (
        "import sys, torch\n"
        "from stages.models import MLP, Adam\n"
        "from stages.params import ModelConfig\n"
        "config = ModelConfig(hidden=[4], activation='relu', classes=2)\n"
        "model = MLP(config); optimizer = Adam(model.parameters(), lr=0.1)\n"
        "config.problem.loss(torch)(model(torch.zeros(3, 2)), torch.zeros(3, dtype=torch.long)).backward()\n"
        "optimizer.step()\n"
        "assert 'torch._dynamo' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ---------------------------------------------------------------------------------------------
# Features and L1


def test_default_features_are_the_points_bit_for_bit():
    """[x1, x2] feeds the points through unchanged: the default trains to the same weights as a plain MLP."""
    torch.manual_seed(7)
    model = MLP(model_config([16, 16], "relu", 2))
    points = torch.randn(300, 2)
    assert torch.equal(model(points), model.net(points))


@pytest.mark.parametrize(
    ("features", "columns"),
    [
        (["x1^2", "x2^2"], lambda x1, x2: [x1**2, x2**2]),
        (["x1*x2"], lambda x1, x2: [x1 * x2]),
        (["sin(x1)", "sin(x2)", "x2"], lambda x1, x2: [np.sin(x1), np.sin(x2), x2]),
    ],
)
def test_the_model_sees_the_features_written_out_by_hand(features, columns):
    torch.manual_seed(8)
    model = MLP(model_config([4], "tanh", 3, features)).double()
    points = np.random.default_rng(5).normal(scale=3.0, size=(200, 2))
    by_hand = torch.tensor(np.column_stack(columns(points[:, 0], points[:, 1])))
    with torch.no_grad():
        assert model.net[0].in_features == len(features)
        torch.testing.assert_close(model(torch.tensor(points)), model.net(by_hand), rtol=1e-15, atol=0)


def test_no_hidden_layer_is_a_linear_model():
    model = MLP(model_config([], "relu", 3, ["x1", "x2", "x1*x2"]))
    assert [type(m) for m in model.net] == [nn.Linear] and model.net[0].weight.shape == (3, 3)


def test_l1_penalty_sums_the_weights_not_the_biases():
    model = perturbed_mlp("relu", 3)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    assert len(weights) == 3
    want = sum(float(np.abs(p.detach().double().numpy()).sum()) for p in weights)
    assert l1_penalty(model).item() == pytest.approx(want, rel=1e-6)


def test_l1_gradient_is_the_rate_times_the_sign_of_each_weight():
    """d/dw of rate * sum|w| is rate * sign(w) on every weight; the biases are not in it (no gradient)."""
    model = perturbed_mlp("tanh", 2).double()
    rate = 0.003
    (rate * l1_penalty(model)).backward()
    for name, param in model.named_parameters():
        if name.endswith("weight"):
            assert torch.equal(param.grad, rate * torch.sign(param.detach())), name
        else:
            assert param.grad is None, name


def test_l1_drives_weights_to_zero():
    """Playground's lesson: trained with L1, many weights of a model with more than it needs are ~0."""
    points, labels = moons(200, 0.1, 0)
    x, y = torch.tensor(points, dtype=torch.float32), torch.from_numpy(labels)
    small = {}
    for rate in (0.0, 0.01):
        torch.manual_seed(0)
        model = MLP(model_config([16], "relu", 2))
        optimizer, loss_fn = Adam(model.parameters(), lr=0.01), problem_of(2).loss(torch)
        for _ in range(300):
            optimizer.zero_grad()
            (loss_fn(model(x), y) + rate * l1_penalty(model)).backward()
            optimizer.step()
        weights = torch.cat(
            [p.detach().abs().flatten() for n, p in model.named_parameters() if "weight" in n]
        )
        small[rate] = (weights < 1e-2).float().mean().item()
    assert small[0.01] > small[0.0] + 0.2, small


def test_snapshots_hold_each_parameter_as_it_was_when_taken(tmp_path):
    model = perturbed_mlp("relu", 3, hidden=(5, 4))
    states, snapshots = [], []
    for _ in range(3):
        states.append({name: tensor.clone() for name, tensor in model.state_dict().items()})
        snapshots.append(weights_now(model))
        with torch.no_grad():
            for param in model.parameters():
                param.mul_(-0.5).add_(1.0)  # in place, as Adam steps: a snapshot must be a copy
    save_snapshots(tmp_path / "s.safetensors", model, [0, 3, 8], snapshots)
    saved = read_snapshots(tmp_path / "s.safetensors")
    assert saved.epochs == [0, 3, 8] and saved.config == model.config
    for i, state in enumerate(states):
        assert all(np.array_equal(saved[i].weights[name], t.numpy()) for name, t in state.items()), i
