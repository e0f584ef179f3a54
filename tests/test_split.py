"""stages.split: a split that leaves a class out of the train or the test set is refused exactly when
scikit-learn's stratified train_test_split refuses it, in one line naming the keys that decide it."""

import numpy as np
import pytest
from conftest import assert_one_line

from stages.datasets import stratified_split
from stages.files import DataError
from stages.split import check_every_class_in_both

SIZES = [0.01, 0.1, 0.2, 0.25, 1 / 3, 0.5, 0.7, 0.9, 0.99]


def balanced(n, classes):
    """Labels as the generators draw them: n split as evenly as possible, the first classes one more."""
    return np.repeat(np.arange(classes), [n // classes + (j < n % classes) for j in range(classes)])


def refused(labels, classes, test_size):
    train, test = stratified_split(labels, test_size, 42)
    try:
        check_every_class_in_both("d", classes, test_size, labels, train, test)
    except DataError as error:
        assert_one_line(str(error), "datasets.d: a stratified split of ", start="datasets.d: ")
        return True
    return False


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_refused_exactly_when_scikit_learn_refuses(classes):
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    compared = 0
    for n in range(2 * classes, 60):
        labels = balanced(n, classes)
        for test_size in SIZES:
            try:
                train_test_split(labels, test_size=test_size, stratify=labels, random_state=0)
                sklearn_refuses = False
            except ValueError:
                sklearn_refuses = True
            assert refused(labels, classes, test_size) == sklearn_refuses, (n, test_size)
            compared += sklearn_refuses
    assert compared > 10  # the grid reaches the refusals, not only splits that work


def test_an_uneven_class_left_out_of_the_test_set_is_refused():
    """Every class must be in both sets; scikit-learn lets this one through, with no point of class 1
    in its test set either (its allocation, like ours, goes by the largest share)."""
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    labels = np.array([0] * 98 + [1] * 2)
    _, sklearn_test = train_test_split(labels, test_size=0.02, stratify=labels, random_state=0)
    train, test = stratified_split(labels, 0.02, 0)
    assert np.bincount(sklearn_test, minlength=2).tolist() == [2, 0]
    assert np.bincount(labels[test], minlength=2).tolist() == [2, 0]
    with pytest.raises(DataError) as caught:
        check_every_class_in_both("d", 2, 0.02, labels, train, test)
    assert str(caught.value) == (
        "datasets.d: a stratified split of 100 points with test_size 0.02 leaves class 1 with no point in "
        "the test set (98 train and 2 test points, 2 classes); raise datasets.d.data.n_samples or "
        "datasets.d.split.test_size"
    )


@pytest.mark.parametrize(
    ("labels", "classes", "test_size", "tail"),
    [
        (
            [0, 1, 0, 1, 0],
            2,
            0.2,
            "(4 train and 1 test points, 2 classes); raise datasets.d.data.n_samples "
            "or datasets.d.split.test_size",
        ),
        (
            [0, 1, 0, 1],
            2,
            0.9,
            "(0 train and 4 test points, 2 classes); raise datasets.d.data.n_samples, "
            "or lower datasets.d.split.test_size",
        ),
        ([0, 1, 0], 2, 0.5, "(1 train and 2 test points, 2 classes); raise datasets.d.data.n_samples"),
        (
            [0, 1, 2] * 2,
            3,
            0.2,
            "(4 train and 2 test points, 3 classes); raise datasets.d.data.n_samples "
            "or datasets.d.split.test_size, or lower datasets.d.data.classes",
        ),
    ],
    ids=["test set short", "train set short", "one point of a class", "three classes"],
)
def test_the_message_names_what_to_change(labels, classes, test_size, tail):
    labels = np.array(labels)
    train, test = stratified_split(labels, test_size, 0)
    with pytest.raises(DataError) as caught:
        check_every_class_in_both("d", classes, test_size, labels, train, test)
    assert_one_line(str(caught.value), tail)
    assert str(caught.value).endswith(tail)
