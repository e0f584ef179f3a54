"""Reading and writing the pipeline's files: validated point CSVs, atomic writes.

Every output is written to a temporary file in the same folder and renamed into place, so a stage
killed at any moment leaves either the old file or the new one, never half of one.
"""

import codecs
import contextlib
import io
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from stages.errors import UserError

POINT_COLUMNS = ["x1", "x2", "label"]
NOT_A_NUMBER = re.compile(r"[A-DF-Za-df-z]")
# A number as a CSV means one (and as pandas and NumPy read it): ASCII digits, an optional sign, point
# and exponent, spaces around. Python's float() reads more that no CSV reader does: 1_0, nan, Arabic
# digits.
NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)


class DataError(UserError):
    pass


@contextlib.contextmanager
def atomic_file(path):
    """A binary file for the new contents of `path`: a temporary file in the same folder, renamed
    into place once the block has written it all, removed if the block raises. A writer killed at
    any moment leaves the old file whole (and a stale temporary file, which the next write clears)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(path, data: bytes) -> None:
    with atomic_file(path) as file:
        file.write(data)


def write_json(path, obj) -> None:
    """`obj` as strict JSON: a NaN or infinite number, which JSON has no word for (a browser's
    JSON.parse refuses Python's NaN), is refused naming its key, and nothing is written."""
    try:
        text = json.dumps(obj, indent=2, allow_nan=False)
    except ValueError:
        found = _first_non_finite(obj)
        if found is None:
            raise
        key, value = found
        raise UserError(
            f"{path}: {key} = {value} is not a finite number (JSON has none); nothing written"
        ) from None
    write_bytes(path, (text + "\n").encode())


def _first_non_finite(obj, key=""):
    """(dotted key, value) of the first NaN or infinite float in nested dicts and lists, or None."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list | tuple) else ()
    for name, value in items:
        inner = f"{key}[{name}]" if isinstance(name, int) else f"{key}.{name}" if key else str(name)
        if isinstance(value, float) and not math.isfinite(value):
            return inner, value
        found = _first_non_finite(value, inner)
        if found:
            return found
    return None


ROWS_PER_WRITE = 65536  # formatted and written a block at a time: memory stays that of the arrays


def write_table(path, columns: dict) -> None:
    """A CSV with a header row: floats in their shortest exact form (repr), integers as integers.
    A NaN or infinite cell is refused naming its row (the file's line) and column, and nothing is
    written: a plot of it is empty or wrong, and no CSV reader agrees on how to read it."""
    arrays = [np.asarray(values) for values in columns.values()]
    if len({len(array) for array in arrays}) > 1:
        raise ValueError(f"{path}: columns of different lengths {[len(array) for array in arrays]}")
    rows = len(arrays[0]) if arrays else 0
    for column, array in zip(columns, arrays, strict=True):
        if array.dtype.kind in "fc" and not np.isfinite(array).all():  # one pass: fast for a good table
            row = int(np.flatnonzero(~np.isfinite(array))[0])
            cell = array[row].item()
            raise UserError(
                f"{path}: row {row + 2}, column {column}: {cell} is not a finite number; nothing written"
            )
    with atomic_file(path) as file:
        file.write((",".join(columns) + "\n").encode())
        for start in range(0, rows, ROWS_PER_WRITE):
            block = zip(*(array[start : start + ROWS_PER_WRITE].tolist() for array in arrays), strict=True)
            file.write("".join(",".join(map(repr, row)) + "\n" for row in block).encode())


def write_points(path, points: np.ndarray, labels: np.ndarray) -> None:
    write_table(path, {"x1": points[:, 0], "x2": points[:, 1], "label": labels})


def read_points(path, classes: int):
    """Points (n, 2) float64 and labels (n,) int64 from a CSV, checked column by column."""
    try:
        raw = Path(path).read_bytes()
        header, _, body = raw.decode("utf-8").partition("\n")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (run `dvc repro` to rebuild it)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV ({type(error).__name__})") from None
    if not raw:
        raise DataError(f"{path}: not a readable CSV (the file is empty)")
    if raw.startswith(codecs.BOM_UTF8):  # Excel's "CSV UTF-8"; invisible in a message about columns
        raise DataError(f"{path}: starts with a byte-order mark (U+FEFF); save it as UTF-8 without one")
    columns = header.rstrip("\r").split(",")
    if columns != POINT_COLUMNS:
        raise DataError(f"{path}: columns are {','.join(columns)}; expected {','.join(POINT_COLUMNS)}")
    if not body.strip():
        raise DataError(f"{path}: has no rows")
    table = None
    if not NOT_A_NUMBER.search(body):  # letters other than an exponent's e: text, nan, inf, true
        # A cell that is not a number, or a row of the wrong length, is found below.
        with contextlib.suppress(ValueError):
            table = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    if table is None or table.shape[1] != len(POINT_COLUMNS):
        _find_bad_cell(path, body)
    bad = np.flatnonzero(~np.isfinite(table).all(axis=1))
    if bad.size:
        _find_bad_cell(path, body)
    labels = table[:, 2]
    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0) | (labels >= classes))
    if bad.size:
        raise DataError(
            f"{path}: row {_line_of(body, bad[0])}, column label: {_quote(labels[bad[0]])} "
            f"is not a class label in 0..{classes - 1}"
        )
    return np.ascontiguousarray(table[:, :2]), labels.astype(np.int64)


def _find_bad_cell(path, body):
    """The slow path, taken only for a bad file: the first cell that is not a finite number."""
    for line_number, line in enumerate(body.split("\n"), start=2):
        if not line.strip():
            continue
        cells = line.rstrip("\r").split(",")
        if len(cells) > len(POINT_COLUMNS):
            raise DataError(
                f"{path}: not a readable CSV (Expected {len(POINT_COLUMNS)} fields in line {line_number}, "
                f"saw {len(cells)})"
            )
        cells += [""] * (len(POINT_COLUMNS) - len(cells))
        for column, cell in zip(POINT_COLUMNS, cells, strict=True):
            number = float(cell) if NUMBER.fullmatch(cell) else math.nan
            if not math.isfinite(number):
                raise DataError(
                    f"{path}: row {line_number}, column {column}: {_quote(cell)} is not a finite number"
                )
    raise DataError(f"{path}: not a readable CSV")


def _line_of(body, row):
    """The file's line number of data row `row` (0-based), blank lines counted."""
    seen = -1
    for line_number, line in enumerate(body.split("\n"), start=2):
        seen += bool(line.strip())
        if seen == row:
            return line_number
    return row + 2


def _quote(value):
    """A cell as the file shows it: text in quotes, numbers bare."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and not NUMBER.fullmatch(value):
        # nan, inf: numbers as written, shown bare; 1_0, text: quoted
        return value if value.strip().lstrip("+-").lower() in ("nan", "inf", "infinity") else repr(value)
    return str(value)


def data_path(name: str, split: str) -> Path:
    return Path("data") / name / f"{split}.csv"


def model_path(name: str) -> Path:
    return Path("models") / f"{name}.safetensors"


def metrics_path(name: str) -> Path:
    return Path("metrics") / f"{name}.json"


def plots_dir(name: str) -> Path:
    """The dataset's own plots: confusion, ROC and boundary images (stage plots in dvc.yaml)."""
    return Path("plots") / name


def curve_path(curve: str, name: str) -> Path:
    """A learning curve (loss or accuracy) of one dataset. The curves of every dataset share a folder,
    which one top-level entry of dvc.yaml's `plots:` draws, a chart per file."""
    return Path("plots") / curve / f"{name}.csv"
