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
``"zlib"`` is the fallback without constriction. Each is a :class:`~aelab.codec.coders.Coder` in the
registry :data:`~aelab.codec.coders.CODERS`, which says what it needs.

Where the probability model lives (``table=``):

- ``"checkpoint"`` (default): the quantiser and the probability tables
  are fitted to the codes of the model's *training* images when it is trained
  (or by :func:`save_tables`, ``aelab codec fit``), stored in the checkpoint
  folder as ``codec.safetensors`` (its SHA-256 in config.json) and identified
  in each file by a 16-byte digest. They are part of the model, like its
  weights: they cost no bytes per file, and compressing and decompressing
  need the checkpoint folder alone.
- ``"embedded"``: the checkpoint's quantiser (or, for a checkpoint without
  stored tables, one fitted to the images' own codes) and the exact histogram
  of the file's symbols, both stored (the frequencies zlib-compressed) in the
  file: self-contained, with the table's bytes counted in the file size.

Everything here runs on the CPU and writes nothing but its output. The
entropy-coded symbols decode exactly anywhere; the decoded pixels are
deterministic for a given machine and torch build.

Python API::

    from aelab import codec
    blob = codec.encode_bytes(images, "aelab-model", bits=6)    # uint8 (n, h, w) -> bytes
    images = codec.decode_bytes(blob, "aelab-model")             # -> uint8 (n, h, w)
    codec.compress("t10k-images-idx3-ubyte", "aelab-model", "digits.aez", bits=6)
    codec.decompress("digits.aez", "aelab-model", "digits.npz")
"""
from __future__ import annotations

import dataclasses
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import CheckpointError, DataError, OptionError, OutputError
from ..fileio import atomic_write, write_bytes
from ..models.checkpoint import Checkpoint, cpu_checkpoint, model_fingerprint
from .coders import (  # noqa: F401
    CODERS, PREDICTIVE_CODERS, Coder, _constriction, _least_bits_per_image, coder_for, coder_help, default_coder)
from .format import (
    MAGIC, VERSION, SUFFIX, MIN_BITS, MAX_BITS, DEFAULT_BITS, DEFAULT_RATE_WEIGHT, CACHE_FILE, HEADER, TABLES,
    QUANTISERS, DEFAULT_QUANTISER, AezHeader, check_bits, check_choice, file_bytes, read_header)
from .quantiser import (  # noqa: F401  (re-exported: callers import these from here)
    CodecTable, _fit_transform, _frequencies, _histograms, components, dequantise, fit_predictive_table, fit_table,
    fitted_table, quantise, with_frequencies)
from .search import search_symbols
from .tables import (  # noqa: F401
    FIT_BITS, CheckpointTables, _table_bytes, _table_from_bytes, codec_table, has_cached_table, save_tables,
    store_training_tables)

Log = Callable[[str], None] | None

__all__ = ["compress", "decompress", "encode_bytes", "decode_bytes", "decode_codes", "read_header",
           "codec_table", "has_cached_table", "fit_table", "fit_predictive_table", "save_tables",
           "store_training_tables", "fingerprint", "quantise", "dequantise", "components", "output_format",
           "AezHeader", "CodecTable", "MAGIC", "VERSION", "MIN_BITS", "MAX_BITS", "DEFAULT_BITS", "DEFAULT_RATE_WEIGHT",
           "DEFAULT_QUANTISER", "QUANTISERS", "CACHE_FILE", "SUFFIX", "CODERS", "PREDICTIVE_CODERS", "Coder",
           "coder_help", "FIT_BITS"]

# from this many pixel values on, compressing says on ``log`` what it is doing before it starts
_PROGRESS_VALUES = 1 << 19


@dataclass(frozen=True)
class Settings:
    """The options of one compress call, checked once (:func:`settings`); everything below assumes them."""

    bits: int
    quantiser: str
    table: str
    coder: Coder
    precision: str
    search: int
    rate_weight: float


def settings(bits: Any = DEFAULT_BITS, quantiser: Any = DEFAULT_QUANTISER, table: Any = "checkpoint",
             coder: Any = None, precision: Any = "fp32", search: Any = 0,
             rate_weight: Any = DEFAULT_RATE_WEIGHT) -> Settings:
    """The compress options checked, each named in its OptionError: the public entry's one gate."""
    from ..models.inference import check_precision
    entropy = coder_for(coder or default_coder())
    checked = Settings(bits=check_bits(bits), quantiser=check_choice(quantiser, QUANTISERS, "quantiser"),
                       table=check_choice(table, TABLES, "table"), coder=entropy,
                       precision=check_precision(precision), search=0, rate_weight=0.0)
    search, rate_weight = check_search(search, rate_weight)
    if entropy.uses_constriction:
        _constriction()
    if entropy.predictive and table != "checkpoint":
        raise OptionError(f"the {entropy.name} coder needs table 'checkpoint': its predictor is too large to embed",
                          hint="use --table checkpoint, or --coder range with --table embedded")
    return dataclasses.replace(checked, search=search, rate_weight=rate_weight)


def check_search(search: Any, rate_weight: Any) -> tuple[int, float]:
    """``search`` as an int >= 0 and ``rate_weight`` as a float >= 0, else OptionError."""
    if isinstance(search, bool) or not isinstance(search, (int, np.integer)) or search < 0:
        raise OptionError(f"search must be a whole number of steps, 0 or more, got {search!r}",
                          hint="e.g. --search 100; 0 quantises the encoder's codes as they are")
    if isinstance(rate_weight, bool) or not isinstance(rate_weight, (int, float, np.floating, np.integer)) \
            or not np.isfinite(rate_weight) or rate_weight < 0:
        raise OptionError(f"rate weight must be a number, 0 or more, got {rate_weight!r}",
                          hint=f"e.g. --rate-weight {DEFAULT_RATE_WEIGHT}; 0 searches for the lowest error only")
    return int(search), float(rate_weight)


def fingerprint(checkpoint: Checkpoint | str | os.PathLike) -> str:
    """The model's fingerprint (32 hex digits): SHA-256 of its config and weights' SHA-256, truncated."""
    return model_fingerprint(cpu_checkpoint(checkpoint)).hex()


def encode_bytes(images: Any, checkpoint: Checkpoint | str | os.PathLike, bits: int = DEFAULT_BITS, *,
                 quantiser: str = DEFAULT_QUANTISER, table: str = "checkpoint", coder: str | None = None,
                 data: Any = None, precision: str = "fp32", search: int = 0,
                 rate_weight: float = DEFAULT_RATE_WEIGHT, log: Log = None) -> bytes:
    """Images (uint8 or 0..255 floats, (n, h, w), (n, h, w, 3) or flat rows) -> the bytes of an ``.aez`` file.

    ``bits``: quantiser bit depth, 2..16. ``quantiser``: ``"uniform"``
    (each code number on its own [min, max] range) or ``"transform"``
    (decorrelated components weighted by the decoder's sensitivity, one
    step). ``table``: where the probability model lives, ``"checkpoint"``
    (stored in the checkpoint, fitted to its training codes) or ``"embedded"``
    (this set's own histogram, stored in the file). ``coder``:
    ``"range"`` (constriction's range coder, the default), ``"range-ar"``
    (the range coder on the residuals of an autoregressive predictor: 10%
    smaller for mnist-conv; ``table="checkpoint"`` only), ``"range-ctx"``
    (as range-ar, with a wider predictor that also estimates how far off it
    may be, which picks one of 8 probability models per component: 4.5%
    smaller than range-ar for mnist-codec at 7 bits) or ``"zlib"``.
    ``data``: the model's training data, needed only for a table the checkpoint does not store
    (a range-ar or range-ctx table not yet fitted with :func:`save_tables`, more than 8 bits, or a
    checkpoint saved without its tables): it is then learned in memory, each time.
    ``precision``: the encoder's arithmetic,
    ``"fp32"`` or ``"bf16"`` (more than twice as fast for convolutional
    models on CPUs with bfloat16 units, a few code numbers in a neighbouring
    bin; see :func:`aelab.models.inference.computing_in`).
    ``search``: steps of the encoder's search (:mod:`aelab.codec.search`): each image's symbols
    moved, through the decoder, to lower ``squared error + rate_weight * bits``; slower, smaller
    files at a higher PSNR, decoded as any other. 0 (the default) quantises the encoder's codes.
    ``log``: called with a line before each slow step (a table learned, a search, many images).
    Deterministic: the same images give the same bytes; on another machine too, unless a code lies
    within float rounding of a quantiser bin's edge (docs/format.md says what may differ).
    """
    options = settings(bits, quantiser, table, coder, precision, search, rate_weight)
    return _encode(images, cpu_checkpoint(checkpoint), options, data=data, log=log)[0]


def _encode(images: Any, ckpt: Checkpoint, options: Settings, *, data: Any = None,
            log: Log = None) -> tuple[bytes, int]:
    """The checked ``options`` applied to ``images``: the file's bytes and its image count."""
    from ..models.inference import as_pixel_rows, encode
    _check_model(ckpt, options.coder)
    rows = as_pixel_rows(ckpt.model, images)
    if log is not None and rows.numel() >= _PROGRESS_VALUES:
        log(f"Compressing {rows.shape[0]:,} images with the model in {ckpt.path} ...")
    codes = encode(ckpt.model, rows, precision=options.precision)
    tables = CheckpointTables(ckpt, data, log)
    if options.table == "checkpoint":
        tab = tables.table(options.quantiser, options.bits, options.coder)
    else:
        tab = _embedded_table(tables, codes, ckpt, options)
    symbols = _symbols(ckpt, rows, codes, tab, tables, options, log)
    table_blob = b""
    if options.table == "embedded":  # the file's table is its symbols' exact histogram
        tab = with_frequencies(tab, _frequencies(symbols, tab.levels, tab.max_levels, True))
        table_blob = _table_bytes(tab)
    blob = file_bytes(coder=options.coder.id, table=TABLES[options.table], bits=options.bits,
                      image_shape=tuple(ckpt.model_config.image_size), count=int(rows.shape[0]),
                      code_size=ckpt.model_config.code_size, quantiser=QUANTISERS[options.quantiser],
                      fingerprint=model_fingerprint(ckpt), table_digest=tab.digest,
                      symbols_crc32=_symbols_crc(symbols), table_blob=table_blob,
                      payload=options.coder.encode(symbols, tab))
    return blob, int(rows.shape[0])


def _check_model(ckpt: Checkpoint, coder: Coder) -> None:
    if not ckpt.model_config.is_image:
        raise OptionError("the codec compresses images, and this model was trained on a table",
                          hint="use `aelab encode` for a table's codes")
    if coder.predictive and ckpt.model_config.code_size < 2:
        raise OptionError(f"the {coder.name} coder predicts each code number from the earlier ones, and this model's "
                          "code has only one", hint="use --coder range")


def _embedded_table(tables: CheckpointTables, codes: np.ndarray, ckpt: Checkpoint, options: Settings) -> CodecTable:
    """The quantiser of an embedded table: the checkpoint's stored grid for these settings (fixed, so the
    file depends on the codes alone), else one fitted to ``codes``; its frequencies are their exact
    histogram (the caller replaces them with the written symbols')."""
    grid = tables.grid(options.quantiser, options.bits)
    if grid is None:
        return fitted_table(codes, options.bits, options.quantiser, model=ckpt.model, exact=True,
                            transform=tables.transform() if options.quantiser == "transform" else None)
    return with_frequencies(grid, _frequencies(quantise(codes, grid), grid.levels, grid.max_levels, True))


def _symbols(ckpt: Checkpoint, rows: Any, codes: np.ndarray, tab: CodecTable, tables: CheckpointTables,
             options: Settings, log: Log) -> np.ndarray:
    """The symbols to write: the quantised codes, or with ``options.search`` the searched ones (their bits
    counted with the plain range coder's table on the same grid)."""
    if not options.search:
        return quantise(codes, tab)
    if log is not None:
        log(f"Searching the symbols of {rows.shape[0]:,} images, {options.search} steps through the decoder ...")
    rate_table = tab if tab.predictor is None else tables.table(tab.quantiser, tab.bits, CODERS["range"])
    return search_symbols(ckpt.model, rows, codes, tab, steps=options.search, rate_weight=options.rate_weight,
                          rate_table=rate_table)


def _decode(blob: bytes, ckpt: Checkpoint, data: Any, path: Any, log: Log = None) -> np.ndarray:
    """Checked header and model -> the dequantised codes."""
    blob = bytes(blob)
    header = read_header(blob, path)
    entropy = CODERS[header.coder]
    fp = model_fingerprint(ckpt).hex()
    if header.fingerprint != fp:
        raise CheckpointError(f"the file was made with another model (fingerprint {header.fingerprint}) than this "
                              f"checkpoint ({fp})", path=ckpt.path,
                              hint="decompress with the checkpoint that compressed the file")
    if header.image_shape != tuple(ckpt.model_config.image_size) or header.code_size != ckpt.model_config.code_size:
        raise DataError(f"the header's image shape {header.image_shape} or code size {header.code_size} does not "
                        "fit the model", path=path)
    body = blob[HEADER.size:]
    if entropy.predictive and header.table != "checkpoint":
        raise DataError(f"damaged .aez file: the {header.coder} coder with an embedded table", path=path)
    if header.table == "embedded":
        tab = _table_from_bytes(body[:header.table_bytes], header.quantiser, header.bits, header.code_size, path)
        if tab.digest.hex() != header.table_digest:
            raise DataError("damaged .aez file: the embedded table does not match its digest", path=path)
    else:
        tab = CheckpointTables(ckpt, data, log).table_with_digest(header.quantiser, header.bits, entropy,
                                                                 header.table_digest)
    symbols = entropy.decode(body[header.table_bytes:], header.count, tab, path)
    if _symbols_crc(symbols) != header.symbols_crc32:
        raise DataError("the decoded symbols fail their checksum: the file's entropy coder does not match this "
                        "one (another constriction version?)", path=path,
                        hint="decompress with the aelab and constriction versions that compressed the file")
    return dequantise(symbols, tab)


def _symbols_crc(symbols: np.ndarray) -> int:
    """CRC-32 of the symbols as little-endian uint16, image by image (row-major (n, d))."""
    return zlib.crc32(np.ascontiguousarray(symbols, dtype="<u2").tobytes())


def decode_codes(blob: bytes, checkpoint: Checkpoint | str | os.PathLike, *, data: Any = None) -> np.ndarray:
    """The dequantised codes (float32 (n, code_size)) in the bytes of an ``.aez`` file."""
    return _decode(blob, cpu_checkpoint(checkpoint), data, None)


def decode_bytes(blob: bytes, checkpoint: Checkpoint | str | os.PathLike, *, data: Any = None,
                 path: Any = None, precision: str = "fp32", log: Log = None) -> np.ndarray:
    """The bytes of an ``.aez`` file -> images, uint8 (n, h, w) or (n, h, w, 3) for a colour model.

    ``checkpoint`` must be the model that compressed them (its fingerprint is
    checked). Raises DataError for a damaged, truncated or newer file and
    CheckpointError for another model or probability table. ``path`` only
    names the file in error messages. ``precision``: the decoder's
    arithmetic, ``"fp32"`` or ``"bf16"`` (see :func:`encode_bytes`); the
    codes are exact either way, the pixels differ by a few grey levels at most.
    ``data``: the model's training data, needed only for a table the checkpoint does not store.
    ``log``: called with a line before a table is learned (slow).
    """
    from ..models.inference import check_precision, decode_to_pixels
    check_precision(precision)
    ckpt = cpu_checkpoint(checkpoint)
    codes = _decode(blob, ckpt, data, path, log)
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


def _load_input(images: Any, ckpt: Checkpoint, reading: dict) -> np.ndarray:
    """``images``, or the images at a path read as the model's training images were (size, crop, channels),
    but for the ``reading`` options given (the fields of :class:`aelab.data.ReadOptions`)."""
    if isinstance(images, (str, os.PathLike)):
        from ..data import ReadOptions
        from ..data.recorded import inputs_as_recorded
        return inputs_as_recorded(images, ckpt.info.get("data") or {}, ckpt.model_config.input_shape,
                                  ReadOptions.of(**reading)).images
    return images


def compress(images: Any, checkpoint: Checkpoint | str | os.PathLike, output: str | os.PathLike,
             bits: int = DEFAULT_BITS, *, quantiser: str = DEFAULT_QUANTISER, table: str = "checkpoint",
             coder: str | None = None, data: Any = None, precision: str = "fp32", search: int = 0,
             rate_weight: float = DEFAULT_RATE_WEIGHT, log: Log = None, **reading) -> dict:
    """Compress ``images`` (an array, or a path :func:`aelab.data.load_images` reads: IDX, CTF,
    .npz, a picture or a folder of them, read as the model's training images were but for the ``reading``
    options given: colour, resize, crop, skip_bad) into the ``.aez`` file ``output`` (written atomically).

    Returns ``{"path", "count", "bytes", "bytes_per_image", "bits", "quantiser", "table", "coder"}``.
    Labels are not stored. The options are those of :func:`encode_bytes`. ``log`` (``print``, say)
    is called with a line before each slow step (a table learned, a search, many images). Writes
    nothing but ``output``: never into the checkpoint folder.
    """
    options = settings(bits, quantiser, table, coder, precision, search, rate_weight)
    ckpt = cpu_checkpoint(checkpoint)
    pixels = _load_input(images, ckpt, reading)
    blob, count = _encode(pixels, ckpt, options, data=data, log=log)
    out = write_bytes(output, blob)
    return {"path": out, "count": count, "bytes": len(blob), "bytes_per_image": len(blob) / count if count else
            float("nan"), "bits": options.bits, "quantiser": options.quantiser, "table": options.table,
            "coder": options.coder.name}


def decompress(path: str | os.PathLike, checkpoint: Checkpoint | str | os.PathLike, output: str | os.PathLike, *,
               data: Any = None, precision: str = "fp32", log: Log = None) -> dict:
    """Decode the ``.aez`` file ``path`` with ``checkpoint`` (the model that compressed it) and write
    the images to ``output``: a folder of PNGs, an IDX file or a .npz (see :func:`output_format`).

    The output appears completely or not at all: files are written atomically,
    and a PNG folder is filled under a temporary name and then renamed. An
    existing PNG folder must be empty. Returns ``{"path", "format", "count"}``. The file is read, and
    the model loaded, once; ``log`` is called with a line before a table is learned (slow). Writes
    nothing but ``output``: never into the checkpoint folder.
    """
    from ..data.idx import read_file_bytes
    fmt = output_format(output)
    out = Path(output)
    if fmt == "png" and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError("exists and is not an empty folder", path=out,
                          hint="name a new or empty folder for the PNGs")
    blob = read_file_bytes(path)
    images = decode_bytes(blob, checkpoint, data=data, path=path, precision=precision, log=log)
    if fmt == "npz":
        with atomic_write(out, "wb") as f:
            np.savez_compressed(f, images=images)
    elif fmt in ("idx", "idx.gz"):
        from ..data.idx import write_idx
        write_idx(out, images, compress=fmt == "idx.gz")
    else:
        from ..data.images import save_pngs
        save_pngs(out, images)  # all of them, or stopped part way, none
    return {"path": out, "format": fmt, "count": int(images.shape[0])}
