"""stages.functions: the one definition of each activation and feature, in NumPy and in torch."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

from stages.functions import ACTIVATIONS, FEATURES, features, pure_tanh_of

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


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_every_activation_has_both_forms(name):
    module = ACTIVATIONS[name].torch(torch)
    assert issubclass(module, torch.nn.Module)
    x = np.linspace(-5.0, 5.0, 101)
    assert ACTIVATIONS[name].numpy(np, x).shape == x.shape


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
