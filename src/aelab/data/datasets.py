"""Datasets of 8-bit grayscale images with optional class labels.

:func:`load_dataset` reads a train/test pair of splits from the bundled MNIST
copy, a folder of IDX files, a folder of the tutorial's CTF files, a ``.npz``
(Keras layout) or two CTF files; :func:`load_images` reads one set of images
(IDX, CTF, npz, PNG/JPEG). Nothing assumes 28x28 images or 10 classes.

Each loaded file is identified by the SHA-256 of its *content* (after gunzip),
so the bundled copy, a download and an uncompressed copy of the same data get
the same digests; the overall :attr:`Dataset.sha256` hashes those digests.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import io
import math
import os
import re
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, OptionError
from .ctf import read_ctf_with_digest
from .dataset_types import Dataset, Samples, Split, _shape_text, combined_digest
from .folders import named_few, read_image_folder
from .packed import check_destination, check_reading_options, load_packed, pack
from .pictures import decode as decode_picture
from .resolver import ACCEPTED_SOURCES, BUNDLED_NAME, IDX_FILES, ReadOptions, Source, resolve
from .scaling import Scaler
from .tables import ModelColumns
from .sources import (finish, load_array_dataset, load_folder_dataset, load_table_dataset, pack_image_folder,
                      refuse_scale_for_images)
from .idx import GZIP_MAGIC, maybe_gunzip, parse_idx, read_file_bytes, read_idx_with_digest

__all__ = ["Split", "Dataset", "load_dataset", "load_source", "load_images", "load_named_images", "load_single", "pack_dataset",
           "BUNDLED_NAME"]


# --- load_dataset ---------------------------------------------------------------

def load_dataset(path: str | os.PathLike | None = None, options: ReadOptions | None = None, *,
                 scaler: Scaler | None = None, **given: Any) -> Dataset:
    """Load a train/test dataset.

    ``path`` may be ``None`` (or ``"mnist"`` when no such file exists) for the
    bundled MNIST, checked against its SHA256SUMS; a folder holding the four
    MNIST IDX files (each optionally ``.gz``); a folder holding the tutorial's
    ``Train-HxW_cntk_text.txt`` and ``Test-HxW_cntk_text.txt``; a ``.npz`` with
    ``x_train``, ``x_test`` and optionally ``y_train``, ``y_test`` (uint8 grey
    or colour images, or any numbers as a table), with ``images`` (and ``labels``), or with one
    array; one IDX images file (its labels from the sibling labels file) or one CTF file; a string
    ``"TRAIN,TEST"`` naming two CTF files; a folder of images (see
    :mod:`aelab.data.folders`: ``train/``+``test/``, class folders or flat); or
    a feature table (``.npy``, ``.csv``, ``.tsv``, ``.parquet``); or a packed data set's folder
    (:mod:`aelab.data.packed`, ``aelab data pack``), memory-mapped, read as it was packed.
    :func:`aelab.data.resolver.resolve` decides which.

    How to read it: ``options`` (a :class:`~aelab.data.resolver.ReadOptions`) and the same
    options as keywords (``given``, which win). A source without a test split gets one:
    ``test_fraction`` of the samples (default 0.1), drawn with ``seed`` (default 0), stratified by
    label when possible; ``Dataset.source`` records how. ``label_column`` (name or index) picks a
    table's labels; ``channels`` ('grayscale'/'rgb'), ``resize`` ("HxW"), ``crop`` and
    ``skip_bad`` apply to image folders; ``scale`` ('standard', 'minmax', 'none'; default: 'none'
    for data in [0, 1], else 'standard') to tables, fitted on the training rows unless ``scaler``
    (a fitted :class:`~aelab.data.scaling.Scaler`, e.g. a checkpoint's) is given.
    Raises :class:`DataError` for anything missing, damaged or inconsistent.
    """
    options = ReadOptions.of(options, **given)
    return load_source(resolve(path), options, scaler=scaler)


def load_source(source: Source, options: ReadOptions, *, scaler: Scaler | None = None,
                model_columns: ModelColumns | None = None, given: ReadOptions | None = None) -> Dataset:
    """The train/test dataset of a resolved ``source``, read with ``options``; a table's rows for a trained
    model with its ``scaler`` and ``model_columns``. A test fraction among the options the user ``given``
    (default: ``options``) is refused for data with a test split of its own, and a scale for images: there
    they would do nothing."""
    options.refuse_unless_applicable(source)
    data = _load_source(source, options, scaler, model_columns)
    if data.kind == "images":  # an IDX, CTF or .npz source is known to hold images only once read
        refuse_scale_for_images((given or options).scale)
    fraction = (given or options).test_fraction
    if fraction is not None and source.kind != "packed" and \
            (data.source.get("split") or {}).get("method") != "fraction":
        raise OptionError(f"--test-fraction {fraction:g} applies to data without a test split of its "
                          f"own, and {data.name!r} has one", hint="leave --test-fraction out: its own split is used")
    return data


def _load_source(source: Source, options: ReadOptions, scaler: Scaler | None,
                 model_columns: ModelColumns | None) -> Dataset:
    kind = source.kind
    if kind == "bundled":
        return _load_bundled()
    if kind == "packed":  # read as it was packed: split, sized and scaled then
        data = load_packed(source.path)
        check_reading_options(data, options, scaler=scaler)
        return data
    if kind == "idx folder":
        return _load_idx_folder(source)
    if kind in ("ctf folder", "ctf pair"):
        return _load_ctf_splits(source.name, source.parts["train"], source.parts["test"])
    if kind == "image folder":
        return load_folder_dataset(source.path, options)
    if kind == "table":
        return load_table_dataset(source.path, options, scaler=scaler, model=model_columns)
    if source.is_single and kind != "image file":
        return _load_single_dataset(source, options)
    if kind == "npz":
        return _load_npz_dataset(source, options, scaler)
    raise DataError("a single picture is not a train/test dataset", path=source.path,
                    hint=f"pass {ACCEPTED_SOURCES}")


def _load_single_dataset(source: Source, options: ReadOptions) -> Dataset:
    """One set of images (an IDX or CTF file, a .npz of ``images`` and ``labels``) split as a folder is:
    ``options``' test fraction drawn with its seed."""
    samples, files, fmt = load_single(source, options)
    record = {"path": str(source.path), "format": fmt, "kind": "images"}
    return finish(source.name, samples.images, samples.labels, samples.class_names, None, files, record, options)


def pack_dataset(path: str | os.PathLike | None, out: str | os.PathLike, options: ReadOptions | None = None,
                 **given: Any) -> Path:
    """Write the data set at ``path``, read as :func:`load_dataset` reads it with these options, as a packed data
    set in folder ``out`` (:mod:`aelab.data.packed`); returns ``out``. A folder of images is streamed through its
    files a few thousand at a time (decoded twice, never held whole); any other source is loaded, then written.
    The folder that is to hold ``out`` must exist, and ``out`` must not (or be an empty folder)."""
    options = ReadOptions.of(options, **given)
    check_destination(Path(out))  # before the source is read: a mistyped -o fails at once
    source = resolve(path)
    if source.kind == "image folder":
        refuse_scale_for_images(options.scale)  # before the folder is decoded
    if source.kind == "image folder" and options.label_column is None:
        return pack_image_folder(source.path, Path(out), options)
    return pack(load_source(source, options), out)


def _bundled_mnist_dir() -> Any:
    """The folder of the bundled MNIST files (a Traversable; tests replace it)."""
    return importlib.resources.files("aelab.data").joinpath("mnist")


def _load_bundled() -> Dataset:
    folder = _bundled_mnist_dir()
    expected = _read_sha256sums(folder)
    arrays: dict[tuple[str, str], np.ndarray] = {}
    files: dict[str, str] = {}
    for role, stem in IDX_FILES.items():
        name = stem + ".gz"
        packed = _read_bundled_file(folder, name)
        if hashlib.sha256(packed).hexdigest() != expected.get(name):
            raise DataError(f"bundled file {name} does not match its checksum in SHA256SUMS",
                            path=_location(folder, name),
                            hint="the aelab installation is damaged; reinstall aelab")
        content = maybe_gunzip(packed, _location(folder, name))
        arrays[role] = parse_idx(content, _location(folder, name))
        files[name] = hashlib.sha256(content).hexdigest()
    return _idx_dataset(BUNDLED_NAME, arrays, files, {r: _location(folder, s + ".gz") for r, s in IDX_FILES.items()})


def _location(folder: Any, name: str) -> str:
    return str(folder.joinpath(name))


def _read_bundled_file(folder: Any, name: str) -> bytes:
    try:
        return folder.joinpath(name).read_bytes()
    except OSError as e:
        raise DataError(f"bundled file {name} cannot be read ({e.strerror or e})",
                        path=_location(folder, name),
                        hint="the aelab installation is damaged; reinstall aelab") from e


def _read_sha256sums(folder: Any) -> dict[str, str]:
    text = _read_bundled_file(folder, "SHA256SUMS").decode("ascii", errors="replace")
    sums = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def _load_idx_folder(source: Source) -> Dataset:
    arrays: dict[tuple[str, str], np.ndarray] = {}
    files: dict[str, str] = {}
    for role, path in source.parts.items():
        arrays[role], files[path.name] = read_idx_with_digest(path)
    return _idx_dataset(source.name, arrays, files, {r: str(p) for r, p in source.parts.items()})


def _idx_dataset(name: str, arrays: dict[tuple[str, str], np.ndarray], files: dict[str, str],
                 paths: dict[tuple[str, str], str]) -> Dataset:
    splits = {}
    for split in ("train", "test"):
        images = _checked_images(arrays[(split, "images")], paths[(split, "images")])
        labels = _checked_labels(arrays[(split, "labels")], len(images), paths[(split, "labels")],
                                 paths[(split, "images")])
        splits[split] = Split(images, labels)
    return _make_dataset(name, splits["train"], splits["test"], files, paths[("train", "images")])


def _checked_images(images: np.ndarray, path: str) -> np.ndarray:
    if images.dtype != np.uint8:
        raise DataError(f"images are {images.dtype}, expected uint8 (IDX type 0x08)", path=path,
                        hint="images must be 8-bit grayscale")
    if images.ndim != 3:
        raise DataError(f"images have shape {images.shape}, expected 3 dimensions (count, height, width)",
                        path=path, hint="an IDX image file has dimensions n x h x w")
    if len(images) == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"no images (shape {images.shape})", path=path)
    return images


def _checked_labels(labels: np.ndarray | None, count: int, path: str | Path, images: str,
                    key: str | None = None) -> np.ndarray | None:
    """``labels`` (an IDX label file, or a .npz's array ``key``) as int64, one class number per image."""
    if labels is None:
        return None
    subject, has = (f"array {key} is", f"array {key} has ") if key else ("labels are", "")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{subject} {labels.dtype} of shape {labels.shape}, expected one integer per image",
                        path=path, hint="labels are 1-D integers (an IDX label file is uint8)")
    if len(labels) != count:
        raise DataError(f"{has}{len(labels)} labels for {count} images in {images}", path=path,
                        hint="images and labels must have the same count; are they a pair?")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{has}a negative label {labels.min()}", path=path, hint="labels are class numbers 0, 1, ...")
    return labels.astype(np.int64)


def _make_dataset(name: str, train: Split, test: Split, files: dict[str, str], where: str,
                  num_classes: int | None = None) -> Dataset:
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(f"train images are {_shape_text(train.images.shape[1:])} but test images are "
                        f"{_shape_text(test.images.shape[1:])}", path=where,
                        hint="both splits must have the same image size")
    if num_classes is None:
        present = [s.labels for s in (train, test) if s.labels is not None and len(s.labels)]
        num_classes = max(int(labels.max()) for labels in present) + 1 if present else 0
    return Dataset(name=name, train=train, test=test, sha256=combined_digest(list(files.values())),
                   files=dict(files), num_classes=num_classes, source={"kind": "images", "split": {"method": "given"}})


# --- npz ---------------------------------------------------------------------------

def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """All arrays of a .npz, and the SHA-256 of the file."""
    data = read_file_bytes(path)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise DataError(f"not a readable .npz file ({e})", path=path,
                        hint="save it with numpy.savez or numpy.savez_compressed, without object arrays") from e
    return arrays, hashlib.sha256(data).hexdigest()


def _load_npz_dataset(source: Source, options: ReadOptions, scaler: Scaler | None) -> Dataset:
    path = source.path
    arrays, digest = _read_npz(path)
    if source.npz_layout == "array" or (source.npz_layout == "splits" and not _is_grey_npz(arrays)):
        return load_array_dataset(path, digest, arrays, options, scaler=scaler)
    missing = [key for key in ("x_train", "x_test") if key not in arrays]
    if missing:
        raise DataError(f"missing array(s) {', '.join(missing)}; the file has: "
                        f"{', '.join(sorted(arrays)) or 'nothing'}", path=path,
                        hint="a dataset .npz needs x_train and x_test (and y_train, y_test for labels)")
    splits = {}
    for split in ("train", "test"):
        images = _checked_npz_images(arrays[f"x_{split}"], path, f"x_{split}")
        labels = _checked_labels(arrays.get(f"y_{split}"), len(images), path, f"x_{split}", key=f"y_{split}")
        splits[split] = Split(images, labels)
    return _make_dataset(path.stem, splits["train"], splits["test"], {path.name: digest}, str(path))


def _is_grey_npz(arrays: dict[str, np.ndarray]) -> bool:
    """The MNIST layout: x_train (and x_test, when present) uint8 (n, h, w)."""
    return all(arrays[k].dtype == np.uint8 and arrays[k].ndim == 3 for k in ("x_train", "x_test") if k in arrays)


def _checked_npz_images(images: np.ndarray, path: Path, key: str) -> np.ndarray:
    layout = images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)
    if images.dtype != np.uint8 or not layout or 0 in images.shape:
        raise DataError(f"array {key} is {images.dtype} of shape {images.shape}, expected uint8 "
                        "(n, height, width) or, for colour, (n, height, width, 3) with n >= 1", path=path,
                        hint="images must be 8-bit grey or RGB, channels last")
    return images


# --- CTF ----------------------------------------------------------------------------

def _load_ctf_splits(name: str, train_path: Path, test_path: Path) -> Dataset:
    splits, widths, digests = {}, {}, []
    for split, path in (("train", train_path), ("test", test_path)):
        flat, labels, widths[split], digest = read_ctf_with_digest(path)
        splits[split] = Split(flat.reshape((len(flat),) + ctf_image_shape(flat.shape[1], path)), labels)
        digests.append(digest)
    if widths["train"] != widths["test"]:
        raise DataError(f"train labels are one-hot over {widths['train']} classes, test labels over "
                        f"{widths['test']}", path=test_path, hint="both splits must use the same classes")
    keys = [train_path.name, test_path.name]
    if keys[0] == keys[1]:  # same name in two folders
        keys = [str(train_path), str(test_path)]
    files = dict(zip(keys, digests))
    return _make_dataset(name, splits["train"], splits["test"], files, str(train_path),
                         num_classes=widths["train"])


def ctf_image_shape(width: int, path: str | os.PathLike | None = None) -> tuple[int, int]:
    """The image shape for ``width`` CTF values: from a ``HxW`` in the file name if it
    fits, else ``(s, s)`` for a perfect square ``s*s``, else ``(1, width)``."""
    if path is not None:
        match = re.search(r"(\d+)x(\d+)", Path(path).name)
        if match and int(match[1]) * int(match[2]) == width:
            return int(match[1]), int(match[2])
    side = math.isqrt(width)
    return (side, side) if side * side == width else (1, width)


# --- load_images ---------------------------------------------------------------------

def load_images(path: str | os.PathLike, options: ReadOptions | None = None,
                **given: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Load one set of images: ``(images uint8 (n, h, w) or (n, h, w, 3), labels int64 (n,) or None)``.

    ``path`` may be an IDX image file (labels come from the sibling
    ``*-labels-idx1-ubyte[.gz]`` file when the name follows MNIST naming and
    that file exists), a CTF file, a ``.npz`` (arrays ``images``/``labels`` or
    ``x_test``/``y_test``), one picture, or a folder of pictures read as
    :func:`load_dataset` reads one (searched recursively, class folders give
    labels, grey stays grey and colour colour; ``channels``, ``resize``,
    ``crop`` and ``skip_bad`` as there, for folders and pictures), given as
    ``options`` or keywords.
    """
    images, labels, _ = load_named_images(path, options, **given)
    return images, labels


def load_named_images(path: str | os.PathLike, options: ReadOptions | None = None,
                      **given: Any) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """:func:`load_images` and the names of the label numbers (a folder's class folders), None where the
    source names none."""
    return load_samples(path, options, **given)[:3]


def load_samples(path: str | os.PathLike, options: ReadOptions | None = None, **given: Any) -> Samples:
    """:func:`load_images` as :class:`Samples`: with the names of the label numbers and each sample's file."""
    return load_single(resolve(path), ReadOptions.of(options, **given))[0]


def load_single(source: Source, options: ReadOptions, crop_to: tuple[int, int] | None = None
                ) -> tuple[Samples, dict[str, str], str]:
    """``(samples, {file: sha256}, format)`` of a resolved source that is one set of images; the samples'
    class names (None where the source has none) name the label numbers of this source itself. One
    picture is cropped to ``crop_to`` (a model's size) where ``--crop`` is given without ``--resize``."""
    options.without(("test_fraction", "seed", "scale")).refuse_unless_applicable(source)
    path = source.path
    if source.kind == "image folder":
        found = read_image_folder(path, channels=options.channels, resize=options.resize, crop=bool(options.crop),
                                  skip_bad=bool(options.skip_bad))
        if found.skipped:  # a data set's are counted by `aelab data info`; an input's only here
            warnings.warn(f"{path}: skipped {len(found.skipped)} unreadable file(s) (--skip-bad): "
                          f"{named_few(found.skipped)}", stacklevel=3)
        samples = Samples(np.asarray(found.images), found.labels, found.class_names, found.names)
        return samples, {source.name + "/": found.sha256}, "images"
    if source.kind == "image file":
        size = options.resize
        if options.crop and not (size or crop_to):
            raise OptionError("--crop without --resize crops a folder's pictures to the smallest of them; one "
                              "picture has nothing to be cropped to", path=path,
                              hint="pass --resize HxW with --crop, or leave --crop out")
        pixels, _, digest = decode_picture(path, options.channels, size,
                                           (size or crop_to) if options.crop else None, _max_pixels())
        return Samples(pixels[None], None, None, [path.name]), {path.name: digest}, "image"
    if source.kind == "npz":
        images, labels, files = _load_npz_images(path)
        return Samples(images, labels, None, None), files, "npz"
    if source.kind == "idx file":
        images, labels, files, fmt = _idx_images(path, *read_idx_with_digest(path))
        return Samples(images, labels, None, None), files, fmt
    if source.kind == "ctf file":
        flat, labels, _, digest = read_ctf_with_digest(path)
        images = flat.reshape((len(flat),) + ctf_image_shape(flat.shape[1], path))
        return Samples(images, labels, None, None), {path.name: digest}, "ctf"
    what = "a table" if source.kind == "table" else f"a data set ({source.kind})"
    raise DataError(f"is {what}, not one set of images", path=path or BUNDLED_NAME,
                    hint="pass an IDX, CTF or .npz file, a picture or a folder of pictures")


def _max_pixels() -> int | None:
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def _idx_images(path: Path, array: np.ndarray,
                digest: str) -> tuple[np.ndarray, np.ndarray | None, dict[str, str], str]:
    images = _checked_images(array, str(path))
    files = {path.name: digest}
    labels = _sibling_labels(path, len(images), files)
    return images, labels, files, _idx_format(path)


def _idx_format(path: Path) -> str:
    with open(path, "rb") as f:
        return "idx.gz" if f.read(2) == GZIP_MAGIC else "idx"


_IMAGES_NAME = re.compile(r"^(?P<prefix>.+)-images(?P<sep>[-.])idx3-ubyte(?:\.gz)?$")


def _sibling_labels(images_path: Path, count: int, files: dict[str, str]) -> np.ndarray | None:
    match = _IMAGES_NAME.match(images_path.name)
    if not match:
        return None
    stem = f"{match['prefix']}-labels{match['sep']}idx1-ubyte"
    for name in (stem, stem + ".gz"):
        candidate = images_path.with_name(name)
        if candidate.is_file():
            labels, files[name] = read_idx_with_digest(candidate)
            return _checked_labels(labels, count, str(candidate), str(images_path))
    return None


def _load_npz_images(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict[str, str]]:
    arrays, digest = _read_npz(path)
    for images_key, labels_key in (("images", "labels"), ("x_test", "y_test")):
        if images_key in arrays:
            images = _checked_npz_images(arrays[images_key], path, images_key)
            labels = _checked_labels(arrays.get(labels_key), len(images), path, images_key, key=labels_key)
            return images, labels, {path.name: digest}
    raise DataError(f"no 'images' or 'x_test' array; the file has: {', '.join(sorted(arrays)) or 'nothing'}",
                    path=path, hint="save the images as 'images' (and 'labels') with numpy.savez")


