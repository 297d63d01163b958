"""Feature tables: ``.npy``, ``.csv``/``.tsv`` (header sniffed) and ``.parquet`` (optional extra).

Every reader returns float32 rows ``(n, d)`` checked for NaN and infinity, the
labels picked by ``label_column`` (a name or an index) and the class names
when the labels were not already class numbers 0, 1, ...
"""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, OptionError
from .idx import read_file_bytes

__all__ = ["Table", "TABLE_SUFFIXES", "read_table", "checked_rows", "labels_from_values"]

TABLE_SUFFIXES = (".npy", ".csv", ".tsv", ".parquet")


@dataclass(frozen=True)
class Table:
    rows: np.ndarray            # float32 (n, d)
    labels: np.ndarray | None   # int64 (n,)
    class_names: list[str] | None
    columns: list[str] | None
    sha256: str
    format: str


def read_table(path: Path, label_column: str | int | None = None, *, features: int | None = None) -> Table:
    """Read a ``.npy``, ``.csv``, ``.tsv`` or ``.parquet`` file as a :class:`Table`.

    ``features``: how many feature columns a model expects; a table of exactly that many columns has
    no label column (new rows to score), and ``label_column`` is then not looked for.
    """
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _read_npy(path, label_column, features)
    if suffix == ".parquet":
        return _read_parquet(path, label_column, features)
    return _read_text_table(path, label_column, features, delimiter="\t" if suffix == ".tsv" else None)


def _label_column_of(label_column: str | int | None, width: int, features: int | None) -> str | int | None:
    return None if features is not None and width == features else label_column


# --- .npy ------------------------------------------------------------------------

def _read_npy(path: Path, label_column: str | int | None, features: int | None) -> Table:
    data = read_file_bytes(path)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataError("holds Python objects (object dtype), not numbers", path=path,
                            hint="save a numeric array, e.g. x.astype(numpy.float32)") from e
        raise DataError(f"not a readable .npy ({e})", path=path,
                        hint="the file is truncated or corrupt; save it again with numpy.save") from e
    except (OSError, EOFError) as e:
        raise DataError(f"not a readable .npy ({e})", path=path, hint="save it again with numpy.save") from e
    if array.dtype.kind not in "biuf":
        raise DataError(f"is {array.dtype}, expected real numbers", path=path,
                        hint="save a numeric (n, d) array")
    if array.ndim != 2:
        raise DataError(f"has shape {array.shape}, expected a table (n rows, d columns)", path=path,
                        hint="reshape it to (n, d), e.g. x.reshape(len(x), -1)")
    if array.size == 0:
        raise DataError(f"is empty (shape {array.shape})", path=path, hint="a table needs rows and columns")
    columns = [str(i) for i in range(array.shape[1])]
    labels = class_names = None
    label_column = _label_column_of(label_column, len(columns), features)
    if label_column is not None:
        index = _column_index(label_column, columns, path, named=False)
        labels, class_names = labels_from_values(array[:, index].tolist(), path, f"column {index}")
        array = np.delete(array, index, axis=1)
    rows = checked_rows(array, path)
    return Table(rows, labels, class_names, None, hashlib.sha256(data).hexdigest(), "npy")


def checked_rows(array: np.ndarray, path: Path | str, columns: list[str] | None = None) -> np.ndarray:
    """``array`` as float32 ``(n, d)``; a NaN or infinity is named by row and column."""
    if array.shape[1] == 0:
        raise DataError("has no feature columns (only the label column)", path=path)
    rows = np.ascontiguousarray(array, dtype=np.float32)
    bad = ~np.isfinite(rows)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        name = f" ({columns[c]!r})" if columns else ""
        raise DataError(f"row {r + 1}, column {c + 1}{name} is {rows[r, c]} (NaN or infinity) "
                        f"in {int(bad.sum())} cell(s)", path=path,
                        hint="fill or drop the missing values in the file, then pass it again")
    return rows


def labels_from_values(values: list, path: Path | str, where: str) -> tuple[np.ndarray, list[str] | None]:
    """Integer labels. Class numbers 0, 1, ..., k-1 (every one present) stay; any other values become
    class names, the distinct values in numeric order when all are numbers (-1, 5, 1000000), else in
    text order. So a whole-number target such as a price is not read as hundreds of mostly empty classes."""
    numbers = [_number(v) for v in values]
    if values and all(n is not None for n in numbers):
        if all(n == int(n) for n in numbers) and set(numbers) == set(range(int(max(numbers)) + 1)):
            return np.asarray([int(n) for n in numbers], dtype=np.int64), None
        distinct = sorted(set(numbers))
        index = {n: i for i, n in enumerate(distinct)}
        return np.asarray([index[n] for n in numbers], dtype=np.int64), [_number_text(n) for n in distinct]
    names = sorted({str(v) for v in values})
    index = {name: i for i, name in enumerate(names)}
    return np.asarray([index[str(v)] for v in values], dtype=np.int64), names


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _number_text(number: float) -> str:
    return str(int(number)) if number == int(number) else repr(number)


def _column_index(label_column: str | int, columns: list[str], path: Path | str, named: bool) -> int:
    if isinstance(label_column, (int, np.integer)) and not isinstance(label_column, bool):
        index = int(label_column)
        if -len(columns) <= index < len(columns):
            return index % len(columns)
        raise OptionError(f"label column {index} is out of range: the table has {len(columns)} columns",
                          hint="columns count from 0")
    text = str(label_column)
    if named and text in columns:
        return columns.index(text)
    if text.lstrip("-").isdigit():
        return _column_index(int(text), columns, path, named)
    shown = ", ".join(columns[:12]) + (" ..." if len(columns) > 12 else "")
    raise OptionError(f"{path}: no column named {text!r}" + (f"; the columns are: {shown}" if named else
                      " (the file has no column names)"), hint="pass a column name or a 0-based index")


# --- CSV / TSV -----------------------------------------------------------------------

def _read_text_table(path: Path, label_column: str | int | None, features: int | None,
                     delimiter: str | None) -> Table:
    data = read_file_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"is not UTF-8 text (byte {e.start})", path=path,
                        hint="a table file must be CSV/TSV text; save it as UTF-8") from e
    if "\0" in text:
        raise DataError("holds binary data, not CSV/TSV text", path=path,
                        hint="is the file name's extension right?")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError("is empty", path=path, hint="a table needs at least one row of numbers")
    delimiter = delimiter or _sniff_delimiter(lines[:20])
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = rows[0] if _looks_like_header(rows) else None
    body = rows[1:] if header else rows
    if not body:
        raise DataError("has only a header row, no data", path=path, hint="add rows of numbers")
    width = len(header or body[0])
    first_line = 2 if header else 1
    for i, row in enumerate(body):
        if len(row) != width:
            raise DataError(f"line {i + first_line} has {len(row)} fields, expected {width}", path=path,
                            hint="every row needs the same number of columns (a ragged row)")
    columns = [c.strip() for c in header] if header else [str(i) for i in range(width)]
    labels = class_names = None
    label_index = None
    label_column = _label_column_of(label_column, width, features)
    if label_column is not None:
        label_index = _column_index(label_column, columns, path, named=header is not None)
        labels, class_names = labels_from_values([r[label_index].strip() for r in body], path, "labels")
    feature_columns = [c for c in range(width) if c != label_index]
    array = _parse_numbers(body, feature_columns, columns, path, first_line)
    names = [columns[c] for c in feature_columns]
    return Table(checked_rows(array, path, names), labels, class_names, names,
                 hashlib.sha256(data).hexdigest(), "tsv" if delimiter == "\t" else "csv")


def _sniff_delimiter(lines: list[str]) -> str:
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t| ").delimiter
    except csv.Error:
        return ","


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _looks_like_header(rows: list[list[str]]) -> bool:
    """A first row with a non-number where the second row has a number."""
    if len(rows) < 2:
        return not all(_is_number(c) for c in rows[0])
    return any(not _is_number(a) and _is_number(b) for a, b in zip(rows[0], rows[1]))


def _parse_numbers(body: list[list[str]], feature_columns: list[int], columns: list[str], path: Path,
                   first_line: int) -> np.ndarray:
    cells = [[row[c] for c in feature_columns] for row in body]
    try:
        return np.asarray(cells, dtype=np.float64)
    except ValueError:
        pass
    for r, row in enumerate(cells):
        for j, cell in enumerate(row):
            if not _is_number(cell):
                c = feature_columns[j]
                raise DataError(f"line {r + first_line}, column {c + 1} ({columns[c]!r}): {cell.strip()!r} "
                                "is not a number", path=path,
                                hint="every column but the label column must hold numbers; "
                                     "pass --label-column for a text label")
    raise DataError("cannot read the numbers", path=path)  # pragma: no cover


# --- Parquet (optional extra) -------------------------------------------------------------

def _read_parquet(path: Path, label_column: str | int | None, features: int | None) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise DataError("reading .parquet needs pyarrow, which is not installed", path=path,
                        hint="pip install 'aelab[parquet]'") from e
    data = read_file_bytes(path)
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as e:  # pyarrow raises its own error types
        raise DataError(f"not a readable Parquet file ({e})", path=path, hint="write it again") from e
    columns = [str(c) for c in table.column_names]
    labels = class_names = None
    label_index = None
    label_column = _label_column_of(label_column, len(columns), features)
    if label_column is not None:
        label_index = _column_index(label_column, columns, path, named=True)
        labels, class_names = labels_from_values(table.column(label_index).to_pylist(), path, "labels")
    features = []
    for c, name in enumerate(columns):
        if c == label_index:
            continue
        column = table.column(c).to_numpy(zero_copy_only=False)
        if column.dtype.kind not in "biuf":
            raise DataError(f"column {name!r} holds {table.schema.field(c).type}, not numbers", path=path,
                            hint="pass it as --label-column, or drop it")
        features.append(column)
    names = [n for c, n in enumerate(columns) if c != label_index]
    array = np.stack(features, axis=1) if features else np.zeros((table.num_rows, 0))
    if len(array) == 0:
        raise DataError("has no rows", path=path)
    return Table(checked_rows(array, path, names), labels, class_names, names,
                 hashlib.sha256(data).hexdigest(), "parquet")
