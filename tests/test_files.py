"""stages.files: point CSVs round-trip bit for bit, writes are atomic, and every malformed file is one
clear DataError naming the file and the problem."""

import json
import math
import os

import numpy as np
import pytest
from conftest import assert_one_line, strict_json

from stages import files
from stages.errors import UserError
from stages.files import DataError, read_points, write_bytes, write_json, write_points

# ---------------------------------------------------------------------------------------------
# Round trips


def random_doubles(n, seed):
    """Finite float64 values from random bit patterns: every exponent, both signs, subnormals."""
    bits = np.random.default_rng(seed).integers(0, 2**64, size=4 * n, dtype=np.uint64, endpoint=False)
    values = bits.view(np.float64)
    return values[np.isfinite(values)][:n]


SPECIAL = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    2.225073858507201e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    1 / 3,
    0.1,
    0.1 + 0.2,
    1e16,
    123456789.12345679,
    2.0**-1074 * 3,
    9007199254740993.0,
]


def test_points_round_trip_bit_for_bit(tmp_path):
    values = np.concatenate(
        [SPECIAL, random_doubles(30_000, 0), np.random.default_rng(1).normal(size=10_000)]
    )
    values = values[: len(values) // 2 * 2]
    points = values.reshape(-1, 2)
    labels = np.random.default_rng(2).integers(0, 5, len(points)).astype(np.int64)
    path = tmp_path / "data" / "all.csv"
    write_points(path, points, labels)
    got_points, got_labels = read_points(path, 5)
    assert got_points.dtype == np.float64 and got_points.shape == points.shape
    assert got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_points.view(np.uint64), points.view(np.uint64))  # -0.0 included
    np.testing.assert_array_equal(got_labels, labels)


def test_written_points_file_format(tmp_path):
    path = tmp_path / "p.csv"
    write_points(path, np.array([[0.1, -2.5], [1e-300, 3.0]]), np.array([1, 0]))
    assert path.read_bytes() == b"x1,x2,label\n0.1,-2.5,1\n1e-300,3.0,0\n"


def test_write_json(tmp_path):
    obj = {"accuracy": 0.1 + 0.2, "n": 3, "nested": {"list": [1, 2.5]}}
    write_json(tmp_path / "m" / "metrics.json", obj)
    text = (tmp_path / "m" / "metrics.json").read_text()
    assert text.endswith("}\n") and json.loads(text) == obj


@pytest.mark.parametrize(
    ("obj", "shown"),
    [
        ({"train": {"accuracy": 0.5, "loss": math.nan}}, "train.loss = nan"),
        ({"test": {"f1": 1.0}, "generalization": {"stderr": -math.inf}}, "generalization.stderr = -inf"),
        ({"rows": [1.0, 2.0, math.inf]}, "rows[2] = inf"),
        ({"deep": [{"x": [0.0, np.float64("nan")]}]}, "deep[0].x[1] = nan"),
    ],
)
def test_write_json_refuses_nan_and_infinity_naming_the_key(tmp_path, obj, shown):
    path = tmp_path / "metrics.json"
    write_json(path, {"old": 1})
    with pytest.raises(UserError) as caught:
        write_json(path, obj)
    assert_one_line(str(caught.value), f"{path}: {shown} is not a finite number", start=f"{path}: ")
    assert strict_json(path.read_text()) == {"old": 1}  # the old file, untouched
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_what_write_json_writes_a_strict_parser_reads(tmp_path):
    obj = {"a": 1e308, "b": -5e-324, "c": [0.0, -0.0, 0.1 + 0.2], "d": {"n": 3}}
    write_json(tmp_path / "m.json", obj)
    assert strict_json((tmp_path / "m.json").read_text()) == obj


@pytest.mark.parametrize(
    ("columns", "shown"),
    [
        ({"epoch": [0, 10, 20], "train": [0.7, 0.5, math.nan]}, "row 4, column train: nan"),
        ({"fpr": np.array([0.0, np.inf], np.float32), "tpr": [0.0, 1.0]}, "row 3, column fpr: inf"),
        ({"x": [-math.inf], "y": [math.nan]}, "row 2, column x: -inf"),
    ],
)
def test_write_table_refuses_nan_and_infinity_naming_row_and_column(tmp_path, columns, shown):
    path = tmp_path / "curve.csv"
    path.write_bytes(b"old\n")
    with pytest.raises(UserError) as caught:
        files.write_table(path, columns)
    assert_one_line(str(caught.value), f"{path}: {shown} is not a finite number; nothing written")
    assert path.read_bytes() == b"old\n"
    assert os.listdir(tmp_path) == ["curve.csv"]


# ---------------------------------------------------------------------------------------------
# Atomic writes


def test_write_bytes_creates_folders_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "a" / "b" / "out.bin"
    write_bytes(path, b"first")
    write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert os.listdir(path.parent) == ["out.bin"]


@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "out.csv"
    write_bytes(path, b"old contents\n")

    def boom(*args, **kwargs):
        raise OSError(f"simulated failure in {failing}")

    if failing == "write":  # fails while the data is being written
        monkeypatch.setattr(files, "open", BrokenFile, raising=False)
    else:
        monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="simulated failure"):
        write_bytes(path, b"new contents that never land\n")
    monkeypatch.undo()
    assert path.read_bytes() == b"old contents\n"
    assert os.listdir(tmp_path) == ["out.csv"]


class BrokenFile:
    """A file that writes half its data, then fails (a full disk)."""

    def __init__(self, *args, **kwargs):
        self.file = open(*args, **kwargs)  # noqa: SIM115 - closed in __exit__

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def write(self, data):
        self.file.write(data[: len(data) // 2])
        raise OSError("simulated failure in write: no space left on device")


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("simulated failure")))
    with pytest.raises(OSError):
        write_bytes(tmp_path / "new.csv", b"data")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Malformed point files

HEADER = "x1,x2,label\n"
BAD_FILES = [
    # id, contents, classes, fragments the message must hold
    ("empty file", "", 2, ["not a readable CSV"]),
    ("header only", HEADER, 2, ["has no rows"]),
    ("wrong columns", "x,y,label\n1,2,0\n", 2, ["columns are x,y,label; expected x1,x2,label"]),
    ("missing column", "x1,x2\n1,2\n", 2, ["columns are x1,x2; expected x1,x2,label"]),
    ("extra column", "x1,x2,label,w\n1,2,0,1\n", 2, ["columns are x1,x2,label,w; expected x1,x2,label"]),
    ("no header", "1,2,0\n3,4,1\n", 2, ["columns are 1,2,0; expected x1,x2,label"]),
    ("columns reordered", "x2,x1,label\n1,2,0\n", 2, ["columns are x2,x1,label; expected x1,x2,label"]),
    ("non-numeric", HEADER + "1,2,0\n0.5,abc,1\n", 2, ["row 3, column x2", "'abc'", "not a finite number"]),
    ("nan", HEADER + "nan,2,0\n", 2, ["row 2, column x1", "nan", "not a finite number"]),
    ("NaN text", HEADER + "1,NaN,0\n", 2, ["row 2, column x2", "not a finite number"]),
    ("inf", HEADER + "1,2,0\n1,2,1\ninf,2,0\n", 2, ["row 4, column x1", "inf", "not a finite number"]),
    ("empty cell", HEADER + "1,,0\n", 2, ["row 2, column x2", "not a finite number"]),
    ("missing label", HEADER + "1,2,0\n1,2\n", 2, ["row 3, column label", "not a finite number"]),
    ("label text", HEADER + "1,2,cat\n", 2, ["row 2, column label", "'cat'", "not a finite number"]),
    ("label too big", HEADER + "1,2,0\n1,2,2\n", 2, ["row 3, column label", "not a class label in 0..1"]),
    ("label 3 of 3", HEADER + "1,2,3\n", 3, ["row 2, column label", "3", "not a class label in 0..2"]),
    ("negative label", HEADER + "1,2,-1\n", 2, ["row 2, column label", "-1", "not a class label in 0..1"]),
    ("fractional label", HEADER + "1,2,0\n1,2,0.5\n", 2, ["row 3, column label", "0.5", "not a class label"]),
    ("ragged row", HEADER + "1,2,0\n1,2,0,9\n", 2, ["not a readable CSV", "Expected 3 fields"]),
    ("binary", b"\xff\xfe\x00\x81garbage\n", 2, ["not a readable CSV"]),
    # What Python's float() reads but a CSV does not mean: refused, naming the row and column
    ("underscore", HEADER + "1_0,2,0\n", 2, ["row 2, column x1: '1_0' is not a finite number"]),
    ("hex", HEADER + "1,0x10,0\n", 2, ["row 2, column x2: '0x10' is not a finite number"]),
    ("arabic digit", HEADER + "\u0661,2,0\n", 2, ["row 2, column x1: '\u0661' is not a finite number"]),
    ("label underscore", HEADER + "1,2,0\n1,2,1_0\n", 2, ["row 3, column label: '1_0' is not a finite"]),
    ("+nan", HEADER + "+nan,2,0\n", 2, ["row 2, column x1: +nan is not a finite number"]),
    ("overflow", HEADER + "1,1e999,0\n", 2, ["row 2, column x2: 1e999 is not a finite number"]),
    ("byte-order mark", "\ufeff" + HEADER + "1,2,0\n", 2, ["starts with a byte-order mark (U+FEFF)"]),
]


@pytest.mark.parametrize(
    ("contents", "classes", "fragments"), [row[1:] for row in BAD_FILES], ids=[row[0] for row in BAD_FILES]
)
def test_malformed_points_file_is_one_line_data_error(tmp_path, contents, classes, fragments):
    path = tmp_path / "data" / "train.csv"
    path.parent.mkdir()
    if isinstance(contents, bytes):
        path.write_bytes(contents)
    else:
        path.write_text(contents)
    with pytest.raises(DataError) as caught:
        read_points(path, classes)
    assert isinstance(caught.value, UserError)
    assert_one_line(str(caught.value), *fragments, start=f"{path}: ")


def test_missing_points_file(tmp_path):
    path = tmp_path / "data" / "nope.csv"
    with pytest.raises(DataError) as caught:
        read_points(path, 2)
    assert str(caught.value) == f"{path}: file not found (run `dvc repro` to rebuild it)"


def test_valid_variants_are_read(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text(HEADER + "1,2,0\n-3.5e-3,4,1.0\n5,6,2\n")  # ints for floats, 1.0 as a label
    points, labels = read_points(path, 3)
    np.testing.assert_array_equal(points, [[1, 2], [-3.5e-3, 4], [5, 6]])
    assert labels.tolist() == [0, 1, 2] and labels.dtype == np.int64


def test_numbers_every_csv_reader_agrees_on_are_read(tmp_path):
    """Spaces around a cell, a sign, a bare point, leading zeros: pandas reads them as these numbers."""
    import pandas as pd  # noqa: PLC0415

    path = tmp_path / "ok.csv"
    path.write_text(HEADER + " 1, +2 ,0\n.5,5.,1\n007,1E+2,0\n")
    points, labels = read_points(path, 2)
    np.testing.assert_array_equal(points, [[1, 2], [0.5, 5], [7, 100]])
    np.testing.assert_array_equal(points, pd.read_csv(path)[["x1", "x2"]].to_numpy())


@pytest.mark.parametrize("cell", ["1_0", "0x10", "\u0661", "1e999", "+nan"])
def test_the_fast_and_the_slow_path_agree(tmp_path, cell):
    """A bad cell among many good rows (the NumPy path first) and alone (the row-by-row path) is the
    same error; so is pandas' reading of it: not a finite number."""
    import pandas as pd  # noqa: PLC0415

    good = "".join(f"{i / 7!r},{-i / 3!r},{i % 2}\n" for i in range(2000))
    path = tmp_path / "p.csv"
    path.write_text(HEADER + good + f"1,{cell},0\n")
    with pytest.raises(DataError, match=r"row 2002, column x2: .* is not a finite number"):
        read_points(path, 2)
    assert not np.isfinite(pd.to_numeric(pd.read_csv(path)["x2"], errors="coerce").iloc[-1])


def test_a_field_too_many_in_every_row_is_an_error(tmp_path):
    path = tmp_path / "shifted.csv"
    path.write_text(HEADER + "1,2,3,0\n4,5,6,1\n")
    with pytest.raises(DataError, match="shifted.csv"):
        read_points(path, 2)


@pytest.mark.parametrize("row", ["1,2,true", "False,2,0"])
def test_booleans_are_not_numbers(tmp_path, row):
    path = tmp_path / "bools.csv"
    path.write_text(HEADER + row + "\n")
    with pytest.raises(DataError, match="not a finite number"):
        read_points(path, 2)


@pytest.mark.parametrize(
    ("row", "shown"),
    [("nan,2,0", ": nan is"), ("1,inf,0", ": inf is"), ("1,2,1.5", ": 1.5 is"), ("1,2,7", ": 7")],
)
def test_message_quotes_the_cell_as_written(tmp_path, row, shown):
    path = tmp_path / "cell.csv"
    path.write_text(HEADER + row + "\n")
    with pytest.raises(DataError) as caught:
        read_points(path, 2)
    assert shown in str(caught.value) and "np." not in str(caught.value)


def test_paths():
    assert str(files.data_path("moons", "train")) == os.path.join("data", "moons", "train.csv")
    assert str(files.model_path("moons")) == os.path.join("models", "moons.safetensors")
    assert str(files.metrics_path("moons")) == os.path.join("metrics", "moons.json")
    assert str(files.plots_dir("moons")) == os.path.join("plots", "moons")


def test_pandas_reads_what_we_write_and_we_read_what_pandas_writes(tmp_path):
    """pandas as the oracle, both ways, bit for bit."""
    import pandas as pd  # noqa: PLC0415

    rng = np.random.default_rng(7)
    points, labels = (
        rng.normal(size=(500, 2)) * 10.0 ** rng.integers(-300, 300, (500, 1)),
        rng.integers(0, 3, 500),
    )
    ours = tmp_path / "ours.csv"
    write_points(ours, points, labels)
    table = pd.read_csv(ours)
    np.testing.assert_array_equal(table[["x1", "x2"]].to_numpy().view(np.uint64), points.view(np.uint64))
    np.testing.assert_array_equal(table["label"].to_numpy(), labels)

    theirs = tmp_path / "theirs.csv"
    pd.DataFrame({"x1": points[:, 0], "x2": points[:, 1], "label": labels}).to_csv(theirs, index=False)
    got_points, got_labels = read_points(theirs, 3)
    np.testing.assert_array_equal(got_points.view(np.uint64), points.view(np.uint64))
    np.testing.assert_array_equal(got_labels, labels)
