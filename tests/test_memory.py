"""stages.memory: sizes that pass the schema but cannot be allocated are refused by load_params,
naming the key that costs the most, before any work; the per-point estimate against a real stage."""

import copy
import json
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, set_in
from test_params import BASE_YAML

from stages import memory
from stages.params import ParamsError, load_params, parse_params


@pytest.fixture
def raw():
    return yaml.safe_load(BASE_YAML)


@pytest.fixture
def committed():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def mutated(raw, path, value):
    return set_in(copy.deepcopy(raw), path, value)


M = ("datasets", "moons")

GB = 10**9

TOO_BIG = [
    # id, path, value, available bytes, the message after "params.yaml: "[, top-level sections set too]
    (
        "n_samples",
        (*M, "data", "n_samples"),
        10**10,
        23 * GB,
        "datasets.moons.data.n_samples = 10000000000: needs about 9,000 GB of memory (its points as CSV "
        "text and arrays), this machine has 23 GB available",
    ),
    (
        "generalization",
        ("generalization", "n_samples"),
        10**9,
        23 * GB,
        "generalization.n_samples = 1000000000: needs about 428 GB of memory (its points as CSV text "
        "and arrays), this machine has 23 GB available",
    ),
    (
        "hidden",
        (*M, "model", "hidden"),
        [100_000, 100_000],
        23 * GB,
        "datasets.moons.model.hidden = [100000, 100000]: needs about 32,508 GB of memory (10000500001 "
        "weights with their optimizer state and 201 snapshots), this machine has 23 GB available",
    ),
    (
        "hidden beyond any float",
        (*M, "model", "hidden"),
        [10**400],
        23 * GB,
        f"datasets.moons.model.hidden = [{10**400}]: needs over 1,000,000 GB of memory (the activations "
        "of 1000 points in a training step, 65536 in scoring), this machine has 23 GB available",
    ),
    (
        "epochs",
        (*M, "train", "epochs"),
        10**12,
        23 * GB,
        "datasets.moons.train.epochs = 1000000000000: needs about 25,600 GB of memory (a learning-curve "
        "row every log_every = 10 epochs), this machine has 23 GB available",
    ),
    (
        "resolution on a small machine",
        ("plot", "resolution"),
        2000,
        GB // 2,
        "plot.resolution = 2000: needs about 1.2 GB of memory (the probability grid), this machine has "
        "0.5 GB available",
    ),
    (
        "the animation's grid, larger than the plot's",
        ("plot", "frame_resolution"),
        2000,
        GB // 2,
        "plot.frame_resolution = 2000: needs about 0.8 GB of memory (the probability grid), this machine "
        "has 0.5 GB available",
    ),
    (
        "the forest, at the bound on its training points",
        (*M, "data", "n_samples"),
        10**8,
        23 * GB,
        "baselines.max_train_points = 10000000: needs about 195 GB of memory (RandomForestClassifier "
        "fitted on at most 10000000 points), this machine has 23 GB available",
        {"baselines": {"max_train_points": 10**7}},
    ),
    (
        "the forest, on every training point, below the bound",
        (*M, "data", "n_samples"),
        10**7,
        23 * GB,
        "datasets.moons.data.n_samples = 10000000: needs about 114 GB of memory (RandomForestClassifier "
        "fitted on at most 10000000 points), this machine has 23 GB available",
        {"baselines": {"max_train_points": 10**8}},
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "available", "expected", "also"),
    [(*r[1:5], r[5] if len(r) > 5 else {}) for r in TOO_BIG],
    ids=[r[0] for r in TOO_BIG],
)
def test_a_size_that_cannot_be_allocated_is_refused_naming_the_key(
    raw, path, value, available, expected, also
):
    parsed = parse_params(mutated(raw, path, value) | also)  # the schema lets it through
    with pytest.raises(ParamsError) as caught:
        memory.check_memory(parsed, available=available)
    assert str(caught.value) == f"params.yaml: {expected}"


def test_batch_size_is_named_when_its_training_step_is_what_does_not_fit(raw):
    raw["datasets"]["moons"]["data"]["n_samples"] = 10**6
    raw["datasets"]["moons"]["model"]["hidden"] = [20_000]
    raw["datasets"]["moons"]["train"]["batch_size"] = 100_000
    expected = r"train\.batch_size = 100000: needs about 27 GB of memory \(the activations of 100000 points"
    with pytest.raises(ParamsError, match=expected):
        memory.check_memory(parse_params(raw), available=23 * GB)
    raw["datasets"]["moons"]["train"]["batch_size"] = 1_000
    memory.check_memory(parse_params(raw), available=23 * GB)  # smaller steps fit


def test_the_committed_params_and_the_largest_seed_fit_in_a_small_machine(committed, raw):
    memory.check_memory(parse_params(committed), available=GB)
    memory.check_memory(parse_params(raw), available=GB)


def test_load_params_checks_memory_and_parse_params_does_not(tmp_path, monkeypatch):
    """parse_params also checks a sweep's points on the driver, which is not the machine that runs them."""
    path = tmp_path / "params.yaml"
    path.write_text(BASE_YAML.replace("n_samples: 1000,", "n_samples: 10000000000000,", 1))
    parse_params(yaml.safe_load(path.read_text()))
    with pytest.raises(ParamsError, match=rf"^{re.escape(str(path))}: datasets\.moons\.data\.n_samples = 1"):
        load_params(str(path))
    monkeypatch.setattr(memory, "available_memory", lambda: None)  # nothing to compare with
    assert load_params(str(path)).dataset("moons").data.n_samples == 10**13


def test_available_memory_is_what_the_kernel_reports():
    available = memory.available_memory()
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("no /proc/meminfo here")
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    reported = int(meminfo["MemAvailable"].split()[0]) * 1024
    assert 0 < available <= reported * 1.5 and available >= reported / 1.5  # it moves while we read


MEASURE = """
import importlib
with open("/proc/self/clear_refs", "w") as file:
    file.write("5")  # the peak so far is the forked test process's; count from here
importlib.import_module(STAGE).main("spiral")  # main(), not its runner, which ends the process at once
with open("/proc/self/status") as file:
    print(next(line.split()[1] for line in file if line.startswith("VmHWM:")))
"""


@pytest.mark.e2e
def test_the_per_point_estimate_covers_a_real_stages_growth(project):
    """The peak memory of generate and split, each at two sizes: what a point adds is within POINT_BYTES."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("no /proc/self/clear_refs here (Linux only)")
    peaks = {}
    for n in (20_000, 400_000):
        text = (project / "params.yaml").read_text()
        raw = yaml.safe_load(text)
        raw["datasets"]["spiral"]["data"]["n_samples"] = n
        raw["generalization"]["n_samples"] = n
        (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        for stage in ("generate", "split"):
            code = MEASURE.replace("STAGE", repr(f"stages.{stage}"))
            result = subprocess.run(
                [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True
            )
            peaks[stage, n] = int(result.stdout.split()[-1]) * 1024
    for stage in ("generate", "split"):
        per_point = (peaks[stage, 400_000] - peaks[stage, 20_000]) / 380_000
        assert 0 < per_point <= memory.POINT_BYTES, (stage, per_point, peaks)


@pytest.mark.e2e
def test_the_baselines_estimates_cover_a_real_stages_growth(project):
    """The peak memory of the baselines stage fitting only SVC, or only the forest, on 1,000 and on
    20,000 of moons' 40,000 training points (baselines.max_train_points): what the larger fit adds is
    within what stages/classifiers.py says the classifier holds. Every point is still predicted."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from stages.classifiers import CLASSIFIERS  # noqa: PLC0415

    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("no /proc/self/clear_refs here (Linux only)")
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["datasets"]["moons"]["data"]["n_samples"] = 50_000
    raw["generalization"]["n_samples"] = 20_000

    def peak(stage, **changes):
        for key, value in changes.items():
            set_in(raw, key, value)
        (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        code = MEASURE.replace("STAGE", repr(f"stages.{stage}")).replace('"spiral"', '"moons"')
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True
        )
        return int(result.stdout.split()[-1]) * 1024

    peak("generate"), peak("split")
    for key in ("svm", "forest"):
        small, large = (
            peak("baselines", **{"datasets.moons.baselines": [key], "baselines.max_train_points": bound})
            for bound in (1_000, 20_000)
        )
        classifier = CLASSIFIERS[key]
        estimated = classifier.fitted_bytes(20_000, 2) - classifier.fitted_bytes(1_000, 2)
        assert 0 < large - small <= estimated, (key, small, large, estimated)
        metrics = json.loads((project / "metrics" / "baselines" / "moons.json").read_text())
        assert metrics[key]["fitted_on"] == {"points": 20_000, "of": 40_000}
