"""Reading and writing IDX files, the format of the MNIST database.

An IDX file is a 4-byte magic number ``0 0 TYPE NDIM``, then NDIM big-endian
uint32 sizes, then the values in C order, big-endian. The files are often
gzip-compressed; :func:`read_idx` recognises gzip by its magic bytes, so the
file name does not matter.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError, OptionError
from ..fileio import atomic_write

__all__ = ["read_idx", "write_idx", "IDX_DTYPES"]

#: IDX type code -> the (big-endian) dtype of the values on disk.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPECODE_BY_KIND = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}

GZIP_MAGIC = b"\x1f\x8b"
_HINT_IDX = "expected an MNIST-style IDX file (optionally gzip-compressed)"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed, into a native-endian array.

    ``path`` is any IDX file; gzip is detected from the content, not the name.
    The array has the file's dtype (``uint8`` for MNIST images and labels) and
    shape. Raises :class:`DataError` for a file that is missing, empty,
    truncated, has trailing bytes, or is not IDX.
    """
    array, _ = read_idx_with_digest(path)
    return array


def read_idx_with_digest(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Like :func:`read_idx`, also returning the SHA-256 of the uncompressed content."""
    data = maybe_gunzip(read_file_bytes(path), path)
    return parse_idx(data, path), hashlib.sha256(data).hexdigest()


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``, with OS errors turned into :class:`DataError`."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as e:
        raise DataError("file not found", path=path, hint="check the path") from e
    except IsADirectoryError as e:
        raise DataError("is a folder, expected a file", path=path) from e
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", path=path) from e


def maybe_gunzip(data: bytes, path: str | os.PathLike | None = None) -> bytes:
    """Decompress ``data`` if it starts with the gzip magic bytes, else return it."""
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"damaged gzip data ({_describe_gzip_error(e)})", path=path,
                        hint="the file is truncated or corrupt; download or copy it again") from e


def _describe_gzip_error(error: BaseException) -> str:
    if isinstance(error, EOFError):
        return "ends before the end of the compressed stream"
    return str(error) or type(error).__name__


def parse_idx(data: bytes, path: str | os.PathLike | None = None) -> np.ndarray:
    """Decode the (uncompressed) bytes of an IDX file; ``path`` is only used in errors."""
    if not data:
        raise DataError("empty file", path=path, hint=_HINT_IDX)
    if len(data) < 4:
        raise DataError(f"too short for an IDX header ({len(data)} bytes)", path=path, hint=_HINT_IDX)
    zero1, zero2, typecode, ndim = data[:4]
    if zero1 != 0 or zero2 != 0:
        raise DataError(f"not an IDX file: magic number {data[:4].hex(' ')} does not start with 00 00",
                        path=path, hint=_HINT_IDX)
    if typecode not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise DataError(f"unknown IDX type code 0x{typecode:02X} (known: {known})", path=path, hint=_HINT_IDX)
    if ndim < 1:
        raise DataError("IDX header declares 0 dimensions, expected at least 1", path=path, hint=_HINT_IDX)
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"truncated IDX header: {ndim} dimensions need {header_size} bytes, "
                        f"the file has {len(data)}", path=path, hint=_HINT_IDX)
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = IDX_DTYPES[typecode]
    expected = _product(dims) * dtype.itemsize  # Python ints: no overflow for absurd headers
    actual = len(data) - header_size
    shape_text = " x ".join(map(str, dims))
    if _product([d for d in dims if d]) * dtype.itemsize > np.iinfo(np.intp).max:
        # numpy refuses such a shape even when a zero dimension makes it empty
        raise DataError(f"shape {shape_text} is too large for any array", path=path,
                        hint="the header is damaged")
    if actual < expected:
        raise DataError(f"truncated: shape {shape_text} of {dtype.newbyteorder('=').name} needs "
                        f"{expected} bytes of values, the file has {actual}", path=path,
                        hint="the file is incomplete; download or copy it again")
    if actual > expected:
        raise DataError(f"{actual - expected} unexpected bytes after the {expected} bytes of values "
                        f"declared by shape {shape_text}", path=path,
                        hint="the header does not match the content; the file may be damaged")
    values = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(dims)
    return values.astype(dtype.newbyteorder("="))  # a writable, native-endian copy


def _product(values: list[int]) -> int:
    result = 1
    for v in values:
        result *= v
    return result


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` to ``path`` as an IDX file, atomically.

    ``array`` must have at least one dimension and one of the IDX dtypes:
    uint8, int8, int16, int32, float32 or float64. ``compress=None`` gzips the
    file iff its name ends with ``.gz``. Returns the path written.
    """
    array = np.asarray(array)
    header = idx_header(array)
    if compress is None:
        compress = str(path).endswith(".gz")
    payload = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">")).reshape(-1).view(np.uint8)
    with atomic_write(path, "wb") as f:
        if compress:
            # mtime=0 and no file name: the same array always gives the same bytes.
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=6) as gz:
                gz.write(header)
                gz.write(payload)
        else:
            f.write(header)
            f.write(payload)
    return Path(path)


def idx_header(array: np.ndarray) -> bytes:
    """The IDX header (magic number and sizes) for ``array``."""
    code = _TYPECODE_BY_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise OptionError(f"array dtype {array.dtype} cannot be stored in IDX",
                          hint="use uint8, int8, int16, int32, float32 or float64")
    if not 1 <= array.ndim <= 255:
        raise OptionError(f"array has {array.ndim} dimensions; IDX stores 1 to 255")
    if any(size >= 2**32 for size in array.shape):
        raise OptionError(f"array shape {array.shape} has a size too large for IDX (max 2**32 - 1)")
    return (bytes([0, 0, code, array.ndim])
            + b"".join(size.to_bytes(4, "big") for size in array.shape))
