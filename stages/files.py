"""Reading and writing the pipeline's files: validated point CSVs, atomic writes.

Every output is written to a temporary file in the same folder and renamed into place, so a stage
killed at any moment leaves either the old file or the new one, never half of one.
"""

import io
import json
import os
import re
from pathlib import Path

import numpy as np

from stages.errors import UserError

POINT_COLUMNS = ["x1", "x2", "label"]
NOT_A_NUMBER = re.compile(rb"[A-DF-Za-df-z]")


class DataError(UserError):
    pass


def write_bytes(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def write_table(path, columns: dict) -> None:
    """A CSV with a header row; floats written in full (shortest round-trip) precision."""
    import pandas as pd  # noqa: PLC0415

    write_bytes(path, pd.DataFrame(columns).to_csv(index=False, lineterminator="\n").encode())


def write_points(path, points: np.ndarray, labels: np.ndarray) -> None:
    write_table(path, {"x1": points[:, 0], "x2": points[:, 1], "label": labels})


def read_points(path, classes: int):
    """Points (n, 2) float64 and labels (n,) int64 from a CSV, checked column by column."""
    import pandas as pd  # noqa: PLC0415

    try:
        with open(path, "rb") as file:
            raw = file.read()
        # The fast path reads every cell as a float64. Letters other than an exponent's e (a word,
        # nan, inf, or true, which pandas would read as 1) send it to the slow path, which reads
        # text and can name the cell.
        try:
            if NOT_A_NUMBER.search(raw.partition(b"\n")[2]):
                raise ValueError("text in the cells")
            table = pd.read_csv(io.BytesIO(raw), dtype=np.float64)
        except ValueError as error:
            if isinstance(error, pd.errors.EmptyDataError | pd.errors.ParserError):
                raise
            table = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (run `dvc repro` to rebuild it)") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        raise DataError(f"{path}: not a readable CSV ({str(error).splitlines()[0]})") from None
    if list(table.columns) != POINT_COLUMNS:
        raise DataError(
            f"{path}: columns are {','.join(map(str, table.columns))}; expected {','.join(POINT_COLUMNS)}"
        )
    if not isinstance(table.index, pd.RangeIndex):  # pandas' reading of rows longer than the header
        raise DataError(f"{path}: rows have more fields than the header x1,x2,label")
    if table.empty:
        raise DataError(f"{path}: has no rows")
    values = {}
    for column in POINT_COLUMNS:
        numbers = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(numbers))
        if bad.size:
            row = bad[0]
            raise DataError(
                f"{path}: row {row + 2}, column {column}: {_quote(table[column].iloc[row])} "
                "is not a finite number"
            )
        values[column] = numbers
    labels = values["label"]
    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0) | (labels >= classes))
    if bad.size:
        row = bad[0]
        raise DataError(
            f"{path}: row {row + 2}, column label: {_quote(table['label'].iloc[row])} "
            f"is not a class label in 0..{classes - 1}"
        )
    return np.column_stack([values["x1"], values["x2"]]), labels.astype(np.int64)


def _quote(value):
    """A cell as the file shows it: text in quotes, numbers bare."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        try:
            float(value)  # nan, inf: numbers as written, shown bare
        except ValueError:
            return repr(value)
    return str(value)


def data_path(name: str, split: str) -> Path:
    return Path("data") / name / f"{split}.csv"


def model_path(name: str) -> Path:
    return Path("models") / f"{name}.pt"


def plots_dir(name: str) -> Path:
    return Path("plots") / name
