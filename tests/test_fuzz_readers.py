"""Fuzzing the readers: any input gives a correct array or a DataError, never another exception.

The number of examples per test comes from ``--fuzz-examples`` (default 300,
see tests/conftest.py); a thorough run::

    PYTHONPATH=src python -m pytest tests/test_fuzz_readers.py --fuzz-examples 20000
"""
from __future__ import annotations

import gzip
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aelab.data import ctf as ctf_module
from aelab.data.ctf import read_ctf, write_ctf
from aelab.data.idx import IDX_DTYPES, idx_header, read_idx
from aelab.errors import DataError


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- byte-level mutations ----------------------------------------------------------------

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 8)),
)


def _mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op in ops:
        at = op[1] % (len(buf) + 1) if isinstance(op[1], int) else 0
        if op[0] == "flip" and buf:
            buf[at % len(buf)] ^= op[2]
        elif op[0] == "truncate":
            del buf[at:]
        elif op[0] == "extend":
            buf += op[1]
        elif op[0] == "insert":
            buf[at:at] = op[2]
        elif op[0] == "delete":
            del buf[at:at + op[2]]
    return bytes(buf)


# --- IDX -------------------------------------------------------------------------------

@st.composite
def idx_arrays(draw):
    dtype = draw(st.sampled_from([dt.newbyteorder("=") for dt in IDX_DTYPES.values()]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4))
    return draw(hnp.arrays(dtype, shape))


def _idx_bytes(array: np.ndarray) -> bytes:
    return idx_header(array) + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _check_idx(path, data: bytes):
    """read_idx(data) is a DataError, or an array that re-encodes to the exact content."""
    path.write_bytes(data)
    try:
        array = read_idx(path)
    except DataError:
        return None
    content = data
    if data[:2] == b"\x1f\x8b":
        content = gzip.decompress(data)  # read_idx succeeded, so this must too
    assert array.dtype.isnative
    assert _idx_bytes(array) == content
    return array


def test_fuzz_read_idx_mutated(workdir, fuzz_examples):
    @_settings(fuzz_examples)
    @given(array=idx_arrays(), compress=st.booleans(), mutate_after_gzip=st.booleans(),
           ops=st.lists(mutation, max_size=4))
    def check(array, compress, mutate_after_gzip, ops):
        data = _idx_bytes(array)
        if compress:
            data = (_mutate(gzip.compress(data, mtime=0), ops) if mutate_after_gzip
                    else gzip.compress(_mutate(data, ops), mtime=0))
        else:
            data = _mutate(data, ops)
        result = _check_idx(workdir / "mutated.idx", data)
        if not ops:
            assert result is not None and result.tobytes() == array.tobytes()

    check()


def test_fuzz_read_idx_random_bytes(workdir, fuzz_examples):
    prefixes = st.sampled_from([b"", b"\x00\x00", b"\x00\x00\x08", b"\x00\x00\x0d\x01", b"\x1f\x8b"])

    @_settings(fuzz_examples)
    @given(prefix=prefixes, tail=st.binary(max_size=64), compress=st.booleans())
    def check(prefix, tail, compress):
        data = prefix + tail
        _check_idx(workdir / "random.idx", gzip.compress(data, mtime=0) if compress else data)

    check()


# --- CTF -------------------------------------------------------------------------------

CTF_ALPHABET = "0123456789 .-+eE|\n\r\t#:,abflnsx\x00\x0b\xa0\u2028é٣_"


@st.composite
def ctf_texts(draw):
    n = draw(st.integers(1, 4))
    width = draw(st.integers(1, 5))
    images = draw(hnp.arrays(np.uint8, (n, width)))
    labels = None
    if draw(st.booleans()):
        classes = draw(st.integers(1, 3))
        labels = np.array(draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)))
    return images, labels


text_mutation = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.text(CTF_ALPHABET, min_size=1, max_size=4)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 6)),
    st.tuples(st.just("replace"), st.integers(0, 10_000), st.sampled_from(CTF_ALPHABET)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000)),
    st.tuples(st.just("duplicate_line"), st.integers(0, 10_000)),
)


def _mutate_text(text: str, ops) -> str:
    for op in ops:
        at = op[1] % (len(text) + 1)
        if op[0] == "insert":
            text = text[:at] + op[2] + text[at:]
        elif op[0] == "delete":
            text = text[:at] + text[at + op[2]:]
        elif op[0] == "replace":
            text = text[:at] + op[2] + text[at + 1:]
        elif op[0] == "truncate":
            text = text[:at]
        elif op[0] == "duplicate_line":
            lines = text.splitlines(keepends=True)
            if lines:
                line = lines[op[1] % len(lines)]
                lines.insert(op[1] % len(lines), line)
            text = "".join(lines)
    return text


def _read_ctf_outcome(path):
    try:
        return read_ctf(path)
    except DataError:
        return None


def _check_ctf(path, data: bytes, monkeypatch):
    """read_ctf(data) is a DataError or a valid result, the same whether lines are parsed
    in blocks (numpy's fast path) or one at a time."""
    path.write_bytes(data)
    result = _read_ctf_outcome(path)
    with monkeypatch.context() as m:
        m.setattr(ctf_module, "BLOCK_LINES", 1)
        line_by_line = _read_ctf_outcome(path)
    assert (result is None) == (line_by_line is None)
    if result is None:
        return None
    images, labels, num_classes = result
    assert images.dtype == np.uint8 and images.ndim == 2 and len(images) >= 1
    assert np.array_equal(images, line_by_line[0])
    if labels is None:
        assert num_classes == 0 and line_by_line[1] is None
    else:
        assert labels.dtype == np.int64 and labels.shape == (len(images),)
        assert 0 <= labels.min() and labels.max() < num_classes == line_by_line[2]
        assert np.array_equal(labels, line_by_line[1])
    return result


def test_fuzz_read_ctf_mutated(workdir, fuzz_examples, monkeypatch):
    @_settings(fuzz_examples)
    @given(sample=ctf_texts(), ops=st.lists(text_mutation, max_size=4), compress=st.booleans())
    def check(sample, ops, compress):
        images, labels = sample
        write_ctf(workdir / "valid.txt", images, labels)
        text = _mutate_text((workdir / "valid.txt").read_text(), ops)
        data = text.encode("utf-8")
        result = _check_ctf(workdir / "mutated.txt", gzip.compress(data) if compress else data, monkeypatch)
        if not ops:
            assert result is not None and np.array_equal(result[0], images)

    check()


def test_fuzz_read_ctf_random_text(workdir, fuzz_examples, monkeypatch):
    lines = st.lists(st.text(CTF_ALPHABET, max_size=30), min_size=0, max_size=5)

    @_settings(fuzz_examples)
    @given(prefix=st.sampled_from(["", "|features ", "|labels 1 |features ", "7 |features 1 2 |labels "]),
           body=lines, raw=st.binary(max_size=40), use_raw=st.booleans())
    def check(prefix, body, raw, use_raw):
        data = raw if use_raw else (prefix + "\n".join(body)).encode("utf-8")
        _check_ctf(workdir / "random.txt", data, monkeypatch)

    check()


def test_fuzz_read_ctf_damaged_gzip(workdir, fuzz_examples, monkeypatch):
    @_settings(fuzz_examples)
    @given(sample=ctf_texts(), ops=st.lists(mutation, min_size=1, max_size=3))
    def check(sample, ops):
        images, labels = sample
        write_ctf(workdir / "valid.txt.gz", images, labels)
        data = _mutate((workdir / "valid.txt.gz").read_bytes(), ops)
        _check_ctf(workdir / "damaged.txt.gz", data, monkeypatch)

    check()


def test_gzip_module_errors_are_what_the_readers_catch():
    # The readers rely on these being the only failures of a damaged gzip stream.
    for damaged in (b"\x1f\x8b\x08\x00garbage", gzip.compress(b"x" * 100)[:-3]):
        with pytest.raises((EOFError, OSError, zlib.error)):
            gzip.decompress(damaged)
