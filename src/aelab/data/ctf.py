"""Reading and writing the CNTK text format (CTF), as the CNTK 105 tutorial uses it.

Each line is one sample::

    |labels 0 0 0 1 0 0 0 0 0 0 |features 0 0 0 ... 255 0

An optional sequence id may precede the first ``|``; streams may come in any
order; ``|#`` starts a comment field; other streams are ignored. Files are
read line by line (gzip-compressed ones transparently) and parsed in blocks of
lines with numpy's C parser, so a 60,000-line file takes a second or two.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from ..errors import DataError, OptionError
from ..fileio import atomic_write
from .idx import GZIP_MAGIC

__all__ = ["iter_ctf", "read_ctf", "write_ctf"]

BLOCK_LINES = 1024  # lines parsed together: large enough to amortise numpy's call overhead
_HINT_CTF = "expected CNTK text format lines like '|labels 0 1 0 |features 0 12 255 ...'"


@dataclass
class _Block:
    """Consecutive samples: their 1-based line numbers and parsed streams."""
    line_numbers: list[int]
    features: np.ndarray  # float32 (rows, D)
    labels: np.ndarray | None  # float32 (rows, K)


def iter_ctf(path: str | os.PathLike, features: str = "features",
             labels: str = "labels") -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield ``(features, labels)`` float32 vectors for each sample of a CTF file.

    ``path`` is a CTF file, optionally gzip-compressed. ``features`` and
    ``labels`` name the streams; ``labels`` is ``None`` for a file without that
    stream. Every line must have the same number of values per stream as the
    first; otherwise, or for a value that is not a number, :class:`DataError`
    names the line.
    """
    for block in _iter_blocks(path, features, labels):
        for i in range(len(block.line_numbers)):
            yield block.features[i], None if block.labels is None else block.labels[i]


def read_ctf(path: str | os.PathLike, features: str = "features",
             labels: str = "labels") -> tuple[np.ndarray, np.ndarray | None, int]:
    """Read a CTF file of 8-bit images with optional one-hot labels.

    Returns ``(images, labels, num_classes)``: ``images`` uint8 of shape
    ``(n, D)``; ``labels`` int64 of shape ``(n,)`` (the position of the 1 in
    each one-hot row) or ``None`` if the file has no label stream; and
    ``num_classes``, the one-hot width (0 without labels). Feature values must
    be integers in 0..255 and label rows exactly one-hot; :class:`DataError`
    names the offending line otherwise.
    """
    return _read_ctf(path, features, labels, digest=None)


def read_ctf_with_digest(path: str | os.PathLike, features: str = "features",
                         labels: str = "labels") -> tuple[np.ndarray, np.ndarray | None, int, str]:
    """Like :func:`read_ctf`, also returning the SHA-256 of the uncompressed content."""
    digest = hashlib.sha256()
    images, classes, num_classes = _read_ctf(path, features, labels, digest)
    return images, classes, num_classes, digest.hexdigest()


def _read_ctf(path, features: str, labels: str,
              digest: "hashlib._Hash | None") -> tuple[np.ndarray, np.ndarray | None, int]:
    image_blocks: list[np.ndarray] = []
    label_blocks: list[np.ndarray] = []
    num_classes = 0
    for block in _iter_blocks(path, features, labels, digest):
        image_blocks.append(_as_pixels(block, path, features))
        if block.labels is not None:
            label_blocks.append(_as_classes(block, path, labels))
            num_classes = block.labels.shape[1]
    images = np.concatenate(image_blocks)
    return images, (np.concatenate(label_blocks) if label_blocks else None), num_classes


def _as_pixels(block: _Block, path, stream: str) -> np.ndarray:
    values = block.features
    valid = (values >= 0) & (values <= 255) & (values == np.floor(values))  # NaN fails every test
    if not valid.all():
        row, col = np.argwhere(~valid)[0]
        raise DataError(f"line {block.line_numbers[row]}: |{stream} value {col + 1} is "
                        f"{_format_value(values[row, col])}, expected an integer in 0..255",
                        path=path, hint="pixel values must be 8-bit gray levels")
    return values.astype(np.uint8)


def _as_classes(block: _Block, path, stream: str) -> np.ndarray:
    values = block.labels
    one_hot = (((values == 0) | (values == 1)).all(axis=1)) & (values.sum(axis=1) == 1)
    if not one_hot.all():
        row = int(np.argmin(one_hot))
        shown = " ".join(_format_value(v) for v in values[row][:20])
        more = " ..." if values.shape[1] > 20 else ""
        raise DataError(f"line {block.line_numbers[row]}: |{stream} is not one-hot "
                        f"(values {shown}{more}), expected a single 1 among 0s",
                        path=path, hint="labels must be one-hot vectors")
    return values.argmax(axis=1).astype(np.int64)


def _format_value(value: float) -> str:
    return str(int(value)) if np.isfinite(value) and value == int(value) else str(value)


# --- reading lines and blocks ------------------------------------------------

def _iter_blocks(path, features: str, labels: str,
                 digest: "hashlib._Hash | None" = None) -> Iterator[_Block]:
    _check_stream_names(features, labels)
    shape = _StreamShape()
    pending: list[tuple[int, str, str | None]] = []
    for line_number, text in _iter_lines(path, digest):
        if not text.strip():
            continue
        feature_text, label_text = _split_line(text, line_number, path, features, labels)
        pending.append((line_number, feature_text, label_text))
        if len(pending) >= BLOCK_LINES:
            yield _parse_block(pending, shape, path, features, labels)
            pending = []
    if pending:
        yield _parse_block(pending, shape, path, features, labels)
    if shape.features is None:
        raise DataError("empty file: no samples", path=path, hint=_HINT_CTF)


def _check_stream_names(*names: str) -> None:
    for name in names:
        if not name or any(c.isspace() or c == "|" for c in name):
            raise OptionError(f"stream name {name!r} must be a non-empty word without spaces or '|'")


def _iter_lines(path, digest=None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)``; decoding and gzip errors become DataError."""
    line_number = 0
    try:
        with _open_binary(path) as f:
            for line_number, raw in enumerate(f, start=1):
                if digest is not None:
                    digest.update(raw)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"line {line_number}: not UTF-8 text", path=path, hint=_HINT_CTF) from e
                yield line_number, text
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"damaged gzip data after line {line_number}", path=path,
                        hint="the file is truncated or corrupt; download or copy it again") from e
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise DataError("file not found", path=path, hint="check the path") from e
        raise DataError(f"cannot read: {e.strerror or e}", path=path) from e


@contextlib.contextmanager
def _open_binary(path) -> Iterator[IO[bytes]]:
    """Open ``path`` for reading bytes, decompressing it if it is gzip."""
    with open(path, "rb") as f:
        if f.read(2) == GZIP_MAGIC:
            f.seek(0)
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                yield gz
        else:
            f.seek(0)
            yield f


def _split_line(text: str, line_number: int, path, features: str,
                labels: str) -> tuple[str, str | None]:
    """The value text of the feature and label streams of one line."""
    fields: dict[str, str] = {}
    for part in text.split("|")[1:]:  # before the first '|': an optional sequence id
        if part.startswith("#"):
            continue  # a comment
        name, values = _split_name(part)
        if not name:
            raise DataError(f"line {line_number}: a '|' is not followed by a stream name",
                            path=path, hint=_HINT_CTF)
        if name in fields:
            raise DataError(f"line {line_number}: stream |{name} appears twice", path=path, hint=_HINT_CTF)
        fields[name] = values
    if features not in fields:
        found = ", ".join(f"|{n}" for n in fields) or "no streams"
        raise DataError(f"line {line_number}: no |{features} stream (found {found})",
                        path=path, hint=_HINT_CTF)
    return fields[features], fields.get(labels)


def _split_name(part: str) -> tuple[str, str]:
    pieces = part.split(None, 1)
    if not pieces or part[:1].isspace():
        return "", part
    return pieces[0], (pieces[1] if len(pieces) > 1 else "")


class _StreamShape:
    """What the first sample fixed: the width of each stream, and whether labels exist."""

    def __init__(self) -> None:
        self.features: int | None = None
        self.labels: int | None = None
        self.has_labels: bool | None = None
        self.first_line = 0


def _parse_block(pending: list[tuple[int, str, str | None]], shape: _StreamShape, path,
                 features: str, labels: str) -> _Block:
    line_numbers = [line for line, _, _ in pending]
    if shape.has_labels is None:
        shape.has_labels = pending[0][2] is not None
        shape.first_line = pending[0][0]
    for line_number, _, label_text in pending:
        if (label_text is not None) != shape.has_labels:
            what = "a" if label_text is not None else "no"
            other = "none" if label_text is not None else "one"
            raise DataError(f"line {line_number}: {what} |{labels} stream, but line "
                            f"{shape.first_line} has {other}", path=path,
                            hint="every sample needs a label, or none does")
    feature_values = _parse_numbers([t for _, t, _ in pending], line_numbers, shape, "features",
                                    features, path)
    label_values = None
    if shape.has_labels:
        label_values = _parse_numbers([t for _, _, t in pending], line_numbers, shape, "labels",
                                      labels, path)
    return _Block(line_numbers, feature_values, label_values)


def _parse_numbers(texts: list[str], line_numbers: list[int], shape: _StreamShape, role: str,
                   stream: str, path) -> np.ndarray:
    """Parse one stream's value texts into a float32 (rows, width) array.

    The fast path parses the whole block at once; if that fails or looks
    wrong, each line is parsed alone to report the first bad one. Both paths
    use ``np.loadtxt``, so they accept exactly the same numbers.
    """
    texts = [t.replace("\r", " ") for t in texts]  # loadtxt would take '\r' as a line break
    expected = getattr(shape, role)
    values = _loadtxt(texts)
    if values is None or values.shape[0] != len(texts) or (expected is not None and values.shape[1] != expected):
        values = np.stack([_parse_one_line(text, line, shape, role, stream, path)
                           for text, line in zip(texts, line_numbers)])
    if expected is None:
        setattr(shape, role, values.shape[1])
    return values


def _parse_one_line(text: str, line_number: int, shape: _StreamShape, role: str, stream: str,
                    path) -> np.ndarray:
    values = _loadtxt([text]) if text.strip() else None
    if values is None:
        bad = _first_non_number(text)
        if bad is None:
            raise DataError(f"line {line_number}: |{stream} has no values", path=path, hint=_HINT_CTF)
        raise DataError(f"line {line_number}: |{stream} value {bad[0]} is {bad[1]!r}, not a number",
                        path=path, hint=_HINT_CTF)
    if values.shape[0] != 1:
        raise DataError(f"line {line_number}: |{stream} has no values", path=path, hint=_HINT_CTF)
    expected = getattr(shape, role)
    if expected is not None and values.shape[1] != expected:
        raise DataError(f"line {line_number}: |{stream} has {values.shape[1]} values, but line "
                        f"{shape.first_line} has {expected}", path=path,
                        hint="every sample must have the same number of values")
    if expected is None:
        setattr(shape, role, values.shape[1])
    return values[0]


def _loadtxt(texts: list[str]) -> np.ndarray | None:
    """``np.loadtxt`` on whitespace-separated numbers; None if it cannot parse them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data" for blank text
            values = np.loadtxt(texts, dtype=np.float32, ndmin=2, comments=None,
                                delimiter=None, quotechar=None)
    except (ValueError, TypeError, OverflowError):
        return None
    return values


def _first_non_number(text: str) -> tuple[int, str] | None:
    for position, token in enumerate(text.split(), start=1):
        if _loadtxt([token]) is None:
            return position, token[:40]
    return None


# --- writing -----------------------------------------------------------------

def write_ctf(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray | None = None,
              num_classes: int | None = None) -> Path:
    """Write images (and labels) as CTF lines in the tutorial's layout, atomically.

    ``images`` has shape ``(n, ...)`` with integer values in 0..255; each is
    flattened into one ``|features`` stream. ``labels`` (``(n,)`` integers in
    ``0..num_classes-1``) become one-hot ``|labels`` written first, as in the
    tutorial; ``num_classes`` defaults to ``max(labels) + 1``. A name ending
    with ``.gz`` is gzip-compressed. Returns the path written.
    """
    pixels = _validated_pixels(images)
    classes, num_classes = _validated_classes(labels, num_classes, len(pixels))
    one_hot = [" ".join("1" if i == c else "0" for i in range(num_classes)) for c in range(num_classes)]
    with atomic_write(path, "wb") as f:
        if str(path).endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=6) as gz:
                _write_lines(gz, pixels, classes, one_hot)
        else:
            _write_lines(f, pixels, classes, one_hot)
    return Path(path)


_DECIMAL = [str(i) for i in range(256)]


def _write_lines(f: IO[bytes], pixels: np.ndarray, classes: np.ndarray | None,
                 one_hot: list[str]) -> None:
    for start in range(0, len(pixels), BLOCK_LINES):
        lines = []
        for offset, row in enumerate(pixels[start:start + BLOCK_LINES].tolist()):
            feature_text = " ".join([_DECIMAL[v] for v in row])
            if classes is None:
                lines.append(f"|features {feature_text}\n")
            else:
                lines.append(f"|labels {one_hot[classes[start + offset]]} |features {feature_text}\n")
        f.write("".join(lines).encode("ascii"))


def _validated_pixels(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim < 2 or images.shape[0] == 0 or images[0].size == 0:
        raise OptionError(f"images must have shape (n, ...) with n >= 1 and values per image, got {images.shape}")
    if images.dtype != np.uint8:
        if images.dtype.kind not in "iu" or images.min() < 0 or images.max() > 255:
            raise OptionError(f"images must be uint8 or integers in 0..255, got dtype {images.dtype}")
    return images.reshape(len(images), -1).astype(np.uint8, copy=False)


def _validated_classes(labels: np.ndarray | None, num_classes: int | None,
                       n: int) -> tuple[list[int] | None, int]:
    if labels is None:
        return None, 0
    labels = np.asarray(labels)
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise OptionError(f"labels must be integers of shape ({n},), got {labels.dtype} {labels.shape}")
    if labels.min() < 0:
        raise OptionError(f"labels must be >= 0, found {labels.min()}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    if num_classes < 1 or labels.max() >= num_classes:
        raise OptionError(f"num_classes={num_classes} must exceed the largest label ({labels.max()})")
    return labels.tolist(), int(num_classes)
