"""The minibatch stream: shuffled sweeps of the uint8 images, and each minibatch's noise generator."""
from __future__ import annotations

import numpy as np
import torch

from . import kernels


def noise_generator(seed: int, minibatch_index: int, device: torch.device) -> torch.Generator:
    """The generator for minibatch k's noise: seeded from (seed, k), so resuming needs no RNG state."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + minibatch_index) * 2 + 1)


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
