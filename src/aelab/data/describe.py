"""Facts about a dataset or a single data file, for ``aelab data info``."""
from __future__ import annotations

import os

import numpy as np

from .dataset_types import Dataset, Split, combined_digest
from .chunks import row_chunks
from .datasets import _idx_format, _idx_images, load_single, load_source
from .folders import ascii_safe, pictures_not_read
from .sources import refuse_scale_for_images
from .idx import read_idx_with_digest
from .resolver import ReadOptions, Source, resolve

__all__ = ["describe", "format_description", "pixel_mean_std"]


# --- describe ----------------------------------------------------------------------

def describe(path: str | os.PathLike | None, options: ReadOptions | None = None, **given) -> dict:
    """Facts about a dataset or a single IDX/CTF/npz/image file, for ``aelab data info``.

    Returns a dict with ``name``, ``source``, ``format``, ``splits`` (per split:
    ``count``, ``shape``, ``dtype``, ``label_counts`` or None), ``image_shape``,
    ``input_dim``, ``num_classes``, ``pixel_mean``/``pixel_std`` on [0, 1] of
    the first split, ``files`` (name -> content SHA-256) and ``sha256``.
    ``options`` and ``given`` say how to read a folder or a table, as for :func:`~aelab.data.load_dataset`.
    """
    source = resolve(path)
    options = ReadOptions.of(options, **given)
    if source.is_single:
        return _describe_single(source, options)
    return _describe_dataset(path, source, options)


def _describe_dataset(path: str | os.PathLike | None, source: Source, options: ReadOptions) -> dict:
    dataset = load_source(source, options)
    where = "bundled MNIST" if path is None else os.fspath(path)
    splits = {"train": dataset.train, "test": dataset.test}
    d = _description(dataset.name, where, _dataset_format(source, dataset), splits,
                     dataset.num_classes, dataset.files, dataset.sha256)
    d.update(kind=dataset.kind, input_shape=list(dataset.input_shape), channels=dataset.channels,
             classes=dataset.class_names, split=dataset.source.get("split"),
             skipped=dataset.source.get("skipped_count", 0), conversions=dataset.source.get("conversions"),
             scaling=(dataset.source.get("scaler") or {}).get("method"), loss=dataset.source.get("loss"),
             not_read=[ascii_safe(n) for n in pictures_not_read(source.path)] if source.kind == "image folder" else [])
    return d


def _dataset_format(source: Source, dataset: Dataset) -> str:
    if dataset.source.get("format"):
        return dataset.source["format"]
    if source.kind == "bundled":
        return "idx.gz (bundled)"
    if source.kind in ("npz", "ctf folder", "ctf pair"):
        return source.kind.split()[0]
    return "idx.gz" if all(n.endswith(".gz") for n in dataset.files) else "idx"


def _describe_single(source: Source, options: ReadOptions) -> dict:
    refuse_scale_for_images(options.scale)  # every single set holds images
    path = source.path
    if source.kind == "idx file":
        array, digest = read_idx_with_digest(path)
        if array.ndim != 3:
            return _describe_idx_array(path, array, digest)
        images, labels, files, fmt = _idx_images(path, array, digest)
    else:
        (images, labels, *_), files, fmt = load_single(source, options)
    split = Split(images, labels)
    num_classes = int(labels.max()) + 1 if labels is not None and len(labels) else 0
    return _description(path.stem if path.is_file() else source.name, str(path), fmt,
                        {"all": split}, num_classes, files, combined_digest(list(files.values())))


def _describe_idx_array(path: Path, array: np.ndarray, digest: str) -> dict:
    """A single IDX file that is not images (e.g. a labels file)."""
    is_labels = array.ndim == 1 and array.dtype.kind in "iu" and (len(array) == 0 or array.min() >= 0)
    num_classes = int(array.max()) + 1 if is_labels and len(array) else 0
    split = {"count": int(array.shape[0]), "shape": list(array.shape), "dtype": str(array.dtype),
             "label_counts": np.bincount(array, minlength=num_classes).tolist() if is_labels else None}
    return {"name": path.name.split(".")[0], "source": str(path), "format": _idx_format(path),
            "splits": {"all": split}, "image_shape": None, "input_dim": None, "dtype": str(array.dtype),
            "num_classes": num_classes, "pixel_mean": None, "pixel_std": None,
            "files": {path.name: digest}, "sha256": combined_digest([digest])}


def _description(name: str, source: str, fmt: str, splits: dict[str, Split], num_classes: int,
                 files: dict[str, str], sha256: str) -> dict:
    first = next(iter(splits.values()))
    is_table = first.images.ndim == 2
    mean, std = (None, None) if is_table else pixel_mean_std(first.images)
    return {
        "name": name,
        "source": source,
        "format": fmt,
        "kind": "table" if is_table else "images",
        "splits": {key: _split_facts(split, num_classes) for key, split in splits.items()},
        "image_shape": None if is_table else list(first.images.shape[1:3]),
        "input_dim": int(np.prod(first.images.shape[1:])),
        "dtype": str(first.images.dtype),
        "channels": None if is_table else (3 if first.images.ndim == 4 else 1),
        "num_classes": num_classes,
        "pixel_mean": mean,
        "pixel_std": std,
        "files": dict(files),
        "sha256": sha256,
    }


def _split_facts(split: Split, num_classes: int) -> dict:
    counts = None
    if split.labels is not None:
        counts = np.bincount(split.labels, minlength=num_classes).tolist()
    return {"count": split.n, "shape": list(split.images.shape), "dtype": str(split.images.dtype),
            "label_counts": counts}


def pixel_mean_std(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of uint8 ``images`` scaled to [0, 1].

    Computed from the 256-bin histogram: exact, and no float copy of the images (a packed set's read a few
    megabytes at a time).
    """
    counts = sum((np.bincount(chunk.reshape(-1), minlength=256) for chunk in row_chunks(images)),
                 np.zeros(256, np.int64)).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return float("nan"), float("nan")
    levels = np.arange(256) / 255.0
    mean = float(counts @ levels / total)
    std = float(np.sqrt(counts @ (levels - mean) ** 2 / total))
    return mean, std


def format_description(d: dict) -> str:
    """Render a :func:`describe` dict as a few aligned lines of text."""
    rows: list[tuple[str, str]] = [
        ("name", d["name"]),
        ("source", d["source"]),
        ("format", d["format"]),
    ]
    if d.get("image_shape"):
        h, w = d["image_shape"]
        colour = ", 3 channels (RGB)" if d.get("channels") == 3 else ""
        rows.append(("images", f"{h} x {w} {d['dtype']}{colour} ({d['input_dim']} inputs)"))
    elif d.get("kind") == "table":
        rows.append(("table", f"{d['input_dim']} columns, float32; scaling {d.get('scaling')}, "
                              f"suggested loss {d.get('loss')}"))
    else:
        rows.append(("dtype", d["dtype"]))
    classes = str(d["num_classes"]) if d["num_classes"] else "none (unlabeled)"
    if d["num_classes"] and 2 * d["num_classes"] > sum(split["count"] for split in d["splits"].values()):
        classes += " (under two samples a class: a numeric target rather than classes?)"
    if d.get("classes"):
        classes += ": " + ", ".join(d["classes"][:16]) + (" ..." if len(d["classes"]) > 16 else "")
    rows.append(("classes", classes))
    rows += _source_rows(d)
    for key, split in d["splits"].items():
        text = f"{split['count']} samples"
        if split["label_counts"] is not None:
            text += "; per class: " + _short_list(split["label_counts"])
        rows.append((key, text))
    if d.get("pixel_mean") is not None:
        first = next(iter(d["splits"]))
        rows.append(("pixels", f"mean {d['pixel_mean']:.4f}, std {d['pixel_std']:.4f} on [0, 1] ({first})"))
    rows.append(("sha256", f"{d['sha256']} (overall)"))
    for name, digest in d["files"].items():
        rows.append(("", f"{digest} {name} (content)"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}".rstrip() for label, value in rows)


def _source_rows(d: dict) -> list[tuple[str, str]]:
    rows = []
    split = d.get("split")
    if split and split.get("method") == "fraction":
        rows.append(("split", f"test = {split['test_fraction']:g} of the samples, seed {split['seed']}, "
                              f"{'stratified' if split['stratified'] else 'not stratified'} "
                              f"(test rows sha256 {split['test_indices_sha256'][:16]})"))
    elif split:
        rows.append(("split", "train and test given by the source"))
    if d.get("skipped"):
        rows.append(("skipped", f"{d['skipped']} unreadable file(s)"))
    for rule, count in (d.get("conversions") or {}).items():
        rows.append(("converted", f"{count} image(s): {rule}"))
    return rows


def _short_list(values: list[int], limit: int = 16) -> str:
    shown = " ".join(str(v) for v in values[:limit])
    return shown + (f" ... ({len(values)} classes)" if len(values) > limit else "")
