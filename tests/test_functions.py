"""stages.functions: the one definition of each activation and feature, in NumPy and in torch;
pure_tanh against torch.tanh and mpmath."""

import subprocess
import sys

import mpmath
import numpy as np
import pytest
import torch
from conftest import ROOT

from stages.functions import ACTIVATIONS, FEATURES, features, pure_tanh_of


def pure_tanh(x):
    return pure_tanh_of(torch, x)


DTYPES = [torch.float32, torch.float64]
GRID = np.concatenate(
    [
        np.linspace(-20.0, 20.0, 2001),
        [0.0, -0.0, 1e-8, -1e-8, 1e-30, -1e-30, 1e-300, 5e-324, 0.5, -0.5, 30.0, -45.0, 1e4, -1e4],
    ]
)


def exact(function, dtype):
    """(x, f(x)) with f evaluated in 200-bit arithmetic at each grid value as stored in `dtype`."""
    x = torch.tensor(GRID, dtype=dtype)
    with mpmath.workprec(200):
        values = [float(function(mpmath.mpf(float(v)))) for v in x.double()]
    return x, torch.tensor(values, dtype=torch.float64)


def value_and_grad(function, x):
    x = x.detach().clone().requires_grad_(True)
    y = function(x)
    y.sum().backward()
    return y.detach(), x.grad


def relative_error_in_eps(got, want, dtype):
    got, want = got.double(), want.double()
    scale = want.abs().clamp(min=torch.finfo(dtype).tiny)
    return ((got - want).abs() / scale).max().item() / torch.finfo(dtype).eps


# ---------------------------------------------------------------------------------------------
# pure_tanh: torch.tanh and mpmath as oracles, in torch and in NumPy


@pytest.mark.parametrize("dtype", DTYPES)
def test_pure_tanh_values_match_torch_tanh(dtype):
    x = torch.tensor(GRID, dtype=dtype)
    y = pure_tanh(x)
    assert y.dtype == dtype and y.shape == x.shape
    assert torch.isfinite(y).all()
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(y, torch.tanh(x), rtol=4 * eps, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pure_tanh_values_are_correctly_rounded_within_a_few_ulp(dtype):
    x, want = exact(mpmath.tanh, dtype)
    assert relative_error_in_eps(pure_tanh(x), want, dtype) <= 4  # measured: 1.5 (f64), 1.0 (f32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pure_tanh_gradients_match_torch_tanh(dtype):
    x = torch.tensor(GRID, dtype=dtype)
    _, grad = value_and_grad(pure_tanh, x)
    _, expected = value_and_grad(torch.tanh, x)
    assert torch.isfinite(grad).all()
    # torch.tanh's backward is 1 - y^2: accurate to ~eps in absolute terms, not relative.
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(grad, expected, rtol=4 * eps, atol=4 * eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pure_tanh_gradient_absolute_error_is_within_eps(dtype):
    x, want = exact(lambda v: mpmath.sech(v) ** 2, dtype)
    _, grad = value_and_grad(pure_tanh, x)
    assert (grad.double() - want).abs().max().item() <= 2 * torch.finfo(dtype).eps


@pytest.mark.parametrize("dtype", DTYPES)
def test_pure_tanh_extremes(dtype):
    x = torch.tensor([1e4, -1e4, 0.0, 1e-8, -1e-8, float("inf"), float("-inf")], dtype=dtype)
    y, grad = value_and_grad(pure_tanh, x)
    assert y.tolist()[:3] == [1.0, -1.0, 0.0] and y.tolist()[5:] == [1.0, -1.0]
    assert not torch.isnan(y).any() and not torch.isnan(grad).any()
    assert grad.tolist()[:3] == [0.0, 0.0, 1.0] and grad.tolist()[5:] == [0.0, 0.0]
    torch.testing.assert_close(y[3:5], x[3:5], rtol=torch.finfo(dtype).eps, atol=0)  # tanh(x) ~ x
    assert grad[3].item() == grad[4].item() == pytest.approx(1.0, rel=torch.finfo(dtype).eps, abs=0)
    assert torch.isnan(pure_tanh(torch.tensor([float("nan")], dtype=dtype))).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_pure_tanh_is_odd_bounded_and_monotone(dtype):
    x = torch.tensor(np.sort(np.abs(GRID)), dtype=dtype)
    y = pure_tanh(x)
    assert torch.equal(pure_tanh(-x), -y)
    assert (y.abs() <= 1).all() and (y[1:] >= y[:-1]).all()


def test_pure_tanh_gradcheck_float64():
    x = torch.tensor(np.r_[np.linspace(-6, 6, 49), 0.0, 1e-8, -1e-8, 25.0, -25.0], requires_grad=True)
    assert torch.autograd.gradcheck(pure_tanh, (x,), eps=1e-6, atol=1e-9, rtol=1e-6)
    assert torch.autograd.gradgradcheck(pure_tanh, (x,), eps=1e-6, atol=1e-8, rtol=1e-5)


POINTS = np.random.default_rng(0).normal(scale=3.0, size=(500, 2))
BY_HAND = {  # the oracle: each feature written out from its name
    "x1": lambda x1, x2: x1,
    "x2": lambda x1, x2: x2,
    "x1^2": lambda x1, x2: x1**2,
    "x2^2": lambda x1, x2: x2**2,
    "x1*x2": lambda x1, x2: x1 * x2,
    "sin(x1)": lambda x1, x2: np.sin(x1),
    "sin(x2)": lambda x1, x2: np.sin(x2),
}


def test_every_feature_has_an_oracle():
    assert list(FEATURES) == list(BY_HAND)


@pytest.mark.parametrize("name", list(FEATURES))
def test_each_feature_in_numpy_and_torch_is_its_formula(name):
    want = BY_HAND[name](POINTS[:, 0], POINTS[:, 1])
    np.testing.assert_allclose(features(np, POINTS, [name])[:, 0], want, rtol=1e-15, atol=0)
    got = features(torch, torch.tensor(POINTS), [name])
    assert got.shape == (500, 1) and got.dtype == torch.float64
    np.testing.assert_allclose(got[:, 0].numpy(), want, rtol=1e-15, atol=1e-300)


def test_features_are_columns_in_the_order_named():
    names = ["sin(x2)", "x1*x2", "x1"]
    want = np.column_stack([BY_HAND[name](POINTS[:, 0], POINTS[:, 1]) for name in names])
    np.testing.assert_allclose(features(np, POINTS, names), want, rtol=1e-15, atol=0)


# The oracle for each activation: torch's own module, named here (pure_tanh is tanh from its definition).
TORCH_MODULES = {
    "relu": "ReLU",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
    "pure_tanh": "Tanh",
    "gelu": "GELU",
    "leaky_relu": "LeakyReLU",
    "linear": "Identity",
}


def torch_oracle(name):
    """torch's own module for the activation `name`: an instance, with torch's defaults."""
    return getattr(torch.nn, TORCH_MODULES[name])()


def test_every_activation_has_an_oracle():
    assert list(ACTIVATIONS) == list(TORCH_MODULES)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_every_activation_s_torch_form_computes_torch_s_own(name):
    """(The NumPy form against the same oracle: test_checkpoint.py, where the NumPy model is.)"""
    module = ACTIVATIONS[name].torch(torch)
    assert issubclass(module, torch.nn.Module)
    x = torch.linspace(-5.0, 5.0, 101, dtype=torch.float64)
    torch.testing.assert_close(module()(x), torch_oracle(name)(x), rtol=4 * np.finfo(float).eps, atol=0)


def test_pure_tanh_in_numpy_is_tanh():
    x = np.concatenate([np.linspace(-30.0, 30.0, 6001), [0.0, 1e-8, -1e-8, 1e4, -1e4]])
    np.testing.assert_allclose(pure_tanh_of(np, x), np.tanh(x), rtol=4 * np.finfo(float).eps, atol=0)


def test_linear_is_the_identity():
    x = np.linspace(-3.0, 3.0, 7)
    assert np.array_equal(ACTIVATIONS["linear"].numpy(np, x), x)
    assert isinstance(ACTIVATIONS["linear"].torch(torch)(), torch.nn.Identity)


def test_the_module_imports_no_library():
    """The params schema reads the names from it: it must cost the stages nothing to import."""
    code = "import sys, stages.functions; assert not {'numpy', 'torch'} & set(sys.modules), sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
