"""What a path is, decided once: :func:`resolve` names a source's kind, and :class:`ReadOptions` says how
to read it.

Every reader (``load_dataset``, ``load_images``, packing, ``describe``, the inputs of encode, score and
compress) asks :func:`resolve` and dispatches on :attr:`Source.kind`; no other module looks at a
suffix, a magic number or a folder's files to decide what a source is (tests/test_architecture.py
checks it).
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, OptionError
from .flags import OPTION_FLAGS
from .folders import describe_not_read, has_images, named_few, pictures_not_read
from .pictures import IMAGE_FORMATS
from .idx import GZIP_MAGIC
from .packed import is_packed
from .pictures import CHANNEL_CHOICES, IMAGE_FILE_SUFFIXES, parse_size
from .scaling import SCALE_METHODS
from .tables import TABLE_SUFFIXES

__all__ = ["Source", "resolve", "ReadOptions", "BUNDLED_NAME", "IDX_FILES", "KINDS", "OPTION_FLAGS",
           "DEFAULT_TEST_FRACTION", "DEFAULT_SEED"]

BUNDLED_NAME = "mnist"
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_SEED = 0

# (split, IDX file stem) in the fixed order used for the dataset digest.
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

# the kinds of source; the first group are train/test datasets, the second single sets of samples
DATASET_KINDS = ("bundled", "packed", "idx folder", "ctf folder", "image folder", "ctf pair", "table", "npz")
SINGLE_KINDS = ("image file", "idx file", "ctf file")
KINDS = DATASET_KINDS + SINGLE_KINDS

ACCEPTED_SOURCES = ("a folder with the four MNIST IDX files (train-images-idx3-ubyte, ...; .gz or not), "
                    "a folder with Train-*_cntk_text.txt and Test-*_cntk_text.txt, "
                    "a .npz with x_train, y_train, x_test, y_test, or 'TRAIN.txt,TEST.txt' CTF files, "
                    f"a folder of images ({IMAGE_FORMATS}) or a table (.npy, .csv, .tsv, .parquet)")


@dataclass(frozen=True)
class Source:
    """A resolved source: its ``kind`` (one of :data:`KINDS`) and where it is.

    ``path`` is None for the bundled MNIST; ``parts`` holds the files that make it up where the
    kind has several (an IDX folder's four files by role, a CTF folder's or pair's train and test
    files); ``npz_layout`` says what a ``.npz`` holds: ``"splits"`` (``x_train``...), ``"images"``
    (``images`` or ``x_test`` without ``x_train``: one set), ``"array"`` (one other array) or
    ``"other"``.
    """

    kind: str
    path: Path | None
    parts: dict[Any, Path] = dataclasses.field(default_factory=dict)
    npz_layout: str | None = None

    @property
    def name(self) -> str:
        """The data set's name: a folder's or file's name without suffix, ``mnist`` for the bundled set."""
        if self.path is None:
            return BUNDLED_NAME
        if self.kind == "ctf pair":
            return self.parts["train"].name.split(".")[0]
        if self.kind in ("table", "npz"):
            return self.path.stem
        return self.path.resolve().name or str(self.path)

    @property
    def is_single(self) -> bool:
        """One set of samples without a train/test split: a picture, an IDX or CTF file, an ``images`` .npz."""
        return self.kind in SINGLE_KINDS or (self.kind == "npz" and self.npz_layout == "images")

    @property
    def reads_images(self) -> bool:
        """Whether image files are decoded (so that channels, size, crop and skip-bad apply)."""
        return self.kind in ("image folder", "image file")


def resolve(path: str | os.PathLike | None) -> Source:
    """Decide what ``path`` is. ``None`` (or ``"mnist"`` when no such file exists) is the bundled
    MNIST; ``"TRAIN,TEST"`` names two CTF files; a folder is a packed set, an IDX folder, a CTF
    folder or a folder of images; a file is a table (by suffix), a ``.npz`` (by suffix or content),
    a picture, an IDX file or a CTF file (by suffix or first bytes). Raises :class:`DataError` for
    a path that is none of these."""
    if path is None:
        return Source("bundled", None)
    _check_path(path)
    p = Path(path)
    if p.is_dir():
        return _resolve_folder(p)
    if p.is_file():
        return _resolve_file(p)
    text = os.fspath(path)
    if "," in text:
        return _resolve_ctf_pair(text)
    if text == BUNDLED_NAME:
        return Source("bundled", None)
    raise DataError("no such file or folder", path=p, hint=f"pass {ACCEPTED_SOURCES}")


def _check_path(path: object) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise OptionError(f"data must be the path of a file or folder (or None for the bundled MNIST), got "
                          f"{type(path).__name__}", hint=ARRAYS_HINT)


ARRAYS_HINT = ("arrays need no loading: pass them to encode_images, reconstruct_images, anomaly_scores or "
               "AutoencoderTransformer.fit, or make a data set of them with Dataset(name, Split(images, labels), "
               "Split(test_images, test_labels), sha256)")


def _resolve_folder(folder: Path) -> Source:
    if is_packed(folder):
        return Source("packed", folder)
    idx_paths = {role: find_idx_file(folder, stem) for role, stem in IDX_FILES.items()}
    if any(idx_paths.values()):
        missing = [stem for role, stem in IDX_FILES.items() if idx_paths[role] is None]
        if missing:
            raise DataError(f"missing IDX file(s): {', '.join(missing)} (.gz or not); found: "
                            f"{listing(folder)}", path=folder,
                            hint="a dataset folder needs all four MNIST IDX files")
        return Source("idx folder", folder, parts={role: p for role, p in idx_paths.items() if p is not None})
    train_ctf, test_ctf = _find_ctf_file(folder, "Train"), _find_ctf_file(folder, "Test")
    if train_ctf and test_ctf:
        return Source("ctf folder", folder, parts={"train": train_ctf, "test": test_ctf})
    if has_images(folder):
        return Source("image folder", folder)
    unread = pictures_not_read(folder)
    if unread:
        raise DataError(f"holds no images aelab reads, only {describe_not_read(unread)}", path=folder,
                        hint=f"convert them to PNG (aelab reads {IMAGE_FORMATS})")
    raise DataError(f"no dataset files found; the folder holds: {listing(folder)}", path=folder,
                    hint=f"it holds no images; pass {ACCEPTED_SOURCES}")


def _resolve_file(path: Path) -> Source:
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return Source("table", path)
    head = b"" if suffix in IMAGE_FILE_SUFFIXES else _first_bytes(path)
    if suffix == ".npz" or head.startswith(b"PK\x03\x04"):
        if not head.startswith(b"PK"):  # no zip signature: numpy would call the bytes pickled data
            raise DataError("not a .npz file: it is not a zip archive", path=path,
                            hint="save it with numpy.savez or numpy.savez_compressed")
        return Source("npz", path, npz_layout=npz_layout(_npz_keys(path)))
    if suffix in IMAGE_FILE_SUFFIXES or head.startswith((b"\x89PNG", b"\xff\xd8\xff")):
        return Source("image file", path)
    if head.startswith(b"\x00\x00"):
        return Source("idx file", path)
    if not head:
        raise DataError("empty file", path=path, hint="expected IDX, CTF, npz or PNG/JPEG")
    return Source("ctf file", path)


def _resolve_ctf_pair(text: str) -> Source:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2 or not all(parts):
        named = sum(1 for part in parts if part)
        raise DataError(f"expected 'TRAIN,TEST' naming two CTF files, got {named} file name(s)",
                        path=text, hint="separate the train and test files with one comma")
    for part in parts:
        if not Path(part).is_file():
            raise DataError("CTF file not found", path=part, hint="check the path of 'TRAIN,TEST'")
    return Source("ctf pair", Path(parts[0]), parts={"train": Path(parts[0]), "test": Path(parts[1])})


def npz_layout(keys: list[str]) -> str:
    """What a .npz with arrays ``keys`` holds: ``"splits"``, ``"images"``, ``"array"`` or ``"other"``."""
    if "x_train" in keys:
        return "splits"
    if "images" in keys or "x_test" in keys:
        return "images"
    return "array" if len(keys) == 1 else "other"


def _npz_keys(path: Path) -> list[str]:
    """The array names in a .npz, without reading the arrays."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return list(npz.files)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"not a readable .npz file ({e})", path=path,
                        hint="save it with numpy.savez or numpy.savez_compressed") from e


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


def find_idx_file(folder: Path, stem: str) -> Path | None:
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


def listing(folder: Path, limit: int = 12) -> str:
    """A folder's first names, for messages."""
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError as e:
        return f"(cannot list: {e.strerror or e})"
    if not names:
        return "nothing"
    return named_few(names, limit)


# --- ReadOptions -------------------------------------------------------------------------

IMAGE_OPTIONS = ("channels", "resize", "crop", "skip_bad")
SPLIT_OPTIONS = ("test_fraction", "seed")


@dataclass(frozen=True)
class ReadOptions:
    """How to read a source; every field None means "not given" (the reader's default applies).

    ``test_fraction`` and ``seed``: the test split drawn from a source without one (defaults
    :data:`DEFAULT_TEST_FRACTION` and :data:`DEFAULT_SEED`); ``label_column`` (name or index): a
    table's labels; ``channels`` (``'grayscale'``/``'rgb'``), ``resize`` (``"HxW"`` or ``(h, w)``,
    kept as ``(h, w)``), ``crop`` and ``skip_bad``: image files; ``scale`` (``'standard'``,
    ``'minmax'``, ``'none'``): a table's columns. ``crop=False`` and ``skip_bad=False`` are "not given".
    """

    test_fraction: float | None = None
    seed: int | None = None
    label_column: str | int | None = None
    channels: str | None = None
    resize: tuple[int, int] | None = None
    crop: bool | None = None
    skip_bad: bool | None = None
    scale: str | None = None

    def __post_init__(self) -> None:
        if self.channels is not None and self.channels not in CHANNEL_CHOICES:
            raise OptionError(f"channels {self.channels!r} is not known",
                              hint="use 'grayscale' or 'rgb' (--grayscale or --rgb), or leave it out")
        if self.scale is not None and self.scale not in SCALE_METHODS:
            raise OptionError(f"scale {self.scale!r} is not known", hint=f"use one of {', '.join(SCALE_METHODS)}")
        if self.resize is not None:
            object.__setattr__(self, "resize", parse_size(self.resize))
        for name in ("crop", "skip_bad"):
            value = getattr(self, name)
            object.__setattr__(self, name, True if value else None)

    @classmethod
    def of(cls, options: ReadOptions | None = None, **given: Any) -> ReadOptions:
        """``options`` with the keyword options ``given`` (those not None) in place of its own; an
        unknown name is refused."""
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise OptionError(f"unknown data option(s) {', '.join(unknown)}",
                              hint=f"use {', '.join(f.name for f in dataclasses.fields(cls))}")
        base = options or cls()
        return dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})

    def given(self) -> dict[str, Any]:
        """The options given, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def over(self, recorded: ReadOptions) -> ReadOptions:
        """These options where given, else ``recorded``'s."""
        return dataclasses.replace(recorded, **self.given())

    @property
    def split_fraction(self) -> float:
        return DEFAULT_TEST_FRACTION if self.test_fraction is None else self.test_fraction

    @property
    def split_seed(self) -> int:
        return DEFAULT_SEED if self.seed is None else self.seed

    def only(self, names: tuple[str, ...]) -> ReadOptions:
        return ReadOptions(**{k: v for k, v in self.given().items() if k in names})

    def without(self, names: tuple[str, ...]) -> ReadOptions:
        return ReadOptions(**{k: v for k, v in self.given().items() if k not in names})

    def applying_to(self, source: Source) -> ReadOptions:
        """The options (a checkpoint's recorded ones) that apply to ``source``: image options to decoded
        images, a label column to tables, the split to every source but a packed set (split when packed)."""
        dropped: tuple[str, ...] = ()
        if not source.reads_images:
            dropped += IMAGE_OPTIONS
        if source.kind != "table":
            dropped += ("label_column",)
        if source.kind == "packed":
            dropped += SPLIT_OPTIONS
        return self.without(dropped)

    def refuse_unless_applicable(self, source: Source) -> None:
        """Refuse a label column for anything but a table, and image options for anything but image files
        (a packed set checks both against those it was packed with)."""
        if source.kind == "packed":
            return
        if self.label_column is not None and source.kind != "table":
            raise OptionError("--label-column applies to tables only (.npy, .csv, .tsv, .parquet)",
                              hint="image folders take their labels from class folders; IDX, CTF and .npz files "
                                   "carry their own")
        if source.reads_images:
            return
        given = [k for k in IMAGE_OPTIONS if getattr(self, k)]
        if given:
            flags = ", ".join(OPTION_FLAGS[k] for k in given)
            raise OptionError(f"{flags} appl{'ies' if len(given) == 1 else 'y'} to folders of images only",
                              hint="convert the other sources' images yourself, or leave the option out")

    @classmethod
    def recorded_in(cls, source: dict[str, Any]) -> ReadOptions:
        """The options that read a source as ``source`` (a ``Dataset.source``) records it was read: the
        split's fraction and seed, a folder's channels, size and crop, a table's label column (what a
        checkpoint keeps, so that evaluate and encode see the data as training did). A packed set's are
        those its source was read with when packed: its source then reads as the pack holds it."""
        packed_from = (source.get("packed_from") or {}).get("source")
        if packed_from:
            return cls.recorded_in(packed_from)
        options: dict[str, Any] = {}
        split = source.get("split") or {}
        if split.get("method") == "fraction":
            options.update(test_fraction=split["test_fraction"], seed=split["seed"])
        for name in ("channels", "crop", "label_column", "resize"):
            value = source.get(name)
            if value is not None and value is not False:  # a label column 0 is kept (0 == False)
                options[name] = value
        return cls.of(**options)

    def to_record(self) -> dict[str, Any]:
        """JSON-ready, as a checkpoint keeps it (``resize`` as ``"HxW"``)."""
        record = self.given()
        if self.resize is not None:
            record["resize"] = "x".join(str(v) for v in self.resize)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> ReadOptions:
        """The options a checkpoint recorded (:meth:`to_record`)."""
        return cls.of(**(record or {}))
