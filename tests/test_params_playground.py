"""The params that issue 16 adds to the schema: model.features, hidden: [], activation linear,
train.l1, plot.frames and plot.frame_resolution; each bad value one line naming the key and what
is allowed."""

import pytest

from stages.functions import FEATURES
from stages.params import ParamsError, parse_params


def params(model=None, train=None, plot=None):
    raw = {
        "datasets": {
            "c": {
                "data": {"kind": "circles", "n_samples": 100, "noise": 0.1, "seed": 1},
                "split": {"test_size": 0.2, "seed": 1},
                "model": {"hidden": [4], "activation": "relu", **(model or {})},
                "train": {"epochs": 5, "lr": 0.1, "seed": 1, **(train or {})},
            }
        },
        "plot": plot or {},
    }
    return parse_params(raw)


def test_defaults():
    parsed = params()
    assert list(parsed.dataset("c").model.features) == ["x1", "x2"]
    assert parsed.dataset("c").train.l1 == 0.0
    assert (parsed.plot.frames, parsed.plot.frame_resolution) == (40, 100)


def test_every_feature_hidden_none_and_linear_are_accepted():
    model = (
        params(model={"hidden": [], "activation": "linear", "features": list(FEATURES)}).dataset("c").model
    )
    assert model.hidden == [] and model.activation == "linear" and model.features == list(FEATURES)
    assert params(train={"l1": "1e-3"}).dataset("c").train.l1 == 0.001


ALLOWED = ", ".join(FEATURES)


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("model", {"features": ["x3"]}, f"datasets.c.model.features[0] = 'x3': must be one of {ALLOWED}"),
        (
            "model",
            {"features": []},
            f"datasets.c.model.features = []: must be a non-empty list of one of {ALLOWED}",
        ),
        (
            "model",
            {"features": ["x1", "x1"]},
            f"datasets.c.model.features = ['x1', 'x1']: must be a non-empty list of one of {ALLOWED}, "
            "each at most once",
        ),
        (
            "model",
            {"features": "x1"},
            f"datasets.c.model.features = 'x1': must be a non-empty list of one of {ALLOWED}",
        ),
        ("model", {"hidden": [0]}, "datasets.c.model.hidden[0] = 0: must be an integer >= 1"),
        ("model", {"hidden": 4}, "datasets.c.model.hidden = 4: must be a list of an integer >= 1"),
        (
            "model",
            {"activation": "softplus"},
            "datasets.c.model.activation = 'softplus': must be one of "
            "relu, tanh, sigmoid, pure_tanh, gelu, leaky_relu, linear",
        ),
        ("train", {"l1": -0.1}, "datasets.c.train.l1 = -0.1: must be a number >= 0"),
        ("train", {"l1": "lots"}, "datasets.c.train.l1 = 'lots': must be a number >= 0"),
        ("plot", {"frames": 1}, "plot.frames = 1: must be an integer in [2, 200]"),
        ("plot", {"frames": 40.5}, "plot.frames = 40.5: must be an integer in [2, 200]"),
        ("plot", {"frame_resolution": 9}, "plot.frame_resolution = 9: must be an integer in [10, 2000]"),
    ],
)
def test_bad_values_are_one_line_naming_the_key_and_the_allowed_values(section, value, message):
    with pytest.raises(ParamsError) as caught:
        params(**{section: value})
    assert str(caught.value) == f"params.yaml: {message}"
