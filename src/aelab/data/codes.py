"""Codes files: the arrays ``aelab encode`` writes and ``aelab decode`` reads (.npy or .csv)."""
from __future__ import annotations

import csv
import io
import json
import numbers
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError, OptionError
from ..fileio import atomic_write, remove_file, write_text


def write_codes(path: str | Path, codes: np.ndarray, labels: np.ndarray | None = None,
                columns: list[str] | None = None, class_names: list[str] | None = None,
                names: list[str] | None = None) -> Path:
    """Write codes (or any rows) to FILE.npy (labels to FILE.labels.npy, the ``class_names`` that name
    their numbers to FILE.classes.json, and each sample's file, ``names``, to FILE.files.json) or FILE.csv
    (the file, the label, by its class name when ``class_names`` are given, then the values, under a
    header of ``columns``, default c0, c1, ...)."""
    out = Path(path)
    if names is not None and len(names) != len(codes):
        raise OptionError(f"names must be one file name per row ({len(codes)}), got {len(names)}")
    if labels is not None and np.shape(labels) != (len(codes),):
        raise OptionError(f"labels must have shape ({len(codes)},), one per row, got {np.shape(labels)}",
                          hint="pass the labels of the samples encoded, or none")
    check_class_names(labels, class_names)
    if out.suffix == ".csv":
        write_text(out, _codes_csv(codes, labels, columns, class_names, names))
    elif out.suffix == ".npy":
        labels_file, classes_file, files_file = (out.with_suffix(s) for s in (".labels.npy", ".classes.json",
                                                                              ".files.json"))
        # an earlier run's companions would pair its labels or names with these codes: gone before they are
        for stale, kept in ((labels_file, labels is not None), (classes_file, labels is not None and class_names),
                            (files_file, names is not None)):
            if not kept:
                remove_file(stale)
        with atomic_write(out) as f:
            np.save(f, codes)
        if labels is not None:
            with atomic_write(labels_file) as f:
                np.save(f, np.asarray(labels))
            if class_names:
                write_class_names(classes_file, class_names)
        if names is not None:
            write_text(files_file, json.dumps([str(name) for name in names], indent=1, ensure_ascii=False) + "\n")
    else:
        raise OptionError(f"cannot tell the format of {out}", hint="name the output FILE.npy or FILE.csv")
    return out


def check_class_names(labels: Any, class_names: Sequence[str] | None) -> None:
    """Refuse ``class_names`` that cannot name every one of ``labels`` (the numbers 0, 1, ...); none: nothing to name."""
    if labels is None or not class_names or not len(labels):
        return
    low, high = np.min(labels), np.max(labels)
    if not 0 <= low <= high < len(class_names):
        raise OptionError(f"{len(class_names)} class names cannot name the labels {low} to {high}",
                          hint="pass the names of the label numbers 0, 1, ...")


def write_class_names(path: str | Path, class_names: Sequence[str]) -> Path:
    """The names of the label numbers 0, 1, ... as a JSON list (FILE.classes.json beside codes or scores)."""
    return write_text(path, json.dumps(list(class_names), indent=1) + "\n")


def _codes_csv(codes: np.ndarray, labels: np.ndarray | None, columns: list[str] | None = None,
               class_names: list[str] | None = None, names: list[str] | None = None) -> str:
    values = columns if columns and len(columns) == codes.shape[1] else [f"c{i}" for i in range(codes.shape[1])]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")  # quotes a file or class name with a comma in it
    writer.writerow((["file"] if names is not None else []) + (["label"] if labels is not None else []) + values)
    for i, code in enumerate(codes):
        file = [] if names is None else [str(names[i])]
        label = [] if labels is None else [class_names[int(labels[i])] if class_names else int(labels[i])]
        writer.writerow(file + label + [f"{v:.6g}" for v in code])
    return text.getvalue()


def given_codes(codes: Any, limit: int | None = None) -> Any:
    """The first ``limit`` (None: all) of ``codes`` given to decode: a codes file's path (str or PathLike,
    read with :func:`read_codes`), or an array-like (an array, a tensor, a list of rows) taken as it is,
    for the decoder to check. Anything else is refused with what to pass."""
    check_limit(limit)
    if isinstance(codes, (str, os.PathLike)):
        codes = read_codes(codes)
    elif not hasattr(codes, "shape"):
        codes = _codes_array(codes)
    return codes if limit is None else codes[:limit]


def _codes_array(codes: Any) -> np.ndarray:
    try:
        array = np.asarray(codes)
    except (ValueError, TypeError) as e:  # ragged rows
        raise DataError(f"codes must be rows of equal length: {e}", hint=CODES_HINT) from None
    if array.ndim == 0:
        raise OptionError(f"codes must be an array or a codes file's path, got {type(codes).__name__}",
                          hint=CODES_HINT)
    return array


CODES_HINT = "pass an array (n, code size), as encode_images returns, or the path of a .npy or .csv codes file"


def check_limit(limit: int | None) -> int | None:
    """``limit`` (how many samples to take; None: all) if it is a positive integer, as ``--limit`` must be."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1):
        raise OptionError(f"limit must be a positive integer (or None for all), got {limit!r}")
    return limit


def read_codes(path: str | Path) -> np.ndarray:
    """Codes from a .npy array (n, code size) or a .csv written by :func:`write_codes`; at least one."""
    p = Path(path)
    try:
        if p.suffix == ".npy":
            return _some_codes(np.load(p, allow_pickle=False), p)
        if p.suffix == ".csv":
            return _some_codes(_parse_codes_csv(p.read_text(encoding="utf-8").splitlines(), p), p)
    except FileNotFoundError:
        raise DataError("codes file not found", path=p) from None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read codes: {e}", path=p, hint="pass a file written by `aelab encode`") from e
    raise OptionError(f"cannot tell the format of {p}", hint="pass a .npy or .csv file")


def _some_codes(codes: np.ndarray, path: Path) -> np.ndarray:
    if codes.size == 0:
        raise DataError(f"holds no codes (shape {codes.shape})", path=path,
                        hint="pass codes of at least one sample, as `aelab encode` writes them")
    return codes


def _parse_codes_csv(lines: list[str], path: Path) -> np.ndarray:
    if not lines:
        raise DataError("empty codes file", path=path)
    rows = list(csv.reader(lines))
    header = rows[0] or [""]
    skip = next((i for i, name in enumerate(header) if name not in ("file", "label")), len(header))
    has_header = not _is_number(header[0])
    names = header[skip:] if has_header else [f"c{i}" for i in range(len(header) - skip)]
    order = _code_column_order(names, path) if has_header else None
    codes = np.zeros((0, len(names)), np.float32)
    values = []
    for number, row in enumerate(rows[1 if has_header else 0:], start=2 if has_header else 1):
        if not "".join(row).strip():
            continue
        cells = row[skip:]
        if len(cells) != len(names):
            raise DataError(f"line {number} has {len(cells)} code values, the first line {len(names)}", path=path,
                            hint="pass codes as `aelab encode` writes them: the same columns on every line")
        values.append([_code_value(cell, number, name, path) for cell, name in zip(cells, names)])
    if values:
        codes = np.array(values, dtype=np.float32)
    return codes if order is None else codes[:, order]


def _code_column_order(names: list[str], path: Path) -> list[int] | None:
    """Where a header names the code columns c0, c1, ... (as `aelab encode` writes them), the order that puts
    them in that order (columns moved in a spreadsheet keep their meaning); None for other names, read in
    the order given. Numbered names with one missing or twice are refused."""
    numbers = [int(name[1:]) if re.fullmatch(r"c\d+", name) else None for name in names]
    if any(n is None for n in numbers):
        return None
    if sorted(numbers) != list(range(len(names))):
        missing = sorted(set(range(len(names))) - set(numbers))
        raise DataError(f"the code columns are not c0 to c{len(names) - 1} once each"
                        + (f" (no c{missing[0]})" if missing else ""), path=path,
                        hint="pass codes as `aelab encode` writes them, or name the columns otherwise to read "
                             "them in their order")
    return [numbers.index(i) for i in range(len(names))]


def _code_value(cell: str, line: int, column: str, path: Path) -> float:
    try:
        return float(cell)
    except ValueError:
        raise DataError(f"line {line}, column {column}: {cell!r} is not a number", path=path,
                        hint="every code value must be a number, as `aelab encode` writes them") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
