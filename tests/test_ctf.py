"""CNTK text format: the tutorial's layout, tolerant parsing, and errors that name the line."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from aelab.data.ctf import iter_ctf, read_ctf, write_ctf
from aelab.data.idx import read_idx, write_idx
from aelab.errors import DataError, OptionError


@pytest.fixture
def images_and_labels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 4, 5), dtype=np.uint8)
    images[0] = 0
    images[1] = 255
    labels = np.array([0, 1, 2, 2, 1, 0, 2])
    return images, labels


def _write(tmp_path, text: str, name: str = "data.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_round_trip_idx_to_ctf_to_arrays(tmp_path, images_and_labels):
    images, labels = images_and_labels
    write_idx(tmp_path / "images.idx", images)
    write_idx(tmp_path / "labels.idx", labels.astype(np.uint8))
    write_ctf(tmp_path / "data.txt", read_idx(tmp_path / "images.idx"),
              read_idx(tmp_path / "labels.idx"), num_classes=3)
    flat, classes, num_classes = read_ctf(tmp_path / "data.txt")
    assert flat.dtype == np.uint8 and flat.shape == (7, 20)
    assert np.array_equal(flat.reshape(images.shape), images)
    assert classes.dtype == np.int64 and np.array_equal(classes, labels)
    assert num_classes == 3


def test_written_layout_is_the_tutorials(tmp_path):
    images = np.array([[[0, 7], [255, 12]]], dtype=np.uint8)
    write_ctf(tmp_path / "t.txt", images, np.array([3]), num_classes=10)
    assert (tmp_path / "t.txt").read_text() == \
        "|labels 0 0 0 1 0 0 0 0 0 0 |features 0 7 255 12\n"


def test_unlabeled_round_trip_and_gzip(tmp_path, images_and_labels):
    images, _ = images_and_labels
    write_ctf(tmp_path / "t.txt.gz", images)
    assert (tmp_path / "t.txt.gz").read_bytes()[:2] == b"\x1f\x8b"
    flat, classes, num_classes = read_ctf(tmp_path / "t.txt.gz")
    assert np.array_equal(flat.reshape(images.shape), images)
    assert classes is None and num_classes == 0


def test_many_lines_span_blocks(tmp_path):
    images = (np.arange(3000 * 3) % 256).astype(np.uint8).reshape(3000, 3)
    labels = np.arange(3000) % 4
    write_ctf(tmp_path / "t.txt", images, labels)
    flat, classes, k = read_ctf(tmp_path / "t.txt")
    assert np.array_equal(flat, images) and np.array_equal(classes, labels) and k == 4


def test_iter_ctf_yields_float_vectors(tmp_path):
    path = _write(tmp_path, "|labels 0 1 |features 1 2 3\n\n|labels 1 0 |features 4 5 6\n")
    samples = list(iter_ctf(path))
    assert len(samples) == 2
    features, labels = samples[1]
    assert features.dtype == np.float32 and features.tolist() == [4, 5, 6]
    assert labels.dtype == np.float32 and labels.tolist() == [1, 0]


def test_iter_ctf_other_stream_names(tmp_path):
    path = _write(tmp_path, "|x 1.5 2 |y 7\n")
    [(features, labels)] = iter_ctf(path, features="x", labels="y")
    assert features.tolist() == [1.5, 2] and labels.tolist() == [7]
    [(features, labels)] = iter_ctf(path, features="x", labels="missing")
    assert labels is None


def test_sequence_id_comments_crlf_and_extra_streams_are_tolerated(tmp_path):
    path = _write(tmp_path, "0 |labels 0 1 |features 1 2 |# a comment\r\n"
                            "1\t|features 3 4 |labels 1 0 |other 9 9 9\r\n")
    flat, classes, k = read_ctf(path)
    assert flat.tolist() == [[1, 2], [3, 4]] and classes.tolist() == [1, 0] and k == 2


def test_field_order_swapped(tmp_path):
    path = _write(tmp_path, "|features 10 20 30 |labels 0 0 1\n|features 1 2 3 |labels 1 0 0\n")
    flat, classes, k = read_ctf(path)
    assert flat.tolist() == [[10, 20, 30], [1, 2, 3]] and classes.tolist() == [2, 0] and k == 3


GOOD = "|labels 0 1 |features 1 2 3\n"


@pytest.mark.parametrize("bad_line, message", [
    ("|labels 0 1 |feature 1 2 3", "no |features stream"),
    ("|labels 0 1", "no |features stream"),
    ("just text", "no |features stream"),
    ("|labels 0 1 |features 1 2", "has 2 values, but line 1 has 3"),
    ("|labels 0 1 |features 1 2 3 4", "has 4 values, but line 1 has 3"),
    ("|labels 0 1 0 |features 1 2 3", "has 3 values, but line 1 has 2"),
    ("|labels 0 1 |features 1 x 3", "value 2 is 'x', not a number"),
    ("|labels 0 1 |features 1 2 3,", "not a number"),
    ("|labels 0 1 |features 1 256 3", "value 2 is 256, expected an integer in 0..255"),
    ("|labels 0 1 |features -1 2 3", "value 1 is -1"),
    ("|labels 0 1 |features 1 2 3.5", "value 3 is 3.5"),
    ("|labels 0 1 |features 1 2 nan", "value 3 is nan"),
    ("|labels 0 1 |features", "has no values"),
    ("|labels 1 1 |features 1 2 3", "not one-hot"),
    ("|labels 0 0 |features 1 2 3", "not one-hot"),
    ("|labels 0 2 |features 1 2 3", "not one-hot"),
    ("|labels 0 0.5 |features 1 2 3", "not one-hot"),
    ("|features 1 2 3", "no |labels stream, but line 1 has one"),
    ("|labels 0 1 |features 1 2 3 |features 1 2 3", "appears twice"),
    ("| features 1 2 3", "not followed by a stream name"),
])
def test_bad_line_is_a_data_error_naming_the_line(tmp_path, bad_line, message):
    path = _write(tmp_path, GOOD + "\n" + GOOD + bad_line + "\n" + GOOD)
    with pytest.raises(DataError, match="line 4: .*" + _escape(message)) as info:
        read_ctf(path)
    assert info.value.path == str(path)
    assert info.value.hint


def _escape(text: str) -> str:
    import re
    return re.escape(text)


def test_error_in_a_later_block_names_the_right_line(tmp_path):
    lines = [GOOD] * 2500
    lines[2222] = "|labels 0 1 |features 1 2 999\n"
    path = _write(tmp_path, "".join(lines))
    with pytest.raises(DataError, match="line 2223: "):
        read_ctf(path)


def test_labels_on_later_lines_only(tmp_path):
    path = _write(tmp_path, "|features 1 2\n|labels 1 0 |features 1 2\n")
    with pytest.raises(DataError, match="line 2: a |labels stream, but line 1 has none"):
        read_ctf(path)


@pytest.mark.parametrize("text", ["", "\n\n   \n"])
def test_empty_file(tmp_path, text):
    with pytest.raises(DataError, match="empty"):
        read_ctf(_write(tmp_path, text))


def test_not_utf8(tmp_path):
    path = tmp_path / "bin.txt"
    path.write_bytes(GOOD.encode() + b"|features \xff\xfe\n")
    with pytest.raises(DataError, match="line 2: not UTF-8"):
        read_ctf(path)


def test_truncated_gzip(tmp_path):
    packed = gzip.compress((GOOD * 2000).encode())
    path = tmp_path / "t.txt.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="gzip"):
        read_ctf(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_ctf(tmp_path / "nope.txt")


def test_write_validates_its_arguments(tmp_path):
    images = np.zeros((2, 3), np.uint8)
    with pytest.raises(OptionError, match="num_classes"):
        write_ctf(tmp_path / "t.txt", images, np.array([0, 3]), num_classes=3)
    with pytest.raises(OptionError, match="labels must be integers of shape"):
        write_ctf(tmp_path / "t.txt", images, np.array([0]), num_classes=3)
    with pytest.raises(OptionError, match="uint8"):
        write_ctf(tmp_path / "t.txt", np.full((2, 3), 300), None)
    assert not (tmp_path / "t.txt").exists()
