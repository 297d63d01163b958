"""The minibatch stream: shuffled sweeps of the uint8 images, and each minibatch's noise generator.

A packed data set (:mod:`aelab.data.packed`) is not held in memory: :func:`training_rows` gives the
loop a :class:`PackedRows`, and :func:`minibatch_stream` a :class:`BlockStream` for it, whose sweeps are
block-shuffled (:class:`BlockOrder`), read a buffer of blocks at a time by a background thread.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..errors import DataError
from ..models.inference import tensor_view, to_model_rows
from . import kernels


def noise_generator(seed: int, minibatch_index: int, device: torch.device) -> torch.Generator:
    """The generator for minibatch k's noise: seeded from (seed, k), so resuming needs no RNG state."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + minibatch_index) * 2 + 1)


def shift_generator(seed: int, minibatch_index: int, device: torch.device) -> torch.Generator:
    """The generator for minibatch k's image shifts: seeded from (seed, k), apart from the noise's."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + minibatch_index) * 2)


def minibatch_stream(images: torch.Tensor | PackedRows, seed: int, start_sample: int = 0,
                     scale: float = 1.0 / 255.0) -> SweepStream | BlockStream:
    """The stream of minibatches over ``images`` from sample ``start_sample`` on: shuffled sweeps of a tensor,
    or block-shuffled sweeps of a packed set read from disk; both have ``next(size, out)`` and ``position``."""
    if isinstance(images, PackedRows):
        return BlockStream(images, seed, start_sample, scale)
    return SweepStream(images, seed, start_sample, scale)


class SweepStream:
    """Consecutive minibatches from shuffled sweeps of the data laid end to end.

    Sweep ``s`` is shuffled by its own generator seeded from (seed, s), so any
    position in the stream can be reproduced without replaying the ones
    before it (what resuming needs). Each minibatch gathers its rows straight
    from the uint8 images; on the CPU one fused loop gathers, converts and
    scales them (``aelab.training.kernels``).
    """

    def __init__(self, images: torch.Tensor, seed: int, start_sample: int = 0, scale: float = 1.0 / 255.0) -> None:
        self.images = images  # (n, pixels) uint8, or (n, d) float32 table rows, on the device
        self.scale = scale    # what a raw value is multiplied by: 1/255 for pixels, 1 for scaled features
        self.n = images.shape[0]
        self.seed = seed
        self.position = start_sample
        self._sweep_index = -1
        self._order: torch.Tensor | np.ndarray | None = None
        self._fused = images.dtype == torch.uint8 and kernels.applies_to(images)
        self._images_np = kernels.as_numpy(images) if self._fused else None

    def _shuffled_order(self, sweep: int) -> torch.Tensor | np.ndarray:
        if sweep != self._sweep_index:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + sweep)
            order = torch.randperm(self.n, generator=g)
            self._order = order.numpy() if self._fused else order.to(self.images.device)
            self._sweep_index = sweep
        return self._order

    def next_rows(self, size: int) -> list[torch.Tensor]:
        """The rows of the next ``size`` images in ``images``: one index tensor, or two where the
        minibatch straddles two sweeps (what a CUDA graph copies into its index buffer)."""
        parts = []
        while size:
            sweep, offset = divmod(self.position, self.n)
            take = min(size, self.n - offset)
            order = self._shuffled_order(sweep)
            parts.append(torch.as_tensor(order[offset:offset + take]))
            self.position += take
            size -= take
        return parts

    def next(self, size: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """The next ``size`` samples as float32 times ``scale`` (pixels to [0, 1]); on the CPU they may be written into
        ``out`` (float32, (size, pixels)), which the training loop reuses: a fresh tensor of a large
        minibatch costs page faults on every step."""
        if not self._fused:
            parts = self.next_rows(size)
            rows = parts[0] if len(parts) == 1 else torch.cat(parts)
            return self.images.index_select(0, rows).to(torch.float32).mul_(self.scale)
        if out is None:
            out = torch.empty(size, self.images.shape[1], dtype=torch.float32)
        elif out.shape != (size, self.images.shape[1]) or out.dtype != torch.float32 or not kernels.applies_to(out):
            raise ValueError(f"out must be a contiguous float32 CPU tensor of shape {(size, self.images.shape[1])}, "
                             f"got {out.dtype} {tuple(out.shape)}")  # the loop writes without bounds checks
        sweep, offset = divmod(self.position, self.n)
        if offset + size <= self.n:  # within one sweep: straight from its order
            kernels.gather_scaled(self._images_np, self._shuffled_order(sweep), offset, size, self.scale, out.numpy())
            self.position += size
            return out
        done = 0
        for rows in self.next_rows(size):
            kernels.gather_scaled(self._images_np, rows.numpy(), 0, len(rows), self.scale, out.numpy()[done:])
            done += len(rows)
        return out


# --- packed data sets: block-shuffled sweeps read from disk ------------------------------

def training_rows(config, data, device: torch.device) -> torch.Tensor | PackedRows:
    """``data.train``'s samples as the model's (n, input_dim) rows on ``device``: one tensor, or, for
    a packed data set, a :class:`PackedRows` that :class:`SweepStream` reads block by block."""
    packed = data.source.get("packed") if data.source.get("format") == "packed" else None
    images = data.train.images
    if packed is not None and isinstance(images, np.memmap) and isinstance(images.base, mmap.mmap):  # the whole file
        return PackedRows(data.train.images, config, device, int(packed["block_rows"]), int(packed["buffer_blocks"]))
    return to_model_rows(config, tensor_view(data.train.images)).contiguous().to(device)


class PackedRows:
    """The training split of a packed data set, as the stream reads it: ``block_rows`` rows at a time
    from its file, ``buffer_blocks`` blocks shuffled together. ``shape`` is the model's rows', (n, input_dim);
    ``dtype`` the stored samples' numpy dtype (there is no one tensor, so nothing may index it as one)."""

    def __init__(self, samples: np.memmap, config, device: torch.device, block_rows: int, buffer_blocks: int) -> None:
        self.path, self.offset = samples.filename, int(samples.offset)
        self.dtype, self.sample_shape = samples.dtype, tuple(samples.shape[1:])
        self.n, self.config, self.device = int(samples.shape[0]), config, device
        self.shape = (self.n, int(config.input_dim))
        self.row_bytes = int(np.prod(self.sample_shape)) * self.dtype.itemsize
        self.block_rows, self.buffer_blocks = block_rows, buffer_blocks

    def read_rows(self, fd: int, first: int, count: int, out: np.ndarray) -> None:
        """Rows ``first`` to ``first + count - 1`` as model rows into ``out`` ((count, input_dim), C-contiguous)."""
        start, size = self.offset + first * self.row_bytes, count * self.row_bytes
        if len(self.sample_shape) == 3:  # colour, channels last: to the model's channels-first rows
            stored = np.empty((count, *self.sample_shape), self.dtype)
            _read_into(fd, memoryview(stored).cast("B"), start)
            out[:] = to_model_rows(self.config, torch.from_numpy(stored)).numpy()
        else:
            _read_into(fd, memoryview(out).cast("B")[:size], start)


def _read_into(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done) if hasattr(os, "preadv") else _pread_copy(fd, view[done:],
                                                                                                   offset + done)
        if n <= 0:
            raise OSError(f"unexpected end of file at byte {offset + done}")
        done += n


def _pread_copy(fd: int, view: memoryview, offset: int) -> int:  # pragma: no cover - systems without preadv
    data = os.pread(fd, len(view), offset)
    view[:len(data)] = data
    return len(data)


class BlockOrder:
    """The training order of a packed set: sweep ``s`` is a seeded permutation of its blocks (every
    shard's blocks mixed), cut into windows of ``buffer_blocks`` blocks; each window's rows are a seeded
    permutation of the rows of its blocks. Every row comes once per sweep, any position can be found
    without replaying the ones before it (what resuming needs), and only the block table is held, never a
    permutation of all rows."""

    def __init__(self, n: int, block_rows: int, buffer_blocks: int, seed: int) -> None:
        self.n, self.block_rows, self.buffer_blocks, self.seed = n, block_rows, buffer_blocks, seed
        self.blocks = -(-n // block_rows)
        self._plans: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()  # the reading thread plans too

    def _generator(self, *key: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, *key])))

    def plan(self, sweep: int) -> tuple[np.ndarray, np.ndarray]:
        """Sweep ``sweep``'s block order and the end (in rows) of each of its windows."""
        with self._lock:
            return self._plan(sweep)

    def _plan(self, sweep: int) -> tuple[np.ndarray, np.ndarray]:
        if sweep not in self._plans:
            order = self._generator(sweep).permutation(self.blocks)
            sizes = np.full(self.blocks, self.block_rows, dtype=np.int64)
            sizes[-1] = self.n - self.block_rows * (self.blocks - 1)
            ends = np.cumsum(sizes[order])[self.buffer_blocks - 1::self.buffer_blocks]
            if len(ends) == 0 or ends[-1] != self.n:
                ends = np.append(ends, self.n)
            if len(self._plans) >= 2:
                self._plans.pop(min(self._plans))
            self._plans[sweep] = (order, ends)
        return self._plans[sweep]

    def window_at(self, offset: int, sweep: int) -> int:
        return int(np.searchsorted(self.plan(sweep)[1], offset, side="right"))

    def window(self, sweep: int, w: int) -> tuple[np.ndarray, int, int]:
        """Window ``w`` of sweep ``sweep``: its blocks, its first row's offset in the sweep, and its row order
        (a permutation of its rows as they lie in the buffer: its blocks one after another, in order)."""
        order, ends = self.plan(sweep)
        blocks = order[w * self.buffer_blocks:(w + 1) * self.buffer_blocks]
        start = 0 if w == 0 else int(ends[w - 1])
        return blocks, start, int(ends[w]) - start

    def rows_order(self, sweep: int, w: int, rows: int) -> np.ndarray:
        return self._generator(sweep, w + 1).permutation(rows)


def _close_reader(reader: ThreadPoolExecutor, fd: int) -> None:
    """A finished BlockStream's cleanup: its reading thread ended (waited for, unless this is that thread) and
    its file closed."""
    reader.shutdown(wait=not threading.current_thread().name.startswith("aelab-blocks"))
    with contextlib.suppress(OSError):
        os.close(fd)


class BlockStream:
    """:class:`SweepStream`'s minibatches for a :class:`PackedRows`: the :class:`BlockOrder`'s windows, each
    read into one of two buffers while the other is used (a background thread reads the next window)."""

    def __init__(self, rows: PackedRows, seed: int, start_sample: int = 0, scale: float = 1.0 / 255.0) -> None:
        self.rows, self.scale, self.position = rows, scale, start_sample
        self.order = BlockOrder(rows.n, rows.block_rows, rows.buffer_blocks, seed)
        capacity = rows.block_rows * rows.buffer_blocks
        self._buffers = [np.empty((capacity, rows.shape[1]), rows.dtype) for _ in range(2)]
        self._fused = rows.dtype == np.uint8 and kernels.available()
        self._fd = os.open(rows.path, os.O_RDONLY)
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aelab-blocks")
        self._current = None   # (key, buffer index, row order)
        self._pending = None   # (key, buffer index, future of the row order)
        weakref.finalize(self, _close_reader, self._reader, self._fd)

    def _load(self, key: tuple[int, int], buffer: int) -> np.ndarray:
        sweep, w = key
        blocks, _, count = self.order.window(sweep, w)
        out, done = self._buffers[buffer], 0
        placed = []
        for b in blocks:  # the buffer holds the blocks in their shuffled order
            first = int(b) * self.rows.block_rows
            size = min(self.rows.block_rows, self.rows.n - first)
            placed.append((first, size, done))
            done += size
        for first, size, at in sorted(placed):  # read in file order
            self.rows.read_rows(self._fd, first, size, out[at:at + size])
        return self.order.rows_order(sweep, w, count)

    def _next_key(self, key: tuple[int, int]) -> tuple[int, int]:
        sweep, w = key
        return (sweep, w + 1) if w + 1 < len(self.order.plan(sweep)[1]) else (sweep + 1, 0)

    def _window(self, key: tuple[int, int]) -> tuple[int, np.ndarray]:
        try:
            return self._switch_to(key)
        except OSError as e:  # the file went away or shrank since it was checked
            raise DataError(f"cannot read the packed data set ({e.strerror or e})", path=self.rows.path,
                            hint="check the disk, or pack the data again") from e

    def _switch_to(self, key: tuple[int, int]) -> tuple[int, np.ndarray]:
        if self._current is not None and self._current[0] == key:
            return self._current[1], self._current[2]
        free = 0 if self._current is None else 1 - self._current[1]
        if self._pending is not None:
            pending_key, buffer, future = self._pending
            row_order = future.result()  # the buffer is free again only once this read ends
            self._pending = None
            if pending_key == key:
                self._current = (key, buffer, row_order)
            else:
                self._current = None
        if self._current is None or self._current[0] != key:
            self._current = (key, free, self._load(key, free))
        nxt = self._next_key(key)
        other = 1 - self._current[1]
        self._pending = (nxt, other, self._reader.submit(self._load, nxt, other))
        return self._current[1], self._current[2]

    def _pieces(self, size: int):
        """(buffer, row order, offset in the window, count) for the next ``size`` samples."""
        while size:
            sweep, offset = divmod(self.position, self.rows.n)
            w = self.order.window_at(offset, sweep)
            _, start, count = self.order.window(sweep, w)
            buffer, row_order = self._window((sweep, w))
            take = min(size, start + count - offset)
            yield self._buffers[buffer], row_order, offset - start, take
            self.position += take
            size -= take

    def next_rows(self, size: int) -> list[torch.Tensor]:
        raise NotImplementedError("a packed data set's rows are read in blocks: there is no one tensor to index")

    def next(self, size: int, out: torch.Tensor | None = None) -> torch.Tensor:
        if out is None or self.rows.device.type != "cpu":
            out = torch.empty(size, self.rows.shape[1], dtype=torch.float32)
        elif out.shape != (size, self.rows.shape[1]) or out.dtype != torch.float32 or not out.is_contiguous():
            raise ValueError(f"out must be a contiguous float32 CPU tensor of shape {(size, self.rows.shape[1])}")
        target, done = out.numpy(), 0
        for buffer, row_order, at, take in self._pieces(size):
            if self._fused:
                kernels.gather_scaled(buffer, row_order, at, take, self.scale, target[done:])
            else:
                np.multiply(buffer[row_order[at:at + take]], np.float32(self.scale), out=target[done:done + take],
                            dtype=np.float32, casting="unsafe")
            done += take
        return out if self.rows.device.type == "cpu" else out.to(self.rows.device, non_blocking=False)
