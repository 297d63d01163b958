"""Feature tables: ``.npy``, ``.csv``/``.tsv`` (header sniffed) and ``.parquet`` (optional extra).

Every reader returns float32 rows ``(n, d)`` checked for NaN, infinity and numbers beyond
float32's range, the labels picked by ``label_column`` (a name or an index) and the class names
when the labels were not already class numbers 0, 1, ...

Rows read for a trained model (:class:`ModelColumns`) take the model's columns by name where both
the file and the model's training table name their columns, else by position.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import DataError, OptionError
from .idx import read_file_bytes

__all__ = ["Table", "ModelColumns", "TABLE_SUFFIXES", "read_table", "checked_rows", "labels_from_values"]

TABLE_SUFFIXES = (".npy", ".csv", ".tsv", ".parquet")
FLOAT32_MAX = float(np.finfo(np.float32).max)  # about 3.4e38: larger numbers become infinity as float32


@dataclass(frozen=True)
class Table:
    rows: np.ndarray            # float32 (n, d)
    labels: np.ndarray | None   # int64 (n,)
    class_names: list[str] | None
    columns: list[str] | None
    sha256: str
    format: str


@dataclass(frozen=True)
class ModelColumns:
    """The feature columns a trained model reads: how many, and their names where the table it was trained
    on named them (None: a ``.npy`` or a file without a header, whose columns are matched by position)."""
    count: int
    names: tuple[str, ...] | None = None

    @classmethod
    def recorded(cls, count: int, names: Sequence[str] | None) -> ModelColumns:
        """The columns a checkpoint recorded. A file without a header records its columns' positions
        (0, 1, ...), which name nothing: such a model matches columns by position."""
        if not names or len(names) != count or all(_is_number(str(n)) for n in names):
            return cls(count)
        return cls(count, tuple(str(n) for n in names))


def read_table(path: Path, label_column: str | int | None = None, *, model: ModelColumns | None = None,
               optional_label: bool = False) -> Table:
    """Read a ``.npy``, ``.csv``, ``.tsv`` or ``.parquet`` file as a :class:`Table`.

    ``model``: the columns a trained model reads. A file whose header names them (in any order, beside
    other columns, which are dropped) gives them in the model's order; a model column it lacks is refused.
    A file without a header, or a model that recorded no names, is matched by position, and a file of
    another number of columns is refused. ``optional_label``: new rows may come without ``label_column``.
    """
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _read_npy(path, label_column, model, optional_label)
    if suffix == ".parquet":
        return _read_parquet(path, label_column, model, optional_label)
    return _read_text_table(path, label_column, model, optional_label,
                            delimiter="\t" if suffix == ".tsv" else None)


# --- which columns are the features, which the labels ---------------------------------------

def _pick_columns(columns: list[str], named: bool, label_column: str | int | None, model: ModelColumns | None,
                  optional_label: bool, path: Path) -> tuple[list[int], int | None]:
    """The file's feature columns, in the order the model reads them, and its label column (None: none).
    ``named``: the file's header names its columns (else they are its positions)."""
    if named:
        _refuse_repeated_names(columns, path)
    if model is not None and model.names is not None and named:
        features = _model_columns_by_name(columns, model.names, path)
        return features, _label_beside(label_column, columns, features, optional_label, path)
    return _columns_by_position(columns, named, label_column, model, optional_label, path)


def _model_columns_by_name(columns: list[str], names: tuple[str, ...], path: Path) -> list[int]:
    position = {name: i for i, name in reversed(list(enumerate(columns)))}  # each name's first column
    missing = [name for name in names if name not in position]
    if missing:
        raise DataError(f"lacks the model's column{'s' if len(missing) > 1 else ''} {_listed(missing, 5)}; "
                        f"its columns are {_listed(columns, 8)}", path=path,
                        hint="name the columns as in the table the model was trained on; their order does not matter")
    return [position[name] for name in names]


def _refuse_repeated_names(columns: list[str], path: Path) -> None:
    """A header that names a column twice (an empty name aside: empty cells are refused as such) is refused:
    a column taken by name (--label-column, a model's columns) would be one of the copies, unsaid."""
    counts = Counter(columns)  # one pass: a header may have thousands of columns
    repeated = next((name for name in columns if name and counts[name] > 1), None)
    if repeated is not None:
        raise DataError(f"names the column {repeated!r} {counts[repeated]} times", path=path,
                        hint="rename the copies so that every column has its own name, or drop them")


def _label_beside(label_column: str | int | None, columns: list[str], features: list[int], optional_label: bool,
                  path: Path) -> int | None:
    """The label column of a file whose features were picked by name; an optional one the file lacks (or
    one that names a feature column) is none."""
    if label_column is None:
        return None
    if not optional_label:
        index = _column_index(label_column, columns, path, named=True)
        if index in features:  # a label given by position, where this file has one of the model's columns
            raise DataError(f"column {index + 1} ({columns[index]!r}), the label column by its position, is one of "
                            "the model's feature columns in this file", path=path,
                            hint="give the label column by name (--label-column NAME), or pass the columns in "
                                 "the training table's order")
        return index
    try:
        index = _column_index(label_column, columns, path, named=True)
    except OptionError:
        return None
    return None if index in features else index


def _columns_by_position(columns: list[str], named: bool, label_column: str | int | None,
                         model: ModelColumns | None, optional_label: bool, path: Path) -> tuple[list[int], int | None]:
    width = len(columns)
    if model is not None and optional_label and width == model.count:
        label_column = None  # new rows without their labels
    if model is not None and width - (label_column is not None) != model.count:
        label = "" if label_column is None else f" and a label column {label_column!r}"
        label += " that new rows may leave out" if label and optional_label else ""
        raise DataError(f"has {width} columns, but the model was trained on {model.count}{label}", path=path,
                        hint="pass the columns the model was trained on, in the same order")
    label_index = None if label_column is None else _column_index(label_column, columns, path, named)
    return [c for c in range(width) if c != label_index], label_index


def _listed(names: Sequence[str], limit: int) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


# --- .npy ------------------------------------------------------------------------

def _read_npy(path: Path, label_column: str | int | None, model: ModelColumns | None, optional_label: bool
              ) -> Table:
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
        images = array.dtype == np.uint8 and (array.ndim == 3 or (array.ndim == 4 and array.shape[3] == 3))
        hint = ("8-bit images go in a .npz, which aelab reads as images: numpy.savez('images.npz', images=x) "
                "(with labels=y); for a table of their pixels, reshape to (n, d)" if images else
                "reshape it to (n, d), e.g. x.reshape(len(x), -1)")
        raise DataError(f"has shape {array.shape}, expected a table (n rows, d columns)", path=path, hint=hint)
    if array.size == 0:
        raise DataError(f"is empty (shape {array.shape})", path=path, hint="a table needs rows and columns")
    columns = [str(i) for i in range(array.shape[1])]
    features, index = _pick_columns(columns, False, label_column, model, optional_label, path)
    labels = class_names = None
    if index is not None:
        labels, class_names = labels_from_values(array[:, index].tolist(), path,
                                                 lambda i: f"row {i + 1}, column {index + 1}")
    rows = checked_rows(array[:, features], path)
    return Table(rows, labels, class_names, None, hashlib.sha256(data).hexdigest(), "npy")


def checked_rows(array: np.ndarray, path: Path | str, columns: list[str] | None = None) -> np.ndarray:
    """``array`` as float32 ``(n, d)``; a NaN, an infinity or a number beyond float32's range is named by
    row and column."""
    if array.shape[1] == 0:
        raise DataError("has no feature columns (only the label column)", path=path)
    _refuse_missing_values(array, path, columns)
    _refuse_numbers_beyond_float32(array, path, columns)
    return np.ascontiguousarray(array, dtype=np.float32)


def _refuse_missing_values(array: np.ndarray, path: Path | str, columns: list[str] | None) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"row {r + 1}, {_cell_column(c, columns)} is {array[r, c]} (NaN or infinity) "
                        f"in {int(bad.sum())} cell(s)", path=path,
                        hint="fill or drop the missing values in the file, then pass it again")


def _refuse_numbers_beyond_float32(array: np.ndarray, path: Path | str, columns: list[str] | None) -> None:
    if array.dtype.kind != "f" or np.can_cast(array.dtype, np.float32):
        return  # integers and float32 or narrower all fit
    bad = np.abs(array) > FLOAT32_MAX
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"row {r + 1}, {_cell_column(c, columns)}: {float(array[r, c]):.6g} is beyond float32's "
                        f"range (about 3.4e38), in {int(bad.sum())} cell(s)", path=path,
                        hint="rescale that column, e.g. divide it by a power of ten, then pass the file again")


def _cell_column(index: int, columns: list[str] | None) -> str:
    return f"column {index + 1}" + (f" ({columns[index]!r})" if columns else "")


def labels_from_values(values: list, path: Path | str, cell: Callable[[int], str]
                       ) -> tuple[np.ndarray, list[str] | None]:
    """Integer labels. Class numbers 0, 1, ..., k-1 (every one present) stay; any other values become
    class names, the distinct values in numeric order when all are numbers (-1, 5, 1000000), else in
    text order. So a whole-number target such as a price is not read as hundreds of mostly empty classes.
    An empty label (an empty cell, None or NaN) is refused, naming ``cell(i)``, where value ``i`` is."""
    _refuse_empty_labels(values, path, cell)
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


def _refuse_empty_labels(values: list, path: Path | str, cell: Callable[[int], str]) -> None:
    empty = next((i for i, v in enumerate(values) if _is_empty_label(v)), None)
    if empty is not None:
        count = sum(_is_empty_label(v) for v in values)
        more = f", as in {count - 1} more row(s)" if count > 1 else ""
        raise DataError(f"{cell(empty)}: the label is empty{more}", path=path,
                        hint="fill it or drop the row, then pass the file again")


def _is_empty_label(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, (float, np.floating)) and bool(np.isnan(value))


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

def _read_text_table(path: Path, label_column: str | int | None, model: ModelColumns | None,
                     optional_label: bool, delimiter: str | None) -> Table:
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
    _refuse_decimal_commas(lines[:20], delimiter, path)
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
    feature_columns, label_index = _pick_columns(columns, header is not None, label_column, model,
                                                 optional_label, path)
    labels = class_names = None
    if label_index is not None:
        where = _cell_column(label_index, columns if header else None)
        labels, class_names = labels_from_values([r[label_index].strip() for r in body], path,
                                                 lambda i: f"line {i + first_line}, {where}")
    array = _parse_numbers(body, feature_columns, columns, path, first_line)
    names = [columns[c] for c in feature_columns]
    return Table(checked_rows(array, path, names), labels, class_names, names,
                 hashlib.sha256(data).hexdigest(), "tsv" if delimiter == "\t" else "csv")


def _sniff_delimiter(lines: list[str]) -> str:
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t| ").delimiter
    except csv.Error:
        return ","


# a number written with a decimal comma, as in many European locales: 0,5 or -1.234,5 or 2,5e-3
_DECIMAL_COMMA = re.compile(r"[-+]?\d[\d.]*,\d+(?:[eE][-+]?\d+)?")
# the separators a file with decimal commas may use (a comma cannot be one), as messages name them
_DECIMAL_COMMA_SEPARATORS = {";": "';'", "\t": "tab", "|": "'|'"}


def _refuse_decimal_commas(lines: list[str], delimiter: str | None, path: Path) -> None:
    """Refuse a table of numbers with decimal commas (``0,5;1,25``), naming it as what it looks like, rather
    than reading its header as data or its numbers as text. It is not converted: a comma is ambiguous
    (``1,234`` is 1.234 or 1234), and numbers taken wrongly would train a model without a word."""
    for separator in [delimiter] if delimiter else _DECIMAL_COMMA_SEPARATORS:
        example = _decimal_comma_cell(lines, separator)
        if example is not None:
            name = _DECIMAL_COMMA_SEPARATORS.get(separator, repr(separator))
            raise DataError(f"looks like a {name}-separated table with decimal commas (such as {example!r}), "
                            "which aelab does not read", path=path,
                            hint=f"convert the decimal commas to points: save it from the spreadsheet with '.' as the "
                                 f"decimal separator, or run sed 's/,/./g' {path.name} > fixed{path.suffix} (where no "
                                 "text cell holds a comma)")


def _decimal_comma_cell(lines: list[str], separator: str) -> str | None:
    """A cell with a decimal comma, where every line splits into the same number (two or more) of fields on
    ``separator`` and some line has two such cells (one could be a text label, such as '1,2'); else None."""
    rows = list(csv.reader(lines, delimiter=separator))
    if len(rows[0]) < 2 or any(len(row) != len(rows[0]) for row in rows):
        return None
    for row in rows:
        cells = [cell.strip() for cell in row if _DECIMAL_COMMA.fullmatch(cell.strip())]
        if len(cells) >= 2:
            return cells[0]
    return None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# pandas writes a boolean column as True/False: such cells read as 1/0, as a bool .npy or Parquet column does
_TRUTH_VALUES = {"true": "1", "false": "0"}


def _is_value(cell: str) -> bool:
    """A cell a number column may hold: a number, or True/False."""
    return _is_number(cell) or cell.strip().lower() in _TRUTH_VALUES


def _looks_like_header(rows: list[list[str]]) -> bool:
    """A first row with a non-number where the second row has a number."""
    if len(rows) < 2:
        return not all(_is_value(c) for c in rows[0])
    return any(not _is_value(a) and _is_value(b) for a, b in zip(rows[0], rows[1]))


def _parse_numbers(body: list[list[str]], feature_columns: list[int], columns: list[str], path: Path,
                   first_line: int) -> np.ndarray:
    cells = [[row[c] for c in feature_columns] for row in body]
    try:
        return np.asarray(cells, dtype=np.float64)
    except ValueError:
        pass
    cells = [[_TRUTH_VALUES.get(cell.strip().lower(), cell) for cell in row] for row in cells]
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

def _read_parquet_unthreaded(data: bytes):
    """The file's table, read without starting any of pyarrow's threads. pq.read_table starts its CPU and
    I/O thread pools (even with use_threads=False), and a process that has loaded torch as well then aborts
    at exit about one time in three ('terminate called without an active exception', exit status 134)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)


def _read_parquet(path: Path, label_column: str | int | None, model: ModelColumns | None, optional_label: bool
                  ) -> Table:
    try:
        import pyarrow.parquet  # noqa: F401  (here only to name the extra when it is missing)
    except ImportError as e:
        raise DataError("reading .parquet needs pyarrow, which is not installed", path=path,
                        hint="pip install 'aelab[parquet]'") from e
    data = read_file_bytes(path)
    try:
        table = _read_parquet_unthreaded(data)
    except Exception as e:  # pyarrow raises its own error types
        raise DataError(f"not a readable Parquet file ({e})", path=path, hint="write it again") from e
    columns = [str(c) for c in table.column_names]
    feature_columns, label_index = _pick_columns(columns, True, label_column, model, optional_label, path)
    labels = class_names = None
    if label_index is not None:
        where = _cell_column(label_index, columns)
        labels, class_names = labels_from_values(table.column(label_index).to_pylist(), path,
                                                 lambda i: f"row {i + 1}, {where}")
    feature_arrays = []
    for c in feature_columns:
        column = table.column(c).to_numpy(zero_copy_only=False)
        if column.dtype.kind not in "biuf":
            raise DataError(f"column {columns[c]!r} holds {table.schema.field(c).type}, not numbers", path=path,
                            hint="pass it as --label-column, or drop it")
        feature_arrays.append(column)
    names = [columns[c] for c in feature_columns]
    array = np.stack(feature_arrays, axis=1) if feature_arrays else np.zeros((table.num_rows, 0))
    if len(array) == 0:
        raise DataError("has no rows", path=path, hint="a table needs at least one row of numbers")
    return Table(checked_rows(array, path, names), labels, class_names, names,
                 hashlib.sha256(data).hexdigest(), "parquet")
