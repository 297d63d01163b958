"""The codec's quantisers and probability tables: ``CodecTable``, fitting them to codes, quantising.

The uniform and transform quantisers, the histogram smoothing and the predictive coders' residual tables.
"""
from __future__ import annotations

import dataclasses
import hashlib
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import DataError, OptionError
from .format import MAX_BITS, MIN_BITS, QUANTISERS, check_bits, check_choice
from .predictor import Predictor, fit_predictor, fit_spread_head

# the range-ctx coder's predictor: wider than range-ar's (256 units) and trained longer (20 epochs)
CTX_PREDICTOR = {"hidden": 384, "epochs": 80}
CTX_CHUNK = 4096  # range-ctx codes its images in chunks of this many (docs/format.md): part of the format
# the probability tables of table="checkpoint" hold integer frequencies of this total (about)
_FREQ_SCALE = 1 << 24


# --- the quantiser and its probability tables ---------------------------------------------------

@dataclass(frozen=True, eq=False)
class CodecTable:
    """A quantiser and its per-component probability model, for one bit depth.

    Components are the code's numbers (``quantiser="uniform"``) or, for
    ``"transform"``, ``y = (code - mean) @ matrix``. Component k is quantised
    to symbols ``0 .. levels[k] - 1``, symbol s standing for
    ``offset[k] + s * step[k]``. ``freq`` (``(code_size, 2**bits)``, integers
    >= 0, zero from ``levels[k]`` on) is the probability model: symbol s of
    component k has probability ``freq[k, s] / freq[k].sum()`` (the coder
    gives a zero entry the smallest probability it represents, so any symbol
    can be coded). All parameters are float32 (computations use float64).
    """

    quantiser: str
    bits: int
    offset: np.ndarray
    step: np.ndarray
    levels: np.ndarray
    freq: np.ndarray
    mean: np.ndarray | None = None
    matrix: np.ndarray | None = None
    predictor: Predictor | None = None

    def __post_init__(self) -> None:
        problem = _table_problem(self)
        if problem:
            raise ValueError(problem)
        for name in ("offset", "step", "levels", "freq", "mean", "matrix"):
            value = getattr(self, name)
            if value is not None:
                value = np.array(value, copy=True)
                value.setflags(write=False)
                object.__setattr__(self, name, value)

    @property
    def code_size(self) -> int:
        return int(self.offset.shape[0])

    @property
    def max_levels(self) -> int:
        return 1 << self.bits

    @property
    def classes(self) -> int:
        """Probability tables per component: the predictor's spread classes (range-ctx), else 1;
        ``freq`` row ``k * classes + j`` is component k's table for class j."""
        return self.predictor.classes if self.predictor is not None else 1

    def zero_symbols(self) -> np.ndarray:
        """int64 (d,): each component's symbol nearest to the value 0 (the transform's mean), which
        the predictor's inputs are counted from."""
        step = self.step.astype(np.float64)
        ratio = np.divide(-self.offset.astype(np.float64), step, out=np.zeros_like(step), where=step > 0)
        return np.clip(np.rint(ratio), 0, self.levels - 1).astype(np.int64)

    @cached_property
    def inverse(self) -> np.ndarray | None:
        """For ``"transform"``: the matrix back from components to codes (the pseudo-inverse)."""
        if self.matrix is None:
            return None
        return np.linalg.pinv(self.matrix.astype(np.float64))

    def params_bytes(self) -> bytes:
        """mean and matrix (transform only), offset, step (float32 LE) and levels (uint32 LE)."""
        parts = [] if self.matrix is None else [self.mean.astype("<f4").tobytes(), self.matrix.astype("<f4").tobytes()]
        parts += [self.offset.astype("<f4").tobytes(), self.step.astype("<f4").tobytes(),
                  self.levels.astype("<u4").tobytes()]
        return b"".join(parts)

    @cached_property
    def digest(self) -> bytes:
        """16 bytes identifying the table: SHA-256 of its quantiser, bits, parameters and frequencies."""
        h = hashlib.sha256(b"aelab-codec-table\0")
        h.update(struct.pack("<BBI", QUANTISERS[self.quantiser], self.bits, self.code_size))
        h.update(self.params_bytes())
        h.update(self.freq.astype("<u4").tobytes())
        if self.predictor is not None:
            h.update(b"predictor\0" + self.predictor.digest_bytes())
        return h.digest()[:16]


def with_frequencies(table: CodecTable, freq: np.ndarray) -> CodecTable:
    """``table`` with the probability model ``freq`` instead of its own."""
    return dataclasses.replace(table, freq=freq)


def _table_problem(t: CodecTable) -> str | None:
    """What is wrong with a table's fields, or None."""
    if t.quantiser not in QUANTISERS:
        return f"unknown quantiser {t.quantiser!r}"
    if isinstance(t.bits, bool) or not isinstance(t.bits, (int, np.integer)) or not MIN_BITS <= t.bits <= MAX_BITS:
        return f"bits {t.bits!r} out of range"
    arrays = [t.offset, t.step, t.levels, t.freq]
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return "table fields must be numpy arrays"
    d = t.offset.shape[0] if t.offset.ndim == 1 else -1
    rows = d * t.classes if isinstance(t.predictor, Predictor) else d
    if d < 1 or t.step.shape != (d,) or t.levels.shape != (d,) or t.freq.shape != (rows, 1 << t.bits):
        return "table arrays have inconsistent shapes"
    if t.offset.dtype != np.float32 or t.step.dtype != np.float32:
        return "offset and step must be float32"
    if t.levels.dtype.kind not in "iu" or t.freq.dtype.kind not in "iu":
        return "levels and frequencies must be integers"
    if not (np.isfinite(t.offset).all() and np.isfinite(t.step).all()) or (t.step < 0).any():
        return "offset or step is not finite, or a step is negative"
    if (t.levels < 1).any() or (t.levels > 1 << t.bits).any() or ((t.levels > 1) & (t.step == 0)).any():
        return "levels out of range"
    if (t.freq < 0).any() or (t.freq >= 1 << 32).any():
        return "frequencies out of range"
    if (t.freq[np.arange(1 << t.bits)[None, :] >= np.repeat(t.levels, rows // d)[:, None]] != 0).any():
        return "frequencies beyond a component's levels"
    if (t.quantiser == "transform") != (t.matrix is not None) or (t.mean is None) != (t.matrix is None):
        return "a transform table needs mean and matrix, a uniform one neither"
    if t.matrix is not None:
        if (not isinstance(t.matrix, np.ndarray) or not isinstance(t.mean, np.ndarray) or t.mean.shape != (d,)
                or t.matrix.shape != (d, d) or t.mean.dtype != np.float32 or t.matrix.dtype != np.float32):
            return "transform mean and matrix must be float32 of shapes (d,) and (d, d)"
        if not (np.isfinite(t.mean).all() and np.isfinite(t.matrix).all()):
            return "transform is not finite"
    if t.predictor is not None and (not isinstance(t.predictor, Predictor) or t.predictor.size != d):
        return "the predictor does not fit the table"
    return None


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in float64, computed by torch: numpy's OpenBLAS would start threads of its own, which
    keep spinning after the product and slowed the model's next convolutions by about 20% on our
    2-core machine (torch's products share its one thread pool)."""
    import torch
    return (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
            @ torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64))).numpy()


def components(codes: np.ndarray, table: CodecTable) -> np.ndarray:
    """The quantised quantities (float64 (n, d)): the codes, or ``(codes - mean) @ matrix``."""
    z = np.asarray(codes, dtype=np.float64)
    if table.matrix is None:
        return z
    return _product(z - table.mean.astype(np.float64), table.matrix)


def quantise(codes: np.ndarray, table: CodecTable) -> np.ndarray:
    """Symbols (int32 (n, d)) of ``codes`` (n, d): component k goes to the nearest of its
    ``levels[k]`` levels ``offset[k] + s * step[k]``; values beyond the ends to the end levels.

    The same symbols on every machine: the transform's product is taken by BLAS (fast, but its
    rounding depends on the CPU), and every row with a component within a hair of halfway between
    two levels is computed again in a fixed order (:func:`_product_in_order`), whose rounding is IEEE's
    everywhere; BLAS's error is many orders of magnitude below that hair."""
    scaled = _scaled(components(codes, table), table)
    if table.matrix is not None:
        near = np.abs(scaled - np.floor(scaled) - 0.5) < _NEAR_HALF
        rows = np.flatnonzero(near.any(axis=1))
        if rows.size:
            z = np.asarray(codes, dtype=np.float64)[rows] - table.mean.astype(np.float64)
            scaled[rows] = _scaled(_product_in_order(z, table.matrix.astype(np.float64)), table)
    return np.clip(np.rint(scaled), 0, table.levels - 1).astype(np.int32)


_NEAR_HALF = 1e-6   # in quantiser steps: how close to halfway a component is computed again in a fixed order


def _scaled(y: np.ndarray, table: CodecTable) -> np.ndarray:
    """Components in units of steps from each one's first level (0 where a component has one level)."""
    step = table.step.astype(np.float64)
    return np.divide(y - table.offset.astype(np.float64), step, out=np.zeros_like(y), where=step > 0)


def _product_in_order(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (float64) summed over j = 0, 1, ... in that order, one IEEE multiply and add at a
    time: the same bits on every machine."""
    out = np.zeros((a.shape[0], b.shape[1]))
    for j in range(a.shape[1]):
        out += a[:, j:j + 1] * b[j]
    return out


def dequantise(symbols: np.ndarray, table: CodecTable) -> np.ndarray:
    """Codes (float32 (n, d)) for ``symbols``: each component's level, mapped back to codes.

    For a component value inside its levels' range the level is within half a
    step of it.
    """
    y = table.offset.astype(np.float64) + np.asarray(symbols, dtype=np.float64) * table.step.astype(np.float64)
    if table.matrix is not None:
        y = _product(y, table.inverse) + table.mean.astype(np.float64)
    return y.astype(np.float32)


def _histograms(symbols: np.ndarray, levels: int) -> np.ndarray:
    """Per-component counts (d, levels), int64."""
    n, d = symbols.shape
    flat = (symbols.astype(np.int64) + np.arange(d, dtype=np.int64) * levels).reshape(-1)
    return np.bincount(flat, minlength=d * levels).reshape(d, levels)


def _box(counts: np.ndarray, width: int) -> np.ndarray:
    """Each row of ``counts`` (float64) averaged over a centred window of ``width`` (odd) symbols."""
    if width <= 1:
        return counts
    r = width // 2
    d, levels = counts.shape
    c = np.zeros((d, levels + 1))
    np.cumsum(counts, axis=1, out=c[:, 1:])
    idx = np.arange(levels)
    lo, hi = np.clip(idx - r, 0, levels), np.clip(idx + r + 1, 0, levels)
    return (c[:, hi] - c[:, lo]) / (hi - lo)


def _smoothed(counts: np.ndarray, levels: np.ndarray, width: int, eps: float) -> np.ndarray:
    """Probabilities (d, L) from counts: the end symbols (a ReLU code's zero bucket, the clipped
    ends) keep their own mass, the interior is box-smoothed, an ``eps`` share is spread uniformly
    over each component's levels; nothing beyond them."""
    counts = counts.astype(np.float64)
    cols = np.arange(counts.shape[1])[None, :]
    valid = cols < levels[:, None]
    is_end = (cols == 0) | (cols == levels[:, None] - 1)
    ends = np.where(is_end, counts, 0.0)
    mass = np.where(valid, ends + _box(counts - ends, width), 0.0)
    total = mass.sum(axis=1, keepdims=True)
    share = np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)
    share[total[:, 0] == 0] = valid[total[:, 0] == 0] / levels[total[:, 0] == 0, None]
    return (1.0 - eps) * share + eps * valid / levels[:, None]


def _fit_smoothing(symbols: np.ndarray, levels: np.ndarray, max_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per component, the box width and uniform share with the best held-out log-likelihood
    (two folds: even and odd rows). Deterministic."""
    d = symbols.shape[1]
    folds = (_histograms(symbols[0::2], max_levels), _histograms(symbols[1::2], max_levels))
    widths = [w for w in (1, 3, 5, 9, 17, 33, 65, 129, 257, 513, 1025, 2049) if w <= max(1, max_levels // 4)]
    epsilons = (1e-6, 1e-4, 1e-3, 1e-2, 5e-2)
    held = []  # the held-out counts, sparse: (rows, cols, counts) of the non-zero entries
    for fold in (folds[1], folds[0]):
        rows, cols = np.nonzero(fold)
        held.append((rows, cols, fold[rows, cols].astype(np.float64)))
    best = np.full(d, -np.inf)
    best_w = np.ones(d, dtype=np.int64)
    best_e = np.full(d, epsilons[0])
    for w in widths:
        shares = [_smoothed(fit, levels, w, 0.0)[rows, cols] for fit, (rows, cols, _) in zip(folds, held)]
        for e in epsilons:
            score = np.zeros(d)
            for share, (rows, _, counts) in zip(shares, held):
                score += np.bincount(rows, counts * np.log((1.0 - e) * share + e / levels[rows]), minlength=d)
            better = score > best + 1e-9
            best = np.where(better, score, best)
            best_w = np.where(better, w, best_w)
            best_e = np.where(better, e, best_e)
    return best_w, best_e


def _decoder_metric(model: Any, codes: np.ndarray, samples: int = 500, chunk: int = 64) -> np.ndarray:
    """G = E[J^T J] (d, d), J the decoder's Jacobian (pixels in [0, 1] per code number), by central
    differences at up to ``samples`` evenly spaced codes: how much each code direction moves pixels."""
    from ..models.inference import decode
    n, d = codes.shape
    picked = codes[np.linspace(0, n - 1, min(n, samples)).astype(np.int64)].astype(np.float32)
    std = codes.std(axis=0)
    shift = np.diag((1e-2 * np.where(std > 0, std, 1.0)).astype(np.float32))  # (d, d): row j moves code j
    metric = np.zeros((d, d))
    for start in range(0, len(picked), chunk):
        z = picked[start:start + chunk]
        up, down = z[None, :, :] + shift[:, None, :], z[None, :, :] - shift[:, None, :]  # (d, b, d)
        pixels = decode(model, np.concatenate([up, down]).reshape(-1, d)).reshape(2, d, len(z), -1)
        delta = (up - down)[np.arange(d), :, np.arange(d)].astype(np.float64)  # (d, b): the actual steps
        jac = (pixels[0].astype(np.float64) - pixels[1]) / delta[:, :, None]  # (d, b, pixels)
        flat = jac.reshape(d, -1)
        metric += flat @ flat.T
    return metric / max(len(picked), 1)


def _fit_transform(codes: np.ndarray, model: Any) -> tuple[np.ndarray, np.ndarray]:
    """mean and matrix of the "transform" quantiser: scale the codes by the square root of the
    decoder metric (so that equal steps cost about equal pixel error in every direction), then
    rotate onto the principal axes of the scaled training codes (decorrelated components)."""
    n, d = codes.shape
    mean = codes.mean(axis=0) if n else np.zeros(d)
    w, u = np.linalg.eigh(_decoder_metric(model, codes) if n else np.eye(d))
    root = (u * np.sqrt(np.clip(w, 0, None))) @ u.T
    scaled = (codes - mean) @ root
    lam, v = np.linalg.eigh(scaled.T @ scaled / max(n, 1))
    v = v[:, np.argsort(-lam, kind="stable")]
    v *= np.where(v[np.abs(v).argmax(axis=0), np.arange(d)] < 0, -1.0, 1.0)  # a fixed sign per axis
    return mean.astype(np.float32), (root @ v).astype(np.float32)


def fit_table(codes: np.ndarray, bits: int, quantiser: str = "uniform", *, model: Any = None,
              exact: bool = False, transform: tuple[np.ndarray, np.ndarray] | None = None) -> CodecTable:
    """A table learned from ``codes`` (n, d): the (training) codes of a model.

    ``"uniform"``: per dimension, ``2**bits`` levels spanning the codes' [min, max]
    (a ReLU code's exact zeros are symbol 0). ``"transform"``: components
    ``(code - mean) @ matrix`` (see :func:`_fit_transform`; needs ``model``, or
    a given ``transform``), all quantised with one step, the one that gives the
    widest component's range ``2**bits - 2`` steps (so at most ``2**bits``
    levels; narrow components get fewer); the grid is anchored at 0, so
    component values near the mean cost least.

    The probabilities are the histogram of the symbols: with ``exact``, as is
    (for the codes being compressed); else smoothed (the end symbols keep their
    own mass, the interior is box-smoothed and a small uniform share mixed in,
    both chosen per component by held-out likelihood) and scaled to integer
    frequencies (total about 2**24).
    """
    return fitted_table(codes, check_bits(bits), check_choice(quantiser, QUANTISERS, "quantiser"), model=model,
                        exact=exact, transform=transform)


def fitted_table(codes: np.ndarray, bits: int, quantiser: str, *, model: Any = None, exact: bool = False,
                 transform: tuple[np.ndarray, np.ndarray] | None = None) -> CodecTable:
    """:func:`fit_table` for ``bits`` and ``quantiser`` already checked."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[1] < 1:
        raise DataError(f"codes must be (n, code_size), got shape {codes.shape}")
    if not exact and len(codes) < 2:
        raise DataError(f"need at least two training codes to learn the probability model, got {len(codes)}")
    if not np.isfinite(codes).all():
        raise DataError("the codes contain NaN or infinite values")
    n, d = codes.shape
    max_levels = 1 << bits
    if quantiser == "uniform":
        mean = matrix = None
        lo = codes.min(axis=0).astype(np.float32) if n else np.zeros(d, np.float32)
        hi = codes.max(axis=0).astype(np.float32) if n else np.zeros(d, np.float32)
        step = ((hi.astype(np.float64) - lo) / (max_levels - 1)).astype(np.float32)
        offset, levels = lo, np.where(step > 0, max_levels, 1)
    else:
        if transform is None:
            if model is None:
                raise OptionError("the transform quantiser needs the model (its decoder) to learn its transform")
            transform = _fit_transform(codes, model)
        mean, matrix = (np.asarray(a, dtype=np.float32) for a in transform)
        y = _product(codes - mean.astype(np.float64), matrix)
        ymin, ymax = (y.min(axis=0), y.max(axis=0)) if n else (np.zeros(d), np.zeros(d))
        span = float((ymax - ymin).max())
        delta = np.float32(span / (max_levels - 2) if span > 0 else 1.0)
        qmin, qmax = np.rint(ymin / np.float64(delta)), np.rint(ymax / np.float64(delta))
        offset = (qmin * np.float64(delta)).astype(np.float32)
        levels = np.clip(qmax - qmin + 1, 1, max_levels).astype(np.int64)
        step = np.where(levels > 1, delta, np.float32(0)).astype(np.float32)
    levels = np.asarray(levels, dtype=np.int64)
    shape_only = CodecTable(quantiser=quantiser, bits=bits, offset=offset, step=step, levels=levels,
                            freq=np.where(np.arange(max_levels)[None, :] < levels[:, None], 1, 0), mean=mean,
                            matrix=matrix)
    symbols = quantise(codes, shape_only)
    return CodecTable(quantiser=quantiser, bits=bits, offset=offset, step=step, levels=levels,
                      freq=_frequencies(symbols, levels, max_levels, exact), mean=mean, matrix=matrix)


def _frequencies(symbols: np.ndarray, levels: np.ndarray, max_levels: int, exact: bool) -> np.ndarray:
    """The probability model of ``symbols`` (n, d): their histogram as is (``exact``), or smoothed
    and scaled to integer frequencies (see :func:`fit_table`)."""
    counts = _histograms(symbols, max_levels)
    if exact:
        return counts
    d = symbols.shape[1]
    widths, epsilons = _fit_smoothing(symbols, levels, max_levels)
    probs = np.empty((d, max_levels))
    for w in np.unique(widths):
        for e in np.unique(epsilons[widths == w]):
            rows = (widths == w) & (epsilons == e)
            probs[rows] = _smoothed(counts[rows], levels[rows], int(w), float(e))
    valid = np.arange(max_levels)[None, :] < levels[:, None]
    return np.where(valid, np.maximum(np.rint(probs * _FREQ_SCALE), 1), 0).astype(np.int64)


def fit_predictive_table(codes: np.ndarray, table: CodecTable, *, spread: bool = False,
                         **predictor_options: Any) -> CodecTable:
    """``table``'s quantiser with an autoregressive predictor (:mod:`aelab.codec.predictor`) learned from
    ``codes`` (the training codes), and the probability model of the residuals
    ``(symbol - zero - prediction) mod levels`` that the ``"range-ar"`` coder codes.

    With ``spread``, the ``"range-ctx"`` coder's: a wider predictor trained longer
    (``CTX_PREDICTOR``), with a spread head, and one probability model per component and spread
    class (residuals mirrored where the prediction was rounded up; see :mod:`aelab.codec.predictor`)."""
    symbols = quantise(codes, table)
    if len(symbols) < 2:
        raise DataError(f"need at least two training codes to learn the predictor, got {len(symbols)}")
    if table.code_size < 2:
        raise OptionError("a predictor needs codes of at least two numbers", hint="use the range coder")
    zero = table.zero_symbols()
    if spread:
        predictor = fit_predictor(symbols - zero, **{**CTX_PREDICTOR, **predictor_options})
        predictor = fit_spread_head(predictor, symbols - zero, table.levels)
    else:
        predictor = fit_predictor(symbols - zero, **predictor_options)
    residuals, classes = predictor.residuals_and_classes(symbols, zero, table.levels)
    if classes is None:
        freq = _frequencies(residuals, table.levels, table.max_levels, False)
    else:
        freq = _class_frequencies(residuals, classes, predictor.classes, table.levels, table.max_levels)
    return CodecTable(quantiser=table.quantiser, bits=table.bits, offset=table.offset, step=table.step,
                      levels=table.levels, freq=freq, mean=table.mean, matrix=table.matrix, predictor=predictor)


def _class_frequencies(residuals: np.ndarray, classes: np.ndarray, count: int, levels: np.ndarray,
                       max_levels: int) -> np.ndarray:
    """Row ``k * count + j``: the probability model (:func:`_frequencies`) of component k's residuals
    in spread class j; uniform for a class with fewer than two training residuals."""
    d = residuals.shape[1]
    freq = np.zeros((d * count, max_levels), np.int64)
    for k in range(d):
        for j in range(count):
            rows = residuals[classes[:, k] == j, k]
            if len(rows) >= 2:
                freq[k * count + j] = _frequencies(rows[:, None], levels[k:k + 1], max_levels, False)[0]
            else:
                freq[k * count + j, :levels[k]] = 1
    return freq


