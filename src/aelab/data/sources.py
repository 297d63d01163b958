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

__all__ = ["load_folder_dataset", "pack_image_folder", "load_table_dataset", "load_array_dataset", "checked_options",
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


FOLDER_CHUNK = 2048  # images a folder is packed with at a time


def pack_image_folder(folder: Path, out: Path, *, test_fraction: float, seed: int, channels: str | None,
                      resize: tuple[int, int] | None, crop: bool, skip_bad: bool) -> Path:
    """Pack an image folder as :func:`load_folder_dataset` reads it, never holding more than FOLDER_CHUNK decoded
    images: a first pass decodes every file for its size, channels and checksum (what the split, the channel rule
    and the size check need), a second decodes them again in split order into a :class:`PackWriter`."""
    from collections import Counter
    import hashlib

    from .folders import _check_one_size, _crop_size, _layout, decode_all
    from .packed import PackWriter

    names, classes, in_test = _layout(folder)
    paths = [str(folder / name) for name in names]
    if not paths:
        raise DataError("holds no images", path=folder,
                        hint="put PNG, JPEG, WebP, BMP or TIFF files in it (class folders give labels)")
    crop_to = _crop_size(paths, resize) if crop else None
    seen = []  # (ndim, (h, w), conversion rule, sha256), or None for an unreadable file
    for start in range(0, len(paths), FOLDER_CHUNK):
        seen += [None if pixels is None else (pixels.ndim, pixels.shape[:2], rule, digest)
                 for pixels, rule, digest, _ in decode_all(paths[start:start + FOLDER_CHUNK], channels, resize,
                                                           crop_to, skip_bad)]
    keep = [i for i, d in enumerate(seen) if d is not None]
    if not keep:
        raise DataError(f"none of the {len(names)} images is readable", path=folder,
                        hint="the files are corrupt or not images")
    conversions = Counter(seen[i][2] for i in keep if seen[i][2])
    to_rgb = channels is None and len({seen[i][0] for i in keep}) > 1
    if to_rgb:
        conversions["mixed grey and colour: grey repeated to RGB"] += sum(seen[i][0] == 2 for i in keep)
    _check_one_size([np.broadcast_to(np.uint8(0), seen[i][1]) for i in keep], [names[i] for i in keep], folder)
    digest = hashlib.sha256("".join(seen[i][3] for i in keep).encode("ascii")).hexdigest()
    labels = class_names = None
    if classes is not None:
        class_names = sorted(set(classes))
        number = {name: k for k, name in enumerate(class_names)}
        labels = np.asarray([number[classes[i]] for i in keep], dtype=np.int64)
    if in_test is not None:
        kept_in_test = in_test[keep]
        train_rows, test_rows, record = np.flatnonzero(~kept_in_test), np.flatnonzero(kept_in_test), {"method": "given"}
    else:
        train_rows, test_rows, record = split_indices(len(keep), labels, test_fraction, seed)
    h, w = seen[keep[0]][1]
    colour = to_rgb or seen[keep[0]][0] == 3
    name = folder.resolve().name or str(folder)
    source = {"path": str(folder), "format": "image folder", "kind": "images",
              "layout": "train/test" if in_test is not None else ("class folders" if class_names else "flat"),
              "channels": channels, "resize": list(resize) if resize else None, "crop": bool(crop),
              "skipped": [names[i] for i, d in enumerate(seen) if d is None],
              "skipped_count": len(names) - len(keep), "conversions": dict(conversions), "split": record}
    with PackWriter(out, (h, w, 3) if colour else (h, w), np.uint8, labels=labels is not None) as writer:
        for split, rows in (("train", train_rows), ("test", test_rows)):
            for start in range(0, len(rows), FOLDER_CHUNK):
                part = rows[start:start + FOLDER_CHUNK]
                files = [keep[i] for i in part]
                decoded = decode_all([paths[i] for i in files], channels, resize, crop_to, skip_bad)
                if any(d[2] != seen[i][3] for d, i in zip(decoded, files)):
                    raise DataError("an image changed while it was packed", path=folder, hint="pack it again")
                pixels = [np.repeat(d[0][..., None], 3, axis=2) if to_rgb and d[0].ndim == 2 else d[0]
                          for d in decoded]
                writer.add(split, np.stack(pixels), None if labels is None else labels[part])
        files_digest = {name + "/": digest}
        return writer.close({"name": name, "num_classes": len(class_names) if class_names else 0,
                             "class_names": class_names,
                             "packed_from": {"sha256": combined_digest(list(files_digest.values())),
                                             "files": files_digest, "source": source}})


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
