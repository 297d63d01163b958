"""read_idx / write_idx: exact round trips and a clear DataError for every kind of damage."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from aelab.data.idx import read_idx, write_idx
from aelab.errors import DataError, OptionError

ARRAYS = {
    "uint8": np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    "int8": np.array([-128, -1, 0, 127], dtype=np.int8),
    "int16": np.array([[-32768, 300], [1, 32767]], dtype=np.int16),
    "int32": np.array([-(2**31), 70000, 2**31 - 1], dtype=np.int32),
    "float32": np.array([[0.5, -1e30], [np.inf, 3.25]], dtype=np.float32),
    "float64": np.array([np.pi, -0.0, 1e-300], dtype=np.float64),
}


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", list(ARRAYS))
def test_round_trip(tmp_path, name, dtype):
    array = ARRAYS[dtype]
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == array.dtype and back.dtype.isnative
    assert back.shape == array.shape
    assert back.tobytes() == array.tobytes()
    assert back.flags.writeable


def test_compress_follows_the_name_unless_given(tmp_path):
    array = ARRAYS["uint8"]
    assert not (write_idx(tmp_path / "raw", array)).read_bytes().startswith(b"\x1f\x8b")
    assert (write_idx(tmp_path / "x.gz", array)).read_bytes().startswith(b"\x1f\x8b")
    forced = write_idx(tmp_path / "no-suffix", array, compress=True)
    assert forced.read_bytes().startswith(b"\x1f\x8b")
    assert np.array_equal(read_idx(forced), array)  # gzip recognised by content, not name


def test_mnist_header_layout(tmp_path):
    path = write_idx(tmp_path / "images", np.zeros((2, 28, 28), np.uint8))
    data = path.read_bytes()
    assert data[:4] == bytes([0, 0, 0x08, 3])
    assert data[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert len(data) == 16 + 2 * 28 * 28


def test_big_endian_values_on_disk(tmp_path):
    data = write_idx(tmp_path / "x", np.array([1], np.int32)).read_bytes()
    assert data[-4:] == b"\x00\x00\x00\x01"


def test_unsupported_dtype_is_an_option_error(tmp_path):
    with pytest.raises(OptionError, match="uint16"):
        write_idx(tmp_path / "x", np.zeros(3, np.uint16))
    with pytest.raises(OptionError, match="dimensions"):
        write_idx(tmp_path / "x", np.array(5, np.uint8))
    assert not (tmp_path / "x").exists()


def _valid_bytes() -> bytes:
    return bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(range(6))


def _read_bytes(tmp_path, data: bytes, name: str = "f.idx"):
    path = tmp_path / name
    path.write_bytes(data)
    return read_idx(path)


def test_valid_handmade_file(tmp_path):
    assert _read_bytes(tmp_path, _valid_bytes()).tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"\x00\x00", "too short"),
    (b"\x01\x00\x08\x01" + bytes(5), "not an IDX file"),
    (b"PK\x03\x04" + bytes(20), "not an IDX file"),
    (b"\x00\x00\x07\x01" + (1).to_bytes(4, "big") + b"\x00", "unknown IDX type code 0x07"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (b"\x00\x00\x08\x03" + (1).to_bytes(4, "big"), "truncated IDX header"),
    (_valid_bytes()[:-1], "truncated"),
    (_valid_bytes() + b"\x00\x01", "2 unexpected bytes"),
    (b"\x00\x00\x0d\x01" + (2).to_bytes(4, "big") + bytes(7), "truncated"),  # 2 floats need 8 bytes
    (b"\x00\x00\x08\x03" + (2**32 - 1).to_bytes(4, "big") * 3, "too large"),  # absurd sizes
    # empty, but numpy refuses the shape: the fuzzer found it
    (b"\x00\x00\x08\x04" + bytes(4) + (2**32 - 1).to_bytes(4, "big") * 3, "too large"),
])
def test_damaged_files_raise_data_error(tmp_path, data, message):
    with pytest.raises(DataError, match=message) as info:
        _read_bytes(tmp_path, data)
    assert info.value.path == str(tmp_path / "f.idx")
    assert info.value.hint


def test_truncated_gzip(tmp_path):
    packed = gzip.compress(_valid_bytes() * 100)
    with pytest.raises(DataError, match="gzip") as info:
        _read_bytes(tmp_path, packed[: len(packed) // 2], "f.gz")
    assert "truncated" in info.value.hint


def test_corrupt_gzip(tmp_path):
    packed = bytearray(gzip.compress(bytes(range(256)) * 40))
    packed[len(packed) // 2] ^= 0xFF
    with pytest.raises(DataError, match="gzip"):
        _read_bytes(tmp_path, bytes(packed), "f.gz")


def test_gzip_magic_with_garbage(tmp_path):
    with pytest.raises(DataError, match="gzip"):
        _read_bytes(tmp_path, b"\x1f\x8b" + b"garbage")


def test_valid_gzip_of_a_bad_idx_is_reported_as_idx_problem(tmp_path):
    with pytest.raises(DataError, match="truncated"):
        _read_bytes(tmp_path, gzip.compress(_valid_bytes()[:-2]), "f.gz")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="folder"):
        read_idx(tmp_path)
