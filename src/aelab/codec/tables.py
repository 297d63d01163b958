"""A checkpoint's codec tables: fitted from its training codes and stored in the checkpoint
(``codec.safetensors``, its SHA-256 in config.json), so that compressing and decompressing need
the checkpoint folder alone; and the bytes of a table that a file embeds.

Training stores the plain tables (both quantisers, :data:`FIT_BITS`) from the training images it has
in hand (:func:`store_training_tables`); :func:`save_tables` (``aelab codec fit``) adds others, or
fits them for a checkpoint saved without them. :class:`CheckpointTables` is where one compress or
decompress call gets its table: what the checkpoint stores, else (a checkpoint saved without that
table) learned in memory from the training data, when that can be found. Nothing here writes
anywhere but in :func:`save_tables` and :func:`store_training_tables`.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import CheckpointError, DataError, OptionError
from ..models.checkpoint import (TABLES_FILE, Checkpoint, cpu_checkpoint, model_fingerprint, read_tables_file,
                                 write_tables_file)
from .coders import CODERS, Coder, coder_for
from .format import DEFAULT_BITS, DEFAULT_QUANTISER, MIN_BITS, QUANTISERS, check_bits, check_choice
from .predictor import Predictor
from .quantiser import CodecTable, fit_predictive_table, fit_table

Log = Callable[[str], None] | None

TABLES_FORMAT = "aelab-codec-tables"
TABLES_VERSION = "1"   # the fitting algorithm's; stored tables of another version are still read
FIT_BITS = range(MIN_BITS, 9)   # the plain tables training stores, for both quantisers
# training fits its tables to at most this many of its images, evenly spaced: it runs at the end of every
# `aelab train` (twice in the tutorial), and more images change a table's bytes per image very little
TRAINING_FIT_IMAGES = 10_000


# --- the training codes -----------------------------------------------------------------------

def _training_codes(ckpt: Checkpoint, data: Any) -> np.ndarray:
    """Codes of the images the model was trained on (the training split of its data)."""
    from ..data import Dataset
    from ..data.recorded import load_as_recorded
    from ..data.resolver import BUNDLED_NAME
    record = ckpt.info.get("data") or {}
    name, want = record.get("name"), record.get("sha256")
    if data is None:
        if name != BUNDLED_NAME:
            raise _no_table_error(ckpt, name)
    if isinstance(data, Dataset):
        dataset = data
    else:
        dataset = load_as_recorded(data, record, ckpt.model_config.input_shape)
    if want and dataset.sha256 not in (want, record.get("packed_from_sha256")):  # a pack's source reads as packed
        raise DataError(f"{dataset.name!r} is not the data this model was trained on (its sha256 "
                        f"{dataset.sha256[:12]}... differs from the checkpoint's {str(want)[:12]}...)",
                        path=None if isinstance(data, Dataset) or data is None else data,
                        hint=f"pass the model's training data ({name}), or compress with --table embedded")
    return _codes_of(ckpt, dataset.train.images)


def _codes_of(ckpt: Checkpoint, images: np.ndarray) -> np.ndarray:
    """The codes a table is learned from, computed on one thread: sums split over several threads come out
    differently for each thread count, and a table learned again to decode a file must be the same one."""
    from ..device import one_cpu_thread
    from ..models.inference import encode
    with one_cpu_thread():
        return encode(ckpt.model, images)


def _no_table_error(ckpt: Checkpoint, data_name: str | None, what: str = "table") -> CheckpointError:
    """What to say when a checkpoint holds no table for the settings and its training data is not
    at hand (a model saved without its tables, or settings training does not store)."""
    data = f"the model's training data ({data_name})" if data_name else "the model's training data"
    return CheckpointError(
        f"the checkpoint holds no codec {what}, and it is learned from {data}, which this command was not "
        "given", path=ckpt.path,
        hint=f"store it in the checkpoint once with `aelab codec fit --checkpoint {ckpt.path} --data TRAINING-DATA` "
             "(add its --bits and --coder; compress then needs nothing else), or pass --data TRAINING-DATA here, "
             "or compress with --table embedded")


# --- tables as tensors ------------------------------------------------------------------------------

def _prefix(coder: Coder, quantiser: str, bits: int) -> str:
    return coder.cache_prefix(quantiser, bits)


def _table_tensors(table: CodecTable, coder: Coder) -> dict[str, np.ndarray]:
    """``coder``'s ``table`` as tables-file tensors (and the transform, shared by every table)."""
    prefix = _prefix(coder, table.quantiser, table.bits)
    tensors = {prefix + "offset": table.offset, prefix + "step": table.step,
               prefix + "levels": table.levels.astype(np.int32), prefix + "freq": table.freq.astype(np.int32)}
    if table.predictor is not None:  # int32 where the values fit (they do, as fitted): half the bytes
        tensors.update({prefix + "predictor." + k: v.astype(np.int32) if np.abs(v).max(initial=0) < 2 ** 31 else v
                        for k, v in table.predictor.tensors().items()})
    if table.matrix is not None:
        tensors.update({"transform.mean": table.mean, "transform.matrix": table.matrix})
    return tensors


def _table_from_tensors(tensors: dict[str, np.ndarray], quantiser: str, bits: int, coder: Coder) -> CodecTable | None:
    """``coder``'s table for ``quantiser`` and ``bits`` in a tables file's ``tensors``, or None (also for
    one that is not valid: a predictor that could break its exactness, say)."""
    prefix = _prefix(coder, quantiser, bits)
    try:
        fields = {k: tensors[prefix + k] for k in ("offset", "step", "levels", "freq")}
        extra = {}
        if quantiser == "transform":
            extra = {"mean": tensors["transform.mean"], "matrix": tensors["transform.matrix"]}
        if coder.predictive:
            names = Predictor.field_names(coder.spread)
            extra["predictor"] = Predictor(**{k: tensors[prefix + "predictor." + k].astype(np.int64) for k in names})
        return CodecTable(quantiser=quantiser, bits=bits, **fields, **extra)
    except (KeyError, ValueError, TypeError):
        return None


def _transform_of(tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    if "transform.mean" in tensors and "transform.matrix" in tensors:
        return tensors["transform.mean"], tensors["transform.matrix"]
    return None


def _tables_blob(tensors: dict[str, np.ndarray], fp: str, ckpt: Checkpoint) -> bytes:
    from safetensors.numpy import save
    record = ckpt.info.get("data") or {}
    meta = {"format": TABLES_FORMAT, "version": TABLES_VERSION, "fingerprint": fp,
            "data_sha256": str(record.get("sha256") or "")}
    return save({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, metadata=meta)


def _tensors_of(blob: bytes, fp: str) -> dict[str, np.ndarray] | None:
    """The tensors of a tables file if it is one and belongs to the model ``fp``, else None."""
    from safetensors.numpy import load
    try:
        meta = _metadata(blob)
        if meta.get("format") != TABLES_FORMAT or meta.get("fingerprint") != fp:
            return None  # another model's: stale after retraining
        return load(blob)
    except Exception:  # noqa: BLE001 - a damaged file holds no table
        return None


def _metadata(blob: bytes) -> dict:
    """A safetensors file's metadata: its JSON header's ``__metadata__``."""
    import json
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + length])
    return header.get("__metadata__") or {}


# --- the tables a checkpoint stores ------------------------------------------------------------

def stored_tensors(ckpt: Checkpoint, fp: str | None = None) -> dict[str, np.ndarray]:
    """The tensors of the checkpoint's own ``codec.safetensors`` (none if it has none, or one of
    another model's, as a folder retrained in place keeps until its tables are stored again)."""
    found = read_tables_file(ckpt.path)
    if found is None:
        return {}
    blob, vouched = found
    tensors = _tensors_of(blob, fp or model_fingerprint(ckpt).hex())
    if tensors is None and vouched:
        raise CheckpointError(f"{TABLES_FILE} is not this model's tables file", path=Path(ckpt.path) / TABLES_FILE,
                              hint="fit its tables anew with `aelab codec fit --checkpoint DIR --data TRAINING-DATA`")
    return tensors or {}


def _legacy_user_cache_file(fp: str) -> Path:
    """Where aelab before complete checkpoints cached the tables of a model whose folder it could not
    write (a shipped one): read to decode the files made with them, never written."""
    root = os.environ.get("AELAB_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "aelab")
    return Path(root) / "codec" / f"{fp}.safetensors"


def _legacy_user_cache(fp: str) -> dict[str, np.ndarray]:
    path = _legacy_user_cache_file(fp)
    try:
        return _tensors_of(path.read_bytes(), fp) or {}
    except OSError:
        return {}


def _what(coder: Coder, quantiser: str, bits: int) -> str:
    return f"{coder.name} table for the {quantiser} quantiser at {bits} bits"


class CheckpointTables:
    """Where one compress or decompress call gets the checkpoint's tables: what the checkpoint stores;
    else (a table it does not hold) learned from the model's training data in memory, when ``data``
    is given or the model was trained on the bundled MNIST; else a CheckpointError that says what to pass.
    Reads the checkpoint once and writes nothing."""

    def __init__(self, ckpt: Checkpoint, data: Any = None, log: Log = None) -> None:
        self.ckpt = ckpt
        self.fp = model_fingerprint(ckpt).hex()
        self.data = data
        self.log = log
        self.stored = stored_tensors(ckpt, self.fp)
        self._codes: np.ndarray | None = None
        self._learned: dict[tuple, CodecTable] = {}

    def transform(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The stored transform quantiser's mean and matrix, or None."""
        return _transform_of(self.stored)

    def grid(self, quantiser: str, bits: int) -> CodecTable | None:
        """The stored plain table's quantiser grid for ``quantiser`` and ``bits``, or None."""
        return _table_from_tensors(self.stored, quantiser, bits, CODERS["range"])

    def table(self, quantiser: str, bits: int, coder: Coder) -> CodecTable:
        """``coder``'s table for ``quantiser`` and ``bits``: the stored one, else learned."""
        return _table_from_tensors(self.stored, quantiser, bits, coder) or self._learn(quantiser, bits, coder)

    def table_with_digest(self, quantiser: str, bits: int, coder: Coder, digest: str) -> CodecTable:
        """The table a file names by ``digest``: the stored one, else one in the user cache that aelab
        kept before checkpoints were complete, else learned; CheckpointError when none is that table."""
        tried = []
        for candidate in self._candidates(quantiser, bits, coder):
            if candidate.digest.hex() == digest:
                return candidate
            tried.append(candidate.digest.hex())
        raise CheckpointError(
            f"the checkpoint's {quantiser} {bits}-bit {coder.name} probability table ({', '.join(tried)}) is not the "
            f"one the file was made with ({digest})", path=self.ckpt.path,
            hint=f"use the checkpoint folder that compressed the file, with its {TABLES_FILE}; a table learned "
                 "again on another kind of CPU can differ" + (f", and a {coder.name} predictor almost surely does"
                                                  if coder.predictive else ""))

    def _candidates(self, quantiser: str, bits: int, coder: Coder) -> Iterator[CodecTable]:
        stored = _table_from_tensors(self.stored, quantiser, bits, coder)
        if stored is not None:
            yield stored
        legacy = _table_from_tensors(_legacy_user_cache(self.fp), quantiser, bits, coder)
        if legacy is not None:
            yield legacy
        if stored is None:
            yield self._learn(quantiser, bits, coder)

    def _learn(self, quantiser: str, bits: int, coder: Coder) -> CodecTable:
        key = (quantiser, bits, coder.cache_kind)
        if key in self._learned:
            return self._learned[key]
        if coder.predictive:
            plain = self.table(quantiser, bits, CODERS["range"])
            codes = self._training_codes(_what(coder, quantiser, bits))
            if self.log is not None:
                self.log(coder.learning_notice(bits))
            table = fit_predictive_table(codes, plain, spread=coder.spread)
        else:
            codes = self._training_codes(_what(CODERS["range"], quantiser, bits))
            transform = self.transform() if quantiser == "transform" else None
            table = fit_table(codes, bits, quantiser, model=self.ckpt.model, transform=transform)
        self._learned[key] = table
        return table

    def _training_codes(self, what: str) -> np.ndarray:
        if self._codes is None:
            record = self.ckpt.info.get("data") or {}
            from ..data.resolver import BUNDLED_NAME
            if self.data is None and record.get("name") != BUNDLED_NAME:
                raise _no_table_error(self.ckpt, record.get("name"), what)
            if self.log is not None:
                self.log(f"The checkpoint holds no {what}: learning it from the model's training data "
                         f"(each time; `aelab codec fit --checkpoint {self.ckpt.path}` stores it) ...")
            self._codes = _training_codes(self.ckpt, self.data)
        return self._codes


def codec_table(checkpoint: Checkpoint | str | os.PathLike, bits: int = DEFAULT_BITS,
                quantiser: str = DEFAULT_QUANTISER, *, coder: str | Coder | None = None,
                predictive: bool = False, spread: bool = False, data: Any = None) -> CodecTable:
    """The checkpoint's quantiser and probability model for ``bits``, ``quantiser`` and ``coder`` (a name
    or a :class:`Coder`; default: the one the flags pick, see :func:`coder_for`): the one it stores, else
    learned in memory from its training data (``data``: a path or Dataset; the bundled MNIST when the
    model was trained on it). Writes nothing; :func:`save_tables` stores tables."""
    bits = check_bits(bits)
    check_choice(quantiser, QUANTISERS, "quantiser")
    tables = CheckpointTables(cpu_checkpoint(checkpoint), data)
    return tables.table(quantiser, bits, coder_for(coder, predictive=predictive, spread=spread))


def has_cached_table(checkpoint: Checkpoint | str | os.PathLike, bits: int = DEFAULT_BITS,
                     quantiser: str = DEFAULT_QUANTISER, *,
                     predictive: bool = False, spread: bool = False, coder: str | Coder | None = None) -> bool:
    """Whether the checkpoint stores this table (else compressing must learn it from the training data:
    seconds, about 15 seconds for range-ar, about 70 for range-ctx). False for anything it cannot read."""
    try:
        ckpt = cpu_checkpoint(checkpoint)
        table = _table_from_tensors(stored_tensors(ckpt), quantiser, check_bits(bits),
                                    coder_for(coder, predictive=predictive, spread=spread))
        return table is not None
    except Exception:  # noqa: BLE001 - a question, not an operation: compress reports the real error
        return False


# --- fitting and storing -----------------------------------------------------------------------------

def _fit_into(tensors: dict[str, np.ndarray], ckpt: Checkpoint, training_codes: Callable[[], np.ndarray],
              bits: list[int], quantisers: Any, chosen: dict[Coder, set[int]], log: Log = None) -> list[str]:
    """Add to ``tensors`` every table of ``quantisers`` x ``bits`` (and ``chosen``'s predictive ones) that
    it lacks, fitted to the codes ``training_codes()`` gives (asked only if one is lacking); the tables
    it holds stay as they are (files made with them must keep decoding). Returns the prefixes of the
    tables added."""
    plain = CODERS["range"]
    known: list[np.ndarray] = []

    def codes() -> np.ndarray:
        if not known:
            known.append(training_codes())
        return known[0]
    added = []
    transform = _transform_of(tensors)
    for quantiser in quantisers:
        for b in bits:
            table = _table_from_tensors(tensors, quantiser, b, plain)
            if table is None:
                table = fit_table(codes(), b, quantiser, model=ckpt.model,
                                  transform=transform if quantiser == "transform" else None)
                tensors.update(_table_tensors(table, plain))
                added.append(_prefix(plain, quantiser, b))
            if quantiser == "transform":
                transform = (table.mean, table.matrix)
            for coder, chosen_bits in chosen.items():
                if b in chosen_bits and _table_from_tensors(tensors, quantiser, b, coder) is None:
                    if log is not None:
                        log(coder.learning_notice(b))
                    tensors.update(_table_tensors(fit_predictive_table(codes(), table, spread=coder.spread), coder))
                    added.append(_prefix(coder, quantiser, b))
    return added


def _store(ckpt: Checkpoint, fp: str, tensors: dict[str, np.ndarray]) -> Path:
    return write_tables_file(ckpt.path, _tables_blob(tensors, fp, ckpt),
                             {"format": TABLES_FORMAT, "version": TABLES_VERSION})


def store_training_tables(checkpoint: Checkpoint | str | os.PathLike, images: np.ndarray,
                          log: Log = None) -> Path | None:
    """Fit the plain tables (both quantisers, :data:`FIT_BITS`) to the codes of ``images``, the model's
    training images (at most :data:`TRAINING_FIT_IMAGES` of them, evenly spaced), and store them in the
    checkpoint; what training calls once the checkpoint is saved. None (nothing stored) for a model the
    codec does not compress (a table's)."""
    ckpt = cpu_checkpoint(checkpoint)
    if not ckpt.model_config.is_image or len(images) < 2:
        return None
    if len(images) > TRAINING_FIT_IMAGES:
        images = images[np.linspace(0, len(images) - 1, TRAINING_FIT_IMAGES).astype(np.int64)]
    if log is not None:
        log("Fitting the codec's probability tables to the training codes ...")
    fp = model_fingerprint(ckpt).hex()
    tensors: dict[str, np.ndarray] = {}
    _fit_into(tensors, ckpt, lambda: _codes_of(ckpt, images), list(FIT_BITS), tuple(QUANTISERS), {})
    return _store(ckpt, fp, tensors)


def save_tables(checkpoint: Checkpoint | str | os.PathLike, bits: Any = FIT_BITS,
                quantisers: Any = tuple(QUANTISERS), *, data: Any = None, predictive: Any = False,
                spread: Any = False, keep: bool = True, log: Log = None) -> Path:
    """Fit the checkpoint's tables for every bit depth in ``bits`` and quantiser (and the range-ar
    coder's: ``predictive=True`` for every one of those bit depths, or a list of bit depths; the
    range-ctx coder's likewise with ``spread``) from its training data (``data``; by default the
    bundled MNIST, for a model trained on it), and store them in the checkpoint (``codec.safetensors``,
    its SHA-256 in config.json), even a shipped model's: ``aelab codec fit``. With ``keep`` (the
    default) the tables it already stores stay as they are (learning one again can change its last
    bits, and files made with the old one would no longer decode) and only the missing ones are
    learned and added (nothing is written when none is missing); else every one is learned again.
    Returns the tables file's path."""
    ckpt = cpu_checkpoint(checkpoint)
    if not ckpt.model_config.is_image:
        raise OptionError("the codec compresses images, and this model was trained on a table",
                          hint="use `aelab encode` for a table's codes")
    fp = model_fingerprint(ckpt).hex()
    bits = [check_bits(b) for b in bits]
    chosen = {coder: _chosen_bits(coder, value, bits)
              for coder, value in ((coder_for(predictive=True), predictive), (coder_for(spread=True), spread))}
    for q in quantisers:
        check_choice(q, QUANTISERS, "quantiser")
    tensors = dict(stored_tensors(ckpt, fp)) if keep else {}
    added = _fit_into(tensors, ckpt, lambda: _training_codes(ckpt, data), bits, quantisers, chosen, log)
    if not added:  # it holds them all: nothing to write
        return Path(ckpt.path) / TABLES_FILE
    return _store(ckpt, fp, tensors)


def _chosen_bits(coder: Coder, value: Any, bits: list[int]) -> set[int]:
    """The bit depths :func:`save_tables`' ``predictive`` or ``spread`` (True, False or a list) asks of
    ``coder``; every one must also be in ``bits``, whose plain tables a predictor is fitted on."""
    chosen = set(bits if value is True else () if value is False else [check_bits(b) for b in value])
    if not chosen <= set(bits):
        raise OptionError(f"{coder.name} tables for bit depths {sorted(chosen - set(bits))} need their "
                          "plain tables too", hint="list them in bits as well")
    return chosen


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
