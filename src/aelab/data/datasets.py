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

import gzip
import hashlib
import importlib.resources
import io
import math
import os
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, OptionError
from .ctf import read_ctf_with_digest
from .dataset_types import Dataset, Split, _shape_text, combined_digest
from .folders import has_images, read_image_folder
from .packed import check_reading_options, is_packed, load_packed, pack
from .pictures import IMAGE_FILE_SUFFIXES
from .pictures import decode as decode_picture
from .scaling import Scaler
from .sources import checked_options, load_array_dataset, load_folder_dataset, load_table_dataset, pack_image_folder
from .tables import TABLE_SUFFIXES
from .idx import GZIP_MAGIC, maybe_gunzip, parse_idx, read_file_bytes, read_idx_with_digest

__all__ = ["Split", "Dataset", "load_dataset", "load_images", "pack_dataset", "BUNDLED_NAME"]

BUNDLED_NAME = "mnist"
IMAGE_SUFFIXES = tuple(IMAGE_FILE_SUFFIXES)

# (split, IDX file stem) in the fixed order used for the dataset digest.
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_ACCEPTED_SOURCES = ("a folder with the four MNIST IDX files (train-images-idx3-ubyte, ...; .gz or not), "
                     "a folder with Train-*_cntk_text.txt and Test-*_cntk_text.txt, "
                     "a .npz with x_train, y_train, x_test, y_test, or 'TRAIN.txt,TEST.txt' CTF files, "
                     "a folder of images (PNG, JPEG, WebP, BMP, TIFF) or a table (.npy, .csv, .tsv, .parquet)")


# --- load_dataset ---------------------------------------------------------------

def load_dataset(path: str | os.PathLike | None = None, *, test_fraction: float = 0.1, seed: int = 0,
                 label_column: str | int | None = None, channels: str | None = None,
                 resize: str | tuple[int, int] | None = None, crop: bool = False, skip_bad: bool = False,
                 scale: str | None = None, scaler: Scaler | None = None) -> Dataset:
    """Load a train/test dataset.

    ``path`` may be ``None`` (or ``"mnist"`` when no such file exists) for the
    bundled MNIST, checked against its SHA256SUMS; a folder holding the four
    MNIST IDX files (each optionally ``.gz``); a folder holding the tutorial's
    ``Train-HxW_cntk_text.txt`` and ``Test-HxW_cntk_text.txt``; a ``.npz`` with
    ``x_train``, ``x_test`` and optionally ``y_train``, ``y_test`` (uint8 grey
    or colour images, or any numbers as a table), or with one array; a string
    ``"TRAIN,TEST"`` naming two CTF files; a folder of images (see
    :mod:`aelab.data.folders`: ``train/``+``test/``, class folders or flat); or
    a feature table (``.npy``, ``.csv``, ``.tsv``, ``.parquet``); or a packed data set's folder
    (:mod:`aelab.data.packed`, ``aelab data pack``), memory-mapped, read as it was packed.

    A source without a test split gets one: ``test_fraction`` of the samples,
    drawn with ``seed``, stratified by label when possible; ``Dataset.source``
    records how. ``label_column`` (name or index) picks a table's labels;
    ``channels`` ('grayscale'/'rgb'), ``resize`` ("HxW"), ``crop`` and
    ``skip_bad`` apply to image folders; ``scale`` ('standard', 'minmax',
    'none'; default: 'none' for data in [0, 1], else 'standard') to tables,
    fitted on the training rows unless ``scaler`` (a fitted
    :class:`~aelab.data.scaling.Scaler`, e.g. a checkpoint's) is given.
    Raises :class:`DataError` for anything missing, damaged or inconsistent.
    """
    channels, size = checked_options(channels, resize, scale)
    if label_column is not None and (path is None or not Path(path).is_file()
                                     or Path(path).suffix.lower() not in TABLE_SUFFIXES):
        raise OptionError("label_column applies to tables only (.npy, .csv, .tsv, .parquet)",
                          hint="image folders take their labels from class folders")
    image_options = dict(channels=channels, resize=size, crop=crop, skip_bad=skip_bad)
    p = None if path is None else Path(path)
    if p is None or not p.is_dir():
        _refuse_image_options(image_options)
    if p is None:
        return _load_bundled()
    split = {"test_fraction": test_fraction, "seed": seed}
    if is_packed(p):  # read as it was packed: split, sized and scaled then
        data = load_packed(p)
        check_reading_options(data, channels=channels, resize=size, crop=crop, scale=scale, scaler=scaler)
        return data
    if p.is_dir():
        return _load_folder(p, dict(split, **image_options))
    if p.is_file():
        if p.suffix.lower() in TABLE_SUFFIXES:
            return load_table_dataset(p, label_column=label_column, scale=scale, scaler=scaler, **split)
        if _is_npz(p):
            return _load_npz_dataset(p, dict(split, scale=scale, scaler=scaler))
        raise DataError("a single file is not a train/test dataset", path=p,
                        hint=f"pass {_ACCEPTED_SOURCES}")
    text = os.fspath(path)
    if "," in text:
        return _load_ctf_pair(text)
    if text == BUNDLED_NAME:
        return _load_bundled()
    raise DataError("no such file or folder", path=p, hint=f"pass {_ACCEPTED_SOURCES}")


def pack_dataset(path: str | os.PathLike | None, out: str | os.PathLike, *, test_fraction: float = 0.1,
                 seed: int = 0, label_column: str | int | None = None, channels: str | None = None,
                 resize: str | tuple[int, int] | None = None, crop: bool = False, skip_bad: bool = False,
                 scale: str | None = None) -> Path:
    """Write the data set at ``path``, read as :func:`load_dataset` reads it with these options, as a packed data
    set in folder ``out`` (:mod:`aelab.data.packed`); returns ``out``. A folder of images is streamed through its
    files a few thousand at a time (decoded twice, never held whole); any other source is loaded, then written."""
    p = None if path is None else Path(path)
    if (p is not None and p.is_dir() and label_column is None and scale in (None, "none") and not is_packed(p)
            and not any(_find_idx_file(p, stem) for stem in IDX_FILES.values())
            and not (_find_ctf_file(p, "Train") and _find_ctf_file(p, "Test")) and has_images(p)):
        channels, size = checked_options(channels, resize, scale)
        return pack_image_folder(p, Path(out), test_fraction=test_fraction, seed=seed, channels=channels,
                                 resize=size, crop=crop, skip_bad=skip_bad)
    return pack(load_dataset(path, test_fraction=test_fraction, seed=seed, label_column=label_column,
                             channels=channels, resize=resize, crop=crop, skip_bad=skip_bad, scale=scale), out)


def _refuse_image_options(options: dict) -> None:
    given = [name for name, value in options.items() if value]
    if given:
        raise OptionError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to folders of images only",
                          hint="convert the other sources' images yourself, or leave the option out")


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


def _load_folder(folder: Path, options: dict) -> Dataset:
    idx_paths = {role: _find_idx_file(folder, stem) for role, stem in IDX_FILES.items()}
    if any(idx_paths.values()):
        missing = [stem for role, stem in IDX_FILES.items() if idx_paths[role] is None]
        if missing:
            raise DataError(f"missing IDX file(s): {', '.join(missing)} (.gz or not); found: "
                            f"{_listing(folder)}", path=folder,
                            hint="a dataset folder needs all four MNIST IDX files")
        return _load_idx_folder(folder, idx_paths)
    train_ctf, test_ctf = _find_ctf_file(folder, "Train"), _find_ctf_file(folder, "Test")
    if train_ctf and test_ctf:
        return _load_ctf_splits(_folder_name(folder), train_ctf, test_ctf)
    if has_images(folder):
        return load_folder_dataset(folder, **options)
    raise DataError(f"no dataset files found; the folder holds: {_listing(folder)}", path=folder,
                    hint=f"pass {_ACCEPTED_SOURCES}")


def _folder_name(folder: Path) -> str:
    return folder.resolve().name or str(folder)


def _listing(folder: Path, limit: int = 12) -> str:
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError as e:
        return f"(cannot list: {e.strerror or e})"
    if not names:
        return "nothing"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _find_idx_file(folder: Path, stem: str) -> Path | None:
    """The file for an IDX stem: uncompressed first, then .gz; also 'x-images.idx3-ubyte'."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _find_ctf_file(folder: Path, prefix: str) -> Path | None:
    matches = sorted(p for p in folder.glob(f"{prefix}-*_cntk_text.txt*")
                     if p.name.endswith((".txt", ".txt.gz")) and p.is_file())
    if len(matches) > 1:
        raise DataError(f"several {prefix} CTF files: {', '.join(m.name for m in matches)}",
                        path=folder, hint="keep only one per split in the folder, or pass 'TRAIN,TEST'")
    return matches[0] if matches else None


def _load_idx_folder(folder: Path, paths: dict[tuple[str, str], Path]) -> Dataset:
    arrays: dict[tuple[str, str], np.ndarray] = {}
    files: dict[str, str] = {}
    for role, path in paths.items():
        arrays[role], files[path.name] = read_idx_with_digest(path)
    return _idx_dataset(_folder_name(folder), arrays, files, {r: str(p) for r, p in paths.items()})


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


def _checked_labels(labels: np.ndarray | None, count: int, path: str, images_path: str) -> np.ndarray | None:
    if labels is None:
        return None
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"labels are {labels.dtype} of shape {labels.shape}, expected one integer "
                        "per image", path=path, hint="an IDX label file is 1-D uint8")
    if len(labels) != count:
        raise DataError(f"{len(labels)} labels for {count} images in {images_path}", path=path,
                        hint="the image and label files must have the same count; are they a pair?")
    if len(labels) and labels.min() < 0:
        raise DataError(f"negative label {labels.min()}", path=path, hint="labels are class numbers 0, 1, ...")
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

def _is_npz(path: Path) -> bool:
    if path.suffix.lower() == ".npz":
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


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


def _npz_keys(path: Path) -> list[str]:
    """The array names in a .npz, without reading the arrays."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return list(npz.files)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"not a readable .npz file ({e})", path=path,
                        hint="save it with numpy.savez or numpy.savez_compressed") from e


def _load_npz_dataset(path: Path, options: dict) -> Dataset:
    arrays, digest = _read_npz(path)
    if not _is_grey_npz(arrays):
        return load_array_dataset(path, digest, arrays, **options)
    missing = [key for key in ("x_train", "x_test") if key not in arrays]
    if missing:
        raise DataError(f"missing array(s) {', '.join(missing)}; the file has: "
                        f"{', '.join(sorted(arrays)) or 'nothing'}", path=path,
                        hint="a dataset .npz needs x_train and x_test (and y_train, y_test for labels)")
    splits = {}
    for split in ("train", "test"):
        images = _checked_npz_images(arrays[f"x_{split}"], path, f"x_{split}")
        labels = _checked_npz_labels(arrays.get(f"y_{split}"), len(images), path, f"y_{split}", f"x_{split}")
        splits[split] = Split(images, labels)
    return _make_dataset(path.stem, splits["train"], splits["test"], {path.name: digest}, str(path))


def _is_grey_npz(arrays: dict[str, np.ndarray]) -> bool:
    """Today's layout: x_train (and x_test, when present) uint8 (n, h, w); or no x_train at all
    with several arrays, which keeps today's error about what is missing."""
    if "x_train" not in arrays:
        return len(arrays) != 1
    return all(arrays[k].dtype == np.uint8 and arrays[k].ndim == 3 for k in ("x_train", "x_test") if k in arrays)


def _checked_npz_images(images: np.ndarray, path: Path, key: str) -> np.ndarray:
    if images.dtype != np.uint8 or images.ndim != 3 or 0 in images.shape:
        raise DataError(f"array {key} is {images.dtype} of shape {images.shape}, expected uint8 "
                        "(n, height, width) with n >= 1", path=path, hint="images must be 8-bit grayscale")
    return images


def _checked_npz_labels(labels: np.ndarray | None, count: int, path: Path, key: str,
                        images_key: str) -> np.ndarray | None:
    if labels is None:
        return None
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"array {key} is {labels.dtype} of shape {labels.shape}, expected one "
                        "integer per image", path=path)
    if len(labels) != count:
        raise DataError(f"array {key} has {len(labels)} labels for {count} images in {images_key}",
                        path=path, hint="images and labels must have the same count")
    if len(labels) and labels.min() < 0:
        raise DataError(f"array {key} has a negative label {labels.min()}", path=path)
    return labels.astype(np.int64)


# --- CTF ----------------------------------------------------------------------------

def _load_ctf_pair(text: str) -> Dataset:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise DataError(f"expected 'TRAIN,TEST' naming two CTF files, got {len(parts)} part(s)",
                        path=text, hint="separate the train and test files with one comma")
    for part in parts:
        if not Path(part).is_file():
            raise DataError("CTF file not found", path=part, hint="check the path of 'TRAIN,TEST'")
    return _load_ctf_splits(Path(parts[0]).name.split(".")[0], Path(parts[0]), Path(parts[1]))


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

def load_images(path: str | os.PathLike, *, channels: str | None = None,
                resize: str | tuple[int, int] | None = None, crop: bool = False,
                skip_bad: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Load one set of images: ``(images uint8 (n, h, w) or (n, h, w, 3), labels int64 (n,) or None)``.

    ``path`` may be an IDX image file (labels come from the sibling
    ``*-labels-idx1-ubyte[.gz]`` file when the name follows MNIST naming and
    that file exists), a CTF file, a ``.npz`` (arrays ``images``/``labels`` or
    ``x_test``/``y_test``), one picture, or a folder of pictures read as
    :func:`load_dataset` reads one (searched recursively, class folders give
    labels, grey stays grey and colour colour; ``channels``, ``resize``,
    ``crop`` and ``skip_bad`` as there, for folders and pictures).
    """
    images, labels, _, _ = _load_single(Path(path), channels=channels, resize=resize, crop=crop,
                                        skip_bad=skip_bad)
    return images, labels


def _load_single(path: Path, channels: str | None = None, resize: str | tuple[int, int] | None = None,
                 crop: bool = False, skip_bad: bool = False
                 ) -> tuple[np.ndarray, np.ndarray | None, dict[str, str], str]:
    """``(images, labels, {file: sha256}, format)`` of a single source."""
    channels, size = checked_options(channels, resize, None)
    if path.is_dir():
        found = read_image_folder(path, channels=channels, resize=size, crop=crop, skip_bad=skip_bad)
        return np.asarray(found.images), found.labels, {_folder_name(path) + "/": found.sha256}, "images"
    kind = _sniff(path)
    if kind == "image":
        pixels, _, digest = decode_picture(path, channels, size, size if crop else None, _max_pixels())
        return pixels[None], None, {path.name: digest}, "image"
    _refuse_image_options(dict(channels=channels, resize=size, crop=crop, skip_bad=skip_bad))
    if kind == "npz":
        return (*_load_npz_images(path), "npz")
    if kind == "idx":
        return _idx_images(path, *read_idx_with_digest(path))
    flat, labels, _, digest = read_ctf_with_digest(path)
    images = flat.reshape((len(flat),) + ctf_image_shape(flat.shape[1], path))
    return images, labels, {path.name: digest}, "ctf"


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


def _sniff(path: Path) -> str:
    """'npz', 'image', 'idx' or 'ctf', from the suffix or the first bytes."""
    if not path.exists():
        raise DataError("no such file or folder", path=path, hint="check the path")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    head = _first_bytes(path)
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff")):
        return "image"
    if head.startswith(b"\x00\x00"):
        return "idx"
    if not head:
        raise DataError("empty file", path=path, hint="expected IDX, CTF, npz or PNG/JPEG")
    return "ctf"


def _first_bytes(path: Path, count: int = 4) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(count)
            if head.startswith(GZIP_MAGIC):
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as gz:
                    head = gz.read(count)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"cannot read: {e}", path=path,
                        hint="the file is truncated or corrupt; copy it again") from e
    return head


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
            labels = _checked_npz_labels(arrays.get(labels_key), len(images), path, labels_key, images_key)
            return images, labels, {path.name: digest}
    raise DataError(f"no 'images' or 'x_test' array; the file has: {', '.join(sorted(arrays)) or 'nothing'}",
                    path=path, hint="save the images as 'images' (and 'labels') with numpy.savez")


