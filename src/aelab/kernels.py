"""Fused CPU loops for the training engine, compiled by numba.

At minibatch 64 the engine's time goes to many small passes over memory,
each a separate PyTorch call, rather than to arithmetic. These loops do in
one pass what PyTorch does in several; each has a plain PyTorch twin that
CUDA and other dtypes use, and the tests hold the two to the same results.
Compiled code is cached beside this file (or in numba's user cache), so
only the first run in a fresh install pays the compilation (about a second).
"""
from __future__ import annotations

import numpy as np
import torch

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the engine still works without it
    numba = None

# fastmath without "afn", "nnan" or "ninf": the loops may reorder and fuse arithmetic, but sqrt
# and division stay exact IEEE operations and no value is assumed finite
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}


def available() -> bool:
    """Whether the fused loops can run (numba is installed)."""
    return numba is not None


def _jit(fn):
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(fastmath=FASTMATH, error_model="numpy", boundscheck=False, cache=True, nogil=True)(fn)


@_jit
def _fsadagrad_loop(p, g, v, m, settings):  # pragma: no cover - runs compiled
    nu, one_minus_nu, mu, gain_scale, v_floor, lr = settings
    for i in range(p.size):
        gi = g[i]
        vi = nu * v[i] + one_minus_nu * gi * gi
        v[i] = vi
        # min(1/sqrt(v), cap) as 1/sqrt(max(v, 1/cap^2)): never 1/sqrt(0) = inf, whose 0 * inf
        # would turn a zero gradient into NaN
        w = np.float32(1.0) / np.sqrt(max(vi, v_floor))
        mi = mu * m[i] + gain_scale * gi * w
        m[i] = mi
        p[i] -= lr * mi


def fsadagrad_(param: np.ndarray, grad: np.ndarray, variance: np.ndarray, momentum: np.ndarray, *,
               nu: float, mu: float, gain_scale: float, cap: float, lr: float) -> None:
    """One FSAdaGrad step in place on flat float32 arrays (see ``aelab.optim.fsadagrad_step_``)."""
    # the numbers travel as one float32 array: numba checks each argument's type on every
    # call, which for ten arguments cost about as much as the loop at minibatch 64. 1 - nu is
    # worked out here in float64: in float32, 1 - 0.99991 keeps only three digits.
    settings = np.array((nu, 1.0 - nu, mu, gain_scale, 1.0 / (cap * cap), lr), dtype=np.float32)
    _fsadagrad_loop(param, grad, variance, momentum, settings)


@_jit
def _gather_scaled_loop(images, rows, start, count, scale, out):  # pragma: no cover - runs compiled
    width = images.shape[1]
    for i in range(count):
        r = rows[start + i]
        for j in range(width):
            out[i, j] = images[r, j] * scale


def gather_scaled(images: np.ndarray, rows: np.ndarray, start: int, count: int, scale: float,
                  out: np.ndarray) -> None:
    """``out[i] = images[rows[start + i]] * scale`` for i < count: uint8 rows to float32 in one pass."""
    _gather_scaled_loop(images, rows, start, count, np.float32(scale), out)


def warm_up() -> None:
    """Compile (or load from the cache) every loop now, so that no timed region pays for it.

    The first loop a process loads also loads numba's own registries: about half a second.
    """
    if numba is None:  # pragma: no cover
        return
    x = np.ones(4, dtype=np.float32)
    fsadagrad_(x, x.copy(), x.copy(), x.copy(), nu=0.5, mu=0.5, gain_scale=1.0, cap=1.0, lr=0.0)
    gather_scaled(np.zeros((2, 3), dtype=np.uint8), np.arange(2), 0, 1, 1.0, np.empty((1, 3), dtype=np.float32))


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a contiguous CPU tensor (shares memory)."""
    return t.detach().numpy()


def applies_to(*tensors: torch.Tensor) -> bool:
    """Whether the fused loops can work on these tensors: CPU, contiguous, and numba installed."""
    return numba is not None and all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)
