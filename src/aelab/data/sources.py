"""Image folders, feature tables and array files as data sets, and what every source without a test
split shares: the seeded split and (for tables) the scaler, both recorded in ``Dataset.source``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, OptionError
from .dataset_types import Dataset, Split, combined_digest
from .folders import crop_size, decode_all, plan_folder, read_image_folder, seen, summarize
from .resolver import ReadOptions
from .scaling import Scaler, default_scaling, suggest_loss
from .splitting import split_indices
from .tables import ModelColumns, checked_rows, read_table

__all__ = ["load_folder_dataset", "pack_image_folder", "load_table_dataset", "load_array_dataset", "split_rows"]


def load_folder_dataset(folder: Path, options: ReadOptions) -> Dataset:
    found = read_image_folder(folder, channels=options.channels, resize=options.resize, crop=bool(options.crop),
                              skip_bad=bool(options.skip_bad))
    source = _folder_source(folder, found.layout, options, found.skipped, found.conversions)
    source["cached"] = found.cached
    train_rows, test_rows, source["split"] = split_rows(len(found.images), found.labels, found.in_test, options,
                                                        found.class_names)
    name = folder.resolve().name or str(folder)
    return finish(name, np.asarray(found.images), found.labels, found.class_names, (train_rows, test_rows),
                  {name + "/": found.sha256}, source, options)


def _folder_source(folder: Path, layout: str, options: ReadOptions, skipped: list[str],
                   conversions: dict[str, int]) -> dict[str, Any]:
    """How a folder of images was read, as ``Dataset.source`` records it."""
    return {"path": str(folder), "format": "image folder", "kind": "images", "layout": layout,
            "channels": options.channels, "resize": list(options.resize) if options.resize else None,
            "crop": bool(options.crop), "skip_bad": bool(options.skip_bad), "skipped": skipped,
            "skipped_count": len(skipped),
            "conversions": conversions}


def split_rows(count: int, labels: np.ndarray | None, in_test: np.ndarray | None,
               options: ReadOptions, class_names: list[str] | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Train and test rows, and their record: those ``in_test`` marks when the source gave a split,
    else a seeded draw of ``options``' test fraction (stratified by ``labels`` when possible; a warning
    names ``class_names`` where it is not)."""
    if in_test is not None:
        return np.flatnonzero(~in_test), np.flatnonzero(in_test), {"method": "given"}
    return split_indices(count, labels, options.split_fraction, options.split_seed, class_names)


FOLDER_CHUNK = 2048  # images a folder is packed with at a time


def pack_image_folder(folder: Path, out: Path, options: ReadOptions) -> Path:
    """Pack an image folder as :func:`load_folder_dataset` reads it, never holding more than FOLDER_CHUNK decoded
    images. Both follow the folder's :class:`~aelab.data.folders.FolderPlan` (files, classes, given split) and
    :func:`~aelab.data.folders.summarize` (kept files, channel rule, one size): a first pass decodes every file,
    in chunks, for what the summary needs, a second decodes them again in split order into a :class:`PackWriter`."""
    from .packed import PackWriter

    channels, resize, skip_bad = options.channels, options.resize, bool(options.skip_bad)
    plan = plan_folder(folder)
    paths = plan.paths
    crop_to = crop_size(paths, resize) if options.crop else None
    seen_files = []
    for start in range(0, len(paths), FOLDER_CHUNK):
        seen_files += [seen(d) for d in decode_all(paths[start:start + FOLDER_CHUNK], channels, resize, crop_to,
                                                   skip_bad)]
    summary = summarize(seen_files, plan.names, channels, folder)
    keep = summary.keep
    labels, class_names = plan.labels(keep)
    source = _folder_source(folder, plan.layout, options, summary.skipped, summary.conversions)
    train_rows, test_rows, source["split"] = split_rows(len(keep), labels, plan.test_mask(keep), options,
                                                        class_names)
    h, w = summary.size
    name = folder.resolve().name or str(folder)
    with PackWriter(out, (h, w, 3) if summary.colour else (h, w), np.uint8, labels=labels is not None) as writer:
        for split, rows in (("train", train_rows), ("test", test_rows)):
            for start in range(0, len(rows), FOLDER_CHUNK):
                part = rows[start:start + FOLDER_CHUNK]
                files = [keep[i] for i in part]
                decoded = decode_all([paths[i] for i in files], channels, resize, crop_to, skip_bad)
                if any(d[2] != seen_files[i][3] for d, i in zip(decoded, files)):
                    raise DataError("an image changed while it was packed", path=folder, hint="pack it again")
                writer.add(split, np.stack([summary.fitted(d[0]) for d in decoded]),
                           None if labels is None else labels[part])
        files_digest = {name + "/": summary.sha256}
        return writer.close({"name": name, "num_classes": len(class_names) if class_names else 0,
                             "class_names": class_names,
                             "packed_from": {"sha256": combined_digest(list(files_digest.values())),
                                             "files": files_digest, "source": source}})


def refuse_scale_for_images(scale: str | None) -> None:
    """Refuse a ``--scale`` other than none for images."""
    if scale not in (None, "none"):
        raise OptionError(f"--scale {scale} applies to tables only", hint="images are scaled to [0, 1] by the models")


def load_table_dataset(path: Path, options: ReadOptions, scaler: Scaler | None = None,
                       model: ModelColumns | None = None) -> Dataset:
    """A table as a data set; ``model``: the columns a trained model reads (:func:`read_table` takes them by
    name or by position), with its ``scaler``."""
    table = read_table(path, options.label_column, model=model)
    source = {"path": str(path), "format": table.format, "kind": "table", "columns": table.columns,
              "label_column": options.label_column}
    return finish(path.stem, table.rows, table.labels, table.class_names, None, {path.name: table.sha256},
                  source, options, scaler)


def load_array_dataset(path: Path, digest: str, arrays: dict[str, np.ndarray], options: ReadOptions,
                       scaler: Scaler | None = None) -> Dataset:
    """A ``.npz`` not in the MNIST layout (uint8 grey x_train, x_test): colour images or a table, one array or two."""
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
    return finish(path.stem, x, labels, None, given, {path.name: digest}, source, options, scaler)


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
           options: ReadOptions, scaler: Scaler | None = None) -> Dataset:
    """Split (unless ``given``), scale a table on its training rows (or with ``scaler``, fitted before:
    a checkpoint's), and record both in ``source`` (a split already recorded there is kept)."""
    scale = options.scale
    if given is None:
        train_rows, test_rows, record = split_rows(len(x), labels, None, options, class_names)
    else:
        train_rows, test_rows = given
        record = source.get("split") or {"method": "given"}
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
    else:
        refuse_scale_for_images(scale)
    y_train, y_test = (None, None) if labels is None else (labels[train_rows], labels[test_rows])
    num_classes = len(class_names) if class_names else (int(labels.max()) + 1 if labels is not None else 0)
    source["split"] = record
    return Dataset(name=name, train=Split(x_train, y_train), test=Split(x_test, y_test),
                   sha256=combined_digest(list(files.values())), files=dict(files), num_classes=num_classes,
                   class_names=class_names, source=source)
