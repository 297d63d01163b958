"""Image arrays and PNG files: checking pixel arrays, converting them, writing them.

Pixels are uint8 0..255 or floats in [0, 1]; every function checks its input
once and says what was wrong.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import OptionError, OutputError
from ..fileio import atomic_write, cannot_write, choose_another, ensure_dir, remove_empty_folder
from ..locking import process_runs
from ..terminal import interruptions_held
from .folders import image_names, named_few

GRID_FILE = "grid.png"  # the picture decode and reconstruct write beside their PNGs (aelab.api.GRID_NAME)


def _array(x: Any, name: str) -> np.ndarray:
    """``x`` as a numpy array (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise OptionError(f"{name} is not an array: {e}") from e


def _shape_text(ndims: Sequence[int]) -> str:
    return " or ".join({2: "(h, w)", 3: "(n, h, w)"}[d] for d in ndims)


def _checked_pixels(x: Any, name: str, ndims: Sequence[int]) -> np.ndarray:
    """Check an image array's type, shape and range; return it unchanged (as an array)."""
    a = _array(x, name)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise OptionError(f"{name} must hold uint8 or float pixels, got dtype {a.dtype}")
    colour = a.ndim - 1 in ndims and a.shape[-1] == 3  # the same with a trailing RGB axis
    if a.ndim not in ndims and not colour:
        raise OptionError(f"{name} must have shape {_shape_text(ndims)} (with a trailing 3 for colour), "
                          f"got {a.shape}")
    if a.size == 0:
        raise OptionError(f"{name} is empty (shape {a.shape})")
    if np.issubdtype(a.dtype, np.integer):
        if a.dtype != np.uint8 and (a.min() < 0 or a.max() > 255):
            raise OptionError(f"{name} has integer pixels outside 0..255 "
                              f"([{a.min()}, {a.max()}])")
        return a
    if not np.isfinite(a).all():
        raise OptionError(f"{name} contains NaN or infinite pixels")
    lo, hi = float(a.min()), float(a.max())
    if lo < -0.5 or hi > 1.5:
        raise OptionError(f"{name} has float pixels in [{lo:.4g}, {hi:.4g}]; float images "
                          "must lie in [0, 1] (divide 0..255 pixels by 255, or pass uint8)")
    return a


def to_unit(x: Any, name: str = "image", ndims: Sequence[int] = (2, 3)) -> np.ndarray:
    """Normalise an image array to float32 in [0, 1].

    ``uint8`` (and other integer) pixels are divided by 255; float pixels are
    clipped into [0, 1] (a decoder without a final sigmoid may overshoot a
    little). Raises OptionError for a bad dtype, shape or range.
    """
    a = _checked_pixels(x, name, ndims)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / np.float32(255)
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def to_uint8(x: Any, name: str = "image", ndims: Sequence[int] = (2, 3)) -> np.ndarray:
    """An image array as uint8 0..255 (uint8 passes unchanged; floats are rounded)."""
    a = _checked_pixels(x, name, ndims)
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.uint8)
    return np.rint(np.clip(a.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)


def save_png(path: str | os.PathLike[str], image: Any) -> Path:
    """Write one (h, w) grey or (h, w, 3) colour image as an 8-bit PNG at its native size."""
    from PIL import Image

    pixels = np.ascontiguousarray(to_uint8(image, "image", ndims=(2,)))
    target = Path(path)
    with atomic_write(target, "wb") as f:
        Image.fromarray(pixels).save(f, format="PNG")
    return target


def png_name(prefix: str, i: int, last: int) -> str:
    """``{prefix}-{i}.png`` with ``i`` zero-padded to five digits, or to the digits of ``last`` (the highest
    number written with it) when more, so that the names of one folder sort in number order."""
    return f"{prefix}-{i:0{max(5, len(str(last)))}d}.png"


def save_pngs(folder: str | os.PathLike[str], images: Any, prefix: str = "img",
              start: int = 0) -> list[Path]:
    """Write each of (n, h, w) or (n, h, w, 3) ``images`` as ``{prefix}-{i:05d}.png``, i from ``start``
    (more digits from 100,000 images on: see :func:`png_name`), all of them or, stopped part way, none
    (:func:`picture_folder`). From ``start`` 0, an earlier output's surplus ``{prefix}-N.png`` go."""
    pixels = _checked_pngs(images, prefix, start)  # before the folder is made
    with picture_folder(folder, prefix, replace_numbered=start == 0) as stage:
        names = _write_pngs(stage, pixels, prefix, start)
    return [Path(folder) / name for name in names]


def write_numbered_pngs(folder: Path, images: Any, prefix: str = "img", start: int = 0) -> list[str]:
    """:func:`save_pngs`' files written straight into ``folder``, a :func:`picture_folder`'s staging folder
    (nothing there to check or replace); returns their names."""
    return _write_pngs(folder, _checked_pngs(images, prefix, start), prefix, start)


def _write_pngs(folder: Path, pixels: np.ndarray, prefix: str, start: int) -> list[str]:
    last = int(start) + len(pixels) - 1
    names = [png_name(prefix, int(start) + i, last) for i in range(len(pixels))]
    for name, img in zip(names, pixels):
        save_png(folder / name, img)
    return names


def _checked_pngs(images: Any, prefix: str, start: int) -> np.ndarray:
    pixels = to_uint8(images, "images", ndims=(3,))
    if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "/\\\0"):
        raise OptionError(f"prefix must be a non-empty file-name prefix, got {prefix!r}")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise OptionError(f"start must be a non-negative integer, got {start!r}")
    return pixels


STAGE_PREFIX = ".aelab-partial-"  # then the writing process's id: a stage whose process is gone is removed


@contextlib.contextmanager
def picture_folder(folder: str | os.PathLike[str], prefix: str = "img", *,
                   replace_numbered: bool = True) -> Iterator[Path]:
    """A hidden folder inside ``folder`` to write a command's pictures into; once all are written they
    replace the files of their names in ``folder`` (and, with ``replace_numbered``, an earlier output's
    ``{prefix}-N.png`` beyond the new ones go), Ctrl-C held meanwhile. Stopped before that (Ctrl-C, a full
    disk), none of them is left and ``folder`` keeps what it held, or is not left behind if it was made
    for them. A folder holding pictures aelab does not write is refused first
    (:func:`check_no_foreign_pictures`); the staging folders of killed runs are removed."""
    _refuse_a_file_name(Path(folder))
    check_no_foreign_pictures(folder, prefix)
    made = not os.path.lexists(folder)
    out = ensure_dir(folder)
    _remove_stages_of_dead_processes(out)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=out))
    except OSError as e:
        raise cannot_write(e, out, "output folder") from e
    try:
        yield stage
        written = sorted(os.listdir(stage))
        with interruptions_held():  # moments, even for 100,000 files: old and new never mix
            for name in written:
                os.replace(stage / name, out / name)
            if replace_numbered:
                _remove_other_numbered_pngs(out, prefix, set(written))
    except BaseException as e:
        shutil.rmtree(stage, ignore_errors=True)
        if made:
            remove_empty_folder(out)
        if isinstance(e, OSError):
            raise cannot_write(e, out, "output folder") from e
        raise
    remove_empty_folder(stage)


FILE_SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".parquet", ".png", ".jpg", ".jpeg", ".html", ".aez", ".idx")


def _refuse_a_file_name(folder: Path) -> None:
    """``-o codes.npy`` for an image model made a folder of PNGs named like a file; an existing folder of
    such a name is the user's choice."""
    if folder.suffix.lower() in FILE_SUFFIXES and not folder.is_dir():
        raise OutputError(f"is named as a {folder.suffix} file, but the pictures go into a folder", path=folder,
                          hint="name a folder (without a file suffix) for the PNGs")


def _remove_stages_of_dead_processes(folder: Path) -> None:
    """A run killed (SIGKILL, a power cut) while it wrote its pictures left its staging folder behind."""
    for name in os.listdir(folder):
        found = re.fullmatch(rf"{re.escape(STAGE_PREFIX)}(\d+)-\w+", name)
        if found and int(found.group(1)) != os.getpid() and not process_runs(int(found.group(1))):
            shutil.rmtree(folder / name, ignore_errors=True)


def _numbered(name: str, prefix: str) -> bool:
    return re.fullmatch(rf"{re.escape(prefix)}-\d+\.png", name) is not None


def _remove_other_numbered_pngs(folder: Path, prefix: str, kept: set[str]) -> None:
    """An earlier, longer output's ``{prefix}-N.png`` beyond the new ones would pass for part of this one."""
    for name in os.listdir(folder):
        if name not in kept and _numbered(name, prefix) and (folder / name).is_file():
            (folder / name).unlink()


def check_no_foreign_pictures(folder: str | os.PathLike[str], prefix: str) -> None:
    """Refuse an output ``folder`` that holds, at its top, pictures aelab does not write (``{prefix}-N.png``,
    grid.png, tsne.png and its other figures, any ``NAME-N.png``): new PNGs there would mix with the user's
    images, or replace them. Subfolders are not looked at."""
    path = Path(folder)
    if not path.is_dir():
        return
    foreign = [name for name in image_names(path) if "/" not in name and not _written_by_aelab(name, prefix)]
    if foreign:
        raise OutputError(f"holds pictures that are not an earlier output of aelab ({named_few(foreign, 1)})",
                          path=path, hint=choose_another("output folder") + ": a new or empty one")


AELAB_FIGURES = {GRID_FILE, "tsne.png", "training.png", "similarity.png", "pair.png", "triplets.png", "samples.png",
                 "interpolation.png"}  # the fixed names of the pictures aelab's commands write


def _written_by_aelab(name: str, prefix: str) -> bool:
    return name in AELAB_FIGURES or re.fullmatch(rf"({re.escape(prefix)}|[a-z]+)-\d+\.png", name) is not None
