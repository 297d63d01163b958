"""Packed data sets: any aelab data set on disk in a form read with bounded memory.

A packed data set is a folder::

    OUT/index.json          what is inside, and the SHA-256 of every shard
    OUT/train.npy           the training split's samples, one .npy (uint8 images or float32 rows)
    OUT/train-labels.npy    its labels, int64 (when the data has labels)
    OUT/test.npy, OUT/test-labels.npy

Each split's samples are cut into *shards*, consecutive row ranges of about
:data:`SHARD_BYTES`, each with its own SHA-256 in the index, so a truncated
or altered file is refused with the shard it concerns. The samples are those
:func:`~aelab.data.load_dataset` made of the source: split, resized, table
rows scaled (the scaler is kept in the index), so a packed set trains,
evaluates and encodes as the source does. Reading it (:func:`load_packed`)
checks every shard and maps the files (``np.load(mmap_mode='r')``), and
training reads it in blocks (:mod:`aelab.training.stream`), never whole.

Writing (:class:`PackWriter`, :func:`pack`) goes into a temporary folder
beside ``OUT``, renamed onto ``OUT`` only when every file is complete and
synced: a full disk or a kill leaves no half-written data set.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import DataError, OptionError, OutputError
from ..fileio import FILE_MODE, cannot_write
from .chunks import READ_BYTES, row_chunks  # noqa: F401 - row_chunks: part of this module's API
from .dataset_types import Dataset, Split, combined_digest
from .flags import OPTION_FLAGS

__all__ = ["pack", "PackWriter", "load_packed", "is_packed", "row_chunks", "INDEX_FILE", "FORMAT", "FORMAT_VERSION"]

FORMAT = "aelab-packed"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
SPLITS = ("train", "test")
SHARD_BYTES = 64 << 20   # about this many bytes of samples per checksummed shard
BLOCK_BYTES = 1 << 20    # the unit of the training order's block shuffle: about this many bytes of rows
BUFFER_BYTES = 32 << 20  # the rows shuffled together: about this many bytes of blocks
HEADER_BYTES = 128       # each .npy's header, padded to this size (rewritten when the row count is known)
CHUNK_ROWS_BYTES = 16 << 20  # how many bytes of rows pack() copies at a time


def is_packed(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` is a folder holding a packed data set's ``index.json``."""
    return path is not None and (Path(path) / INDEX_FILE).is_file()


# --- writing --------------------------------------------------------------------------

def check_destination(out: Path) -> None:
    """Refuse to pack into ``out`` unless it is new (or an empty folder) in a folder that exists: missing
    parent folders are not made (a mistyped path should not become a tree of folders)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError("already exists", path=out, hint="remove it or choose another -o")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"the folder {parent} does not exist", path=out,
                          hint="create it first, or pack into a folder that exists")


class _SplitWriter:
    """One split's samples file (and labels file), written in appended chunks, hashed shard by shard."""

    def __init__(self, folder: Path, split: str, sample_shape: tuple[int, ...], dtype: np.dtype,
                 labels: bool, shard_rows: int) -> None:
        self.split, self.sample_shape, self.dtype = split, sample_shape, dtype
        self.row_bytes = int(np.prod(sample_shape)) * dtype.itemsize
        self.shard_rows = shard_rows
        self.rows = 0
        self.shards: list[dict] = []
        self._hash = hashlib.sha256()
        self._in_shard = 0
        self.path = folder / f"{split}.npy"
        self.file = open(self.path, "wb")
        self.file.write(_npy_header(dtype, (0, *sample_shape)))
        self.labels_path = folder / f"{split}-labels.npy" if labels else None
        self.labels_file = open(self.labels_path, "wb") if labels else None
        self._labels_hash = hashlib.sha256()
        if self.labels_file is not None:
            self.labels_file.write(_npy_header(np.dtype(np.int64), (0,)))

    def add(self, x: np.ndarray, labels: np.ndarray | None) -> None:
        x = np.ascontiguousarray(x, dtype=self.dtype)
        done = 0
        while done < len(x):
            take = min(len(x) - done, self.shard_rows - self._in_shard)
            data = memoryview(x[done:done + take]).cast("B")
            self.file.write(data)
            self._hash.update(data)
            self._in_shard += take
            done += take
            if self._in_shard == self.shard_rows:
                self._end_shard()
        self.rows += len(x)
        if self.labels_file is not None:
            lab = np.ascontiguousarray(labels, dtype=np.int64)
            self.labels_file.write(memoryview(lab).cast("B"))
            self._labels_hash.update(memoryview(lab).cast("B"))

    def _end_shard(self) -> None:
        first = sum(s["rows"] for s in self.shards)
        self.shards.append({"first_row": first, "rows": self._in_shard, "bytes": self._in_shard * self.row_bytes,
                            "sha256": self._hash.hexdigest()})
        self._hash, self._in_shard = hashlib.sha256(), 0

    def close(self) -> dict:
        if self._in_shard:
            self._end_shard()
        record: dict[str, Any] = {"rows": self.rows, "file": self.path.name, "shards": self.shards}
        _finish_file(self.file, _npy_header(self.dtype, (self.rows, *self.sample_shape)))
        if self.labels_file is not None:
            _finish_file(self.labels_file, _npy_header(np.dtype(np.int64), (self.rows,)))
            record.update(labels=self.labels_path.name, labels_sha256=self._labels_hash.hexdigest())
        return record

    def abandon(self) -> None:
        for f in (self.file, self.labels_file):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


def _finish_file(f, header: bytes) -> None:
    f.seek(0)
    f.write(header)
    f.flush()
    os.fsync(f.fileno())
    f.close()


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A .npy (version 1.0) header of exactly HEADER_BYTES bytes."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (np.lib.format.dtype_to_descr(dtype),
                                                                    tuple(int(s) for s in shape))
    room = HEADER_BYTES - 10 - 1
    if len(text) > room:
        raise OptionError(f"a sample shape of {shape[1:]} is too large to pack")
    body = (text + " " * (room - len(text)) + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


class PackWriter:
    """Write a packed data set chunk by chunk: ``add(split, samples, labels)`` as often as needed, then
    ``close(meta)``; used as a context manager, an exception (a full disk, Ctrl-C) removes everything.

    ``sample_shape`` and ``dtype`` are one sample's: uint8 ``(h, w)`` or ``(h, w, 3)``, or float32 ``(d,)``.
    """

    def __init__(self, out: str | os.PathLike, sample_shape: tuple[int, ...], dtype: Any, *, labels: bool,
                 shard_bytes: int = SHARD_BYTES, block_bytes: int = BLOCK_BYTES,
                 buffer_bytes: int = BUFFER_BYTES) -> None:
        self.out = Path(out)
        self.dtype = np.dtype(dtype)
        self.sample_shape = tuple(int(s) for s in sample_shape)
        if not ((self.dtype == np.uint8 and len(self.sample_shape) in (2, 3))
                or (self.dtype == np.float32 and len(self.sample_shape) == 1)):
            raise OptionError(f"cannot pack {self.dtype} samples of shape {self.sample_shape}",
                              hint="pack uint8 (h, w) or (h, w, 3) images or float32 (d,) rows")
        check_destination(self.out)
        row_bytes = int(np.prod(self.sample_shape)) * self.dtype.itemsize
        self.block_rows = max(1, block_bytes // row_bytes)
        self.buffer_blocks = max(1, buffer_bytes // (self.block_rows * row_bytes))
        shard_rows = max(1, shard_bytes // (row_bytes * self.block_rows)) * self.block_rows
        parent = self.out.parent if str(self.out.parent) else Path(".")
        try:
            self.tmp = None
            for self.tmp in _folder_names(parent, f".{self.out.name}.", ".tmp"):  # named before it exists
                with contextlib.suppress(FileExistsError):
                    self.tmp.mkdir(mode=0o700)
                    break
            self.splits = {s: _SplitWriter(self.tmp, s, self.sample_shape, self.dtype, labels, shard_rows)
                           for s in SPLITS}
        except OSError as e:
            self.abandon()
            raise cannot_write(e, self.out, "output folder") from e
        except BaseException:  # Ctrl-C or SIGTERM before the writer is whole: no `with` will clean up
            self.abandon()
            raise

    def add(self, split: str, samples: np.ndarray, labels: np.ndarray | None = None) -> None:
        if tuple(samples.shape[1:]) != self.sample_shape or samples.dtype != self.dtype:
            raise OptionError(f"{samples.dtype} samples of shape {samples.shape[1:]} do not fit this pack's "
                              f"{self.dtype} {self.sample_shape}")
        writer = self.splits[split]
        if (writer.labels_file is None) != (labels is None) or (labels is not None and len(labels) != len(samples)):
            raise OptionError("labels must be given for every chunk, one per sample, or never")
        try:
            writer.add(samples, labels)
        except OSError as e:
            raise cannot_write(e, self.out, "output folder") from e

    def close(self, meta: dict) -> Path:
        """Finish the files, write the index (``meta``: name, num_classes, class_names, source) and rename
        the folder onto ``out``; returns ``out``."""
        try:
            records = {s: w.close() for s, w in self.splits.items()}
            if records["train"]["rows"] == 0 or records["test"]["rows"] == 0:
                raise OptionError("a packed data set needs samples in both splits")
            index = {"format": FORMAT, "format_version": FORMAT_VERSION,
                     "kind": "table" if self.dtype == np.float32 else "images", "dtype": self.dtype.name,
                     "sample_shape": list(self.sample_shape), "labels": "labels" in records["train"],
                     "block_rows": self.block_rows, "buffer_blocks": self.buffer_blocks,
                     **meta, "splits": records}
            index["sha256"] = identity(index)
            path = self.tmp / INDEX_FILE
            with open(path, "w", encoding="utf-8") as f:
                json.dump(index, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            for p in self.tmp.iterdir():
                os.chmod(p, FILE_MODE)
            os.chmod(self.tmp, (FILE_MODE | 0o111) & 0o777)
            if self.out.is_dir():
                self.out.rmdir()  # empty (checked in __init__)
            os.replace(self.tmp, self.out)
            _sync_folder(self.out.parent)
        except OSError as e:
            self.abandon()
            raise cannot_write(e, self.out, "output folder") from e
        except BaseException:
            self.abandon()
            raise
        return self.out

    def abandon(self) -> None:
        """Remove everything written so far."""
        for w in getattr(self, "splits", {}).values():
            w.abandon()
        if getattr(self, "tmp", None) is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None:
            self.abandon()


def _folder_names(parent: Path, prefix: str, suffix: str) -> Iterator[Path]:
    """Random folder names in ``parent``, endlessly. The writer takes a name before it makes the folder,
    so a signal at any moment finds the folder named and removable (``tempfile.mkdtemp`` gives the name
    only once the folder exists)."""
    while True:
        yield parent / f"{prefix}{secrets.token_hex(6)}{suffix}"


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def pack(data: Dataset, out: str | os.PathLike, **writer_options) -> Path:
    """Write ``data`` (as :func:`~aelab.data.load_dataset` returned it) as a packed data set in ``out``,
    a few megabytes of rows at a time; returns ``out``."""
    images = data.train.images
    with PackWriter(out, images.shape[1:], images.dtype, labels=data.train.labels is not None
                    and data.test.labels is not None, **writer_options) as writer:
        row_bytes = max(1, int(np.prod(images.shape[1:])) * images.dtype.itemsize)
        step = max(1, CHUNK_ROWS_BYTES // row_bytes)
        for name in SPLITS:
            split: Split = getattr(data, name)
            for start in range(0, split.n, step):
                labels = None if writer.splits[name].labels_file is None else split.labels[start:start + step]
                writer.add(name, split.images[start:start + step], labels)
        source = {k: v for k, v in data.source.items() if k != "cached"}
        return writer.close({"name": data.name, "num_classes": data.num_classes, "class_names": data.class_names,
                             "packed_from": {"sha256": data.sha256, "files": data.files, "source": source}})


# --- reading --------------------------------------------------------------------------

def load_packed(path: str | os.PathLike, verify: bool = True) -> Dataset:
    """The packed data set in folder ``path``, its samples memory-mapped (nothing read whole).

    Every file's size is checked against the index; with ``verify`` (the default) every shard's and
    label file's SHA-256 too, reading a few megabytes at a time. A missing, truncated or altered file
    raises :class:`DataError` naming it.
    """
    folder = Path(path)
    index = read_index(folder)
    splits = {}
    for name in SPLITS:
        record = index["splits"][name]
        images = _open_samples(folder, index, record, verify)
        labels = _open_labels(folder, record, verify) if index["labels"] else None
        if labels is not None:
            _check_labels_in_classes(labels, int(index.get("num_classes") or 0), folder / INDEX_FILE)
        splits[name] = Split(images, labels)
    from_ = index.get("packed_from") or {}
    source = dict(from_.get("source") or {})
    source["packed_from"] = {"sha256": from_.get("sha256"), "source": from_.get("source") or {}}
    source.update(path=str(folder), format="packed", kind=index["kind"], split={"method": "given"},
                  packed={"block_rows": index["block_rows"],
                          "buffer_blocks": index["buffer_blocks"],
                          "shards": sum(len(index["splits"][s]["shards"]) for s in SPLITS)})
    for name in ("channels", "resize", "crop", "label_column"):  # applied when packing: not to be applied again
        source.pop(name, None)
    return Dataset(name=str(index.get("name") or folder.name), train=splits["train"], test=splits["test"],
                   sha256=index["sha256"], files={INDEX_FILE: index["sha256"]},
                   num_classes=int(index.get("num_classes") or 0), class_names=index.get("class_names"),
                   source=source)


def identity(index: dict) -> str:
    """A packed set's ``Dataset.sha256``: over its shards' and labels' SHA-256 and the block order's settings
    (which decide the training order, so a resumed run must see the same)."""
    digests = [sh["sha256"] for s in SPLITS for sh in index["splits"][s]["shards"]]
    digests += [index["splits"][s]["labels_sha256"] for s in SPLITS if "labels_sha256" in index["splits"][s]]
    return combined_digest(digests + [f"blocks {index['block_rows']} x {index['buffer_blocks']}"])


def check_reading_options(data: Dataset, options: Any, *, scaler: Any) -> None:
    """Refuse reading options (a :class:`~aelab.data.resolver.ReadOptions`) that differ from those the packed
    ``data`` was read with when it was packed (they were applied then, the split drawn and bad files
    skipped; nothing can apply them again), and a table scaler other than its own."""
    packed = (data.source.get("packed_from") or {}).get("source") or {}
    split = packed.get("split") or {}
    was = {"channels": packed.get("channels"), "resize": packed.get("resize"), "crop": packed.get("crop") or None,
           "skip_bad": True if packed.get("skip_bad") or packed.get("skipped_count") else None,
           "test_fraction": split.get("test_fraction"), "seed": split.get("seed"),
           "label_column": _text(packed.get("label_column"))}
    given = {"channels": options.channels, "resize": list(options.resize) if options.resize else None,
             "crop": options.crop, "skip_bad": options.skip_bad, "test_fraction": options.test_fraction,
             "seed": options.seed, "label_column": _text(options.label_column)}
    differ = [f"{OPTION_FLAGS[k]} (packed with {_shown(was[k])})" for k, v in given.items() if v is not None and v != was[k]]
    scale = options.scale
    if scale not in (None, packed.get("scaler", {}).get("method")) and data.kind == "table":
        differ.append(f"--scale (packed with {packed.get('scaler', {}).get('method')})")
    elif scale not in (None, "none") and data.kind == "images":
        differ.append("--scale (images are not scaled)")
    if differ:
        raise OptionError(f"a packed data set is read as it was packed: its split, sizes and files were fixed then; "
                          f"{', '.join(differ)} cannot change", path=data.source.get("path"),
                          hint="leave the option out, or pack the source again with it")
    if scaler is not None and scaler.to_dict() != data.source.get("scaler"):
        raise DataError("this packed table was scaled otherwise than the model's training data",
                        path=data.source.get("path"), hint="pack the table the model was trained on again, "
                                                           "or train on this packed set")


def _text(label_column: Any) -> str | None:
    """A label column as text: 0 from Python and '0' from the command line are the same column."""
    return None if label_column is None else str(label_column)


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return str(value)


def read_index(folder: Path) -> dict:
    """The checked ``index.json`` of a packed data set."""
    path = folder / INDEX_FILE
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("not a packed data set: no index.json", path=folder,
                        hint="make one with `aelab data pack SOURCE -o DIR`") from None
    except (OSError, ValueError) as e:
        raise DataError(f"the packed data set's index is unreadable ({e})", path=path,
                        hint="pack the data again") from e
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError("not an aelab packed data set index", path=path)
    if not isinstance(index.get("format_version"), int) or index["format_version"] > FORMAT_VERSION:
        raise DataError("packed by a newer aelab", path=path, hint="upgrade aelab")
    _check_index(index, path)
    return index


class _IndexField:
    """Reads one field of a packed index, raising a one-line :class:`DataError` that names it when it is
    missing or wrong (real code, not ``assert``: the checks must hold under ``python -O`` too)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def bad(self, field: str, why: str) -> DataError:
        return DataError(f"the packed data set's index is inconsistent: {field} {why}", path=self.path,
                         hint="pack the data again")

    def get(self, mapping: Any, key: str, field: str, kind: type) -> Any:
        if not isinstance(mapping, dict) or key not in mapping:
            raise self.bad(field, "is missing")
        value = mapping[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):  # JSON true is no count
            raise self.bad(field, f"is {value!r}, not of the right type")
        return value

    def count(self, mapping: Any, key: str, field: str, *, least: int = 1) -> int:
        value = self.get(mapping, key, field, int)
        if value < least:
            raise self.bad(field, f"is {value}, less than {least}")
        return value

    def file_name(self, mapping: Any, key: str, field: str) -> str:
        """A file of the data set's own folder: a plain name, no folder part, not ``.`` or ``..``."""
        value = self.get(mapping, key, field, str)
        if value in ("", ".", "..") or Path(value).name != value or "/" in value or "\\" in value:
            raise self.bad(field, f"is {value!r}, not the name of a file in the data set's folder")
        return value


def _check_index(index: dict, path: Path) -> None:
    """Check every field that reading the packed set relies on (types, sizes, file names, the shards'
    rows and SHA-256, the set's identity); the first one wrong raises a one-line :class:`DataError` naming it."""
    field = _IndexField(path)
    dtype_name = field.get(index, "dtype", "dtype", str)
    if dtype_name not in ("uint8", "float32"):
        raise field.bad("dtype", f"is {dtype_name!r}, not uint8 or float32")
    shape = field.get(index, "sample_shape", "sample_shape", list)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise field.bad("sample_shape", f"is {shape!r}, not a list of positive whole numbers")
    field.count(index, "block_rows", "block_rows")
    field.count(index, "buffer_blocks", "buffer_blocks")
    labelled = field.get(index, "labels", "labels", bool)
    _check_classes(index, field)
    splits = field.get(index, "splits", "splits", dict)
    for name in SPLITS:
        record = field.get(splits, name, f"splits.{name}", dict)
        rows = field.count(record, "rows", f"splits.{name}.rows")
        shards = field.get(record, "shards", f"splits.{name}.shards", list)
        first = 0
        for k, shard in enumerate(shards):
            where = f"splits.{name}.shards[{k}]"
            if field.count(shard, "first_row", f"{where}.first_row", least=0) != first:
                raise field.bad(f"{where}.first_row", f"is {shard['first_row']}, where the shards before end at {first}")
            first += field.count(shard, "rows", f"{where}.rows")
            field.get(shard, "sha256", f"{where}.sha256", str)
        if first != rows:
            raise field.bad(f"splits.{name}.rows", f"is {rows}, but its shards hold {first}")
        field.file_name(record, "file", f"splits.{name}.file")
        if labelled:
            field.file_name(record, "labels", f"splits.{name}.labels")
            field.get(record, "labels_sha256", f"splits.{name}.labels_sha256", str)
    if index.get("sha256") != identity(index):
        raise field.bad("sha256", "does not match its shards and block settings")


def _check_classes(index: dict, field: _IndexField) -> None:
    """The class count and names that encode's classes.json and the report carry: whole, and agreeing."""
    classes = index.get("num_classes") or 0
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 0:
        raise field.bad("num_classes", f"is {classes!r}, not a whole number")
    names = index.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)
                                  and len(names) == classes):
        count = len(names) if isinstance(names, list) else repr(names)
        raise field.bad("class_names", f"are {count} names for num_classes {classes}")


def _check_labels_in_classes(labels: np.ndarray, classes: int, path: Path) -> None:
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise DataError(f"the packed data set's index is inconsistent: labels run from {int(labels.min())} to "
                        f"{int(labels.max())}, where num_classes is {classes}", path=path, hint="pack the data again")


def _open_samples(folder: Path, index: dict, record: dict, verify: bool) -> np.ndarray:
    path = folder / record["file"]
    dtype, shape = np.dtype(index["dtype"]), tuple(index["sample_shape"])
    row_bytes = int(np.prod(shape)) * dtype.itemsize
    _check_size(path, HEADER_BYTES + int(record["rows"]) * row_bytes)
    if verify:
        with open(path, "rb") as f:
            for k, shard in enumerate(record["shards"]):
                start = HEADER_BYTES + int(shard["first_row"]) * row_bytes
                if _sha256_of(f, start, int(shard["rows"]) * row_bytes) != shard["sha256"]:
                    raise DataError(f"shard {k} (rows {shard['first_row']} to "
                                    f"{int(shard['first_row']) + int(shard['rows']) - 1}) is altered: its SHA-256 "
                                    "does not match the index", path=path, hint="pack the data again")
    return _mapped(path, dtype, (int(record["rows"]), *shape))


def _open_labels(folder: Path, record: dict, verify: bool) -> np.ndarray:
    path = folder / record["labels"]
    _check_size(path, HEADER_BYTES + 8 * int(record["rows"]))
    if verify:
        with open(path, "rb") as f:
            if _sha256_of(f, HEADER_BYTES, 8 * int(record["rows"])) != record.get("labels_sha256"):
                raise DataError("the labels are altered: their SHA-256 does not match the index", path=path,
                                hint="pack the data again")
    return _mapped(path, np.dtype(np.int64), (int(record["rows"]),))


def _check_size(path: Path, expected: int) -> None:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"a file of the packed data set is missing ({e.strerror or e})", path=path,
                        hint="pack the data again") from e
    if size != expected:
        raise DataError(f"{'truncated' if size < expected else 'too long'}: {size} bytes where the index says "
                        f"{expected}", path=path, hint="pack the data again")


def _sha256_of(f, start: int, count: int) -> str:
    digest = hashlib.sha256()
    f.seek(start)
    buf = bytearray(min(READ_BYTES, max(count, 1)))
    view = memoryview(buf)
    while count > 0:
        n = f.readinto(view[:min(count, len(buf))])
        if not n:
            break
        digest.update(view[:n])
        count -= n
    return digest.hexdigest()


def _mapped(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"unreadable ({e})", path=path, hint="pack the data again") from e
    if array.dtype != dtype or array.shape != shape or array.offset != HEADER_BYTES:
        raise DataError(f"holds {array.dtype} {array.shape} where the index says {dtype} {shape}", path=path,
                        hint="pack the data again")
    return array

