"""Folders of images: the three layouts, parallel decoding, one size, one channel count.

Layouts: ``train/`` and ``test/`` subfolders (each flat or with class folders);
class folders ``DIR/<class>/...`` (labels are the sorted folder names); or a
flat folder (no labels). Class folders with image files beside them at the top
are read as a flat folder, with a warning naming those files. Files are found
recursively and read in sorted order of their relative paths; hidden files and
other extensions are ignored.
"""
from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import hashlib
import os
import signal
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import DataError
from ..terminal import stop_pool
from .folder_cache import cache_key, load_cached, save_cached
from .pictures import IMAGE_FILE_SUFFIXES, IMAGE_FORMATS, UNREAD_PICTURE_SUFFIXES, decode, displayed_size

__all__ = ["FolderImages", "FolderPlan", "FolderSummary", "read_image_folder", "plan_folder", "crop_size", "summarize",
           "seen", "image_names", "list_images", "has_images", "decode_all"]

PARALLEL_FROM = 64  # fewer files than this decode in the calling thread: a pool would cost more
CHUNK = 256
WORKER_GRACE_SECONDS = 2.0  # a worker's SIGTERM waits for the end of its call into C; then it is killed


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
    names: list[str] = field(default_factory=list)  # each image's file, relative to the folder (POSIX)

    @property
    def layout(self) -> str:
        return _layout_name(self.in_test, self.class_names)


def _layout_name(in_test: np.ndarray | None, classes: list[str] | None) -> str:
    """How a folder holds its images, as ``Dataset.source["layout"]`` records it."""
    if in_test is not None:
        return "train/test"
    return "class folders" if classes else "flat"


def image_names(folder: Path) -> list[str]:
    """Every image file under ``folder``, recursively, as sorted relative POSIX names; hidden ones skipped.

    Plain strings, not Path objects: on a folder of 70,000 files pathlib costs more than the listing.
    """
    found = _names_ending_in(folder, IMAGE_FILE_SUFFIXES)
    for name in found:
        _refuse_undecodable(name, folder)
    return found


def pictures_not_read(folder: Path) -> list[str]:
    """The pictures under ``folder`` of formats aelab does not read (HEIC, AVIF, SVG, camera raw, ...), as
    sorted relative names: an image folder leaves them out, and ``aelab data info`` says so."""
    return _names_ending_in(folder, UNREAD_PICTURE_SUFFIXES)


def _warn_of_pictures_not_read(folder: Path) -> None:
    names = pictures_not_read(folder)
    if names:
        warnings.warn(f"{folder}: {describe_not_read(names)} are left out (convert them to PNG to include them)",
                      stacklevel=5)


def describe_not_read(names: list[str]) -> str:
    """``N picture(s) of formats aelab does not read (a.heic, b.svg and 3 more)``, names shown as printable text."""
    return f"{len(names)} picture(s) of formats aelab does not read ({named_few([ascii_safe(n) for n in names])})"


def named_few(names: Sequence[str], shown: int = 2) -> str:
    """``a, b and 3 more``: the first ``shown`` of ``names``, for messages."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def ascii_safe(name: str) -> str:
    """``name`` as one printable line: undecodable bytes and control characters escaped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _names_ending_in(folder: Path, suffixes) -> list[str]:
    """The files under ``folder`` whose suffix (in lower case) is among ``suffixes``, hidden ones skipped."""
    return sorted(prefix + f for prefix, files in _visible_files(folder)
                  for f in files if os.path.splitext(f)[1].lower() in suffixes)


def _visible_files(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """``(relative POSIX prefix, names)`` of the visible files in each folder under ``folder``, hidden files
    and folders skipped. Linked folders are followed (a class folder linked in from elsewhere is a class
    folder), each real folder once, so a link back up the tree ends the walk there."""
    base = os.fspath(folder)
    seen = {os.path.realpath(base)}
    for root, dirs, files in os.walk(base, followlinks=True):
        kept = []
        for d in sorted(dirs):
            real = os.path.realpath(os.path.join(root, d))
            if not d.startswith(".") and real not in seen:
                seen.add(real)
                kept.append(d)
        dirs[:] = kept
        prefix = os.path.relpath(root, base).replace(os.sep, "/")
        yield ("" if prefix == "." else prefix + "/"), [f for f in files if not f.startswith(".")]


def _refuse_undecodable(name: str, folder: Path) -> None:
    """A file or folder name that is not UTF-8 (Latin-1 names from old archives) cannot be cached, labelled
    or written to a CSV; refused naming it, with the fix."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise DataError(f"the name '{shown}' is not valid UTF-8", path=folder,
                        hint="rename it (convmv -f latin1 -t utf8 -r --notest FOLDER converts Latin-1 names)") from None


def list_images(folder: Path) -> list[Path]:
    """:func:`image_names` as paths."""
    return [folder / name for name in image_names(folder)]


def has_images(folder: Path) -> bool:
    return any(os.path.splitext(f)[1].lower() in IMAGE_FILE_SUFFIXES for _, files in _visible_files(folder)
               for f in files)


def _classes_of(names: list[str], folder: Path) -> list[str] | None:
    """The class folder of each name, or None when any file lies at the top of ``folder``: a flat folder,
    or class folders with loose files beside them (read without labels, with a warning)."""
    if _loose_beside_classes(names):
        _warn_loose_files(names, folder)
    if not names or any("/" not in name for name in names):
        return None
    return [name.partition("/")[0] for name in names]


def _loose_beside_classes(names: list[str]) -> bool:
    """Whether files lie at the top beside two or more class folders (one subfolder beside loose files is
    just a flat folder's nesting: its single "class" would label nothing)."""
    subfolders = {name.partition("/")[0] for name in names if "/" in name}
    return len(subfolders) >= 2 and any("/" not in name for name in names)


SHOWN_CLASSES = 8  # class folders a warning names before "and N more"


def _warn_loose_files(names: list[str], folder: Path) -> None:
    """One warning for a folder of class folders that also holds image files at its top level."""
    loose = [name for name in names if "/" not in name]
    classes = sorted({name.partition("/")[0] for name in names if "/" in name})
    shown = ", ".join(classes[:SHOWN_CLASSES]) + (f" and {len(classes) - SHOWN_CLASSES} more"
                                                   if len(classes) > SHOWN_CLASSES else "")
    files = f"{len(loose)} image files (e.g. {loose[0]}) lie" if len(loose) > 1 else f"the image file {loose[0]} lies"
    warnings.warn(f"{folder}: {files} at the top level beside the class folders {shown}: the folder is read without "
                  "labels (to keep the labels, move the loose files into a class folder or out of the folder)",
                  stacklevel=4)


@dataclass(frozen=True, eq=False)
class FolderPlan:
    """What a folder of images holds before any file is decoded: its image files (names relative to
    ``folder``, sorted), their class folders (or None) and which are test files (or None). Reading
    the folder and packing it both follow it."""

    folder: Path
    names: list[str]
    classes: list[str] | None
    in_test: np.ndarray | None  # bool (n,) for the train/test layout

    @property
    def paths(self) -> list[str]:
        return [os.path.join(self.folder, name) for name in self.names]

    @property
    def layout(self) -> str:
        return _layout_name(self.in_test, self.classes)

    def labels(self, keep: list[int] | np.ndarray) -> tuple[np.ndarray | None, list[str] | None]:
        """The kept files' labels, numbered in the sorted order of the class names, and those names."""
        if self.classes is None:
            return None, None
        class_names = sorted(set(self.classes))
        index = {name: i for i, name in enumerate(class_names)}
        return np.asarray([index[self.classes[i]] for i in keep], dtype=np.int64), class_names

    def test_mask(self, keep: list[int] | np.ndarray) -> np.ndarray | None:
        return None if self.in_test is None else self.in_test[np.asarray(keep, dtype=np.int64)]


def _train_test_classes(train: list[str], test: list[str], folder: Path) -> list[str] | None:
    """The class folder of each train then test name; None (with a warning where only one side has class
    folders) unless both train/ and test/ hold class folders."""
    train_classes, test_classes = _classes_of(train, folder / "train"), _classes_of(test, folder / "test")
    if train_classes and test_classes:
        return train_classes + test_classes
    if train_classes or test_classes:
        labelled, other, other_names = ("train", "test", test) if train_classes else ("test", "train", train)
        if not _loose_beside_classes(other_names):  # that case has its own warning
            warnings.warn(f"{folder}: {labelled}/ holds class folders but {other}/ does not: the folder is read "
                          f"without labels (to keep them, put {other}/'s images into the same class folders)",
                          stacklevel=4)
    return None


def plan_folder(folder: Path) -> FolderPlan:
    """The :class:`FolderPlan` of ``folder``; a folder without images is refused. Pictures of formats
    aelab does not read are left out with a warning that names them."""
    _warn_of_pictures_not_read(folder)
    train_dir, test_dir = folder / "train", folder / "test"
    if train_dir.is_dir() and test_dir.is_dir():
        train, test = image_names(train_dir), image_names(test_dir)
        if not train or not test:
            raise DataError("holds no images", path=train_dir if not train else test_dir,
                            hint=f"both train/ and test/ need images ({IMAGE_FORMATS})")
        classes = _train_test_classes(train, test, folder)
        in_test = np.r_[np.zeros(len(train), bool), np.ones(len(test), bool)]
        return FolderPlan(folder, ["train/" + n for n in train] + ["test/" + n for n in test], classes, in_test)
    names = image_names(folder)
    if not names:
        raise DataError("holds no images", path=folder,
                        hint=f"put {IMAGE_FORMATS} files in it (class folders give labels)")
    return FolderPlan(folder, names, _classes_of(names, folder), None)


def read_image_folder(folder: Path, *, channels: str | None = None, resize: tuple[int, int] | None = None,
                      crop: bool = False, skip_bad: bool = False, use_cache: bool = True,
                      executor: str = "process", workers: int | None = None) -> FolderImages:
    """Decode every image of ``folder`` (cached; see :mod:`aelab.data.folder_cache`)."""
    plan = plan_folder(folder)
    options = {"channels": channels, "resize": list(resize) if resize else None, "crop": bool(crop),
               "skip_bad": bool(skip_bad)}
    key = cache_key(folder, plan.names, options) if use_cache else None
    if key is not None:
        hit = load_cached(key)
        if hit is not None:
            images, meta = hit
            return _assemble(images, meta, plan, cached=True)
    crop_to = crop_size(plan.paths, resize) if crop else None
    decoded = decode_all(plan.paths, channels, resize, crop_to, skip_bad, executor, workers)
    images, meta = _stack(decoded, plan.names, channels, folder)
    if key is not None:
        save_cached(key, images, meta)
    return _assemble(images, meta, plan, cached=False)


FAR_BELOW = 2  # an image this many times smaller than the typical size, in height or width, is refused by --crop


def crop_size(paths: list[str], resize: tuple[int, int] | None) -> tuple[int, int]:
    """What --crop cuts every image to: the --resize size, else the smallest height and width found.

    An image far smaller than the others (a thumbnail or a 1x1 among photos) is refused, naming it:
    cropping to it would cut every other image down to it."""
    if resize is not None:
        return resize
    from PIL import Image

    sizes: list[tuple[str, tuple[int, int]]] = []
    for path in paths:
        try:
            with Image.open(path) as picture:
                sizes.append((path, displayed_size(picture)))
        except Exception:  # unreadable files are reported by the decode pass
            continue
    if not sizes:
        raise DataError("no readable image to crop", path=os.path.dirname(paths[0]))
    typical = tuple(int(np.median([size[k] for _, size in sizes])) for k in (0, 1))
    for path, (h, w) in sizes:
        if h * FAR_BELOW < typical[0] or w * FAR_BELOW < typical[1]:
            raise DataError(f"is {h}x{w}, far below the other images' typical {typical[0]}x{typical[1]}: "
                            f"--crop would cut every image down to it", path=path,
                            hint="remove it (or resize it), or pass --resize HxW with --crop to crop to that size")
    return min(h for _, (h, _w) in sizes), min(w for _, (_h, w) in sizes)


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
            futures = [pool.submit(_decode_chunk, *chunk_arguments) for chunk_arguments in zip(*arguments)]
        results = [future.result() for future in futures]
    except BaseException:
        # on Ctrl-C, SIGTERM or a worker's death, the chunks not yet decoded are dropped, not waited for
        stop_pool(pool, WORKER_GRACE_SECONDS)
        raise
    pool.shutdown(wait=True)
    return results


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


Seen = tuple[int, tuple[int, int], str, str] | None  # ndim, (h, w), rule, sha256 of a decoded file; None: unreadable


def seen(item: Decoded) -> Seen:
    """What the checks over a whole folder need of one decoded file (not its pixels)."""
    pixels, rule, digest, _ = item
    return None if pixels is None else (pixels.ndim, pixels.shape[:2], rule, digest)


@dataclass(frozen=True)
class FolderSummary:
    """The decisions over a whole folder's decoded files: which are kept, the channel rule, the one size."""

    keep: list[int]
    skipped: list[str]
    to_rgb: bool  # a folder of grey and colour images: grey is repeated to RGB
    conversions: dict[str, int]
    size: tuple[int, int]
    colour: bool
    sha256: str

    def fitted(self, pixels: np.ndarray) -> np.ndarray:
        """One kept file's pixels as the folder's array holds them."""
        return np.repeat(pixels[..., None], 3, axis=2) if self.to_rgb and pixels.ndim == 2 else pixels


def summarize(seen_files: list[Seen], names: list[str], channels: str | None, folder: Path) -> FolderSummary:
    """Keep the readable files, apply the grey-or-colour rule and refuse more than one size."""
    keep = [i for i, s in enumerate(seen_files) if s is not None]
    if not keep:
        raise DataError(f"none of the {len(names)} images is readable", path=folder,
                        hint="the files are corrupt or not images")
    kept = [seen_files[i] for i in keep]
    conversions = Counter(s[2] for s in kept if s[2])
    to_rgb = channels is None and len({s[0] for s in kept}) > 1
    if to_rgb:
        conversions["mixed grey and colour: grey repeated to RGB"] += sum(s[0] == 2 for s in kept)
    _check_one_size([s[1] for s in kept], [names[i] for i in keep], folder)
    digest = hashlib.sha256("".join(s[3] for s in kept).encode("ascii")).hexdigest()
    return FolderSummary(keep, [names[i] for i, s in enumerate(seen_files) if s is None], to_rgb,
                         dict(conversions), tuple(kept[0][1]), to_rgb or kept[0][0] == 3, digest)


def _stack(decoded: list[Decoded], names: list[str], channels: str | None,
           folder: Path) -> tuple[np.ndarray, dict]:
    summary = summarize([seen(d) for d in decoded], names, channels, folder)
    images = np.stack([summary.fitted(decoded[i][0]) for i in summary.keep])
    meta = {"kept": summary.keep, "skipped": summary.skipped, "sha256": summary.sha256,
            "conversions": summary.conversions, "shape": list(images.shape)}
    return images, meta


def _check_one_size(sizes: list[tuple[int, int]], names: list[str], folder: Path) -> None:
    counts = Counter(tuple(s) for s in sizes)
    if len(counts) == 1:
        return
    listed = ", ".join(f"{h}x{w} ({n})" for (h, w), n in counts.most_common(8))
    odd = next(name for s, name in zip(sizes, names) if tuple(s) != counts.most_common(1)[0][0])
    raise DataError(f"images differ in size: {listed} (h x w, count); e.g. {odd}",
                    path=folder, hint="pass --resize HxW (antialiased) or --crop (centre crop to the "
                                      "smallest size, or to --resize)")


def _assemble(images: np.ndarray, meta: dict, plan: FolderPlan, cached: bool) -> FolderImages:
    keep = np.asarray(meta["kept"], dtype=np.int64)
    labels, class_names = plan.labels(keep)
    return FolderImages(images, labels, class_names, plan.test_mask(keep), meta["sha256"], list(meta["skipped"]),
                        dict(meta["conversions"]), cached, [plan.names[i] for i in keep])
