"""Fused CPU loops for the training engine, compiled by numba.

At minibatch 64 the engine's time goes to many small passes over memory,
each a separate PyTorch call, rather than to arithmetic. These loops do in
one pass what PyTorch does in several: the minibatch gather, the FSAdaGrad
step, and the output layer's bias, clamp, loss terms, CNTK's classification
error, delta and bias gradient. Each has a plain PyTorch twin that CUDA,
other dtypes and multi-threaded runs use, and the tests
(``tests/test_kernels.py``) hold the two to the same results.
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
    options = dict(fastmath=FASTMATH, error_model="numpy", boundscheck=False, nogil=True)
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # no writable cache folder (beside this file, nor numba's user cache): compile each run
        return numba.njit(**options)(fn)


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


LANES = 16  # one AVX-512 register of float32; the compiler turns the lane loop into vector compares


@_jit
def _classification_error_loop(output, target):  # pragma: no cover - runs compiled
    n, d = output.shape
    full = d - d % LANES
    best = np.empty(LANES, dtype=output.dtype)
    where = np.empty(LANES, dtype=np.int64)
    total = 0.0
    for i in range(n):
        # the first maximum of the row: per lane the first maximum among its columns (strictly
        # greater replaces), then the largest of the lanes, the smallest column among equals
        for lane in range(LANES):
            best[lane] = -np.inf
            where[lane] = 0
        for j in range(0, full, LANES):
            for lane in range(LANES):
                v = output[i, j + lane]
                if v > best[lane]:
                    best[lane] = v
                    where[lane] = j + lane
        top, at = best[0], where[0]
        for lane in range(1, LANES):
            if best[lane] > top or (best[lane] == top and where[lane] < at):
                top, at = best[lane], where[lane]
        for j in range(full, d):
            if output[i, j] > top:
                top, at = output[i, j], j
        total += 1.0 - target[i, at]
    return total


@_jit
def _output_prologue_loop(z, bias, target, floor):  # pragma: no cover - runs compiled
    total = 0.0
    for i in range(z.shape[0]):
        row = 0.0
        for j in range(z.shape[1]):
            v = z[i, j] + bias[j]
            v = floor if v < floor else v  # NaN stays NaN, as in clamp_min
            z[i, j] = v
            row += (1.0 - target[i, j]) * v
        total += row
    return total


def output_prologue_(logits: np.ndarray, bias: np.ndarray, target: np.ndarray, floor: float) -> float:
    """Add the output bias to ``logits`` and clamp them at ``floor``, in place; return sum((1 - t) z).

    The loss of the tutorial is that sum minus sum(log sigmoid(z)) (``aelab.train.summed_bce``).
    """
    return float(_output_prologue_loop(logits, bias, target, logits.dtype.type(floor)))


@_jit
def _output_epilogue_loop(p, target, bias_grad, scale):  # pragma: no cover - runs compiled
    n, d = p.shape
    for j in range(d):
        bias_grad[j] = 0.0
    error = _classification_error_loop(p, target)
    for i in range(n):
        for j in range(d):
            delta = (p[i, j] - target[i, j]) * scale
            p[i, j] = delta
            bias_grad[j] += delta
    return error


def output_epilogue_(output: np.ndarray, target: np.ndarray, bias_grad: np.ndarray, scale: float) -> float:
    """From the sigmoid ``output``: return CNTK's classification error summed over the rows, turn
    ``output`` into the gradient of the summed BCE by the logits, ``(output - target) * scale``, in
    place, and write its column sums (the output bias's gradient) into ``bias_grad``."""
    return float(_output_epilogue_loop(output, target, bias_grad, output.dtype.type(scale)))


def classification_error_sum(output: np.ndarray, target: np.ndarray) -> float:
    """``aelab.metrics.cntk_classification_error(output, target).sum()`` in one pass (2-D arrays).

    About three times faster than PyTorch's ``max(dim=1)`` and gather at minibatch 64.
    """
    return float(_classification_error_loop(output, target))


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
    ones = np.ones((1, 3), dtype=np.float32)
    classification_error_sum(ones, ones)
    output_prologue_(ones.copy(), ones[0], ones, -1.0)
    output_epilogue_(ones.copy(), ones, ones[0].copy(), 1.0)


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a contiguous CPU tensor (shares memory)."""
    return t.detach().numpy()


def applies_to(*tensors: torch.Tensor) -> bool:
    """Whether the fused loops can work on these tensors: CPU, contiguous, and numba installed."""
    return numba is not None and all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)
