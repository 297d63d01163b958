"""The entropy coders: one :class:`Coder` each, in the registry :data:`CODERS` (name -> coder).

A coder turns the quantiser's symbols, an (n, d) int array under a :class:`CodecTable`, into the
payload of an ``.aez`` file and back. Whatever differs between coders is asked of the coder, not
derived from its name: whether it codes a learned predictor's residuals (and so needs table
``"checkpoint"``), whether that predictor also spreads each component over several probability
tables, the stem its tables have in ``codec.safetensors``, and its line in ``aelab compress --help``.
Its byte in the file header is the format's (:data:`aelab.codec.format.CODER_IDS`).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError, OptionError
from .format import CODER_IDS, check_choice
from .predictor import CHUNK as PREDICTOR_CHUNK
from .predictor import PredictorRun
from .quantiser import CTX_CHUNK, CodecTable

__all__ = ["Coder", "CODERS", "PREDICTIVE_CODERS", "coder_for", "coder_help", "default_coder"]


@dataclass(frozen=True)
class Coder:
    """An entropy coder: what it is and needs. Subclasses code the payload (:meth:`encode`, :meth:`decode`)."""

    name: str
    description: str            # its line in `aelab compress --help`
    cache_kind: str = "b"       # its tables are Q.<cache_kind><bits>.* in codec.safetensors (docs/format.md)
    predictive: bool = False    # codes a learned predictor's residuals: table "checkpoint" only
    spread: bool = False        # the predictor also picks one of several probability tables per component
    learn_seconds: int = 0      # about how long learning its predictor takes the first time, on 2 cores
    uses_constriction: bool = True

    @property
    def id(self) -> int:
        """Its byte in the ``.aez`` header."""
        return CODER_IDS[self.name]

    def cache_prefix(self, quantiser: str, bits: int) -> str:
        """The stem of its table's tensors in ``codec.safetensors``, e.g. ``"transform.ar7."``."""
        return f"{quantiser}.{self.cache_kind}{bits}."

    def learning_notice(self, bits: int) -> str | None:
        """The line to show before its predictor is learned (slow); None if it has none."""
        if not self.predictive:
            return None
        # the seconds are what the first run takes on the 2-core machines the README measures on
        return (f"Learning the {self.name} coder's predictor for {bits} bits from the model's training codes "
                f"(about {self.learn_seconds} seconds on 2 cores; `aelab codec fit` stores it in the checkpoint) ...")

    def encode(self, symbols: np.ndarray, table: CodecTable) -> bytes:
        """The payload for ``symbols`` (n, d) under ``table``."""
        raise NotImplementedError

    def decode(self, payload: bytes, n: int, table: CodecTable, path: Any = None) -> np.ndarray:
        """The ``n`` images' symbols (int32 (n, d)) in ``payload``; DataError (naming ``path``) for damage."""
        raise NotImplementedError


# --- constriction -------------------------------------------------------------------------------

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


# --- zlib -----------------------------------------------------------------------------------------

class ZlibCoder(Coder):
    """The symbols component-major as 1- or 2-byte integers, zlib-compressed: no constriction needed."""

    def encode(self, symbols: np.ndarray, table: CodecTable) -> bytes:
        dtype = "<u1" if table.bits <= 8 else "<u2"
        return zlib.compress(np.ascontiguousarray(symbols.T, dtype=dtype).tobytes(), 9)

    def decode(self, payload: bytes, n: int, table: CodecTable, path: Any = None) -> np.ndarray:
        d = table.code_size
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


# --- the range coders -----------------------------------------------------------------------------

class RangeCoder(Coder):
    """constriction's range coder: one component at a time, all images at once, under its histogram."""

    def encode(self, symbols: np.ndarray, table: CodecTable) -> bytes:
        if len(symbols) == 0:
            return b""
        encoder = _constriction().stream.queue.RangeEncoder()
        for k, (model,) in _coded_components(table):
            encoder.encode(np.ascontiguousarray(symbols[:, k], dtype=np.int32), model)
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode(self, payload: bytes, n: int, table: CodecTable, path: Any = None) -> np.ndarray:
        decoder, symbols = _open_range_payload(payload, n, table, path)
        if decoder is not None:
            for k, (model,) in _coded_components(table):
                symbols[:, k] = _decoded(decoder, model, n, path)
        return symbols


class ResidualRangeCoder(RangeCoder):
    """range-ar: the range coder on what the table's autoregressive predictor leaves of each symbol."""

    def encode(self, symbols: np.ndarray, table: CodecTable) -> bytes:
        return super().encode(table.predictor.residuals(symbols, table.zero_symbols(), table.levels), table)

    def decode(self, payload: bytes, n: int, table: CodecTable, path: Any = None) -> np.ndarray:
        residuals = super().decode(payload, n, table, path)
        return _symbols_from_residuals(residuals, table) if n else residuals


class SpreadRangeCoder(Coder):
    """range-ctx: as range-ar, each residual under the model of the spread class its predictor picks."""

    def encode(self, symbols: np.ndarray, table: CodecTable) -> bytes:
        """In chunks of CTX_CHUNK images (the decoder's), component by component, the residuals of each
        spread class in turn (images in order within a class) under that class's model."""
        if len(symbols) == 0:
            return b""
        residuals, classes = table.predictor.residuals_and_classes(symbols, table.zero_symbols(), table.levels)
        encoder = _constriction().stream.queue.RangeEncoder()
        coded = _coded_components(table)
        for start in range(0, len(symbols), CTX_CHUNK):
            chunk = slice(start, start + CTX_CHUNK)
            for k, models in coded:
                order, counts = _by_class(classes[chunk, k], len(models))
                values = np.ascontiguousarray(residuals[chunk, k][order], dtype=np.int32)
                for model, lo, hi in zip(models, counts[:-1], counts[1:]):
                    if hi > lo:
                        encoder.encode(values[lo:hi], model)
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode(self, payload: bytes, n: int, table: CodecTable, path: Any = None) -> np.ndarray:
        decoder, symbols = _open_range_payload(payload, n, table, path)
        return symbols if decoder is None else _decode_with_classes(decoder, symbols, table, path)


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


def _by_class(classes: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The images sorted by class (stable: in order within a class) and where each class starts and
    ends in that order (count + 1 offsets)."""
    small = classes.astype(np.uint8)  # classes < 256: numpy sorts bytes by radix, ten times faster
    order = np.argsort(small, kind="stable")
    return order, np.concatenate([[0], np.cumsum(np.bincount(small, minlength=count))])


def _open_range_payload(payload: bytes, n: int, table: CodecTable, path: Any) -> tuple[Any, np.ndarray]:
    """A range decoder on a checked ``payload`` and the (n, d) symbols to fill; no decoder for no images."""
    d = table.code_size
    if n == 0:
        if payload:
            raise DataError("damaged .aez file: a payload for no images", path=path)
        return None, np.zeros((0, d), np.int32)
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
    return decoder, symbols


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
    """range-ctx's decoding into ``symbols`` (n, d), :meth:`SpreadRangeCoder.encode` in reverse: per
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


# --- the registry ---------------------------------------------------------------------------------

# in the order --help lists them; a new coder also needs an id in format.CODER_IDS, a line in docs/format.md
# and its name and description in aelab/cli_choices.py (the parser's light copy; a test compares them)
CODERS: dict[str, Coder] = {c.name: c for c in (
    RangeCoder("range", "each component's symbols under its histogram"),
    ZlibCoder("zlib", "the symbols zlib-compressed, for when constriction is not installed",
              uses_constriction=False),
    ResidualRangeCoder("range-ar", "the range coder on what an autoregressive predictor of each component from "
                       "the earlier ones leaves (--table checkpoint only; `aelab codec fit --coder range-ar` "
                       "stores its table in the checkpoint)", cache_kind="ar", predictive=True, learn_seconds=15),
    SpreadRangeCoder("range-ctx", "as range-ar with a wider predictor that also picks a probability table per "
                     "component (fewest bytes, slower; docs/codec.md has the measurements)",
                     cache_kind="ctx", predictive=True, spread=True, learn_seconds=70),
)}
PREDICTIVE_CODERS = tuple(name for name, coder in CODERS.items() if coder.predictive)


def coder_for(coder: str | Coder | None = None, *, predictive: bool = False, spread: bool = False) -> Coder:
    """The coder ``coder`` names; without one, the first registered coder with these flags (``spread``
    implies ``predictive``): how the table functions' ``predictive``/``spread`` options name a table."""
    if isinstance(coder, Coder):
        return coder
    if coder is not None:
        return CODERS[check_choice(coder, CODERS, "coder")]
    predictive = bool(predictive or spread)
    return next(c for c in CODERS.values() if c.predictive == predictive and c.spread == bool(spread))


def coder_help() -> str:
    """The ``--coder`` option's help: the default, then every coder's line."""
    lines = "; ".join(f"{c.name}: {c.description}" for c in CODERS.values())
    return f"entropy coder (default: range, with constriction; zlib without it); {lines}"
