"""The baselines stage: scikit-learn's classifiers beside the MLP, against scikit-learn's own `score`
and torchmetrics, on small projects run through the stage's CLI; its figure against the plot stage's
boundary_test.png, and what reruns it, through DVC."""

import json
import math
import os
import re
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import DATASETS, ROOT, assert_one_line_error, experiments, ran, sh
from PIL import Image
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from torchmetrics.functional import classification as tm

from stages.baselines import fit_sample, probabilities, scores
from stages.classifiers import CLASSIFIERS
from stages.datasets import generate, independent_seed, stratified_split
from stages.files import write_points
from stages.params import ParamsError, parse_params
from stages.problems import problem_of

# What each default name must build: scikit-learn's defaults, every random state the train seed.
ORACLES = {
    "logistic": lambda seed: LogisticRegression(random_state=seed),
    "knn": lambda seed: KNeighborsClassifier(),
    "svm": lambda seed: SVC(random_state=seed),
    "forest": lambda seed: RandomForestClassifier(random_state=seed),
}
TRAIN_SEED = 5


def dataset(data, baselines=("logistic", "knn", "svm", "forest"), test_size=0.3):
    return {
        "data": data,
        "split": {"test_size": test_size, "seed": 3},
        "model": {"hidden": [4], "activation": "relu"},
        "train": {"epochs": 1, "lr": 0.1, "seed": TRAIN_SEED},
        "baselines": list(baselines),
    }


SMALL = {
    "datasets": {
        "moons": dataset({"kind": "moons", "n_samples": 300, "noise": 0.3, "seed": 1}),
        "spiral": dataset({"kind": "spiral", "n_samples": 300, "classes": 3, "noise": 0.3, "seed": 1}),
        "three": dataset(
            {"kind": "blobs", "n_samples": 120, "classes": 4, "noise": 1.5, "seed": 2},
            ["svm", "knn", "logistic"],
        ),
        "tiny": dataset({"kind": "xor", "n_samples": 8, "noise": 0.1, "seed": 1}, test_size=0.5),
    },
    "generalization": {"n_samples": 3000},
    "plot": {"resolution": 60, "max_points": 50, "dpi": 40},  # 50 of the 90 test points drawn
}


def stage(project, name, check=True):
    """`python -m stages.baselines <name>` in `project`, with the stages package from this checkout."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return sh(sys.executable, "-m", "stages.baselines", name, cwd=project, env=env, check=check)


def make_project(path, raw):
    """params.yaml and each dataset's train, test and fresh CSVs, as generate and split write them."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = parse_params(raw)
    for name, settings in params.datasets.items():
        points, labels = generate(settings.data)
        train, test = stratified_split(labels, settings.split.test_size, settings.split.seed)
        fresh = generate(settings.data, params.generalization.n_samples, independent_seed(settings.data.seed))
        folder = path / "data" / name
        write_points(folder / "train.csv", points[train], labels[train])
        write_points(folder / "test.csv", points[test], labels[test])
        write_points(folder / "fresh.csv", *fresh)
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("baselines") / "project", SMALL)
    for name in ("moons", "spiral", "three"):
        stage(project, name)
    return project


def read(project, name, split):
    """A split's points and labels, read by pandas (the oracle for the CSVs)."""
    frame = pd.read_csv(project / "data" / name / f"{split}.csv")
    return frame[["x1", "x2"]].to_numpy(), frame["label"].to_numpy()


def written(project, name):
    return json.loads((project / "metrics" / "baselines" / f"{name}.json").read_text())


def outputs(project, name):
    return {
        path: (project / path).read_bytes()
        for path in (f"metrics/baselines/{name}.json", f"plots/{name}/baselines.png")
    }


@pytest.mark.parametrize("name", ["moons", "spiral"])
def test_each_accuracy_is_the_estimators_own_score(small, name):
    splits = {split: read(small, name, split) for split in ("train", "test", "fresh")}
    metrics = written(small, name)
    assert list(metrics) == ["logistic", "knn", "svm", "forest"]
    for key, build in ORACLES.items():
        estimator = build(TRAIN_SEED).fit(*splits["train"])
        for split in ("train", "test"):
            assert metrics[key][split]["accuracy"] == round(estimator.score(*splits[split]), 6), (key, split)
        fresh = estimator.score(*splits["fresh"])
        n = len(splits["fresh"][1])
        assert metrics[key]["generalization"] == {
            "accuracy": round(fresh, 6),
            "stderr": round(math.sqrt(fresh * (1 - fresh) / n), 6),
            "n_samples": n,
        }


def torchmetrics_scores(labels, predicted, classes):
    """What the evaluate stage's torchmetrics says of these predicted labels."""
    target, preds = torch.tensor(labels), torch.tensor(predicted)
    if classes == 2:
        functions = [tm.binary_accuracy, tm.binary_precision, tm.binary_recall, tm.binary_f1_score]
        values = [function(preds, target) for function in functions]
    else:
        macro = dict(num_classes=classes, average="macro")
        values = [
            tm.multiclass_accuracy(preds, target, num_classes=classes, average="micro"),
            tm.multiclass_precision(preds, target, **macro),
            tm.multiclass_recall(preds, target, **macro),
            tm.multiclass_f1_score(preds, target, **macro),
        ]
    return dict(zip(["accuracy", "precision", "recall", "f1"], map(float, values), strict=True))


@pytest.mark.parametrize(("name", "classes"), [("moons", 2), ("spiral", 3), ("three", 4)])
def test_metrics_are_torchmetrics_on_the_same_predictions(small, name, classes):
    train = read(small, name, "train")
    metrics = written(small, name)
    for key in SMALL["datasets"][name]["baselines"]:
        estimator = ORACLES[key](TRAIN_SEED).fit(*train)
        for split in ("train", "test"):
            points, labels = read(small, name, split)
            expected = torchmetrics_scores(labels, estimator.predict(points), classes)
            assert metrics[key][split] == pytest.approx(expected, abs=1e-6), (key, split)


CORNER_CASES = [  # classes, labels, predicted: undefined precisions, a class nowhere, all wrong
    (2, [0, 0, 1, 1], [0, 0, 0, 0]),
    (2, [0, 0, 0, 0], [0, 1, 0, 0]),
    (2, [1, 1, 1, 1], [1, 1, 1, 1]),
    (2, [0, 1, 0, 1], [1, 0, 1, 0]),
    (3, [0, 1, 2, 2], [0, 0, 0, 0]),
    (3, [0, 1, 1, 0], [0, 1, 1, 1]),
    (3, [0, 1, 1, 0], [0, 2, 1, 1]),
    (4, [3, 3, 0, 1], [2, 2, 2, 2]),
]


@pytest.mark.parametrize(("classes", "labels", "predicted"), CORNER_CASES)
def test_scores_are_torchmetrics_in_the_corner_cases(classes, labels, predicted):
    labels, predicted = np.array(labels), np.array(predicted)
    expected = torchmetrics_scores(labels, predicted, classes)
    assert scores(labels, predicted, problem_of(classes)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("classes", [2, 3, 4])
def test_scores_are_torchmetrics_on_random_predictions(classes):
    rng = np.random.default_rng(classes)
    for _ in range(20):
        labels, predicted = rng.integers(0, classes, size=(2, 50))
        expected = torchmetrics_scores(labels, predicted, classes)
        assert scores(labels, predicted, problem_of(classes)) == pytest.approx(expected, abs=1e-6)


def test_registry_builds_scikit_learns_defaults_seeded():
    for key, classifier in CLASSIFIERS.items():
        assert classifier.build(7).get_params() == ORACLES[key](7).get_params(), key


@pytest.mark.parametrize("classes", [2, 3])
def test_the_shading_is_a_probability_whose_largest_is_the_prediction(classes):
    points, labels = generate(parse_params(SMALL).datasets["spiral"].data, 300, 9)
    labels = labels % classes
    grid = np.random.default_rng(0).uniform(-1.2, 1.2, size=(2000, 2))
    for key, build in ORACLES.items():
        estimator = build(1).fit(points, labels)
        field, note = probabilities(estimator, grid, estimator.predict(grid), classes)
        assert field.shape == (len(grid), classes)
        assert np.allclose(field.sum(axis=1), 1.0) and (field >= 0).all()
        # The boundary drawn is where the prediction changes (the crosses are the predictions'):
        assert np.array_equal(field.argmax(axis=1), estimator.predict(grid)), key
        if hasattr(estimator, "predict_proba"):
            assert note is None and np.array_equal(field, estimator.predict_proba(grid))
        elif classes == 2:  # SVC: its decision function, which picks its predictions
            assert note == "shading: sigmoid of its decision function (no probabilities)"
            assert np.allclose(field[:, 1], 1 / (1 + np.exp(-estimator.decision_function(grid))))
        else:  # SVC's one-against-rest decision function is not its one-against-one votes
            assert note == "shading: its predicted class (no probabilities)"
            assert set(np.unique(field)) == {0.0, 1.0}


def test_shading_with_neither_probabilities_nor_a_decision_function_is_the_prediction():
    class Majority:  # the least a classifier has: classes_ and predict
        classes_ = np.array([0, 1, 2])

        def predict(self, points):
            return (points[:, 0] > 0).astype(np.int64) * 2

    points = np.array([[-1.0, 0.0], [1.0, 0.0]])
    field, note = probabilities(Majority(), points, Majority().predict(points), 3)
    assert np.array_equal(field, [[1, 0, 0], [0, 0, 1]])
    assert note == "shading: its predicted class (no probabilities)"


def test_a_class_missing_from_the_training_set_has_no_shade():
    points = np.array([[0.0, 0.0], [1.0, 1.0], [0.1, 0.0], [0.9, 1.0]])
    estimator = LogisticRegression().fit(points, np.array([0, 2, 0, 2]))
    field, _ = probabilities(estimator, points, estimator.predict(points), 3)
    assert np.array_equal(field[:, 1], np.zeros(4))
    assert np.array_equal(field[:, [0, 2]], estimator.predict_proba(points))


def test_the_panels_are_tiled_with_one_left_white(small):
    """Three classifiers: two panels a row, the fourth place white; each panel is the plot stage's
    figure size (6 x 5.4 inches) at plot.dpi."""
    with Image.open(small / "plots" / "three" / "baselines.png") as image:
        assert image.format == "PNG" and "Software" not in image.info
        width, height = round(6 * 40), round(5.4 * 40)
        assert image.size == (2 * width, 2 * height)
        pixels = np.asarray(image.convert("RGB"))
    panels = [
        pixels[r * height : (r + 1) * height, c * width : (c + 1) * width] for r in (0, 1) for c in (0, 1)
    ]
    assert (panels[3] == 255).all()
    for panel in panels[:3]:
        assert len(np.unique(panel.reshape(-1, 3), axis=0)) > 50  # drawn: shading, points, text
    assert not np.array_equal(panels[0], panels[1]) and not np.array_equal(panels[1], panels[2])


def test_a_forced_rerun_writes_the_same_bytes(small):
    for name in ("moons", "spiral"):
        before = outputs(small, name)
        stage(small, name)
        assert outputs(small, name) == before


def test_an_unknown_name_is_refused_in_one_line(tmp_path):
    raw = yaml.safe_load(yaml.safe_dump(SMALL))
    raw["datasets"]["moons"]["baselines"] = ["logistic", "tree"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = stage(tmp_path, "moons", check=False)
    message = "params.yaml: datasets.moons.baselines[1] = 'tree': must be one of logistic, knn, svm, forest"
    assert assert_one_line_error(result, message) == f"error: {message}"
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "plots").exists()


def test_an_empty_or_repeated_list_is_refused():
    for listed, why in [([], "a non-empty list of"), (["svm", "svm"], "each at most once")]:
        raw = yaml.safe_load(yaml.safe_dump(SMALL))
        raw["datasets"]["moons"]["baselines"] = listed
        with pytest.raises(ParamsError, match=r"datasets\.moons\.baselines") as error:
            parse_params(raw)
        assert why in str(error.value) and "logistic, knn, svm, forest" in str(error.value)


def test_a_classifier_that_cannot_fit_its_training_set_is_one_line(small):
    result = stage(small, "tiny", check=False)  # 4 training points; k-nearest needs 5
    assert_one_line_error(
        result,
        "datasets.tiny.baselines: knn cannot be fitted on data/tiny/train.csv (4 points): ",
        "n_neighbors = 5",
    )
    assert not (small / "metrics" / "baselines" / "tiny.json").exists()


@pytest.mark.e2e
def test_the_panels_share_boundary_test_pngs_extent_and_scale(built):
    """Each panel is boundary_test.png's size, and what lies outside its axes (tick labels, axis
    labels) is boundary_test.png's, pixel for pixel: the same plane, at the same scale."""
    for name in ("moons", "spiral"):
        with (
            Image.open(built / "plots" / name / "boundary_test.png") as mlp,
            Image.open(built / "plots" / name / "baselines.png") as baselines,
        ):
            assert baselines.info == mlp.info  # the dpi, no software tag
            reference, tiled = np.asarray(mlp.convert("RGB")), np.asarray(baselines.convert("RGB"))
        height, width, _ = reference.shape
        assert tiled.shape == (2 * height, 2 * width, 3)
        for row in (0, 1):
            for column in (0, 1):
                panel = tiled[row * height : (row + 1) * height, column * width : (column + 1) * width]
                assert np.array_equal(panel[:, :60], reference[:, :60]), (name, row, column)  # x2 ticks
                assert np.array_equal(panel[-40:], reference[-40:]), (name, row, column)  # x1 ticks
                assert not np.array_equal(panel, reference)


@pytest.mark.e2e
def test_the_readme_shows_the_committed_baselines(built):
    """Each row of the README's baselines table: test and generalization accuracy, both datasets."""
    readme = (ROOT / "README.md").read_text().splitlines()

    def cells(metrics):
        test, fresh = metrics["test"], metrics["generalization"]
        return f" {test['accuracy']:.4g} | {fresh['accuracy']:.4f} ± {fresh['stderr']:.4f} |"

    mlp = {name: json.loads((built / "metrics" / f"{name}.json").read_text()) for name in DATASETS}
    baselines = {name: written(built, name) for name in DATASETS}
    rows = {"the MLP": "|" + "".join(cells(mlp[name]) for name in DATASETS)}
    for key in CLASSIFIERS:
        rows[f"`{key}`"] = "|" + "".join(cells(baselines[name][key]) for name in DATASETS)
    for model, numbers in rows.items():
        [line] = [line for line in readme if line.startswith(f"| {model}")]
        assert line.endswith(numbers), (line, numbers)


@pytest.mark.e2e
def test_only_its_own_params_rerun_it(rebuilt):
    """A train or model change leaves it alone (no model in it); its entry, and the seed it fits
    with, rerun it; and `dvc exp show` lists each classifier's metrics beside the MLP's."""
    change = ["-S", "datasets.moons.train.lr=0.02", "-S", "datasets.moons.model.hidden=[8]"]
    result = sh("dvc", "exp", "run", "--name", "model", *change, cwd=rebuilt)
    assert ran(result) == {f"{stage}@moons" for stage in ("train", "evaluate", "plot", "animate")}

    result = sh(
        "dvc", "exp", "run", "--name", "two", "-S", "datasets.moons.baselines=[svm,logistic]", cwd=rebuilt
    )
    assert ran(result) == {"baselines@moons"}
    metrics = experiments(rebuilt)["two"]["metrics"]
    assert list(metrics["metrics/baselines/moons.json"]) == ["svm", "logistic"]
    shown = json.loads((rebuilt / "metrics" / "baselines" / "moons.json").read_text())
    assert metrics["metrics/baselines/moons.json"] == shown
    assert metrics["metrics/moons.json"]["test"]["accuracy"] > 0.9  # the MLP's, in the same row

    params = yaml.safe_load((rebuilt / "params.yaml").read_text())
    params["datasets"]["moons"]["train"]["seed"] += 1
    (rebuilt / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(sh("dvc", "status", "--json", cwd=rebuilt).stdout)
    assert {"train@moons", "baselines@moons"} <= set(status)
    assert not {"baselines@spiral", "train@spiral"} & set(status)


# ---------------------------------------------------------------------------------------------
# baselines.max_train_points: SVC and the forest on a seeded, stratified sample, said so


SAMPLED = {
    "datasets": {"moons": dataset({"kind": "moons", "n_samples": 600, "noise": 0.3, "seed": 1})},
    "generalization": {"n_samples": 3000},
    "baselines": {"max_train_points": 100},  # of the 420 training points
    "plot": {"resolution": 60, "max_points": 50, "dpi": 40},
}


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("baselines") / "sampled", SAMPLED)
    stage(project, "moons")
    return project


def oracle_sample(labels, size, seed):
    """scikit-learn's stratified shuffle split, called as its own class: the sample's indices, sorted."""
    from sklearn.model_selection import StratifiedShuffleSplit  # noqa: PLC0415

    [(chosen, _)] = StratifiedShuffleSplit(n_splits=1, train_size=size, random_state=seed).split(
        labels, labels
    )
    return np.sort(chosen)


def test_svc_and_the_forest_are_fitted_on_the_seeded_stratified_sample(sampled):
    """Each accuracy is the estimator's own score when fitted on the sample, on every point."""
    splits = {split: read(sampled, "moons", split) for split in ("train", "test", "fresh")}
    chosen = oracle_sample(splits["train"][1], 100, TRAIN_SEED)
    metrics = written(sampled, "moons")
    for key, build in ORACLES.items():
        sample = CLASSIFIERS[key].sampled
        assert sample == (key in ("svm", "forest")), key  # the classifiers whose fit costs more than linearly
        points, labels = splits["train"]
        fit_on = chosen if sample else slice(None)
        estimator = build(TRAIN_SEED).fit(points[fit_on], labels[fit_on])
        for split in ("train", "test", "fresh"):
            score = metrics[key]["generalization" if split == "fresh" else split]["accuracy"]
            assert score == round(estimator.score(*splits[split]), 6), (key, split)
        assert metrics[key]["generalization"]["n_samples"] == 3000
        assert (metrics[key].get("fitted_on"), list(metrics[key])[0]) == (
            ({"points": 100, "of": 420}, "fitted_on") if sample else (None, "train")
        ), key


def test_the_sample_is_stratified_seeded_and_all_points_up_to_the_bound():
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    chosen = fit_sample(labels, 100, 7)
    assert len(chosen) == 100 and list(chosen) == sorted(set(chosen))
    assert np.bincount(labels[chosen]).tolist() == [50, 30, 20]  # each class in its share
    assert np.array_equal(chosen, fit_sample(labels, 100, 7))
    assert not np.array_equal(chosen, fit_sample(labels, 100, 8))
    assert np.array_equal(fit_sample(labels, 1000, 7), np.arange(1000))
    assert np.array_equal(fit_sample(labels, 5000, 7), np.arange(1000))


def test_the_panels_say_which_fits_are_on_a_sample(sampled, monkeypatch):
    """The text drawn on each panel, recorded as matplotlib sets it, with the stage run in-process."""
    import matplotlib.text  # noqa: PLC0415

    from stages import baselines  # noqa: PLC0415

    texts, set_text = [], matplotlib.text.Text.set_text

    def recorded(self, text):
        texts.append(str(text))
        set_text(self, text)

    monkeypatch.setattr(matplotlib.text.Text, "set_text", recorded)
    monkeypatch.chdir(sampled)
    before = outputs(sampled, "moons")
    baselines.main("moons")
    notes = [text for text in texts if text.startswith(("fit on", "shading"))]
    assert notes == [
        "fit on 100 of 420 training points\nshading: sigmoid of its decision function (no probabilities)",
        "fit on 100 of 420 training points",
    ]
    assert outputs(sampled, "moons") == before  # in-process or not, the same bytes


def test_a_sampled_run_again_writes_the_same_bytes_and_another_seed_others(sampled, tmp_path):
    before = outputs(sampled, "moons")
    stage(sampled, "moons")
    assert outputs(sampled, "moons") == before
    raw = yaml.safe_load(yaml.safe_dump(SAMPLED))
    raw["datasets"]["moons"]["train"]["seed"] = TRAIN_SEED + 1
    other = make_project(tmp_path / "other", raw)
    stage(other, "moons")
    metrics, moved = written(sampled, "moons"), written(other, "moons")
    assert metrics["svm"] != moved["svm"] and metrics["logistic"] == moved["logistic"]


@pytest.mark.parametrize("value", [99, 0, -5, True, 1.5])
def test_a_bound_out_of_range_is_refused_in_one_line(value):
    raw = yaml.safe_load(yaml.safe_dump(SAMPLED))
    raw["baselines"]["max_train_points"] = value
    with pytest.raises(ParamsError) as error:
        parse_params(raw)
    assert (
        str(error.value) == f"params.yaml: baselines.max_train_points = {value!r}: must be an integer >= 100"
    )


def test_a_bound_out_of_range_stops_the_stage_in_one_line(tmp_path):
    raw = yaml.safe_load(yaml.safe_dump(SAMPLED))
    raw["baselines"]["max_train_points"] = 10
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    message = "params.yaml: baselines.max_train_points = 10: must be an integer >= 100"
    assert assert_one_line_error(stage(tmp_path, "moons", check=False), message) == f"error: {message}"


def test_the_docs_name_the_sampled_classifiers_of_the_registry():
    """docs/pipeline.md's row of baselines.max_train_points names the classifiers it bounds."""
    [row] = [
        line
        for line in (ROOT / "docs" / "pipeline.md").read_text().splitlines()
        if line.startswith("| `baselines.max_train_points`")
    ]
    named = re.search(r"\(((?:`\w+`, )*`\w+`): `sampled` in Registries' `CLASSIFIERS`\)", row).group(1)
    assert re.findall(r"`(\w+)`", named) == [
        key for key, classifier in CLASSIFIERS.items() if classifier.sampled
    ]
