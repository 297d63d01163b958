"""A learned image codec: images -> a model's codes -> quantised -> entropy coded -> one ``.aez`` file.

``compress`` encodes a set of images with a trained autoencoder, quantises
the codes with ``bits`` bits, and entropy codes the symbols with a range
coder (`constriction <https://bamler-lab.github.io/constriction/>`_) under a
per-component categorical probability model. ``decompress`` reverses it with
the same model. The file format is specified in ``docs/format.md``.

Quantisers (``quantiser=``):

- ``"uniform"``: each code number on its own [min, max] range (from the
  training codes; values outside are clipped), ``2**bits`` equal levels.
- ``"transform"`` (default): transform coding. The codes are scaled by the
  square root of the decoder's sensitivity (E[J^T J], J its Jacobian, so an
  equal step costs about equal pixel error in every direction) and rotated
  onto the principal axes of the scaled training codes (decorrelated
  components); all components share one step, the one that spans the widest
  component's range with ``2**bits - 2`` steps. About 10-15% fewer bytes than
  ``"uniform"`` at the same PSNR for the deep model; for a given ``bits`` it
  is coarser, so compare them at equal PSNR, not equal bits.

Coders (``coder=``): ``"range"`` (the default) codes each component's
symbols under its histogram; ``"range-ar"`` codes what an autoregressive
predictor (:mod:`aelab.codec.predictor`, exact integer arithmetic) leaves of each
component given the earlier ones, 10% fewer bytes for mnist-conv (``table="checkpoint"``
only); ``"range-ctx"`` does the same with a wider predictor that also scores
how far off it may be, and codes each residual under one of 8 tables chosen
by that score, 4.5% fewer bytes than range-ar for mnist-codec at 7 bits;
``"zlib"`` is the fallback without constriction.

Where the probability model lives (``table=``):

- ``"checkpoint"`` (default): the quantiser and the probability tables
  are learned from the codes of the model's *training* images, cached in the
  checkpoint folder as ``codec.safetensors`` and identified in each file by a
  16-byte digest. They are part of the model, like its weights: they cost no
  bytes per file. Decoding needs the same tables: the same checkpoint folder
  (with its ``codec.safetensors``), or the training data to rebuild them.
- ``"embedded"``: the quantiser is fitted to the compressed images' own codes
  and the table is their exact histogram, both stored (the frequencies
  zlib-compressed) in the file: self-contained, with the table's bytes
  counted in the file size.

Everything here runs on the CPU: the entropy-coded symbols decode exactly
anywhere; the decoded pixels are deterministic for a given machine and torch
build.

Python API::

    from aelab import codec
    blob = codec.encode_bytes(images, "aelab-model", bits=6)    # uint8 (n, h, w) -> bytes
    images = codec.decode_bytes(blob, "aelab-model")             # -> uint8 (n, h, w)
    codec.compress("t10k-images-idx3-ubyte", "aelab-model", "digits.aez", bits=6)
    codec.decompress("digits.aez", "aelab-model", "digits.npz")
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..models.checkpoint import WEIGHTS_FILE, Checkpoint, load_checkpoint
from ..errors import CheckpointError, DataError, OptionError, OutputError
from ..fileio import atomic_write, ensure_dir, write_bytes
from .format import (  # noqa: F401  (re-exported: callers import these from here)
    MAGIC, VERSION, SUFFIX, MIN_BITS, MAX_BITS, DEFAULT_BITS, CACHE_FILE, HEADER, _CRC_OFFSET, CODERS, PREDICTIVE_CODERS, TABLES, QUANTISERS, DEFAULT_QUANTISER, AezHeader, read_header)
from .predictor import CHUNK as PREDICTOR_CHUNK
from .predictor import Predictor, PredictorRun, fit_predictor, fit_spread_head

__all__ = ["compress", "decompress", "encode_bytes", "decode_bytes", "decode_codes", "read_header",
           "codec_table", "has_cached_table", "fit_table", "fit_predictive_table", "save_tables", "fingerprint",
           "quantise", "dequantise", "components", "output_format",
           "AezHeader", "CodecTable", "MAGIC", "VERSION", "MIN_BITS", "MAX_BITS", "DEFAULT_BITS",
           "DEFAULT_QUANTISER", "QUANTISERS", "CACHE_FILE", "SUFFIX"]

# the range-ctx coder's predictor: wider than range-ar's (256 units) and trained longer (20 epochs)
CTX_PREDICTOR = {"hidden": 384, "epochs": 80}
CTX_CHUNK = 4096  # range-ctx codes its images in chunks of this many (docs/format.md): part of the format
# the probability tables of table="checkpoint" hold integer frequencies of this total (about)
_FREQ_SCALE = 1 << 24
_CACHE_FORMAT = "aelab-codec-tables"
_CACHE_VERSION = "1"   # bump when the fitting algorithm changes: older caches are then rebuilt

_training_codes_memo: dict[tuple[str, str], np.ndarray] = {}
_table_memo: dict[tuple, "CodecTable"] = {}


# --- options ------------------------------------------------------------------------

def check_bits(bits: Any) -> int:
    """``bits`` as an int in 2..16, else OptionError."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
        raise OptionError(f"bits must be an integer from {MIN_BITS} to {MAX_BITS}, got {bits!r}",
                          hint="e.g. --bits 6; more bits: finer codes, more bytes")
    return int(bits)


def _check_choice(value: str, choices: dict, what: str) -> str:
    if value not in choices:
        raise OptionError(f"unknown {what} {value!r}", hint=f"choose one of: {', '.join(choices)}")
    return value


def _has_constriction() -> bool:
    try:
        import constriction  # noqa: F401
    except ImportError:
        return False
    return True


def _constriction():
    try:
        import constriction
    except ImportError as e:
        raise OptionError("the range coder needs the 'constriction' package, which is not installed",
                          hint="pip install constriction (or use coder 'zlib')") from e
    return constriction


def default_coder() -> str:
    """``"range"`` when constriction is installed, else ``"zlib"``."""
    return "range" if _has_constriction() else "zlib"


# --- the model and its fingerprint ---------------------------------------------------

def _checkpoint(checkpoint: Checkpoint | str | os.PathLike) -> Checkpoint:
    """A loaded checkpoint with its model on the CPU."""
    if isinstance(checkpoint, Checkpoint):
        model = checkpoint.model
        if next(model.parameters()).device.type != "cpu":
            checkpoint = Checkpoint(model=copy.deepcopy(model).cpu().eval(), model_config=checkpoint.model_config,
                                    info=checkpoint.info, path=checkpoint.path)
        return checkpoint
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise OptionError(f"checkpoint must be a folder or a loaded Checkpoint, got {type(checkpoint).__name__}")
    return load_checkpoint(checkpoint, device="cpu")


def _fingerprint_bytes(ckpt: Checkpoint) -> bytes:
    weights = ckpt.info.get("weights_sha256")
    if not weights:
        try:
            weights = hashlib.sha256((Path(ckpt.path) / WEIGHTS_FILE).read_bytes()).hexdigest()
        except OSError as e:
            raise CheckpointError(f"cannot read the weights: {e.strerror or e}", path=ckpt.path) from e
    # the model description as config.json stores it: later aelab versions that add fields with defaults
    # to ModelConfig do not change the fingerprint of an existing checkpoint
    description = ckpt.info.get("model") or ckpt.model_config.to_dict()
    text = json.dumps({"model": description, "weights_sha256": weights}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(b"aelab-model-fingerprint\0" + text.encode("utf-8")).digest()[:16]


def fingerprint(checkpoint: Checkpoint | str | os.PathLike) -> str:
    """The model's fingerprint (32 hex digits): SHA-256 of its config and weights' SHA-256, truncated."""
    return _fingerprint_bytes(_checkpoint(checkpoint)).hex()


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
    ``levels[k]`` levels ``offset[k] + s * step[k]``; values beyond the ends to the end levels."""
    y = components(codes, table)
    step = table.step.astype(np.float64)
    scaled = np.divide(y - table.offset.astype(np.float64), step, out=np.zeros_like(y), where=step > 0)
    return np.clip(np.rint(scaled), 0, table.levels - 1).astype(np.int32)


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
    bits = check_bits(bits)
    _check_choice(quantiser, QUANTISERS, "quantiser")
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
        y = (codes - mean.astype(np.float64)) @ matrix.astype(np.float64)
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


# --- the checkpoint's tables: learned from the training codes, cached in codec.safetensors ----

def _training_codes(ckpt: Checkpoint, data: Any) -> np.ndarray:
    """Codes of the images the model was trained on (the training split of its data)."""
    from ..data import Dataset, load_dataset
    from ..data.datasets import BUNDLED_NAME
    from ..models.inference import encode
    record = ckpt.info.get("data") or {}
    name, want = record.get("name"), record.get("sha256")
    fp = _fingerprint_bytes(ckpt).hex()
    key = (fp, "" if data is None else (data.sha256 if isinstance(data, Dataset) else os.fspath(data)))
    if key in _training_codes_memo:
        return _training_codes_memo[key]
    if data is None:
        if name != BUNDLED_NAME:
            raise CheckpointError(
                f"the codec's probability model is learned from the model's training data "
                f"({name or 'not recorded'}), which aelab cannot find, and {CACHE_FILE} holds no table "
                f"for these settings", path=ckpt.path,
                hint="pass the training data with --data (data=...), copy the checkpoint folder together with "
                     f"its {CACHE_FILE}, or use --table embedded")
        dataset = load_dataset(None)
    else:
        dataset = data if isinstance(data, Dataset) else load_dataset(data)
    if want and dataset.sha256 != want:
        raise DataError(f"{dataset.name!r} is not the data this model was trained on (its sha256 "
                        f"{dataset.sha256[:12]}... differs from the checkpoint's {str(want)[:12]}...)",
                        path=None if isinstance(data, Dataset) or data is None else data,
                        hint=f"pass the model's training data ({name}), or use --table embedded")
    codes = encode(ckpt.model, dataset.train.images)
    _training_codes_memo.clear()  # keep one set: 60000 x 32 floats is 7.7 MB
    _training_codes_memo[key] = codes
    return codes


def _user_cache_file(fp: str) -> Path:
    """Where tables go when the checkpoint folder is not writable or is a shipped model:
    ``$AELAB_CACHE`` or ``$XDG_CACHE_HOME/aelab`` or ``~/.cache/aelab``, then ``codec/<fingerprint>.safetensors``."""
    root = os.environ.get("AELAB_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "aelab")
    return Path(root) / "codec" / f"{fp}.safetensors"


def _is_shipped(folder: Path) -> bool:
    """Whether ``folder`` is one of the package's shipped pretrained models (never written to)."""
    try:
        from ..models.checkpoint import pretrained_root
        root = pretrained_root().resolve()
        return root == folder.resolve() or root in folder.resolve().parents
    except Exception:  # noqa: BLE001 - no registry: nothing is shipped
        return False


def _read_cache(path: Path, fp: str) -> dict[str, np.ndarray]:
    """The tensors of a tables file if it belongs to this model and algorithm, else {}."""
    from safetensors import safe_open
    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if (meta.get("format") != _CACHE_FORMAT or meta.get("version") != _CACHE_VERSION
                    or meta.get("fingerprint") != fp):
                return {}  # another model's, or an older algorithm's: rebuilt and replaced
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt from the training data
        return {}


def _cached_transform(tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    if "transform.mean" in tensors and "transform.matrix" in tensors:
        return tensors["transform.mean"], tensors["transform.matrix"]
    return None


def _cache_prefix(quantiser: str, bits: int, predictive: bool, spread: bool = False) -> str:
    # distinct stems, so that replacing one table's tensors never drops the other's
    kind = "ctx" if predictive and spread else "ar" if predictive else "b"
    return f"{quantiser}.{kind}{bits}."


def _table_from_cache(tensors: dict[str, np.ndarray], quantiser: str, bits: int,
                      predictive: bool = False, spread: bool = False) -> CodecTable | None:
    prefix = _cache_prefix(quantiser, bits, predictive, spread)
    try:
        fields = {k: tensors[prefix + k] for k in ("offset", "step", "levels", "freq")}
        extra = {}
        if quantiser == "transform":
            extra = {"mean": tensors["transform.mean"], "matrix": tensors["transform.matrix"]}
        if predictive:
            names = Predictor.field_names(spread)
            extra["predictor"] = Predictor(**{k: tensors[prefix + "predictor." + k].astype(np.int64) for k in names})
        return CodecTable(quantiser=quantiser, bits=bits, **fields, **extra)
    except (KeyError, ValueError, TypeError):
        return None


def codec_table(checkpoint: Checkpoint | str | os.PathLike, bits: int = DEFAULT_BITS,
                quantiser: str = DEFAULT_QUANTISER, *, data: Any = None, cache: bool = True,
                predictive: bool = False, spread: bool = False) -> CodecTable:
    """The checkpoint's quantiser and probability model for ``bits``; with ``predictive``, the
    ``"range-ar"`` coder's: the same quantiser, an autoregressive predictor and the residuals'
    probability model (:func:`fit_predictive_table`; learning it takes about 15 seconds on 2 cores);
    with ``spread`` (which implies ``predictive``), the ``"range-ctx"`` coder's (about 70 seconds).

    Read from ``codec.safetensors`` in the checkpoint folder when it holds one
    for this model (same fingerprint), quantiser and bit depth, else from the
    user cache (``~/.cache/aelab/codec/<fingerprint>.safetensors``); else
    learned from the codes of the model's training images (the bundled MNIST
    when the model was trained on it, else ``data``: a path for
    :func:`aelab.data.load_dataset` or a Dataset, whose sha256 must match the
    checkpoint's) and, with ``cache``, added to ``codec.safetensors``
    (written atomically), or to the user cache when the folder is not
    writable or is a shipped pretrained model.
    """
    bits = check_bits(bits)
    _check_choice(quantiser, QUANTISERS, "quantiser")
    ckpt = _checkpoint(checkpoint)
    fp = _fingerprint_bytes(ckpt).hex()
    files = _cache_files(ckpt, fp)
    spread = bool(spread)
    predictive = bool(predictive or spread)
    key = (fp, quantiser, bits, predictive, spread, os.fspath(files[0].absolute()),
           tuple(_file_stamp(f) for f in files))
    if cache and key in _table_memo:
        return _table_memo[key]
    contents = [_read_cache(f, fp) for f in files] if cache else [{}, {}]
    table = _first_cached_table(contents, quantiser, bits, predictive, spread)
    if table is None:
        if predictive:
            plain = codec_table(ckpt, bits, quantiser, data=data, cache=cache)
            table = fit_predictive_table(_training_codes(ckpt, data), plain, spread=spread)
            if cache:
                contents = [_read_cache(f, fp) for f in files]  # now with the plain table
        else:
            transform = _cached_transform(contents[0]) or _cached_transform(contents[1])
            table = fit_table(_training_codes(ckpt, data), bits, quantiser, model=ckpt.model, transform=transform)
        if cache:
            _write_cache(ckpt, fp, files, contents, table)
            key = key[:6] + (tuple(_file_stamp(f) for f in files),)
    if cache:
        if len(_table_memo) >= 32:
            _table_memo.clear()
        _table_memo[key] = table
    return table


def has_cached_table(checkpoint: Checkpoint | str | os.PathLike, bits: int = DEFAULT_BITS,
                     quantiser: str = DEFAULT_QUANTISER, *, predictive: bool = False, spread: bool = False) -> bool:
    """Whether :func:`codec_table` would find this table cached (else it learns it: seconds, about
    15 seconds with ``predictive``, about 70 with ``spread``). False for anything it cannot read."""
    try:
        ckpt = _checkpoint(checkpoint)
        fp = _fingerprint_bytes(ckpt).hex()
        contents = [_read_cache(f, fp) for f in _cache_files(ckpt, fp)]
        return _first_cached_table(contents, quantiser, check_bits(bits), bool(predictive or spread),
                                   bool(spread)) is not None
    except Exception:  # noqa: BLE001 - a question, not an operation: compress reports the real error
        return False


def _cache_files(ckpt: Checkpoint, fp: str) -> tuple[Path, Path]:
    """Where a checkpoint's tables are looked up, in order: its folder, then the user cache."""
    return Path(ckpt.path) / CACHE_FILE, _user_cache_file(fp)


def _first_cached_table(contents: list[dict[str, np.ndarray]], quantiser: str, bits: int,
                        predictive: bool, spread: bool = False) -> CodecTable | None:
    """The table in the first of the cache files' ``contents`` that holds it, or None."""
    for tensors in contents:
        table = _table_from_cache(tensors, quantiser, bits, predictive, spread)
        if table is not None:
            return table
    return None


def _file_stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _write_cache(ckpt: Checkpoint, fp: str, files: tuple[Path, Path], contents: list[dict],
                 table: CodecTable) -> None:
    """Add ``table`` to the checkpoint folder's tables file, else (shipped model, read-only folder) to the
    user cache; when neither can be written, nothing is cached."""
    from safetensors.numpy import save
    record = ckpt.info.get("data") or {}
    prefix = _table_prefix(table)
    meta = {"format": _CACHE_FORMAT, "version": _CACHE_VERSION, "fingerprint": fp,
            "data_sha256": str(record.get("sha256") or "")}
    for path, tensors in zip(files, contents):
        if path == files[0] and _is_shipped(Path(ckpt.path)):
            continue
        tensors = {k: v for k, v in tensors.items() if not k.startswith(prefix)}
        tensors.update(_table_tensors(table))
        blob = save({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, metadata=meta)
        try:
            write_bytes(path, blob)
            return
        except OutputError:
            continue  # a read-only folder: try the user cache; else the table is rebuilt next time


def _table_prefix(table: CodecTable) -> str:
    predictor = table.predictor
    spread = predictor is not None and predictor.has_spread
    return _cache_prefix(table.quantiser, table.bits, predictor is not None, spread)


def _table_tensors(table: CodecTable) -> dict[str, np.ndarray]:
    prefix = _table_prefix(table)
    tensors = {prefix + "offset": table.offset, prefix + "step": table.step,
               prefix + "levels": table.levels.astype(np.int32), prefix + "freq": table.freq.astype(np.int32)}
    if table.predictor is not None:  # int32 where the values fit (they do, as fitted): half the bytes
        tensors.update({prefix + "predictor." + k: v.astype(np.int32) if np.abs(v).max(initial=0) < 2 ** 31 else v
                        for k, v in table.predictor.tensors().items()})
    if table.matrix is not None:
        tensors.update({"transform.mean": table.mean, "transform.matrix": table.matrix})
    return tensors


def save_tables(checkpoint: Checkpoint | str | os.PathLike, bits: Any = range(MIN_BITS, 9),
                quantisers: Any = tuple(QUANTISERS), *, data: Any = None, predictive: Any = False,
                spread: Any = False, keep: bool = False) -> Path:
    """Learn the checkpoint's tables for every bit depth in ``bits`` and quantiser (and the range-ar
    coder's: ``predictive=True`` for every one of those bit depths, or a list of bit depths; the
    range-ctx coder's likewise with ``spread``), and write them all (one transform) into the
    checkpoint folder's ``codec.safetensors``, even for a shipped model's folder: for packaging a
    model so that compressing and decompressing with it never need its training data, and files
    made with it decode on any machine. The file is replaced, unless ``keep``: then the tables it
    already holds stay as they are (learning one again can change its last bits, and files made
    with the old one would no longer decode) and only the missing ones are learned and added.
    Returns the file's path."""
    from safetensors.numpy import save
    ckpt = _checkpoint(checkpoint)
    fp = _fingerprint_bytes(ckpt).hex()
    bits = [check_bits(b) for b in bits]
    chosen = {}
    for name, value in (("range-ar", predictive), ("range-ctx", spread)):
        chosen[name] = set(bits if value is True else () if value is False else [check_bits(b) for b in value])
        if not chosen[name] <= set(bits):
            raise OptionError(f"{name} tables for bit depths {sorted(chosen[name] - set(bits))} need their "
                              "plain tables too", hint="list them in bits as well")
    for q in quantisers:
        _check_choice(q, QUANTISERS, "quantiser")
    path = Path(ckpt.path) / CACHE_FILE
    tensors: dict[str, np.ndarray] = _read_cache(path, fp) if keep else {}
    codes = _training_codes(ckpt, data)
    transform = _cached_transform(tensors)
    for quantiser in quantisers:
        for b in bits:
            table = _table_from_cache(tensors, quantiser, b)
            if table is None:
                table = fit_table(codes, b, quantiser, model=ckpt.model,
                                  transform=transform if quantiser == "transform" else None)
                tensors.update(_table_tensors(table))
            if quantiser == "transform":
                transform = (table.mean, table.matrix)
            for name, with_spread in (("range-ar", False), ("range-ctx", True)):
                if b in chosen[name] and _table_from_cache(tensors, quantiser, b, True, with_spread) is None:
                    tensors.update(_table_tensors(fit_predictive_table(codes, table, spread=with_spread)))
    record = ckpt.info.get("data") or {}
    meta = {"format": _CACHE_FORMAT, "version": _CACHE_VERSION, "fingerprint": fp,
            "data_sha256": str(record.get("sha256") or "")}
    path = write_bytes(path, save({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, metadata=meta))
    _table_memo.clear()
    return path


# --- the embedded table's bytes ---------------------------------------------------------------

def _table_bytes(table: CodecTable) -> bytes:
    """The parameters (:meth:`CodecTable.params_bytes`), then the zlib-compressed frequencies
    (one byte: their width, 1, 2 or 4; then little-endian integers)."""
    top = int(table.freq.max(initial=0))
    dtype = np.dtype("<u1") if top < 1 << 8 else np.dtype("<u2") if top < 1 << 16 else np.dtype("<u4")
    packed = zlib.compress(bytes([dtype.itemsize]) + table.freq.astype(dtype).tobytes(), 9)
    return table.params_bytes() + packed


def _table_from_bytes(blob: bytes, quantiser: str, bits: int, code_size: int, path: Any) -> CodecTable:
    d, max_levels = code_size, 1 << bits
    arrays: dict[str, np.ndarray] = {}
    layout = ([("mean", "<f4", (d,)), ("matrix", "<f4", (d, d))] if quantiser == "transform" else []) + \
        [("offset", "<f4", (d,)), ("step", "<f4", (d,)), ("levels", "<u4", (d,))]
    pos = 0
    for name, dtype, shape in layout:
        size = int(np.prod(shape)) * 4
        if pos + size > len(blob):
            raise DataError("damaged .aez file: the embedded table is truncated", path=path)
        arrays[name] = np.frombuffer(blob, dtype, count=int(np.prod(shape)), offset=pos).reshape(shape)
        pos += size
    try:
        z = zlib.decompressobj()
        raw = z.decompress(blob[pos:], 1 + 4 * d * max_levels + 1)
    except zlib.error as e:
        raise DataError(f"damaged .aez file: the embedded table does not unpack ({e})", path=path) from e
    if not raw or raw[0] not in (1, 2, 4) or len(raw) != 1 + raw[0] * d * max_levels or not z.eof or z.unused_data:
        raise DataError("damaged .aez file: the embedded table has the wrong size", path=path)
    freq = np.frombuffer(raw, f"<u{raw[0]}", offset=1).astype(np.int64).reshape(d, max_levels)
    try:
        return CodecTable(quantiser=quantiser, bits=bits, offset=arrays["offset"].astype(np.float32),
                          step=arrays["step"].astype(np.float32), levels=arrays["levels"].astype(np.int64),
                          freq=freq, mean=None if "mean" not in arrays else arrays["mean"].astype(np.float32),
                          matrix=None if "matrix" not in arrays else arrays["matrix"].astype(np.float32))
    except ValueError as e:
        raise DataError(f"damaged .aez file: invalid embedded table ({e})", path=path) from e


# --- entropy coding ---------------------------------------------------------------------------

def _categorical(row: np.ndarray) -> Any:
    if row.sum() == 0:  # an embedded table of no images: any valid model
        row = np.ones_like(row)
    return _constriction().stream.model.Categorical(row.astype(np.float64), perfect=False)


def _coded_components(table: CodecTable) -> list[tuple[int, list[Any]]]:
    """(component, its constriction categorical models: one per spread class) for every component
    with more than one level; a one-level component is always symbol 0 and costs nothing."""
    c = table.classes
    return [(k, [_categorical(table.freq[k * c + j, :table.levels[k]]) for j in range(c)])
            for k in range(table.code_size) if table.levels[k] > 1]


def _encode_payload(symbols: np.ndarray, table: CodecTable, coder: str) -> bytes:
    n, d = symbols.shape
    if table.predictor is not None and table.predictor.has_spread:
        return _encode_with_classes(symbols, table) if n else b""
    if table.predictor is not None:  # range-ar: the residuals of the predictions
        symbols = table.predictor.residuals(symbols, table.zero_symbols(), table.levels)
    if coder == "zlib":
        dtype = "<u1" if table.bits <= 8 else "<u2"
        return zlib.compress(np.ascontiguousarray(symbols.T, dtype=dtype).tobytes(), 9)
    if n == 0:
        return b""
    encoder = _constriction().stream.queue.RangeEncoder()
    for k, (model,) in _coded_components(table):  # one component at a time, all images at once
        encoder.encode(np.ascontiguousarray(symbols[:, k], dtype=np.int32), model)
    return encoder.get_compressed().astype("<u4").tobytes()


def _encode_with_classes(symbols: np.ndarray, table: CodecTable) -> bytes:
    """range-ctx: in chunks of CTX_CHUNK images (the decoder's), component by component, the
    residuals of each spread class in turn (images in order within a class) under that class's model."""
    residuals, classes = table.predictor.residuals_and_classes(symbols, table.zero_symbols(), table.levels)
    encoder = _constriction().stream.queue.RangeEncoder()
    components = _coded_components(table)
    for start in range(0, len(symbols), CTX_CHUNK):
        chunk = slice(start, start + CTX_CHUNK)
        for k, models in components:
            order, counts = _by_class(classes[chunk, k], len(models))
            values = np.ascontiguousarray(residuals[chunk, k][order], dtype=np.int32)
            for model, lo, hi in zip(models, counts[:-1], counts[1:]):
                if hi > lo:
                    encoder.encode(values[lo:hi], model)
    return encoder.get_compressed().astype("<u4").tobytes()


def _by_class(classes: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The images sorted by class (stable: in order within a class) and where each class starts and
    ends in that order (count + 1 offsets)."""
    small = classes.astype(np.uint8)  # classes < 256: numpy sorts bytes by radix, ten times faster
    order = np.argsort(small, kind="stable")
    return order, np.concatenate([[0], np.cumsum(np.bincount(small, minlength=count))])


def _decode_payload(payload: bytes, n: int, table: CodecTable, coder: str, path: Any) -> np.ndarray:
    d = table.code_size
    if coder == "zlib":
        itemsize = 1 if table.bits <= 8 else 2
        want = n * d * itemsize
        try:
            z = zlib.decompressobj()
            raw = z.decompress(payload, want + 1)
        except zlib.error as e:
            raise DataError(f"damaged .aez file: the payload does not unpack ({e})", path=path) from e
        if len(raw) != want or not z.eof or z.unused_data:
            raise DataError("damaged .aez file: the payload holds the wrong number of symbols", path=path)
        symbols = np.frombuffer(raw, f"<u{itemsize}").reshape(d, n).T.astype(np.int32)
        if (symbols >= table.levels[None, :]).any():
            raise DataError("damaged .aez file: a symbol is out of range", path=path)
        return symbols
    if n == 0:
        if payload:
            raise DataError("damaged .aez file: a payload for no images", path=path)
        return np.zeros((0, d), np.int32)
    if len(payload) % 4:
        raise DataError("damaged .aez file: the payload is not whole 32-bit words", path=path)
    if n * _least_bits_per_image(table) > 2 * (8 * len(payload) + 128):
        raise DataError(f"damaged .aez file: {n:,} images cannot be coded in a payload of {len(payload):,} bytes "
                        "(the header's count is wrong)", path=path)
    constriction = _constriction()
    try:
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32))
    except (ValueError, RuntimeError, AssertionError, OverflowError) as e:
        raise DataError(f"damaged .aez file: the payload does not decode ({e})", path=path) from e
    try:
        symbols = np.zeros((n, d), np.int32)
    except MemoryError as e:
        raise DataError(f"the file holds {n:,} images, too many to decode in this machine's memory", path=path,
                        hint="decompress it on a machine with more memory") from e
    if table.predictor is not None and table.predictor.has_spread:
        return _decode_with_classes(decoder, symbols, table, path)
    for k, (model,) in _coded_components(table):
        symbols[:, k] = _decoded(decoder, model, n, path)
    if table.predictor is not None:  # range-ar: those were the residuals
        symbols = _symbols_from_residuals(symbols, table)
    return symbols


def _symbols_from_residuals(residuals: np.ndarray, table: CodecTable) -> np.ndarray:
    """range-ar's decoding (:meth:`PredictorRun.undo_residuals`), in chunks of images: a prediction
    only looks at its own image and the arithmetic is exact, so chunks change nothing but the memory
    needed."""
    symbols = np.zeros(residuals.shape, np.int32)
    zero = table.zero_symbols()
    for start in range(0, len(residuals), PREDICTOR_CHUNK):
        stop = min(start + PREDICTOR_CHUNK, len(residuals))
        run = PredictorRun(table.predictor, stop - start)
        symbols[start:stop] = run.undo_residuals(residuals[start:stop], zero, table.levels)
    return symbols


def _decoded(decoder: Any, model: Any, count: int, path: Any) -> np.ndarray:
    """``count`` symbols from the range decoder; a payload that cannot hold them is a DataError."""
    try:
        return decoder.decode(model, count)
    except (ValueError, RuntimeError, AssertionError, OverflowError) as e:
        raise DataError(f"damaged .aez file: the payload does not decode ({e})", path=path) from e


def _decode_with_classes(decoder: Any, symbols: np.ndarray, table: CodecTable, path: Any) -> np.ndarray:
    """range-ctx's decoding into ``symbols`` (n, d), :func:`_encode_with_classes` in reverse: per
    chunk, component by component, the spread classes from the symbols so far, then each class's
    residuals."""
    import torch
    models = dict(_coded_components(table))
    zero = table.zero_symbols()
    for start in range(0, len(symbols), CTX_CHUNK):
        size = min(CTX_CHUNK, len(symbols) - start)
        residuals = np.zeros(size, np.float64)

        def residual_of(k: int, classes: torch.Tensor) -> torch.Tensor:
            if k in models:  # else one level: always residual 0
                order, counts = _by_class(classes.numpy(), len(models[k]))
                values = np.empty(size, np.int32)
                for model, lo, hi in zip(models[k], counts[:-1], counts[1:]):
                    if hi > lo:
                        values[lo:hi] = _decoded(decoder, model, int(hi - lo), path)
                residuals[order] = values
            return torch.from_numpy(residuals)

        symbols[start:start + size] = PredictorRun(table.predictor, size).undo(residual_of, zero, table.levels)
    return symbols


def _least_bits_per_image(table: CodecTable) -> float:
    """A lower bound on the range coder's bits per image under ``table``: every symbol costs at least
    -log2 of the largest probability in its component's tables (raised a little for the coder's own
    rounding of the probabilities). A range coder cannot beat the information content by more than
    its state (64 bits), so a header's count that needs more bits than the payload holds is damage,
    caught before any memory is allocated for it."""
    bits = 0.0
    c = table.classes
    for k in range(table.code_size):
        levels = int(table.levels[k])
        rows = table.freq[k * c:(k + 1) * c, :levels].astype(np.float64)
        totals = rows.sum(axis=1)
        if levels > 1 and (totals > 0).all():
            largest = min(1.0, float((rows.max(axis=1) / totals).max()) * 1.001 + 1e-5)
            bits -= float(np.log2(largest))
    return bits


def encode_bytes(images: Any, checkpoint: Checkpoint | str | os.PathLike, bits: int = DEFAULT_BITS, *,
                 quantiser: str = DEFAULT_QUANTISER, table: str = "checkpoint", coder: str | None = None,
                 data: Any = None, precision: str = "fp32") -> bytes:
    """Images (uint8 or 0..255 floats, (n, h, w) or (n, h*w)) -> the bytes of an ``.aez`` file.

    ``bits``: quantiser bit depth, 2..16. ``quantiser``: ``"uniform"``
    (each code number on its own [min, max] range) or ``"transform"``
    (decorrelated components weighted by the decoder's sensitivity, one
    step). ``table``: where the probability model lives, ``"checkpoint"``
    (learned from the training codes, cached in the checkpoint folder) or
    ``"embedded"`` (this set's own, stored in the file). ``coder``:
    ``"range"`` (constriction's range coder, the default), ``"range-ar"``
    (the range coder on the residuals of an autoregressive predictor: 10%
    smaller for mnist-conv; ``table="checkpoint"`` only, and learning its
    table the first time takes about 15 seconds on 2 cores), ``"range-ctx"``
    (as range-ar, with a wider predictor that also estimates how far off it
    may be, which picks one of 8 probability models per component: 4.5%
    smaller than range-ar for mnist-codec at 7 bits; its table takes about
    70 seconds to learn) or ``"zlib"``.
    ``data``: the model's training data, needed for ``table="checkpoint"``
    when the model was not trained on the bundled MNIST and the checkpoint
    folder holds no cached table. ``precision``: the encoder's arithmetic,
    ``"fp32"`` or ``"bf16"`` (more than twice as fast for convolutional
    models on CPUs with bfloat16 units, a few code numbers in a neighbouring
    bin; see :func:`aelab.models.inference.computing_in`).
    Deterministic: the same images give the same bytes (on one machine, for
    one precision).
    """
    return _encode(images, checkpoint, bits, quantiser=quantiser, table=table, coder=coder, data=data,
                   precision=precision)[0]


def _encode(images: Any, checkpoint: Any, bits: int, *, quantiser: str, table: str, coder: str | None,
            data: Any, precision: str) -> tuple[bytes, int, str]:
    """:func:`encode_bytes`, also returning the image count and the coder used (compress reports them)."""
    from ..models.inference import as_pixel_rows, check_precision, encode
    check_precision(precision)
    bits = check_bits(bits)
    _check_choice(quantiser, QUANTISERS, "quantiser")
    _check_choice(table, TABLES, "table")
    coder = _check_choice(coder or default_coder(), CODERS, "coder")
    if coder != "zlib":
        _constriction()
    if coder in PREDICTIVE_CODERS and table != "checkpoint":
        raise OptionError(f"the {coder} coder needs table 'checkpoint': its predictor is too large to embed",
                          hint="use --table checkpoint, or --coder range with --table embedded")
    ckpt = _checkpoint(checkpoint)
    if coder in PREDICTIVE_CODERS and ckpt.model_config.code_size < 2:
        raise OptionError(f"the {coder} coder predicts each code number from the earlier ones, and this model's "
                          "code has only one", hint="use --coder range")
    rows = as_pixel_rows(ckpt.model, images)
    h, w = ckpt.model_config.input_shape
    if rows.shape[0] >= 1 << 32:
        raise DataError(f"too many images for one .aez file ({rows.shape[0]})", hint="split the set")
    codes = encode(ckpt.model, rows, precision=precision)
    if table == "checkpoint":
        tab = codec_table(ckpt, bits, quantiser, data=data, **_table_kind(coder))
        table_blob = b""
    else:
        tab = fit_table(codes, bits, quantiser, model=ckpt.model, exact=True)
        table_blob = _table_bytes(tab)
    symbols = quantise(codes, tab)
    payload = _encode_payload(symbols, tab, coder)
    if len(payload) >= 1 << 32 or len(table_blob) >= 1 << 32:
        raise DataError("the compressed set is too large for one .aez file (4 GiB)", hint="split the set")
    head = HEADER.pack(MAGIC, VERSION, CODERS[coder], TABLES[table], bits, h, w, rows.shape[0],
                       ckpt.model_config.code_size, QUANTISERS[quantiser], 0, _fingerprint_bytes(ckpt),
                       tab.digest, len(table_blob), len(payload), _symbols_crc(symbols), 0)
    crc = zlib.crc32(payload, zlib.crc32(table_blob, zlib.crc32(head[:_CRC_OFFSET])))
    return head[:_CRC_OFFSET] + struct.pack("<I", crc) + table_blob + payload, int(rows.shape[0]), coder


def _table_kind(coder: str) -> dict[str, bool]:
    """:func:`codec_table`'s ``predictive`` and ``spread`` for a coder."""
    return {"predictive": coder in PREDICTIVE_CODERS, "spread": coder == "range-ctx"}


def _decode(blob: bytes, checkpoint: Any, data: Any, path: Any) -> tuple[Checkpoint, np.ndarray]:
    """Checked header and model -> the dequantised codes."""
    blob = bytes(blob)
    header = read_header(blob, path)
    ckpt = _checkpoint(checkpoint)
    fp = _fingerprint_bytes(ckpt).hex()
    if header.fingerprint != fp:
        raise CheckpointError(f"the file was made with another model (fingerprint {header.fingerprint}) than this "
                              f"checkpoint ({fp})", path=ckpt.path,
                              hint="decompress with the checkpoint that compressed the file")
    if header.image_shape != tuple(ckpt.model_config.input_shape) or header.code_size != ckpt.model_config.code_size:
        raise DataError(f"the header's image shape {header.image_shape} or code size {header.code_size} does not "
                        "fit the model", path=path)
    body = blob[HEADER.size:]
    if header.coder in PREDICTIVE_CODERS and header.table != "checkpoint":
        raise DataError(f"damaged .aez file: the {header.coder} coder with an embedded table", path=path)
    if header.table == "embedded":
        tab = _table_from_bytes(body[:header.table_bytes], header.quantiser, header.bits, header.code_size, path)
        if tab.digest.hex() != header.table_digest:
            raise DataError("damaged .aez file: the embedded table does not match its digest", path=path)
    else:
        tab = codec_table(ckpt, header.bits, header.quantiser, data=data, **_table_kind(header.coder))
        if tab.digest.hex() != header.table_digest:
            raise CheckpointError(
                f"the checkpoint's {header.quantiser} {header.bits}-bit probability table ({tab.digest.hex()}) is "
                f"not the one the file was made with ({header.table_digest})", path=ckpt.path,
                hint=f"use the checkpoint folder that compressed the file, with its {CACHE_FILE} (for a shipped "
                     f"model: the compressing machine's {_user_cache_file(fp)}); a table learned again "
                     "elsewhere can differ" + (f", and a {header.coder} predictor almost surely does"
                                               if header.coder in PREDICTIVE_CODERS else ""))
    symbols = _decode_payload(body[header.table_bytes:], header.count, tab, header.coder, path)
    if _symbols_crc(symbols) != header.symbols_crc32:
        raise DataError("the decoded symbols fail their checksum: the file's entropy coder does not match this "
                        "one (another constriction version?)", path=path,
                        hint="decompress with the aelab and constriction versions that compressed the file")
    return ckpt, dequantise(symbols, tab)


def _symbols_crc(symbols: np.ndarray) -> int:
    """CRC-32 of the symbols as little-endian uint16, image by image (row-major (n, d))."""
    return zlib.crc32(np.ascontiguousarray(symbols, dtype="<u2").tobytes())


def decode_codes(blob: bytes, checkpoint: Checkpoint | str | os.PathLike, *, data: Any = None) -> np.ndarray:
    """The dequantised codes (float32 (n, code_size)) in the bytes of an ``.aez`` file."""
    return _decode(blob, checkpoint, data, None)[1]


def decode_bytes(blob: bytes, checkpoint: Checkpoint | str | os.PathLike, *, data: Any = None,
                 path: Any = None, precision: str = "fp32") -> np.ndarray:
    """The bytes of an ``.aez`` file -> images, uint8 (n, h, w).

    ``checkpoint`` must be the model that compressed them (its fingerprint is
    checked). Raises DataError for a damaged, truncated or newer file and
    CheckpointError for another model or probability table. ``path`` only
    names the file in error messages. ``precision``: the decoder's
    arithmetic, ``"fp32"`` or ``"bf16"`` (see :func:`encode_bytes`); the
    codes are exact either way, the pixels differ by a few grey levels at most.
    """
    from ..models.inference import check_precision, decode_to_pixels
    check_precision(precision)
    ckpt, codes = _decode(blob, checkpoint, data, path)
    return decode_to_pixels(ckpt.model, codes, precision=precision)


# --- files ------------------------------------------------------------------------------------------

_IDX_ENDINGS = ("-idx3-ubyte", ".idx3-ubyte", ".idx")
_REFUSED_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".npy", ".gz", ".zip", ".aez", ".csv",
                     ".txt", ".json", ".idx1-ubyte")


def output_format(output: str | os.PathLike) -> str:
    """What :func:`decompress` writes to ``output``: ``"npz"``, ``"idx"``, ``"idx.gz"`` or ``"png"``.

    The rule: a name ending in ``.npz`` is one .npz file (array ``images``);
    one ending in ``-idx3-ubyte``, ``.idx3-ubyte`` or ``.idx`` is an IDX file,
    gzip-compressed when ``.gz`` follows; anything else is a folder of PNGs,
    except a name with a file suffix such as ``.png`` or ``.npy``, which is
    refused (it is probably a mistake).
    """
    name = Path(output).name.lower()
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(_IDX_ENDINGS):
        return "idx"
    if name.endswith(tuple(e + ".gz" for e in _IDX_ENDINGS)):
        return "idx.gz"
    if name.endswith(_REFUSED_SUFFIXES) and not Path(output).is_dir():
        raise OptionError(f"cannot tell what to write to {os.fspath(output)!r}",
                          hint="name a folder (PNGs), FILE.npz, or an IDX file ending in -idx3-ubyte, .idx3-ubyte "
                               "or .idx (add .gz to compress)")
    return "png"


def _load_input(images: Any) -> np.ndarray:
    if isinstance(images, (str, os.PathLike)):
        from ..data import load_images
        return load_images(images)[0]
    return images


def compress(images: Any, checkpoint: Checkpoint | str | os.PathLike, output: str | os.PathLike,
             bits: int = DEFAULT_BITS, *, quantiser: str = DEFAULT_QUANTISER, table: str = "checkpoint",
             coder: str | None = None, data: Any = None, precision: str = "fp32") -> dict:
    """Compress ``images`` (an array, or a path :func:`aelab.data.load_images` reads: IDX, CTF,
    .npz, a PNG or a folder of PNGs) into the ``.aez`` file ``output`` (written atomically).

    Returns ``{"path", "count", "bytes", "bytes_per_image", "bits", "quantiser", "table", "coder"}``.
    Labels are not stored.
    """
    bits = check_bits(bits)
    pixels = _load_input(images)
    # the count and coder come from encoding: re-parsing the header just written would be a second pass
    blob, count, coder = _encode(pixels, checkpoint, bits, quantiser=quantiser, table=table, coder=coder,
                                 data=data, precision=precision)
    out = write_bytes(output, blob)
    return {"path": out, "count": count, "bytes": len(blob), "bytes_per_image": len(blob) / count if count else
            float("nan"), "bits": bits, "quantiser": quantiser, "table": table, "coder": coder}


def decompress(path: str | os.PathLike, checkpoint: Checkpoint | str | os.PathLike, output: str | os.PathLike, *,
               data: Any = None, precision: str = "fp32") -> dict:
    """Decode the ``.aez`` file ``path`` with ``checkpoint`` (the model that compressed it) and write
    the images to ``output``: a folder of PNGs, an IDX file or a .npz (see :func:`output_format`).

    The output appears completely or not at all: files are written atomically,
    and a PNG folder is filled under a temporary name and then renamed. An
    existing PNG folder must be empty. Returns ``{"path", "format", "count"}``.
    """
    from ..data.idx import read_file_bytes
    fmt = output_format(output)
    out = Path(output)
    if fmt == "png" and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError("exists and is not an empty folder", path=out,
                          hint="name a new or empty folder for the PNGs")
    blob = read_file_bytes(path)
    images = decode_bytes(blob, checkpoint, data=data, path=path, precision=precision)
    if fmt == "npz":
        with atomic_write(out, "wb") as f:
            np.savez_compressed(f, images=images)
    elif fmt in ("idx", "idx.gz"):
        from ..data.idx import write_idx
        write_idx(out, images, compress=fmt == "idx.gz")
    else:
        _write_png_folder(out, images)
    return {"path": out, "format": fmt, "count": int(images.shape[0])}


def _write_png_folder(out: Path, images: np.ndarray) -> None:
    """``img-00000.png``, ... in a temporary folder beside ``out``, renamed to ``out`` when complete."""
    from ..data.images import save_png
    parent = ensure_dir(out.parent if str(out.parent) else ".")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    except OSError as e:
        raise OutputError(f"cannot write: {e.strerror or e}", path=out) from e
    width = max(5, len(str(max(len(images) - 1, 0))))
    try:
        for i, image in enumerate(images):
            save_png(tmp / f"img-{i:0{width}d}.png", image)
        try:
            os.replace(tmp, out)  # POSIX: also onto an empty folder
        except OSError:
            if not out.is_dir():
                raise
            os.rmdir(out)
            os.replace(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write: {e.strerror or e}", path=out) from e
        raise
