"""The ``.aez`` container (specified in ``docs/format.md``): magic, version, the fixed header and the
ids the file gives coders, table modes and quantisers; :func:`file_bytes` writes a file and
:func:`read_header` checks one and reads it."""
from __future__ import annotations

import numbers
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from ..errors import DataError, OptionError

MAGIC = b"\x89AEZ"
VERSION = 1
SUFFIX = ".aez"
MIN_BITS, MAX_BITS = 2, 16
DEFAULT_BITS = 6
# the encoder's search (aelab.codec.search): the squared error (pixels in 0..1, summed per image) one bit is worth
DEFAULT_RATE_WEIGHT = 0.02
CACHE_FILE = "codec.safetensors"   # the checkpoint's tables file (aelab.models.checkpoint.TABLES_FILE)

# magic, version, coder, table mode, bits, height, width, count, code size, quantiser, reserved,
# model fingerprint, table digest, table length, payload length, CRC-32 of the symbols, CRC-32 of the file
HEADER = struct.Struct("<4sBBBBHHIHBB16s16sIIII")
assert HEADER.size == 68
_CRC_OFFSET = HEADER.size - 4

# each coder's byte in the header; what a coder is and does is its Coder in coders.py
CODER_IDS = {"range": 1, "zlib": 2, "range-ar": 3, "range-ctx": 4}
TABLES = {"checkpoint": 0, "embedded": 1}
QUANTISERS = {"uniform": 1, "transform": 2}
_QUANTISER_NAMES = {v: k for k, v in QUANTISERS.items()}
DEFAULT_QUANTISER = "transform"
_CODER_NAMES = {v: k for k, v in CODER_IDS.items()}
_TABLE_NAMES = {v: k for k, v in TABLES.items()}


# --- options: the ids and ranges above, as a caller names them ---------------------------------

def check_bits(bits: Any) -> int:
    """``bits`` as an int in 2..16, else OptionError."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not MIN_BITS <= bits <= MAX_BITS:
        raise OptionError(f"bits must be an integer from {MIN_BITS} to {MAX_BITS}, got {bits!r}",
                          hint="e.g. --bits 6; more bits: finer codes, more bytes")
    return int(bits)


def check_choice(value: str, choices: dict, what: str) -> str:
    """``value`` if it is one of ``choices``' keys, else OptionError naming ``what``."""
    if not isinstance(value, str) or value not in choices:
        raise OptionError(f"unknown {what} {value!r}", hint=f"choose one of: {', '.join(choices)}")
    return value


# --- the file ------------------------------------------------------------------------------------

def file_bytes(*, coder: int, table: int, bits: int, image_shape: tuple[int, int], count: int, code_size: int,
               quantiser: int, fingerprint: bytes, table_digest: bytes, symbols_crc32: int, table_blob: bytes,
               payload: bytes) -> bytes:
    """A whole ``.aez`` file: the header (ids as in :data:`CODER_IDS`, :data:`TABLES` and
    :data:`QUANTISERS`; its CRC over header, table and payload), the table section and the payload."""
    if count >= 1 << 32:
        raise DataError(f"too many images for one .aez file ({count})", hint="split the set")
    if len(payload) >= 1 << 32 or len(table_blob) >= 1 << 32:
        raise DataError("the compressed set is too large for one .aez file (4 GiB)", hint="split the set")
    h, w = image_shape
    head = HEADER.pack(MAGIC, VERSION, coder, table, bits, h, w, count, code_size, quantiser, 0, fingerprint,
                       table_digest, len(table_blob), len(payload), symbols_crc32, 0)
    crc = zlib.crc32(payload, zlib.crc32(table_blob, zlib.crc32(head[:_CRC_OFFSET])))
    return head[:_CRC_OFFSET] + struct.pack("<I", crc) + table_blob + payload


@dataclass(frozen=True)
class AezHeader:
    """The fixed fields of an ``.aez`` file (see docs/format.md)."""

    version: int
    coder: str
    table: str
    quantiser: str
    bits: int
    image_shape: tuple[int, int]
    count: int
    code_size: int
    fingerprint: str     # 32 hex digits
    table_digest: str    # 32 hex digits
    table_bytes: int
    payload_bytes: int
    symbols_crc32: int
    file_bytes: int

    @property
    def bytes_per_image(self) -> float:
        return self.file_bytes / self.count if self.count else float("nan")


def read_header(blob: bytes, path: Any = None) -> AezHeader:
    """Check an ``.aez`` file's magic, version, lengths and checksum; return its header.

    Raises DataError for anything that is not a complete, undamaged ``.aez``
    file of a version this aelab reads.
    """
    blob = bytes(blob)
    if len(blob) < 5 or blob[:4] != MAGIC:
        raise DataError("not an aelab .aez file (wrong magic bytes)", path=path,
                        hint="pass a file written by `aelab compress`")
    version = blob[4]
    if version > VERSION:
        raise DataError(f".aez format version {version} is newer than this aelab reads ({VERSION})", path=path,
                        hint="upgrade aelab")
    if version < 1:
        raise DataError(f"invalid .aez format version {version}", path=path)
    if len(blob) < HEADER.size:
        raise DataError(f"truncated .aez file: {len(blob)} bytes, shorter than its {HEADER.size}-byte header",
                        path=path, hint="the file is incomplete; copy it again")
    (_, _, coder, table, bits, h, w, count, code_size, quantiser, _reserved, fp, digest,
     table_len, payload_len, symbols_crc, crc) = HEADER.unpack_from(blob)
    expected = HEADER.size + table_len + payload_len
    if len(blob) < expected:
        raise DataError(f"truncated .aez file: {len(blob)} bytes of {expected}", path=path,
                        hint="the file is incomplete; copy it again")
    if len(blob) > expected:
        raise DataError(f"damaged .aez file: {len(blob) - expected} unexpected bytes after the payload", path=path,
                        hint="the file was altered; copy it again")
    if zlib.crc32(blob[HEADER.size:], zlib.crc32(blob[:_CRC_OFFSET])) != crc:
        raise DataError("damaged .aez file (checksum mismatch)", path=path,
                        hint="the file was altered or corrupted; copy it again")
    if coder not in _CODER_NAMES or table not in _TABLE_NAMES or quantiser not in _QUANTISER_NAMES:
        raise DataError(f"unknown coder ({coder}), table ({table}) or quantiser ({quantiser}) in the header",
                        path=path, hint="upgrade aelab")
    if not MIN_BITS <= bits <= MAX_BITS or min(h, w, code_size) < 1:
        raise DataError(f"invalid header: bits {bits}, images {h}x{w}, code size {code_size}", path=path)
    if (table == TABLES["checkpoint"]) != (table_len == 0):
        raise DataError("invalid header: the table length does not fit the table mode", path=path)
    return AezHeader(version=version, coder=_CODER_NAMES[coder], table=_TABLE_NAMES[table],
                     quantiser=_QUANTISER_NAMES[quantiser], bits=bits, image_shape=(h, w), count=count,
                     code_size=code_size, fingerprint=fp.hex(), table_digest=digest.hex(), table_bytes=table_len,
                     payload_bytes=payload_len, symbols_crc32=symbols_crc, file_bytes=len(blob))
