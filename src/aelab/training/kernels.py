"""Fused CPU loops for the training engine, compiled by numba.

At minibatch 64 the engine's time goes to many small passes over memory,
each a separate PyTorch call, rather than to arithmetic. These loops do in
one pass what PyTorch does in several: the minibatch gather, the FSAdaGrad
step, a hidden layer's bias and ReLU (and their backward pass), and the
whole output layer: bias, clamp, sigmoid, loss, CNTK's classification
error, delta and bias gradient. Matrix products stay with PyTorch (MKL).
Each loop has a plain PyTorch twin that CUDA, other dtypes and the tests
use, and ``tests/test_kernels.py`` holds the two to the same results.
Compiled code is cached beside this file (or in numba's user cache), so
only the first run in a fresh install pays the compilation (a few seconds).
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch

from ..terminal import signals_deferred


def _prefer_512_bit_vectors() -> None:
    """Let numba's compiler use the full 512-bit vectors of a CPU with AVX-512.

    LLVM's tuning for AVX-512 CPUs prefers 256-bit vectors (older parts lowered
    their clock for 512-bit work). On the development machine 512 bits run the
    output layer's loop about 20% faster, and training at minibatch 1024 1.6-4.4%
    (deep) and 11-15% (simple) faster. numba reads the setting once, when it is imported: so this runs before
    that, and only where numba is not imported yet and the user has not set
    NUMBA_CPU_NAME or NUMBA_CPU_FEATURES, nor written a .numba_config.yaml in
    the working folder. It sets NUMBA_CPU_FEATURES to the host's own features
    with the tuning flag turned off.
    """
    if "numba" in sys.modules or "NUMBA_CPU_FEATURES" in os.environ or "NUMBA_CPU_NAME" in os.environ \
            or os.path.exists(".numba_config.yaml"):  # numba's own config file, which its variables would override
        return
    try:
        import llvmlite.binding as llvm
        features = llvm.get_host_cpu_features()
    except Exception:  # pragma: no cover - no llvmlite (so no numba), or a host it cannot describe
        return
    if features.get("avx512f"):
        os.environ["NUMBA_CPU_FEATURES"] = features.flatten() + ",-prefer-256-bit"


_prefer_512_bit_vectors()

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the engine still works without it
    numba = None

# fastmath without "afn", "nnan" or "ninf": the loops may reorder and fuse arithmetic, but sqrt
# and division stay exact IEEE operations and no value is assumed finite
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
# without reassociation, for the loops that evaluate exp and log: reassociating "x - k c1 - k c2"
# undoes the split of ln 2 that keeps exp within an ulp (it measured 4.5 ulps). Their sums go into
# per-column arrays instead, which vectorize without it.
EXACT_FASTMATH = {"nsz", "arcp", "contract"}


def available() -> bool:
    """Whether the fused loops can run (numba is installed)."""
    return numba is not None


def _jit(fn=None, *, fastmath=FASTMATH):
    if fn is None:
        return lambda f: _jit(f, fastmath=fastmath)
    if numba is None:  # pragma: no cover
        return fn
    options = dict(fastmath=fastmath, error_model="numpy", boundscheck=False, nogil=True)
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
    """One FSAdaGrad step in place on flat float32 arrays (see ``aelab.training.optim.fsadagrad_step_``)."""
    # the numbers travel as one float32 array: numba checks each argument's type on every
    # call, which for ten arguments cost about as much as the loop at minibatch 64. 1 - nu is
    # worked out here in float64: in float32, 1 - 0.99991 keeps only three digits.
    settings = np.array((nu, 1.0 - nu, mu, gain_scale, 1.0 / (cap * cap), lr), dtype=np.float32)
    _fsadagrad_loop(param, grad, variance, momentum, settings)


if numba is not None:
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def _float_bits(typingctx, x):
        """The bits of a float32 as an int32 (a register move that the compiler can vectorize)."""
        return types.int32(types.float32), lambda context, builder, sig, args: builder.bitcast(args[0], ir.IntType(32))

    @intrinsic
    def _bits_float(typingctx, x):
        """The float32 whose bits an int32 holds."""
        return types.float32(types.int32), lambda context, builder, sig, args: builder.bitcast(args[0], ir.FloatType())

    @intrinsic
    def _prefetch(typingctx, array, row, column):
        """Ask the CPU to start loading the cache line of ``array[row, column]`` (2-D): llvm.prefetch."""
        def codegen(context, builder, sig, args):
            array_type = sig.args[0]
            view = context.make_array(array_type)(context, builder, args[0])
            pointer = cgutils.get_item_pointer(context, builder, array_type, view, [args[1], args[2]],
                                               wraparound=False)
            byte_pointer, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
            function = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0i8")
            # read, keep in all cache levels, data cache
            builder.call(function, [builder.bitcast(pointer, byte_pointer), ir.Constant(i32, 0), ir.Constant(i32, 3),
                                    ir.Constant(i32, 1)])
            return context.get_dummy_value()
        return types.void(array, types.intp, types.intp), codegen

    def _inline_jit(fn):
        return numba.njit(inline="always", fastmath=EXACT_FASTMATH, error_model="numpy")(fn)
else:  # pragma: no cover
    def _inline_jit(fn):
        return fn

# numba's exp and log are scalar calls into libm, which stop the compiler from vectorizing a loop
# (without Intel's SVML, which pip's llvmlite lacks): these are Cephes' expf and logf, written
# with the operations that vectorize. Both are within a few float32 ulps (tests/test_kernels.py).


@_inline_jit
def _exp(x):  # pragma: no cover - runs compiled
    """e^x for float32 x, clamped to [-87.3, 88.3] so that the result is a normal float."""
    x = min(max(x, np.float32(-87.3)), np.float32(88.3))
    k = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))  # x = k ln2 + r, |r| <= ln2 / 2
    r = x - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)  # ln2 in two parts: r stays exact
    y = np.float32(1.9875691500e-4)
    y = y * r + np.float32(1.3981999507e-3)
    y = y * r + np.float32(8.3334519073e-3)
    y = y * r + np.float32(4.1665795894e-2)
    y = y * r + np.float32(1.6666665459e-1)
    y = y * r + np.float32(5.0000001201e-1)
    y = y * r * r + r + np.float32(1.0)
    return y * _bits_float((np.int32(k) + np.int32(127)) << np.int32(23))  # times 2^k


@_inline_jit
def _log(x):  # pragma: no cover - runs compiled
    """The natural log of a normal, positive float32."""
    bits = _float_bits(x)
    e = (bits >> np.int32(23)) - np.int32(126)
    m = _bits_float((bits & np.int32(0x7FFFFF)) | np.int32(0x3F000000))  # x = m 2^e, m in [1/2, 1)
    low = m < np.float32(0.707106781186547524)  # move m into [sqrt(1/2), sqrt(2))
    e = e - np.int32(1) if low else e
    f = (m + m if low else m) - np.float32(1.0)
    f2 = f * f
    y = np.float32(7.0376836292e-2)
    y = y * f + np.float32(-1.1514610310e-1)
    y = y * f + np.float32(1.1676998740e-1)
    y = y * f + np.float32(-1.2420140846e-1)
    y = y * f + np.float32(1.4249322787e-1)
    y = y * f + np.float32(-1.6668057665e-1)
    y = y * f + np.float32(2.0000714765e-1)
    y = y * f + np.float32(-2.4999993993e-1)
    y = y * f + np.float32(3.3333331174e-1)
    ef = np.float32(e)
    y = y * f * f2 + ef * np.float32(-2.12194440e-4) - np.float32(0.5) * f2
    return f + y + ef * np.float32(0.693359375)


@_jit(fastmath=EXACT_FASTMATH)
def _exp_loop(x, out):  # pragma: no cover - runs compiled
    for i in range(x.size):
        out[i] = _exp(x[i])


@_jit(fastmath=EXACT_FASTMATH)
def _log_loop(x, out):  # pragma: no cover - runs compiled
    for i in range(x.size):
        out[i] = _log(x[i])


def exp(x: np.ndarray) -> np.ndarray:
    """The loops' e^x on a 1-D float32 array (for tests)."""
    out = np.empty_like(x)
    _exp_loop(x, out)
    return out


def log(x: np.ndarray) -> np.ndarray:
    """The loops' natural log on a 1-D float32 array of positive normal numbers (for tests)."""
    out = np.empty_like(x)
    _log_loop(x, out)
    return out


@_inline_jit
def _order_key(x):  # pragma: no cover - runs compiled
    """An int32 that orders float32s as their values do, with -0 equal to +0 and a NaN (positive
    sign) above everything, as in PyTorch's max. Integer maxima vectorize; float ones (NaN-aware) do not."""
    bits = _float_bits(x)
    sign = bits >> np.int32(31)  # -1 for negative numbers, 0 otherwise
    return (bits ^ (sign & np.int32(0x7FFFFFFF))) - sign


@_inline_jit
def _first_max(keys):  # pragma: no cover - runs compiled
    """The index of the first maximum of the int32 ``keys``: the maximum, then the smallest index
    holding it, each a branch-free pass that vectorizes (an early-exit search does not)."""
    d = np.int32(keys.size)
    top = np.int32(-2147483648)
    for j in range(keys.size):
        top = max(top, keys[j])
    first = d
    for j in range(keys.size):
        first = min(first, np.int32(j) if keys[j] == top else d)
    return first


@_jit
def _classification_error_loop(output, target, keys):  # pragma: no cover - runs compiled
    total = 0.0
    for i in range(output.shape[0]):
        for j in range(output.shape[1]):
            keys[j] = _order_key(output[i, j])
        total += 1.0 - target[i, _first_max(keys)]
    return total


def classification_error_sum(output: np.ndarray, target: np.ndarray) -> float:
    """``aelab.evaluation.metrics.cntk_classification_error(output, target).sum()`` for 2-D float32 arrays.

    CNTK's rule: per row, ``1 - target`` at the first column where ``output`` is largest. The
    engine applies it inside ``output_layer_``; this form lets the tests reach any output values.
    """
    keys = np.empty(output.shape[1], dtype=np.int32)
    return float(_classification_error_loop(output, target, keys))


PRODUCT_ROWS = 64  # rows whose factors in [1, 2] one float32 product holds: at most 2^64, far from overflow


@_jit(fastmath=EXACT_FASTMATH)
def _column_losses_total(columns, products):  # pragma: no cover - runs compiled
    total = 0.0
    for j in range(columns.size):
        columns[j] += _log(products[j])
    for j in range(columns.size):
        total += columns[j]
    return total


@_jit(fastmath=EXACT_FASTMATH)
def _output_layer_loop(z, bias, target, floor, scale, bias_grad, columns, products, keys):  # pragma: no cover
    n, d = z.shape
    for j in range(d):
        bias_grad[j] = 0.0
    loss = 0.0
    error = 0.0
    for i in range(n):
        if i % PRODUCT_ROWS == 0:
            if i:
                loss += _column_losses_total(columns, products)
            for j in range(d):
                columns[j] = 0.0
                products[j] = 1.0
        for j in range(d):
            v = z[i, j] + bias[j]
            v = floor if v < floor else v  # NaN stays NaN, as in clamp_min
            # p = sigmoid(v) and its BCE from q = e^-|v| in (0, 1], which cannot overflow:
            # -(t log p + (1 - t) log(1 - p)) = (1 - t) v + max(-v, 0) + log(1 + q), and the
            # logs of the 1 + q are taken once per column and PRODUCT_ROWS rows, of their product
            q = _exp(-abs(v))
            u = np.float32(1.0) + q
            r = np.float32(1.0) / u
            z[i, j] = r if v >= 0 else q * r
            columns[j] += (np.float32(1.0) - target[i, j]) * v + max(-v, np.float32(0.0))
            products[j] *= u
        for j in range(d):  # a second loop over the row, still in the L1 cache: fewer arrays per loop vectorize better
            p = z[i, j]
            keys[j] = _order_key(p)
            delta = (p - target[i, j]) * scale
            z[i, j] = delta
            bias_grad[j] += delta
        error += 1.0 - target[i, _first_max(keys)]
    return loss + _column_losses_total(columns, products), error


def output_layer_(logits: np.ndarray, bias: np.ndarray, target: np.ndarray, floor: float, scale: float,
                  bias_grad: np.ndarray) -> tuple[float, float]:
    """The sigmoid output layer, forward and backward, in one pass over ``logits`` (n, d).

    With ``p = sigmoid(max(logits + bias, floor))``, returns the tutorial's
    loss (the binary cross-entropy of p against ``target``, summed over the
    pixels and rows: ``aelab.training.loop.summed_bce``) and CNTK's classification
    error summed over the rows; turns ``logits`` into the loss's gradient by
    them, ``(p - target) * scale``, in place, and writes its column sums (the
    bias's gradient) into ``bias_grad``. PyTorch takes about fifteen passes.
    """
    columns, products = np.empty((2, logits.shape[1]), dtype=logits.dtype)
    keys = np.empty(logits.shape[1], dtype=np.int32)
    dtype = logits.dtype.type
    loss, error = _output_layer_loop(logits, bias, target, dtype(floor), dtype(scale), bias_grad, columns, products,
                                     keys)
    return float(loss), float(error)


@_jit
def _bias_relu_loop(h, bias):  # pragma: no cover - runs compiled
    for i in range(h.shape[0]):
        for j in range(h.shape[1]):
            v = h[i, j] + bias[j]
            h[i, j] = 0.0 if v < 0.0 else v  # NaN stays NaN, as in relu_


def bias_relu_(h: np.ndarray, bias: np.ndarray) -> None:
    """A hidden layer's ``h = relu(h + bias)``, in place, in one pass (PyTorch: two calls)."""
    _bias_relu_loop(h, bias)


@_jit
def _relu_backward_loop(delta, h, bias_grad):  # pragma: no cover - runs compiled
    for j in range(delta.shape[1]):
        bias_grad[j] = 0.0
    for i in range(delta.shape[0]):
        for j in range(delta.shape[1]):
            d = delta[i, j] if h[i, j] > 0.0 else np.float32(0.0)
            delta[i, j] = d
            bias_grad[j] += d


def relu_backward_(delta: np.ndarray, h: np.ndarray, bias_grad: np.ndarray) -> None:
    """Back through a hidden layer's ReLU: zero ``delta`` where its output ``h`` is not positive,
    in place, and write the column sums (the layer's bias gradient) into ``bias_grad``."""
    _relu_backward_loop(delta, h, bias_grad)


PREFETCH_ROWS = 4  # how far ahead the gather asks for rows: a random row is a miss in every cache


@_jit
def _gather_scaled_loop(images, rows, start, count, scale, out):  # pragma: no cover - runs compiled
    width = images.shape[1]
    for i in range(count):
        if i + PREFETCH_ROWS < count:
            ahead = rows[start + i + PREFETCH_ROWS]
            for j in range(0, width, 64):  # each 64-byte line of the (uint8) row, and its last byte's
                _prefetch(images, ahead, j)
            _prefetch(images, ahead, width - 1)
        r = rows[start + i]
        for j in range(width):
            out[i, j] = images[r, j] * scale


def gather_scaled(images: np.ndarray, rows: np.ndarray, start: int, count: int, scale: float,
                  out: np.ndarray) -> None:
    """``out[i] = images[rows[start + i]] * scale`` for i < count: uint8 rows to float32 in one pass."""
    _gather_scaled_loop(images, rows, start, count, np.float32(scale), out)


def warm_up() -> None:
    """Compile (or load from the cache) every loop the engine runs now, so that no timed region pays
    for it (``exp``, ``log`` and ``classification_error_sum`` serve the tests and compile on first use).

    The first loop a process loads also loads numba's own registries: about half a second.
    """
    if numba is None:  # pragma: no cover
        return
    with signals_deferred():  # a stop asked while numba compiles comes once it is done, not lost inside it
        _run_each_loop_once()


def _run_each_loop_once() -> None:
    x = np.ones(4, dtype=np.float32)
    fsadagrad_(x, x.copy(), x.copy(), x.copy(), nu=0.5, mu=0.5, gain_scale=1.0, cap=1.0, lr=0.0)
    gather_scaled(np.zeros((2, 3), dtype=np.uint8), np.arange(2), 0, 1, 1.0, np.empty((1, 3), dtype=np.float32))
    ones = np.ones((1, 3), dtype=np.float32)
    output_layer_(ones.copy(), ones[0], ones, -1.0, 1.0, ones[0].copy())
    bias_relu_(ones.copy(), ones[0])
    relu_backward_(ones.copy(), ones, ones[0].copy())


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a contiguous CPU tensor (shares memory)."""
    return t.detach().numpy()


def applies_to(*tensors: torch.Tensor) -> bool:
    """Whether the fused loops can work on these tensors: CPU, contiguous, and numba installed."""
    return numba is not None and all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)
