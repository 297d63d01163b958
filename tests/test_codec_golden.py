"""Golden .aez files: the codec must keep writing these exact bytes and keep decoding them.

The files were written by the codec before its split into modules, from the first 20 bundled
MNIST test images with the shipped mnist-codec checkpoint and its packaged tables (no training).
range-embedded.aez was written when an embedded table fitted its own quantiser to the images' codes
(float arithmetic that differs between CPUs); the writer now takes the checkpoint's quantiser
(range-embedded-v2.aez), and the old file must still decode.
"""
import hashlib
from pathlib import Path

import numpy as np
import pytest

from aelab.codec.api import decode_bytes, encode_bytes
from aelab.data import load_dataset

GOLDEN = Path(__file__).parent / "data" / "golden"
CHECKPOINT = Path(__file__).parents[1] / "src" / "aelab" / "models" / "pretrained" / "mnist-codec"
COUNT, BITS = 20, 6

# coder, table mode, SHA-256 of the file, SHA-256 of the decoded pixels; the file is GOLDEN/{coder}-{table}.aez
WRITTEN = [
    ("range", "checkpoint", "d3354bcd837779e0c3bafd24fc76e2429c05599bcb910b8ee5f69b854894c406", "283a372d40372538f32bb631c0f9faa0e78f96a76d3b5f218330dba54230def4"),
    ("zlib", "checkpoint", "39758ab17b7f39bdee4a9f1fe051b41716269aa52df2f9a07572c9f3cf6ee350", "283a372d40372538f32bb631c0f9faa0e78f96a76d3b5f218330dba54230def4"),
    ("range-ar", "checkpoint", "211154ad7ce60d7148984a00e997c9506b8d3307199c34134a04b5103b29b86e", "283a372d40372538f32bb631c0f9faa0e78f96a76d3b5f218330dba54230def4"),
    ("range-ctx", "checkpoint", "12a2bb977d8b1a018e20379db24f20e49e81699c1948beaa81544f43e8a88a29", "283a372d40372538f32bb631c0f9faa0e78f96a76d3b5f218330dba54230def4"),
    ("range", "embedded-v2", "184378ab7ee53f2ea4ad4e523872f525fc0630fead6a8cf3f92cb6fad55c2709", "283a372d40372538f32bb631c0f9faa0e78f96a76d3b5f218330dba54230def4"),
]
CASES = WRITTEN + [  # decoded, no longer written
    ("range", "embedded", "61225ad1fe3161d7cf29429e6641073911ea410d623070a753a0297842b63cae", "4ee3fb9b528ba1a1f6c6f3efeea0618dcb3a88944b441c880af28d2940f463ee"),
]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return load_dataset().test.images[:COUNT]


@pytest.mark.parametrize("coder, table, file_sha, pixels_sha", WRITTEN)
def test_golden_file_is_written_byte_for_byte(images, coder, table, file_sha, pixels_sha):
    blob = encode_bytes(images, CHECKPOINT, BITS, coder=coder, table=table.split("-")[0])
    assert _sha(blob) == file_sha
    assert blob == (GOLDEN / f"{coder}-{table}.aez").read_bytes()


@pytest.mark.parametrize("coder, table, file_sha, pixels_sha", CASES)
def test_golden_file_decodes_to_the_same_pixels(coder, table, file_sha, pixels_sha):
    blob = (GOLDEN / f"{coder}-{table}.aez").read_bytes()
    assert _sha(blob) == file_sha
    pixels = decode_bytes(blob, CHECKPOINT)
    assert pixels.shape == (COUNT, 28, 28) and pixels.dtype == np.uint8
    assert _sha(np.ascontiguousarray(pixels).tobytes()) == pixels_sha
