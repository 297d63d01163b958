"""Where a checkpoint's codec tables come from: learned from its training codes, cached beside it
(``codec.safetensors``) or in the user's cache, and their bytes when a file embeds one.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..models.checkpoint import Checkpoint
from ..errors import CheckpointError, DataError, OptionError, OutputError
from ..fileio import write_bytes
from .coders import Coder, coder_for
from .format import (
    MIN_BITS, DEFAULT_BITS, CACHE_FILE, QUANTISERS, DEFAULT_QUANTISER)
from .predictor import Predictor
from .quantiser import (
    CodecTable, _CACHE_FORMAT, _CACHE_VERSION, _check_choice, _checkpoint, _fingerprint_bytes, check_bits, fit_predictive_table, fit_table)
# fitted tables and training codes, kept for the life of the process
_training_codes_memo: dict[tuple[str, str], np.ndarray] = {}
_table_memo: dict[tuple, "CodecTable"] = {}

def _training_codes(ckpt: Checkpoint, data: Any) -> np.ndarray:
    """Codes of the images the model was trained on (the training split of its data)."""
    from ..data import Dataset
    from ..data.recorded import load_as_recorded
    from ..data.resolver import BUNDLED_NAME
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
    if isinstance(data, Dataset):
        dataset = data
    else:
        dataset = load_as_recorded(data, record, ckpt.model_config.input_shape)
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


def _table_from_cache(tensors: dict[str, np.ndarray], quantiser: str, bits: int, coder: Coder) -> CodecTable | None:
    """``coder``'s table for ``quantiser`` and ``bits`` in a tables file's ``tensors``, or None."""
    prefix = coder.cache_prefix(quantiser, bits)
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


def codec_table(checkpoint: Checkpoint | str | os.PathLike, bits: int = DEFAULT_BITS,
                quantiser: str = DEFAULT_QUANTISER, *, data: Any = None, cache: bool = True,
                predictive: bool = False, spread: bool = False, coder: str | Coder | None = None,
                log: Callable[[str], None] | None = None) -> CodecTable:
    """The checkpoint's quantiser and probability model for ``bits`` and ``coder`` (a name or a
    :class:`Coder`; default: the one the flags pick, see :func:`coder_for`). For a predictive coder
    (``predictive``: ``"range-ar"``) the same quantiser, an autoregressive predictor and the residuals'
    probability model (:func:`fit_predictive_table`; learning it takes about 15 seconds on 2 cores);
    with ``spread`` (which implies ``predictive``), the ``"range-ctx"`` coder's (about 70 seconds).
    ``log`` is called with the coder's :meth:`Coder.learning_notice` before a predictor is learned.

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
    coder = coder_for(coder, predictive=predictive, spread=spread)
    key = (fp, quantiser, bits, coder.cache_kind, os.fspath(files[0].absolute()),
           tuple(_file_stamp(f) for f in files))
    if cache and key in _table_memo:
        return _table_memo[key]
    contents = [_read_cache(f, fp) for f in files] if cache else [{}, {}]
    table = _first_cached_table(contents, quantiser, bits, coder)
    if table is None:
        if coder.predictive:
            if log is not None:
                log(coder.learning_notice(bits))
            plain = codec_table(ckpt, bits, quantiser, data=data, cache=cache)
            table = fit_predictive_table(_training_codes(ckpt, data), plain, spread=coder.spread)
            if cache:
                contents = [_read_cache(f, fp) for f in files]  # now with the plain table
        else:
            transform = _cached_transform(contents[0]) or _cached_transform(contents[1])
            table = fit_table(_training_codes(ckpt, data), bits, quantiser, model=ckpt.model, transform=transform)
        if cache:
            _write_cache(ckpt, fp, files, contents, table, coder)
            key = key[:5] + (tuple(_file_stamp(f) for f in files),)
    if cache:
        if len(_table_memo) >= 32:
            _table_memo.clear()
        _table_memo[key] = table
    return table


def has_cached_table(checkpoint: Checkpoint | str | os.PathLike, bits: int = DEFAULT_BITS,
                     quantiser: str = DEFAULT_QUANTISER, *, predictive: bool = False, spread: bool = False,
                     coder: str | Coder | None = None) -> bool:
    """Whether :func:`codec_table` would find this table cached (else it learns it: seconds, about
    15 seconds with ``predictive``, about 70 with ``spread``). False for anything it cannot read."""
    try:
        ckpt = _checkpoint(checkpoint)
        fp = _fingerprint_bytes(ckpt).hex()
        contents = [_read_cache(f, fp) for f in _cache_files(ckpt, fp)]
        table = _first_cached_table(contents, quantiser, check_bits(bits),
                                    coder_for(coder, predictive=predictive, spread=spread))
        return table is not None
    except Exception:  # noqa: BLE001 - a question, not an operation: compress reports the real error
        return False


def _cache_files(ckpt: Checkpoint, fp: str) -> tuple[Path, Path]:
    """Where a checkpoint's tables are looked up, in order: its folder, then the user cache."""
    return Path(ckpt.path) / CACHE_FILE, _user_cache_file(fp)


def _first_cached_table(contents: list[dict[str, np.ndarray]], quantiser: str, bits: int,
                        coder: Coder) -> CodecTable | None:
    """The table in the first of the cache files' ``contents`` that holds it, or None."""
    for tensors in contents:
        table = _table_from_cache(tensors, quantiser, bits, coder)
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
                 table: CodecTable, coder: Coder) -> None:
    """Add ``coder``'s ``table`` to the checkpoint folder's tables file, else (shipped model, read-only
    folder) to the user cache; when neither can be written, nothing is cached."""
    from safetensors.numpy import save
    record = ckpt.info.get("data") or {}
    # each coder's tables have their own stem, so replacing one's tensors never drops another's
    prefix = coder.cache_prefix(table.quantiser, table.bits)
    meta = {"format": _CACHE_FORMAT, "version": _CACHE_VERSION, "fingerprint": fp,
            "data_sha256": str(record.get("sha256") or "")}
    for path, tensors in zip(files, contents):
        if path == files[0] and _is_shipped(Path(ckpt.path)):
            continue
        tensors = {k: v for k, v in tensors.items() if not k.startswith(prefix)}
        tensors.update(_table_tensors(table, coder))
        blob = save({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, metadata=meta)
        try:
            write_bytes(path, blob)
            return
        except OutputError:
            continue  # a read-only folder: try the user cache; else the table is rebuilt next time


def _table_tensors(table: CodecTable, coder: Coder) -> dict[str, np.ndarray]:
    """``coder``'s ``table`` as tables-file tensors (and the transform, shared by every table)."""
    prefix = coder.cache_prefix(table.quantiser, table.bits)
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
    plain = coder_for()
    chosen = {coder: _chosen_bits(coder, value, bits)
              for coder, value in ((coder_for(predictive=True), predictive), (coder_for(spread=True), spread))}
    for q in quantisers:
        _check_choice(q, QUANTISERS, "quantiser")
    path = Path(ckpt.path) / CACHE_FILE
    tensors: dict[str, np.ndarray] = _read_cache(path, fp) if keep else {}
    codes = _training_codes(ckpt, data)
    transform = _cached_transform(tensors)
    for quantiser in quantisers:
        for b in bits:
            table = _table_from_cache(tensors, quantiser, b, plain)
            if table is None:
                table = fit_table(codes, b, quantiser, model=ckpt.model,
                                  transform=transform if quantiser == "transform" else None)
                tensors.update(_table_tensors(table, plain))
            if quantiser == "transform":
                transform = (table.mean, table.matrix)
            for coder, chosen_bits in chosen.items():
                if b in chosen_bits and _table_from_cache(tensors, quantiser, b, coder) is None:
                    tensors.update(_table_tensors(fit_predictive_table(codes, table, spread=coder.spread), coder))
    record = ckpt.info.get("data") or {}
    meta = {"format": _CACHE_FORMAT, "version": _CACHE_VERSION, "fingerprint": fp,
            "data_sha256": str(record.get("sha256") or "")}
    path = write_bytes(path, save({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, metadata=meta))
    _table_memo.clear()
    return path


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


# --- entropy coding ---------------------------------------------------------------------------

