"""Reading an array's rows a few megabytes at a time, a memory-mapped file's by file reads.

What a memory map touches stays resident in the process until the map goes;
what a read puts in a buffer does not. Packed data sets (:mod:`aelab.data.packed`)
are memory-mapped, so a pass over all of a split's rows goes through here.
"""
from __future__ import annotations

import mmap
from typing import Iterator

import numpy as np

__all__ = ["row_chunks", "READ_BYTES"]

READ_BYTES = 8 << 20  # bytes per read


def row_chunks(x: np.ndarray, chunk_bytes: int = READ_BYTES) -> Iterator[np.ndarray]:
    """``x``'s rows a few megabytes at a time, as arrays in memory; a memory-mapped file's are read from the file
    (what a map touches stays resident, a read's buffer does not)."""
    step = max(1, chunk_bytes // max(1, x[:1].nbytes))
    filename = getattr(x, "filename", None)
    if not (isinstance(x, np.memmap) and isinstance(x.base, mmap.mmap) and filename and x.flags.c_contiguous):
        for start in range(0, len(x), step):
            yield x[start:start + step]
        return
    row_bytes = x[:1].nbytes
    with open(filename, "rb") as f:
        for start in range(0, len(x), step):
            count = min(step, len(x) - start)
            f.seek(int(x.offset) + start * row_bytes)
            yield np.fromfile(f, dtype=x.dtype, count=count * (row_bytes // x.dtype.itemsize)).reshape(count,
                                                                                                        *x.shape[1:])
