"""Folders of images: the three layouts, parallel decoding, one size, one channel count.

Layouts: ``train/`` and ``test/`` subfolders (each flat or with class folders);
class folders ``DIR/<class>/...`` (labels are the sorted folder names); or a
flat folder (no labels). Files are found recursively and read in sorted order
of their relative paths; hidden files and other extensions are ignored.
"""
from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import hashlib
import os
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import DataError
from .folder_cache import cache_key, load_cached, save_cached
from .pictures import IMAGE_FILE_SUFFIXES, decode

__all__ = ["FolderImages", "read_image_folder", "image_names", "list_images", "has_images", "decode_all"]

PARALLEL_FROM = 64  # fewer files than this decode in the calling thread: a pool would cost more
CHUNK = 256


@dataclass
class FolderImages:
    images: np.ndarray                  # uint8 (n, h, w) or (n, h, w, 3)
    labels: np.ndarray | None
    class_names: list[str] | None
    in_test: np.ndarray | None          # bool (n,) for the train/test layout, else None
    sha256: str
    skipped: list[str] = field(default_factory=list)
    conversions: dict[str, int] = field(default_factory=dict)
    cached: bool = False


def image_names(folder: Path) -> list[str]:
    """Every image file under ``folder``, recursively, as sorted relative POSIX names; hidden ones skipped.

    Plain strings, not Path objects: on a folder of 70,000 files pathlib costs more than the listing.
    """
    found = []
    base = os.fspath(folder)
    for root, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        prefix = os.path.relpath(root, base).replace(os.sep, "/")
        prefix = "" if prefix == "." else prefix + "/"
        found += [prefix + f for f in files
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_FILE_SUFFIXES]
    return sorted(found)


def list_images(folder: Path) -> list[Path]:
    """:func:`image_names` as paths."""
    return [folder / name for name in image_names(folder)]


def has_images(folder: Path) -> bool:
    for _root, _dirs, files in os.walk(folder):
        if any(not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_FILE_SUFFIXES for f in files):
            return True
    return False


def _classes_of(names: list[str]) -> list[str] | None:
    """The class folder of each name, or None when any file lies at the top."""
    classes = [name.partition("/") for name in names]
    if not classes or any(not sep for _, sep, _ in classes):
        return None
    return [c for c, _, _ in classes]


def _layout(folder: Path) -> tuple[list[str], list[str] | None, np.ndarray | None]:
    """All names (relative to ``folder``), their classes (or None) and which are test files (or None)."""
    train_dir, test_dir = folder / "train", folder / "test"
    if train_dir.is_dir() and test_dir.is_dir():
        train, test = image_names(train_dir), image_names(test_dir)
        if not train or not test:
            raise DataError("holds no images", path=train_dir if not train else test_dir,
                            hint="both train/ and test/ need images (PNG, JPEG, WebP, BMP, TIFF)")
        train_classes, test_classes = _classes_of(train), _classes_of(test)
        classes = train_classes + test_classes if train_classes and test_classes else None
        in_test = np.r_[np.zeros(len(train), bool), np.ones(len(test), bool)]
        return ["train/" + n for n in train] + ["test/" + n for n in test], classes, in_test
    names = image_names(folder)
    return names, _classes_of(names), None


def read_image_folder(folder: Path, *, channels: str | None = None, resize: tuple[int, int] | None = None,
                      crop: bool = False, skip_bad: bool = False, use_cache: bool = True,
                      executor: str = "process", workers: int | None = None) -> FolderImages:
    """Decode every image of ``folder`` (cached; see :mod:`aelab.data.folder_cache`)."""
    names, classes, in_test = _layout(folder)
    paths = [os.path.join(folder, name) for name in names]
    if not paths:
        raise DataError("holds no images", path=folder,
                        hint="put PNG, JPEG, WebP, BMP or TIFF files in it (class folders give labels)")
    options = {"channels": channels, "resize": list(resize) if resize else None, "crop": bool(crop),
               "skip_bad": bool(skip_bad)}
    key = cache_key(folder, names, options) if use_cache else None
    if key is not None:
        hit = load_cached(key)
        if hit is not None:
            images, meta = hit
            return _assemble(images, meta, classes, in_test, cached=True)
    crop_to = _crop_size(paths, resize) if crop else None
    decoded = decode_all(paths, channels, resize, crop_to, skip_bad, executor, workers)
    images, meta = _stack(decoded, names, channels, folder)
    if key is not None:
        save_cached(key, images, meta)
    return _assemble(images, meta, classes, in_test, cached=False)


def _crop_size(paths: list[str], resize: tuple[int, int] | None) -> tuple[int, int]:
    if resize is not None:
        return resize
    from PIL import Image

    sizes = []
    for path in paths:
        try:
            with Image.open(path) as picture:
                sizes.append(picture.size[::-1])
        except Exception:  # unreadable files are reported by the decode pass
            continue
    if not sizes:
        raise DataError("no readable image to crop", path=os.path.dirname(paths[0]))
    return min(h for h, _ in sizes), min(w for _, w in sizes)


Decoded = tuple[np.ndarray | None, str, str, str | None]  # pixels, rule, sha256, error


def _decode_chunk(paths: list[str], channels, resize, crop_to, max_pixels) -> list[Decoded]:
    out: list[Decoded] = []
    for path in paths:
        try:
            out.append((*decode(path, channels, resize, crop_to, max_pixels), None))
        except DataError as e:
            out.append((None, "", "", str(e)))
    return out


def decode_all(paths: list[str] | list[Path], channels: str | None, resize: tuple[int, int] | None,
               crop_to: tuple[int, int] | None, skip_bad: bool, executor: str = "process",
               workers: int | None = None) -> list[Decoded]:
    """Decode ``paths`` in order, with a pool of ``executor`` ('process', 'thread' or 'serial').

    Processes are the default: benchmarks/data_loading.py measured a thread pool slower
    than a plain loop on small images (opening a PNG is mostly Python, under the GIL).
    A process pool that cannot start falls back to threads.
    """
    from PIL import Image

    max_pixels = Image.MAX_IMAGE_PIXELS  # passed on: a process pool does not share the setting
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    if executor == "serial" or len(paths) < PARALLEL_FROM:
        results = [_decode_chunk(c, channels, resize, crop_to, max_pixels) for c in chunks]
    else:
        arguments = (chunks, *([x] * len(chunks) for x in (channels, resize, crop_to, max_pixels)))
        try:
            results = _pooled(executor, workers, arguments)
        except (OSError, concurrent.futures.process.BrokenProcessPool):
            results = _pooled("thread", workers, arguments)
    decoded = [d for chunk in results for d in chunk]
    if not skip_bad:
        for item in decoded:
            if item[3] is not None:
                raise DataError(item[3])
    return decoded


def _pooled(executor: str, workers: int | None, arguments: tuple) -> list[list[Decoded]]:
    count = workers or os.cpu_count() or 1
    if executor != "process":
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            return list(pool.map(_decode_chunk, *arguments))
    pool = concurrent.futures.ProcessPoolExecutor(count, initializer=leave_stops_to_the_parent)
    try:
        with _stops_held():  # the workers start here: none may see a stop before its handlers are set
            results = pool.map(_decode_chunk, *arguments)
        return list(results)
    finally:
        # on Ctrl-C or SIGTERM in the parent, the chunks not yet started are dropped, not decoded first
        pool.shutdown(wait=True, cancel_futures=True)


_STOPS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _stops_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back (blocked) in this thread while active, and in the processes it starts
    until they unblock them; a stop that came meanwhile arrives right after."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def leave_stops_to_the_parent() -> None:
    """In a decoding worker: Ctrl-C is ignored and SIGTERM ends it at once, silently. The parent
    (which gets the same Ctrl-C from the terminal) stops the pool and reports; otherwise each
    worker inherited the parent's handlers and printed its own traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)


def _stack(decoded: list[Decoded], names: list[str], channels: str | None,
           folder: Path) -> tuple[np.ndarray, dict]:
    keep = [i for i, d in enumerate(decoded) if d[0] is not None]
    skipped = [names[i] for i, d in enumerate(decoded) if d[0] is None]
    if not keep:
        raise DataError(f"none of the {len(names)} images is readable", path=folder,
                        hint="the files are corrupt or not images")
    pixels = [decoded[i][0] for i in keep]
    conversions = Counter(rule for _, rule, _, _ in (decoded[i] for i in keep) if rule)
    if channels is None and len({p.ndim for p in pixels}) > 1:
        grey = sum(p.ndim == 2 for p in pixels)
        pixels = [np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p for p in pixels]
        conversions["mixed grey and colour: grey repeated to RGB"] += grey
    _check_one_size(pixels, [names[i] for i in keep], folder)
    images = np.stack(pixels)
    digest = hashlib.sha256("".join(decoded[i][2] for i in keep).encode("ascii")).hexdigest()
    meta = {"kept": keep, "skipped": skipped, "sha256": digest, "conversions": dict(conversions),
            "shape": list(images.shape)}
    return images, meta


def _check_one_size(pixels: list[np.ndarray], names: list[str], folder: Path) -> None:
    sizes = Counter(p.shape[:2] for p in pixels)
    if len(sizes) == 1:
        return
    listed = ", ".join(f"{h}x{w} ({n})" for (h, w), n in sizes.most_common(8))
    odd = next(name for p, name in zip(pixels, names) if p.shape[:2] != sizes.most_common(1)[0][0])
    raise DataError(f"images differ in size: {listed} (h x w, count); e.g. {odd}",
                    path=folder, hint="pass --resize HxW (antialiased) or --crop (centre crop to the "
                                      "smallest size, or to --resize)")


def _assemble(images: np.ndarray, meta: dict, classes: list[str] | None, in_test: np.ndarray | None,
              cached: bool) -> FolderImages:
    keep = np.asarray(meta["kept"], dtype=np.int64)
    labels = class_names = None
    if classes is not None:
        class_names = sorted(set(classes))
        index = {name: i for i, name in enumerate(class_names)}
        labels = np.asarray([index[classes[i]] for i in keep], dtype=np.int64)
    return FolderImages(images, labels, class_names, None if in_test is None else in_test[keep],
                        meta["sha256"], list(meta["skipped"]), dict(meta["conversions"]), cached)
