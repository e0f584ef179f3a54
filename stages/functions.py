"""The model's building blocks, each defined once: its activations, its input features and the
functions that read its outputs as probabilities.

Everything that names or runs them takes them from here: params.yaml's schema (the names),
stages/models.py (torch: training, evaluation) and stages/checkpoint.py (NumPy: the plot stages,
which do not import torch). Adding one is one entry below. The module imports nothing: each form is
handed its library (`xp`, NumPy or torch), so the schema can read the names for free.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

LEAKY_SLOPE = 0.01  # torch.nn.LeakyReLU's default


def pure_tanh_of(xp, x):
    """tanh(x) = (1 - e^(-2x)) / (1 + e^(-2x)), from its definition, in NumPy or torch operations.

    Written for x >= 0 and mirrored (tanh is odd), so that the exponential only ever sees a
    non-positive argument: no overflow, no inf/inf at |x| = 1e4, and expm1 keeps full precision
    near 0. Autograd differentiates it, to within rounding of torch's own 1 - tanh^2.
    """
    magnitude = xp.where(x >= 0, x, -x)
    decay = xp.exp(-2.0 * magnitude)
    value = -xp.expm1(-2.0 * magnitude) / (1.0 + decay)
    return xp.where(x >= 0, value, -value)


def erf(np, x):
    """erf to within 1.5e-7 (Abramowitz & Stegun 7.1.26), a couple of float32 steps: NumPy has
    no erf, and scipy would cost the plot stages' start-up."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def is_torch(xp) -> bool:
    return xp.__name__ == "torch"


def sigmoid(xp, x):
    """1 / (1 + e^-x): torch's own kernel on a tensor, through tanh in NumPy (no overflow)."""
    return x.sigmoid() if is_torch(xp) else 0.5 * (1.0 + xp.tanh(0.5 * x))


def softmax(xp, x):
    """Each row of (n, classes) scores as probabilities: torch's own kernel, or NumPy's exp of the
    scores less their largest (no overflow)."""
    if is_torch(xp):
        return x.softmax(1)
    exp = xp.exp(x - x.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def elementwise(function):
    """The torch form of an activation written once for both libraries: an nn.Module class."""
    return lambda torch: type(
        function.__name__, (torch.nn.Module,), {"forward": lambda _, x: function(torch, x)}
    )


class Activation(NamedTuple):
    numpy: Callable  # (np, x) -> the activation of x, in float64
    torch: Callable  # (torch) -> the nn.Module class that computes it in the torch model


ACTIVATIONS = {
    "relu": Activation(lambda np, x: np.maximum(x, 0.0), lambda torch: torch.nn.ReLU),
    "tanh": Activation(lambda np, x: np.tanh(x), lambda torch: torch.nn.Tanh),
    "sigmoid": Activation(sigmoid, lambda torch: torch.nn.Sigmoid),
    "pure_tanh": Activation(pure_tanh_of, elementwise(pure_tanh_of)),
    "gelu": Activation(
        lambda np, x: 0.5 * x * (1.0 + erf(np, x / math.sqrt(2.0))), lambda torch: torch.nn.GELU
    ),
    "leaky_relu": Activation(
        lambda np, x: np.where(x > 0, x, LEAKY_SLOPE * x), lambda torch: torch.nn.LeakyReLU
    ),
    "linear": Activation(lambda np, x: x, lambda torch: torch.nn.Identity),
}

# TensorFlow Playground's inputs, each a column computed from the point (x1, x2), by NumPy or torch.
FEATURES = {
    "x1": lambda xp, x1, x2: x1,
    "x2": lambda xp, x1, x2: x2,
    "x1^2": lambda xp, x1, x2: x1 * x1,
    "x2^2": lambda xp, x1, x2: x2 * x2,
    "x1*x2": lambda xp, x1, x2: x1 * x2,
    "sin(x1)": lambda xp, x1, x2: xp.sin(x1),
    "sin(x2)": lambda xp, x1, x2: xp.sin(x2),
}


def features(xp, points, names):
    """The (n, len(names)) inputs the model sees for (n, 2) points."""
    x1, x2 = points[:, 0], points[:, 1]
    return xp.stack([FEATURES[name](xp, x1, x2) for name in names], axis=1)
