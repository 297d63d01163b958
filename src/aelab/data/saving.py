"""Writing a dataset as IDX, CTF or npz, and converting between them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError, OutputError
from ..fileio import atomic_write, ensure_dir, remove_empty_folder, remove_file
from .ctf import write_ctf
from .dataset_types import Dataset
from .datasets import IDX_FILES, load_source
from .idx import write_idx
from .resolver import ReadOptions, resolve

__all__ = ["save_dataset", "convert", "FORMATS", "ctf_file_names"]

FORMATS = ("idx", "idx.gz", "ctf", "npz")


# --- saving ----------------------------------------------------------------------

def save_dataset(dataset: Dataset, dest: str | os.PathLike, fmt: str) -> Path:
    """Write ``dataset`` to ``dest`` in format ``fmt``; return ``dest``.

    ``fmt`` is ``"idx"`` or ``"idx.gz"`` (the four MNIST-named files in folder
    ``dest``), ``"ctf"`` (``Train-HxW_cntk_text.txt`` and
    ``Test-HxW_cntk_text.txt`` in folder ``dest``) or ``"npz"`` (one file
    ``dest`` with ``x_train``, ``y_train``, ``x_test``, ``y_test``). Every
    file is written atomically.
    """
    fmt = _checked_format(fmt)
    if fmt == "npz":
        return _save_npz(dataset, Path(dest))
    _refuse_all_but_grey_images(dataset, fmt)
    folder = Path(dest)
    _refuse_a_folder_with_data(folder)
    made = not folder.exists()
    try:
        if fmt == "ctf":
            return _save_ctf(dataset, folder)
        return _save_idx(dataset, folder, compress=fmt == "idx.gz")
    except BaseException:  # Ctrl-C or an error between the files: none of this set stays (there was none before)
        for name in _data_files(folder):
            remove_file(folder / name)
        if made:
            remove_empty_folder(folder)
        raise


def _refuse_a_folder_with_data(folder: Path) -> None:
    """A folder that already holds IDX or CTF files: the new set would replace a user's own files of the same
    names, or lie beside another's (CTF files of another size), where neither could be read."""
    held = _data_files(folder)
    if held:
        raise OutputError(f"the folder already holds data files ({', '.join(held[:4])}"
                          f"{', ...' if len(held) > 4 else ''}): a new set would replace or mix with them",
                          path=folder, hint="convert into a new or empty folder")


def _data_files(folder: Path) -> list[str]:
    """The names of the IDX and CTF files in ``folder`` (none where it is no folder)."""
    if not folder.is_dir():
        return []
    idx_names = {stem + gz for stem in IDX_FILES.values() for gz in ("", ".gz")}
    return sorted(p.name for p in folder.iterdir() if p.name in idx_names or p.name.endswith("_cntk_text.txt"))


def _checked_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise OptionError(f"format {fmt!r} is not supported", hint=f"use one of {', '.join(FORMATS)}")
    return fmt


def _refuse_all_but_grey_images(dataset: Dataset, fmt: str) -> None:
    """IDX and CTF files as MNIST and the tutorial lay them out hold grey images, one value per pixel:
    colour written there came back as other data (a CTF file's 16x16x3 images as rows of 768 grey values)."""
    if dataset.kind == "images" and dataset.channels == 1:
        return
    what = "a table" if dataset.kind == "table" else "colour images"
    raise OptionError(f"{fmt} files hold grey images, and {dataset.name!r} holds {what}",
                      hint="write a .npz file instead (DEST.npz), which keeps it as it is")


def _label_dtype(dataset: Dataset) -> np.dtype:
    return np.dtype(np.uint8) if dataset.num_classes <= 256 else np.dtype(np.int32)


def _save_idx(dataset: Dataset, folder: Path, compress: bool) -> Path:
    unlabeled = [s for s in ("train", "test") if getattr(dataset, s).labels is None]
    if unlabeled:
        raise OptionError(f"the {' and '.join(unlabeled)} split of {dataset.name!r} has no labels; "
                          "the MNIST IDX layout needs them", hint="save it as npz or ctf instead")
    ensure_dir(folder)  # holding no IDX file: save_dataset refused such a folder
    suffix = ".gz" if compress else ""
    for (split, role), stem in IDX_FILES.items():
        s = getattr(dataset, split)
        array = s.images if role == "images" else s.labels.astype(_label_dtype(dataset))
        write_idx(folder / (stem + suffix), array, compress=compress)
    return folder


def ctf_file_names(image_shape: tuple[int, int]) -> tuple[str, str]:
    """The tutorial's train and test CTF file names for images of ``(h, w)``."""
    h, w = image_shape
    return f"Train-{h}x{w}_cntk_text.txt", f"Test-{h}x{w}_cntk_text.txt"


def _save_ctf(dataset: Dataset, folder: Path) -> Path:
    ensure_dir(folder)
    for split, name in zip(("train", "test"), ctf_file_names(dataset.image_shape)):
        s = getattr(dataset, split)
        write_ctf(folder / name, s.images, s.labels, dataset.num_classes if s.labels is not None else None)
    return folder


def _save_npz(dataset: Dataset, path: Path) -> Path:
    arrays = {"x_train": dataset.train.images, "x_test": dataset.test.images}
    for split in ("train", "test"):
        labels = getattr(dataset, split).labels
        if labels is not None:
            arrays[f"y_{split}"] = labels.astype(_label_dtype(dataset))
    with atomic_write(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def convert(src: str | os.PathLike | None, dest: str | os.PathLike, fmt: str | None = None, **options: Any) -> Path:
    """Load ``src`` with :func:`load_dataset`, read as ``options`` say, and save it to ``dest`` in ``fmt``.

    ``fmt`` may be left out when ``dest`` ends with ``.npz``. A table keeps its own units unless ``scale`` is
    given (its label column, named by ``label_column``, goes to the labels). Returns ``dest``.
    """
    if fmt is None:
        if not os.fspath(dest).lower().endswith(".npz"):
            raise OptionError(f"cannot tell the output format from {os.fspath(dest)!r}",
                              hint=f"add --to (fmt= in Python), one of {', '.join(FORMATS)}, or name the "
                                   "destination FILE.npz")
        fmt = "npz"
    _checked_format(fmt)
    reading = ReadOptions.of(**options)
    source = resolve(src)
    if reading.scale is None and source.kind == "table":
        reading = ReadOptions.of(reading, scale="none")  # converted, not standardised on a training split
    return save_dataset(load_source(source, reading), dest, fmt)
