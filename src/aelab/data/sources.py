"""The new sources of :func:`~aelab.data.load_dataset`: image folders, feature tables and
array files, and what every source without a test split shares: the seeded split and
(for tables) the scaler, both recorded in ``Dataset.source``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, OptionError
from .dataset_types import Dataset, Split, combined_digest
from .folders import read_image_folder
from .pictures import CHANNEL_CHOICES, parse_size
from .scaling import SCALE_METHODS, Scaler, default_scaling, suggest_loss
from .splitting import split_indices
from .tables import checked_rows, read_table

__all__ = ["load_folder_dataset", "load_table_dataset", "load_array_dataset", "checked_options",
           "reading_options", "options_for"]


def checked_options(channels: str | None, resize: Any, scale: str | None) -> tuple[str | None, tuple | None]:
    if channels is not None and channels not in CHANNEL_CHOICES:
        raise OptionError(f"channels {channels!r} is not known", hint="use 'grayscale' or 'rgb' (or leave it out)")
    if scale is not None and scale not in SCALE_METHODS:
        raise OptionError(f"scale {scale!r} is not known", hint=f"use one of {', '.join(SCALE_METHODS)}")
    return channels, None if resize is None else parse_size(resize)


def load_folder_dataset(folder: Path, *, test_fraction: float, seed: int, channels: str | None,
                        resize: tuple[int, int] | None, crop: bool, skip_bad: bool) -> Dataset:
    found = read_image_folder(folder, channels=channels, resize=resize, crop=crop, skip_bad=skip_bad)
    source = {"path": str(folder), "format": "image folder", "kind": "images",
              "layout": "train/test" if found.in_test is not None else
              ("class folders" if found.class_names else "flat"),
              "channels": channels, "resize": list(resize) if resize else None, "crop": bool(crop),
              "skipped": found.skipped, "skipped_count": len(found.skipped),
              "conversions": found.conversions, "cached": found.cached}
    given = None
    if found.in_test is not None:
        given = (np.flatnonzero(~found.in_test), np.flatnonzero(found.in_test))
    name = folder.resolve().name or str(folder)
    return finish(name, np.asarray(found.images), found.labels, found.class_names, given,
                  {name + "/": found.sha256}, source, test_fraction, seed, scale=None)


def load_table_dataset(path: Path, *, label_column: str | int | None, test_fraction: float, seed: int,
                       scale: str | None, scaler: Scaler | None = None) -> Dataset:
    table = read_table(path, label_column)
    source = {"path": str(path), "format": table.format, "kind": "table", "columns": table.columns,
              "label_column": label_column}
    return finish(path.stem, table.rows, table.labels, table.class_names, None, {path.name: table.sha256},
                  source, test_fraction, seed, scale, scaler)


def load_array_dataset(path: Path, digest: str, arrays: dict[str, np.ndarray], *, test_fraction: float,
                       seed: int, scale: str | None, scaler: Scaler | None = None) -> Dataset:
    """A ``.npz`` that is not today's grey-image layout: colour images or a table, one array or two."""
    source = {"path": str(path), "format": "npz"}
    if "x_train" in arrays and "x_test" in arrays:
        x_train, x_test = _samples(arrays["x_train"], path, "x_train"), _samples(arrays["x_test"], path, "x_test")
        if x_train.shape[1:] != x_test.shape[1:]:
            raise DataError(f"x_train rows are {x_train.shape[1:]} but x_test rows are {x_test.shape[1:]}",
                            path=path, hint="both splits need the same shape")
        y_train, y_test = (_labels(arrays.get(f"y_{s}"), len(x), path, f"y_{s}")
                           for s, x in (("train", x_train), ("test", x_test)))
        x = np.concatenate([x_train, x_test])
        labels = None if y_train is None or y_test is None else np.concatenate([y_train, y_test])
        given = (np.arange(len(x_train)), np.arange(len(x_train), len(x)))
    else:
        if len(arrays) != 1:
            raise DataError(f"holds {len(arrays)} arrays ({', '.join(sorted(arrays)) or 'none'}); expected "
                            "one array, or x_train and x_test", path=path,
                            hint="save one (n, ...) array, or x_train/x_test with y_train/y_test")
        key = next(iter(arrays))
        x, labels, given = _samples(arrays[key], path, key), None, None
    source["kind"] = "images" if x.dtype == np.uint8 else "table"
    return finish(path.stem, x, labels, None, given, {path.name: digest}, source, test_fraction, seed, scale,
                  scaler)


def _samples(array: np.ndarray, path: Path, key: str) -> np.ndarray:
    if array.dtype.kind not in "biuf" or array.ndim < 2 or 0 in array.shape:
        raise DataError(f"array {key} is {array.dtype} of shape {array.shape}, expected numbers of shape "
                        "(n, ...) with n >= 1", path=path, hint="save a numeric array")
    if array.dtype == np.uint8 and (array.ndim == 3 or (array.ndim == 4 and array.shape[3] == 3)):
        return array
    return checked_rows(array.reshape(len(array), -1), f"{path} ({key})")


def _labels(labels: np.ndarray | None, count: int, path: Path, key: str) -> np.ndarray | None:
    if labels is None:
        return None
    if labels.shape != (count,) or labels.dtype.kind not in "iu" or (count and labels.min() < 0):
        raise DataError(f"array {key} is {labels.dtype} of shape {labels.shape}, expected {count} "
                        "class numbers 0, 1, ...", path=path)
    return labels.astype(np.int64)


def finish(name: str, x: np.ndarray, labels: np.ndarray | None, class_names: list[str] | None,
           given: tuple[np.ndarray, np.ndarray] | None, files: dict[str, str], source: dict[str, Any],
           test_fraction: float, seed: int, scale: str | None, scaler: Scaler | None = None) -> Dataset:
    """Split (unless ``given``), scale a table on its training rows (or with ``scaler``, fitted before:
    a checkpoint's), and record both in ``source``."""
    if given is None:
        train_rows, test_rows, record = split_indices(len(x), labels, test_fraction, seed)
    else:
        train_rows, test_rows = given
        record = {"method": "given"}
    x_train, x_test = x[train_rows], x[test_rows]
    if x.dtype != np.uint8:
        if scaler is None:
            scaler = Scaler(scale or default_scaling(x_train)).fit(x_train)
        elif scaler.columns != x.shape[1]:
            raise DataError(f"holds rows of {x.shape[1]} columns, but the model was trained on rows of "
                            f"{scaler.columns}", path=source.get("path"),
                            hint="pass a table with the columns the model was trained on")
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
        source["scaler"] = scaler.to_dict()
        source["loss"] = suggest_loss(x_train)
    elif scale not in (None, "none"):
        raise OptionError(f"scale {scale!r} applies to tables only", hint="images are scaled to [0, 1] by the models")
    y_train, y_test = (None, None) if labels is None else (labels[train_rows], labels[test_rows])
    num_classes = len(class_names) if class_names else (int(labels.max()) + 1 if labels is not None else 0)
    source["split"] = record
    return Dataset(name=name, train=Split(x_train, y_train), test=Split(x_test, y_test),
                   sha256=combined_digest(list(files.values())), files=dict(files), num_classes=num_classes,
                   class_names=class_names, source=source)


def reading_options(source: dict[str, Any]) -> dict[str, Any]:
    """The :func:`~aelab.data.load_dataset` options that read a source as ``source`` records it: the
    split's fraction and seed, a folder's channels, size and crop, a table's label column (what a
    checkpoint keeps, so that evaluate and encode see the data as training did)."""
    options: dict[str, Any] = {}
    split = source.get("split") or {}
    if split.get("method") == "fraction":
        options.update(test_fraction=split["test_fraction"], seed=split["seed"])
    for name in ("channels", "crop", "label_column"):
        if source.get(name):
            options[name] = source[name]
    if source.get("resize"):
        options["resize"] = "x".join(str(v) for v in source["resize"])
    return options


def options_for(path: str | Path | None, recorded: dict[str, Any]) -> dict[str, Any]:
    """The ``recorded`` reading options that apply to ``path``: image options to folders, a label
    column to tables, the split to every source."""
    from .tables import TABLE_SUFFIXES

    options = dict(recorded or {})
    p = None if path is None else Path(path)
    if p is None or not p.is_dir():
        for name in ("channels", "resize", "crop"):
            options.pop(name, None)
    if p is None or p.suffix.lower() not in TABLE_SUFFIXES:
        options.pop("label_column", None)
    return options
