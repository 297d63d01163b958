"""Rate-distortion: aelab's learned codec against PNG, JPEG, WebP, AVIF and JPEG XL on the MNIST test digits.

For every aelab model x quantiser x bit depth (``aelab.codec.api``, probability
tables from the model's training codes; also the range-ar coder with the
transform quantiser at ``--ar-bits`` and the range-ctx coder at
``--ctx-bits``), and for PNG (lossless), JPEG, WebP and AVIF (Pillow; WebP
at method 6 and AVIF at speed 0, their slowest, smallest settings) and JPEG XL
(imagecodecs, effort 10, its highest; left out with one line when imagecodecs
is not installed: ``pip install -e '.[bench]'``) at several qualities, each
both as one file per image and as one tiled image of the whole set (so that
per-file headers do not decide), it measures:

- bytes per image (whole files: an .aez file's header included; for aelab
  also "self-contained" bytes, with the probability table stored in the file,
  which range-ar and range-ctx cannot do);
- PSNR in dB on [0, 1]: 10 log10(1 / MSE), one MSE over all pixels of the set
  (the definition of ``aelab.models.inference.evaluate``), on the decoded 8-bit images;
- SSIM: scikit-image's ``structural_similarity`` (data_range=1, default 7x7
  window), the mean over images.

It also writes every image as its own one-image .aez file at the headline
setting, against the one-image files of each traditional codec (the per-image
rows: the smallest at a PSNR at least the .aez files'), headers included:
``single_image`` in the JSON, a small table in ``table.md``.

``--search STEPS`` adds the encoder's search (``aelab compress --search``) at
``--search-bits`` with the range and range-ctx coders; those rows compete for
the headline like any other, and when one wins, its speed is timed once on
the benchmark's images beside the same setting without the search.

AVIF at speed 0 takes most of the time (about 0.06 s per 28x28 image per
quality, and a minute per quality for 1,000 images tiled, on a 2-core CPU);
``--avif-qualities`` picks fewer.

It writes ``table.md``, ``results.json`` and ``rate_distortion.png`` (PSNR
against bytes per image, log x) into ``--out``, prints the table, the
codec's speed at the headline setting (and, when that uses range-ar or
range-ctx, the simpler coders' at the same setting) and, as its last line, one JSON object whose ``headline`` is
``{aelab_bytes_per_image, aelab_psnr_db, best_traditional_codec,
best_traditional_bytes_per_image, ratio}``: for an aelab setting, the best
traditional codec is the JPEG, WebP, AVIF or JPEG XL variant (per image or
tiled, any quality) with the fewest bytes per image at a PSNR at least aelab's, and the
ratio is its bytes over aelab's. The headline setting is the one with the best
ratio among the settings whose PSNR is within 0.5 dB of the model's own
(unquantised) reconstructions, so that the quantiser does not decide the
quality (far below it, every lossy traditional file is much better than needed and
ratios say little: a 2-bit code's can be 100x). Every setting's ratio is in
the table.

Models: ``--checkpoint DIR`` (repeatable; a shipped model's name works too);
by default every shipped pretrained model (``aelab models``), else a ``deep``
model trained with the ``adam`` recipe for ``--sweeps`` sweeps into a cache
folder (reused when present).

    python benchmarks/rate_distortion.py [--quick] [--out DIR] [--checkpoint DIR ...]
"""
from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aelab.codec import api as codec
from aelab.data import load_dataset
from aelab.fileio import atomic_write, ensure_dir, strict_json, write_text

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "rate_distortion"
JPEG_QUALITIES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 95)
WEBP_QUALITIES = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 95, 100)
AVIF_QUALITIES = (0, 2, 4, 6, 8, 10, 12, 14, 16, 20, 25, 30, 40, 50, 70, 90)
QUICK_AVIF_QUALITIES = (0, 4, 6, 8, 10, 12, 16, 20, 30, 50)  # about 2 minutes each on 1,000 images: finer near 26 dB
JXL_QUALITIES = (1, 5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 95)
JXL_EFFORT = 10  # libjxl's highest (slowest, smallest)
LOSSY = ("jpeg", "webp", "avif", "jxl")  # the candidates for "best traditional codec"
NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP", "avif": "AVIF", "jxl": "JPEG XL"}
BITS = (2, 3, 4, 5, 6, 7, 8)
QUANTISERS = ("transform", "uniform")
HEADLINE_MAX_LOSS_DB = 0.5
QUICK_IMAGES = 1000
DEFAULT_SWEEPS = 10.0
QUICK_SWEEPS = 1.0
AR_BITS = (5, 6, 7, 8)  # where the headline lies for our models; range-ar's table is learned per bit depth
QUICK_AR_BITS = (7,)
CTX_BITS = (6, 7)  # range-ctx's tables take about 70 s each to learn: the ones shipped with mnist-codec and mnist-conv
QUICK_CTX_BITS = (7,)
LEARN_OPTION = {"range-ar": "--ar-bits", "range-ctx": "--ctx-bits"}
SEARCH_BITS = (6, 7)  # where the encoder's search is measured (--search): around the headline


# --- options ------------------------------------------------------------------------------------

def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one value")
    return values


def _int_list_or_none(text: str) -> tuple[int, ...]:
    return () if text.strip() == "none" else _int_list(text)


def _name_list(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    for v in values:
        if v not in codec.QUANTISERS:
            raise argparse.ArgumentTypeError(f"unknown quantiser {v!r}; choose from {', '.join(codec.QUANTISERS)}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR",
                   help="folder for table.md, results.json and rate_distortion.png "
                        "(default: benchmarks/results/rate_distortion)")
    p.add_argument("--quick", action="store_true",
                   help=f"the first {QUICK_IMAGES} test images only (and, when no model is cached, a "
                        f"{QUICK_SWEEPS:g}-sweep model)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="the first N test images")
    p.add_argument("--checkpoint", action="append", default=None, metavar="DIR",
                   help="a model to measure (repeatable; a shipped model's name works too)")
    p.add_argument("--train-data", default=None, metavar="PATH",
                   help="the models' training data, when it is not the bundled MNIST (for the codec's tables)")
    p.add_argument("--bits", type=_int_list, default=BITS, metavar="LIST",
                   help="aelab bit depths (default: 2,...,8)")
    p.add_argument("--quantisers", type=_name_list, default=QUANTISERS, metavar="LIST",
                   help="aelab quantisers (default: transform,uniform)")
    p.add_argument("--ar-bits", type=_int_list_or_none, default=None, metavar="LIST",
                   help="bit depths also measured with the range-ar coder (transform quantiser; its table takes "
                        f"about 15 s to learn per bit depth; default: {','.join(map(str, AR_BITS))}, "
                        f"with --quick {','.join(map(str, QUICK_AR_BITS))} and only where the checkpoint stores "
                        "the table; 'none' for none)")
    p.add_argument("--ctx-bits", type=_int_list_or_none, default=None, metavar="LIST",
                   help="bit depths also measured with the range-ctx coder (transform quantiser; its table takes "
                        f"about 70 s to learn per bit depth, unless shipped; default: {','.join(map(str, CTX_BITS))}, "
                        f"with --quick {','.join(map(str, QUICK_CTX_BITS))} and only where the checkpoint stores "
                        "the table, as for the shipped mnist-codec and mnist-conv; 'none' for none)")
    p.add_argument("--search", type=int, default=0, metavar="STEPS",
                   help="also measure the encoder's search (aelab compress --search STEPS) at --search-bits, with "
                        "the range coder and, where its table is there, range-ctx: slow, about a minute per setting "
                        "for 1,000 images on 2 cores (default: 0, none)")
    p.add_argument("--search-bits", type=_int_list, default=SEARCH_BITS, metavar="LIST",
                   help=f"bit depths of the search's settings (default: {','.join(map(str, SEARCH_BITS))})")
    p.add_argument("--rate-weight", type=float, default=codec.DEFAULT_RATE_WEIGHT, metavar="W",
                   help="the search's weight of bits against squared error (default: %(default)s)")
    p.add_argument("--jpeg-qualities", type=_int_list, default=JPEG_QUALITIES, metavar="LIST")
    p.add_argument("--webp-qualities", type=_int_list, default=WEBP_QUALITIES, metavar="LIST")
    p.add_argument("--avif-qualities", type=_int_list_or_none, default=None, metavar="LIST",
                   help=f"AVIF qualities, at speed 0 (default: {','.join(map(str, AVIF_QUALITIES))}; with --quick "
                        f"{','.join(map(str, QUICK_AVIF_QUALITIES))}; 'none' for none)")
    p.add_argument("--jxl-qualities", type=_int_list_or_none, default=JXL_QUALITIES, metavar="LIST",
                   help=f"JPEG XL qualities, at effort {JXL_EFFORT} (default: {','.join(map(str, JXL_QUALITIES))}; "
                        "'none' for none)")
    p.add_argument("--sweeps", type=float, default=DEFAULT_SWEEPS,
                   help=f"sweeps for the default model when it must be trained (default: {DEFAULT_SWEEPS:g})")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="where the default model is trained and kept (default: ~/.cache/aelab/benchmarks)")
    args = p.parse_args(argv)
    # --quick learns no predictor (15 s for range-ar, 70 s for range-ctx) unless told to with the option
    args.learn = {"range-ar": args.ar_bits is not None or not args.quick,
                  "range-ctx": args.ctx_bits is not None or not args.quick}
    if args.ar_bits is None:
        args.ar_bits = QUICK_AR_BITS if args.quick else AR_BITS
    if args.ctx_bits is None:
        args.ctx_bits = QUICK_CTX_BITS if args.quick else CTX_BITS
    if args.avif_qualities is None:
        args.avif_qualities = QUICK_AVIF_QUALITIES if args.quick else AVIF_QUALITIES
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be at least 1")
    if args.search < 0 or not 0 <= args.rate_weight < math.inf:
        p.error("--search and --rate-weight must be at least 0")
    for b in (*args.bits, *args.ar_bits, *args.ctx_bits, *args.search_bits):
        if not codec.MIN_BITS <= b <= codec.MAX_BITS:
            p.error(f"bits must lie in {codec.MIN_BITS}..{codec.MAX_BITS}, got {b}")
    return args


# --- metrics ------------------------------------------------------------------------------------

def psnr_db(decoded: np.ndarray, original: np.ndarray) -> float:
    """10 log10(1 / MSE) on [0, 1], one MSE over all pixels (inf when identical)."""
    diff = decoded.astype(np.float64) - original.astype(np.float64)
    mse = float(np.mean(diff * diff)) / (255.0 * 255.0)
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def ssim_mean(decoded: np.ndarray, original: np.ndarray) -> float:
    """scikit-image's SSIM (data_range=1) of each image, averaged over the images."""
    from skimage.metrics import structural_similarity
    a = np.moveaxis(original.astype(np.float64) / 255.0, 0, -1)
    b = np.moveaxis(decoded.astype(np.float64) / 255.0, 0, -1)
    # channel_axis: one SSIM per image (its mean over pixels), then the mean over images
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=-1))


# --- traditional codecs ---------------------------------------------------------------------------

def _save_kwargs(fmt: str, quality: int | None) -> dict:
    if fmt == "PNG":
        return {"optimize": True}
    if fmt == "JPEG":
        return {"quality": quality, "optimize": True}
    if fmt == "AVIF":
        # speed 0: the slowest, smallest setting; one thread, since libavif's bytes depend on the thread count
        return {"quality": quality, "speed": 0, "max_threads": 1}
    return {"quality": quality, "method": 6}  # WEBP: the slowest, smallest setting


def pil_roundtrip(image: np.ndarray, fmt: str, quality: int | None) -> tuple[int, np.ndarray]:
    """Encode one 8-bit grayscale image with Pillow; return (file bytes, decoded image)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format=fmt, **_save_kwargs(fmt, quality))
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        decoded = np.asarray(im.convert("L"), dtype=np.uint8)
    return len(data), decoded


def jxl_roundtrip(image: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    """Encode one 8-bit grayscale image as JPEG XL (imagecodecs, highest effort); return (bytes, decoded)."""
    import imagecodecs
    data = imagecodecs.jpegxl_encode(image, level=quality, effort=JXL_EFFORT)
    return len(data), np.asarray(imagecodecs.jpegxl_decode(data), dtype=np.uint8).reshape(image.shape)


def roundtrip(image: np.ndarray, name: str, quality: int | None) -> tuple[int, np.ndarray]:
    """One image through traditional codec ``name`` (a key of NAMES): (file bytes, decoded image)."""
    return jxl_roundtrip(image, quality) if name == "jxl" else pil_roundtrip(image, name.upper(), quality)


def missing_codec(name: str) -> str | None:
    """Why codec ``name`` cannot run here, or None when it can."""
    if name == "avif":
        from PIL import features
        return None if features.check("avif") else "this Pillow has no AVIF plugin (Pillow 11.2 or newer has one)"
    if name == "jxl":
        try:
            import imagecodecs
        except ImportError:
            return "imagecodecs is not installed (pip install -e '.[bench]')"
        if not getattr(getattr(imagecodecs, "JPEGXL", None), "available", False):
            return "this imagecodecs was built without JPEG XL"
    return None


def tile(images: np.ndarray) -> tuple[np.ndarray, int]:
    """All images as one picture, ``cols = ceil(sqrt(n))`` per row (black padding); and cols."""
    n, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    padded = np.zeros((rows * cols, h, w), np.uint8)
    padded[:n] = images
    return padded.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w), cols


def untile(picture: np.ndarray, n: int, cols: int, h: int, w: int) -> np.ndarray:
    rows = picture.shape[0] // h
    return picture.reshape(rows, h, cols, w).transpose(0, 2, 1, 3).reshape(rows * cols, h, w)[:n]


def traditional_rows(images: np.ndarray, qualities: dict[str, Sequence[int]], say=print) -> list[dict]:
    """PNG, and every lossy codec of ``qualities`` ({name: qualities}, names from LOSSY) at each of its
    qualities, per image and tiled. A codec that cannot run here is left out, saying why in one line."""
    n, h, w = images.shape
    picture, cols = tile(images)
    settings = [("png", None)]
    for name, values in qualities.items():
        why = missing_codec(name) if values else None
        if why:
            say(f"  {NAMES[name]} left out: {why}")
            continue
        settings += [(name, q) for q in values]
    rows = []
    for name, quality in settings:
        for variant in ("per-image", "tiled"):
            start = time.perf_counter()
            if variant == "tiled":
                size, decoded_picture = roundtrip(picture, name, quality)
                decoded = untile(decoded_picture, n, cols, h, w)
            else:
                size, parts = 0, []
                for image in images:
                    s, d = roundtrip(image, name, quality)
                    size += s
                    parts.append(d)
                decoded = np.stack(parts)
            rows.append(_row(name, variant, "lossless" if quality is None else f"q={quality}", size / n,
                             decoded, images, quality=quality, seconds=time.perf_counter() - start))
        say(f"  {name} {'' if quality is None else f'q={quality}'}: per image {rows[-2]['bytes_per_image']:.1f} "
            f"B/img, tiled {rows[-1]['bytes_per_image']:.1f} B/img, PSNR {rows[-1]['psnr_db']:.2f} dB (tiled)")
    return rows


def _row(codec_name: str, variant: str, setting: str, bytes_per_image: float, decoded: np.ndarray,
         original: np.ndarray, **extra: Any) -> dict:
    psnr = psnr_db(decoded, original)
    return {"codec": codec_name, "variant": variant, "setting": setting, "bytes_per_image": bytes_per_image,
            "psnr_db": psnr, "ssim": ssim_mean(decoded, original), **extra}


# --- aelab ----------------------------------------------------------------------------------------

def _cache_root(args: argparse.Namespace) -> Path:
    if args.cache:
        return Path(args.cache)
    root = os.environ.get("AELAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "aelab")
    return Path(root) / "benchmarks"


def choose_models(args: argparse.Namespace, say=print) -> list[dict]:
    """[{label, path, how}]: --checkpoint, else the shipped models, else a cached/trained deep model."""
    if args.checkpoint:
        models, seen = [], set()
        for c in args.checkpoint:
            label = Path(c).name or str(c)
            label = label if label not in seen else f"{label}-{len(models) + 1}"  # two folders of one name
            seen.add(label)
            models.append({"label": label, "path": str(c), "how": "--checkpoint"})
        return models
    try:
        from aelab.models.checkpoint import pretrained_names, pretrained_path
        names = pretrained_names()
    except ImportError:
        names = []
    if names:
        return [{"label": name, "path": str(pretrained_path(name)), "how": "shipped pretrained model"}
                for name in names]
    return [_default_model(args, say)]


def _default_model(args: argparse.Namespace, say=print) -> dict:
    from aelab.models.checkpoint import load_checkpoint, save_checkpoint
    from aelab.errors import AelabError
    from aelab.evaluation.evaluate import evaluate
    from aelab.training.loop import TrainConfig, train
    root = _cache_root(args)
    full = root / f"deep-adam-{args.sweeps:g}sweeps"
    candidates = [full] + ([root / f"deep-adam-{QUICK_SWEEPS:g}sweeps"] if args.quick else [])
    for folder in candidates:
        try:
            load_checkpoint(folder)
        except AelabError:
            continue
        return {"label": folder.name, "path": str(folder), "how": "cached deep/adam model"}
    sweeps = QUICK_SWEEPS if args.quick else args.sweeps
    folder = root / f"deep-adam-{sweeps:g}sweeps"
    say(f"Training a deep model with the adam recipe for {sweeps:g} sweeps into {folder} (once; reused later)")
    data = load_dataset()
    config = TrainConfig(model="deep", recipe="adam", sweeps=sweeps, seed=0, device="cpu")
    result = train(data, config, log=None, progress_bar=False)
    scores = evaluate(result.model, data.test.images)
    save_checkpoint(folder, result.model, result.model_config,
                    training={**config.to_dict(), "samples_seen": result.samples_seen, "seconds": result.seconds},
                    data={"name": data.name, "sha256": data.sha256},
                    metrics={k: v for k, v in scores.items() if k != "n"})
    return {"label": folder.name, "path": str(folder),
            "how": f"deep/adam model trained now for {sweeps:g} sweeps ({result.seconds:.0f} s)"}


def _quantiser_and_coder(quantiser: str, coder: str, search: int = 0) -> str:
    """How settings are named: "transform", "transform + range-ar" (or range-ctx), "... + search 100"."""
    name = f"{quantiser} + {coder}" if coder in codec.PREDICTIVE_CODERS else quantiser
    return f"{name} + search {search}" if search else name


def aelab_rows(model: dict, images: np.ndarray, args: argparse.Namespace, say=print) -> tuple[list[dict], dict]:
    """Rows for every quantiser x bits of one model, and the model's facts (float PSNR, fit times)."""
    from aelab.models.checkpoint import load_checkpoint
    from aelab.models.inference import decode_to_pixels, encode
    ckpt = load_checkpoint(model["path"])
    n = len(images)
    floats = decode_to_pixels(ckpt.model, encode(ckpt.model, images))
    facts = {**model, "kind": ckpt.model_config.kind, "code_size": ckpt.model_config.code_size,
             "fingerprint": codec.fingerprint(ckpt), "unquantised_psnr_db": psnr_db(floats, images),
             "unquantised_ssim": ssim_mean(floats, images), "table_fit_seconds": {}}
    say(f"  {model['label']}: {facts['kind']}, code size {facts['code_size']}, unquantised PSNR "
        f"{facts['unquantised_psnr_db']:.2f} dB")
    rows = []
    settings = [(q, b, "range", 0) for q in args.quantisers for b in args.bits]
    settings += [("transform", b, "range-ar", 0) for b in args.ar_bits]
    settings += [("transform", b, "range-ctx", 0) for b in args.ctx_bits]
    if args.search:
        settings += [("transform", b, coder, args.search) for coder in ("range", "range-ctx") for b in args.search_bits]
    for quantiser, bits, coder, search in settings:
        predictive = codec.CODERS[coder].predictive
        name = _quantiser_and_coder(quantiser, coder, search)
        if predictive and not args.learn[coder] and not codec.has_cached_table(ckpt, bits, quantiser, coder=coder):
            say(f"    {name:20s} {bits:2d} bits: skipped (--quick learns no {coder} table; {LEARN_OPTION[coder]} "
                "to learn it)")
            continue
        start = time.perf_counter()
        codec.save_tables(ckpt, bits=(bits,), quantisers=(quantiser,), data=args.train_data,  # stored once
                          predictive=coder == "range-ar", spread=coder == "range-ctx")
        facts["table_fit_seconds"][f"{quantiser}/{bits}" + (f"/{coder}" if predictive else "")] = \
            time.perf_counter() - start
        start = time.perf_counter()
        blob = codec.encode_bytes(images, ckpt, bits, quantiser=quantiser, coder=coder, data=args.train_data,
                                  search=search, rate_weight=args.rate_weight)
        seconds = time.perf_counter() - start
        decoded = codec.decode_bytes(blob, ckpt, data=args.train_data)
        # the self-contained file of a search setting would repeat the slow search: left out
        embedded = None if predictive or search else codec.encode_bytes(images, ckpt, bits, quantiser=quantiser,
                                                                        table="embedded")
        row = _row("aelab", model["label"], f"{name}, {bits} bits", len(blob) / n, decoded, images,
                   model=model["label"], quantiser=quantiser, coder=coder, bits=bits, search=search,
                   rate_weight=args.rate_weight if search else None, compress_seconds=seconds,
                   self_contained_bytes_per_image=None if embedded is None else len(embedded) / n,
                   psnr_loss_db=facts["unquantised_psnr_db"] - psnr_db(decoded, images))
        rows.append(row)
        contained = "-" if embedded is None else f"{row['self_contained_bytes_per_image']:.2f}"
        say(f"    {name:20s} {bits:2d} bits: {row['bytes_per_image']:6.2f} B/img (self-contained {contained}), "
            f"PSNR {row['psnr_db']:.2f} dB, SSIM {row['ssim']:.3f}")
    return rows, facts


def measure_speed(model: dict, images: np.ndarray, bits: int, quantiser: str, data: Any,
                  repeats: int = 3, coder: str = "range", search: int = 0, rate_weight: float = 0.0,
                  precisions: Sequence[str] = ("fp32", "bf16")) -> dict:
    """Images per second of encode_bytes and decode_bytes (best of ``repeats``, tables cached,
    model loaded once), on the CPU, in fp32 (the default; the top-level numbers) and in bf16
    (``"bf16"``: its speeds, the PSNR of its round trip, and how far its pixels are from fp32's),
    with the encoder's ``search`` steps."""
    import torch
    from aelab.models.checkpoint import load_checkpoint
    from aelab.evaluation.metrics import psnr_db
    ckpt = load_checkpoint(model["path"])
    result: dict = {"images": len(images), "model": model["label"],
                    "setting": f"{_quantiser_and_coder(quantiser, coder, search)}, {bits} bits",
                    "torch_threads": torch.get_num_threads()}
    decoded, blobs = {}, {}
    options = dict(quantiser=quantiser, coder=coder, data=data, search=search, rate_weight=rate_weight)
    for precision in precisions:
        blob = blobs[precision] = codec.encode_bytes(images, ckpt, bits, precision=precision, **options)
        enc, dec = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            again = codec.encode_bytes(images, ckpt, bits, precision=precision, **options)
            enc.append(time.perf_counter() - start)
            start = time.perf_counter()
            decoded[precision] = codec.decode_bytes(blob, ckpt, data=data, precision=precision)
            dec.append(time.perf_counter() - start)
        mse = float(((decoded[precision].astype(np.float64) - images) ** 2).mean()) / 255.0 ** 2
        numbers = {"bytes_per_image": len(blob) / len(images),
                   "compress_images_per_second": len(images) / min(enc),
                   "decompress_images_per_second": len(images) / min(dec),
                   "same_bytes_twice": again == blob, "psnr_db": psnr_db(mse)}
        if precision == "fp32":
            result.update(numbers)
        else:
            # the decoder alone: the fp32 file decoded in bf16 against fp32
            bf16_decoder = codec.decode_bytes(blobs["fp32"], ckpt, data=data, precision="bf16")
            numbers["decoder_max_pixel_difference"] = int(np.abs(bf16_decoder.astype(np.int16)
                                                                 - decoded["fp32"]).max())
            # the encoder alone: the share of quantised components (symbols) that differ from fp32's
            from aelab.models.inference import encode
            table = codec.codec_table(ckpt, bits, quantiser, data=data)
            symbols = {prec: codec.quantise(encode(ckpt.model, images, precision=prec), table)
                       for prec in ("fp32", "bf16")}
            numbers["encoder_changed_symbols"] = float(np.mean(symbols["bf16"] != symbols["fp32"]))
            result["bf16"] = numbers
    return result


def single_image(model: dict, images: np.ndarray, pick: dict, traditional: list[dict], data: Any) -> list[dict]:
    """Every image as its own one-image .aez file at aelab setting ``pick`` (header included; the
    probability table stays with the model), against the one-image files of each traditional codec:
    for each lossy codec its per-image row with the fewest bytes at a PSNR at least the .aez files'
    (None when no quality reaches it), and PNG's. Rows of {codec, setting, bytes_per_image, psnr_db,
    ratio (its bytes over the .aez files')}."""
    from aelab.models.checkpoint import load_checkpoint
    ckpt = load_checkpoint(model["path"])
    size, parts = 0, []
    for image in images:
        blob = codec.encode_bytes(image[None], ckpt, pick["bits"], quantiser=pick["quantiser"],
                                  coder=pick.get("coder", "range"), data=data, search=pick.get("search", 0),
                                  rate_weight=pick.get("rate_weight") or 0.0)
        size += len(blob)
        parts.append(codec.decode_bytes(blob, ckpt, data=data))
    aez = {"codec": "aelab", "setting": f"{model['label']} ({pick['setting']}), one .aez per image",
           "bytes_per_image": size / len(images), "psnr_db": psnr_db(np.concatenate(parts), images), "ratio": 1.0}
    rows = [aez]
    for name in sorted({r["codec"] for r in traditional}, key=list(NAMES).index):
        one = [r for r in traditional if r["codec"] == name and r["variant"] == "per-image"]
        best = one[0] if name == "png" else best_traditional(one, aez["psnr_db"], codecs=(name,))
        rows.append({"codec": name, "setting": "lossless" if name == "png" else
                     (f"no quality reaches {aez['psnr_db']:.2f} dB" if best is None else best["setting"]),
                     "bytes_per_image": None if best is None else best["bytes_per_image"],
                     "psnr_db": None if best is None else best["psnr_db"],
                     "ratio": None if best is None else best["bytes_per_image"] / aez["bytes_per_image"]})
    return rows


def single_image_table(rows: list[dict]) -> str:
    lines = ["| one file per image | setting | bytes/image | PSNR (dB) | bytes over .aez's |", "|---|---|---:|---:|---:|"]
    lines += [f"| {NAMES.get(r['codec'], r['codec'])} | {r['setting']} | {_fmt(r['bytes_per_image'])} | "
              f"{_fmt(r['psnr_db'])} | {_fmt(r['ratio'])} |" for r in rows]
    return "\n".join(lines)


# --- the headline ---------------------------------------------------------------------------------

def best_traditional(rows: list[dict], psnr: float, codecs: Sequence[str] = LOSSY,
                     variants: Sequence[str] = ("per-image", "tiled")) -> dict | None:
    """The lossy row (JPEG, WebP, AVIF or JPEG XL; or only ``codecs``, ``variants``) with the fewest
    bytes per image at a PSNR >= ``psnr``."""
    ok = [r for r in rows if r["codec"] in codecs and r["variant"] in variants and r["psnr_db"] >= psnr]
    return min(ok, key=lambda r: (r["bytes_per_image"], -r["psnr_db"])) if ok else None


def _label(row: dict) -> str:
    return f"{row['codec']} {row['variant']} {row['setting']}" if row["codec"] != "aelab" else \
        f"aelab {row['model']} ({row['setting']})"


def match(aelab: list[dict], traditional: list[dict]) -> None:
    """Give every aelab row its best traditional codec at equal or better PSNR, and the ratio."""
    for row in aelab:
        best = best_traditional(traditional, row["psnr_db"])
        row["matched"] = None if best is None else _label(best)
        row["matched_bytes_per_image"] = None if best is None else best["bytes_per_image"]
        row["matched_psnr_db"] = None if best is None else best["psnr_db"]
        row["ratio"] = None if best is None else best["bytes_per_image"] / row["bytes_per_image"]


def headline(aelab: list[dict], traditional: list[dict] | None = None) -> dict:
    """The headline: the best ratio among the settings within HEADLINE_MAX_LOSS_DB of their model's
    unquantised PSNR (at lower PSNRs every lossy traditional file is far better than needed, so ratios there
    say little: a 2-bit code's can be 100x). Also says how far above aelab's PSNR the matched codec
    is, and whether it is at its lowest quality (then no smaller file of that codec exists at all)."""
    rated = [r for r in aelab if r["ratio"] is not None]
    eligible = [r for r in rated if r["psnr_loss_db"] <= HEADLINE_MAX_LOSS_DB]
    pick = max(eligible or rated, key=lambda r: (r["ratio"], -r["bytes_per_image"]), default=None)
    rule = (f"the aelab setting with the best ratio among those whose PSNR is within {HEADLINE_MAX_LOSS_DB} dB of "
            "their model's unquantised reconstructions" if eligible else
            "the aelab setting with the best ratio (none came within "
            f"{HEADLINE_MAX_LOSS_DB} dB of its unquantised model)")
    if pick is None:
        return {"aelab_bytes_per_image": None, "aelab_psnr_db": None, "best_traditional_codec": None,
                "best_traditional_bytes_per_image": None, "ratio": None, "rule": rule}
    lowest = None
    if traditional:
        matched = [r for r in traditional if _label(r) == pick["matched"]][0]
        same = [r for r in traditional if (r["codec"], r["variant"]) == (matched["codec"], matched["variant"])]
        lowest = matched["quality"] == min(r["quality"] for r in same)
    return {"aelab_bytes_per_image": round(pick["bytes_per_image"], 3), "aelab_psnr_db": round(pick["psnr_db"], 3),
            "best_traditional_codec": pick["matched"],
            "best_traditional_bytes_per_image": round(pick["matched_bytes_per_image"], 3),
            "ratio": round(pick["ratio"], 3), "aelab_setting": _label(pick),
            "best_traditional_psnr_db": round(pick["matched_psnr_db"], 3),
            "psnr_margin_db": round(pick["matched_psnr_db"] - pick["psnr_db"], 3),
            "traditional_at_lowest_quality": lowest, "rule": rule}


# --- output ---------------------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    lines = ["| codec | variant | setting | bytes/image | PSNR (dB) | SSIM | self-contained bytes/image "
             "| best traditional at >= PSNR | its bytes/image | ratio |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['codec']} | {r['variant']} | {r['setting']} | {_fmt(r['bytes_per_image'])} | "
                     f"{_fmt(r['psnr_db'])} | {_fmt(r['ssim'], 4)} | {_fmt(r.get('self_contained_bytes_per_image'))} | "
                     f"{r.get('matched') or '-'} | {_fmt(r.get('matched_bytes_per_image'))} | {_fmt(r.get('ratio'))} |")
    return "\n".join(lines)


def plot(path: Path, aelab: list[dict], traditional: list[dict], head: dict, n: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8.5, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    styles = {("jpeg", "per-image"): ("#9aa5b1", "s", ":"), ("jpeg", "tiled"): ("#4c78a8", "s", "-"),
              ("webp", "per-image"): ("#f2b179", "^", ":"), ("webp", "tiled"): ("#e45756", "^", "-"),
              ("avif", "per-image"): ("#d8a9cf", "D", ":"), ("avif", "tiled"): ("#a3327f", "D", "-"),
              ("jxl", "per-image"): ("#d9c89a", "v", ":"), ("jxl", "tiled"): ("#8c6d31", "v", "-")}
    for (name, variant), (color, marker, line) in styles.items():
        pts = sorted((r["bytes_per_image"], r["psnr_db"]) for r in traditional
                     if r["codec"] == name and r["variant"] == variant)
        if pts:
            ax.plot(*zip(*pts), marker=marker, linestyle=line, color=color, markersize=3.5, linewidth=1.2,
                    label=f"{NAMES[name]} {variant}")
    for r in traditional:
        if r["codec"] == "png":
            ax.axvline(r["bytes_per_image"], color="#bbbbbb", linewidth=0.8, linestyle="--")
            ax.annotate(f"PNG {r['variant']} (lossless)", (r["bytes_per_image"], 0.98),
                        xycoords=("data", "axes fraction"), rotation=90, fontsize=7, color="#777777", ha="right",
                        va="top")
    greens = ["#2ca02c", "#17becf", "#8c564b", "#9467bd", "#bcbd22", "#7f7f7f", "#d62728", "#1f77b4"]
    series = sorted({(r["model"], r["quantiser"], r["coder"], r["search"]) for r in aelab})
    for i, (model, quantiser, coder, search) in enumerate(series):
        pts = sorted((r["bytes_per_image"], r["psnr_db"], r["bits"]) for r in aelab
                     if (r["model"], r["quantiser"], r["coder"], r["search"]) == (model, quantiser, coder, search))
        color = greens[i % len(greens)]
        name = _quantiser_and_coder(quantiser, coder, search)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=color, markersize=4, linewidth=1.8,
                linestyle="-" if quantiser == "transform" else "--", label=f"aelab {model}, {name}")
        for x, y, b in pts:
            ax.annotate(str(b), (x, y), textcoords="offset points", xytext=(0, 5), fontsize=6.5, color=color,
                        ha="center")
    if head.get("ratio"):
        ax.annotate("", xy=(head["best_traditional_bytes_per_image"], head["best_traditional_psnr_db"]),
                    xytext=(head["aelab_bytes_per_image"], head["aelab_psnr_db"]),
                    arrowprops={"arrowstyle": "->", "color": "#222222", "linewidth": 1.0})
        ax.annotate(f"headline: {head['ratio']:.1f}x fewer bytes than\n{head['best_traditional_codec']} at >= PSNR",
                    (head["aelab_bytes_per_image"], head["aelab_psnr_db"]), textcoords="offset points",
                    xytext=(6, -24), fontsize=8, color="#222222")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per image (log scale)")
    ax.set_ylabel("PSNR (dB), MSE over all pixels")
    ax.set_title(f"Rate-distortion on {n:,} MNIST test digits (numbers beside aelab points: bits)")
    ax.grid(True, which="both", color="#eeeeee", linewidth=0.6)
    ax.legend(fontsize=7.5, loc="upper left")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=130)


# --- main -----------------------------------------------------------------------------------------

def run(argv: Sequence[str] | None = None, say=print) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    out = ensure_dir(args.out)
    test = load_dataset().test.images
    n = min(args.limit or (QUICK_IMAGES if args.quick else len(test)), len(test))
    images = np.ascontiguousarray(test[:n])
    say(f"Rate-distortion on the first {n:,} MNIST test images (28x28)")

    models = choose_models(args, say)
    for m in models:
        say(f"Model {m['label']}: {m['how']} ({m['path']})")
    say("aelab:")
    aelab, facts = [], []
    for m in models:
        rows, f = aelab_rows(m, images, args, say)
        aelab += rows
        facts.append(f)
    say("Traditional codecs (Pillow; JPEG XL: imagecodecs):")
    traditional = traditional_rows(images, {"jpeg": args.jpeg_qualities, "webp": args.webp_qualities,
                                            "avif": args.avif_qualities, "jxl": args.jxl_qualities}, say)
    match(aelab, traditional)
    head = headline(aelab, traditional)
    per_model = {m["label"]: headline([r for r in aelab if r["model"] == m["label"]], traditional) for m in models}

    speed = singles = None
    if head.get("aelab_setting"):
        pick = next(r for r in aelab if _label(r) == head["aelab_setting"])
        model = next(m for m in models if m["label"] == pick["model"])
        singles = single_image(model, images, pick, traditional, args.train_data)
        # always on all 10,000 test images: a subset's per-call overheads would understate the rate
        coder = pick.get("coder", "range")
        if pick.get("search"):
            # the search is slow: timed once on the benchmark's images, in fp32, beside the same setting without it
            speed = measure_speed(model, images, pick["bits"], pick["quantiser"], args.train_data, repeats=1,
                                  coder=coder, search=pick["search"], rate_weight=args.rate_weight,
                                  precisions=("fp32",))
            speed["without search"] = measure_speed(model, test, pick["bits"], pick["quantiser"], args.train_data,
                                                    coder=coder)
        else:
            speed = measure_speed(model, test, pick["bits"], pick["quantiser"], args.train_data, coder=coder)
            # and the simpler coders', at the same setting, for comparison
            for simpler in {"range-ar": ("range",), "range-ctx": ("range-ar", "range")}.get(coder, ()):
                speed[simpler] = measure_speed(model, test, pick["bits"], pick["quantiser"], args.train_data,
                                               coder=simpler)

    rows = sorted(aelab, key=lambda r: (r["model"], r["quantiser"], r["coder"], r["search"], r["bits"])) + traditional
    table = markdown_table(rows)
    paths = {"table": out / "table.md", "json": out / "results.json", "plot": out / "rate_distortion.png"}
    model_lines = "\n".join(
        f"- {f['label']}: {f['kind']}, code size {f['code_size']}, fingerprint {f['fingerprint']} ({f['how']}); "
        f"unquantised codes: PSNR {f['unquantised_psnr_db']:.2f} dB, SSIM {f['unquantised_ssim']:.4f}" for f in facts)
    write_text(paths["table"], f"# Rate-distortion on {n:,} MNIST test images\n\nModels:\n\n{model_lines}\n\n"
                               f"{table}\n\nHeadline ({head['rule']}): {strict_json(head)}\n"
                               + (f"\nOne image per file, headers included, at the headline setting:\n\n"
                                  f"{single_image_table(singles)}\n" if singles else ""))
    result = {"n_images": n, "headline": head, "headline_per_model": per_model, "single_image": singles,
              "speed": speed,
              "models": facts, "rows": rows, "seconds": time.perf_counter() - start,
              "files": {k: str(v) for k, v in paths.items()}}
    write_text(paths["json"], strict_json(result, indent=1) + "\n")
    plot(paths["plot"], aelab, traditional, head, n)

    say("")
    say(table)
    say("")
    if singles:
        say("One image per file, headers included, at the headline setting:")
        say(single_image_table(singles))
        say("")
    for measured in (speed, *((speed or {}).get(k) for k in ("range-ar", "range", "without search"))):
        if not measured:
            continue
        line = (f"Speed ({measured['model']}, {measured['setting']}, {measured['images']:,} images, CPU, "
                f"{measured['torch_threads']} torch threads, tables cached): compress "
                f"{measured['compress_images_per_second']:,.0f} images/s, decompress "
                f"{measured['decompress_images_per_second']:,.0f} images/s (fp32, PSNR {measured['psnr_db']:.3f} dB)")
        if "bf16" not in measured:
            say(line)
            continue
        say(f"{line}; with --precision bf16: {measured['bf16']['compress_images_per_second']:,.0f} and "
            f"{measured['bf16']['decompress_images_per_second']:,.0f} images/s "
            f"({measured['bf16']['bytes_per_image']:.2f} bytes/image against fp32's {measured['bytes_per_image']:.2f}, PSNR "
            f"{measured['bf16']['psnr_db']:.3f} dB; its decoder's pixels at most "
            f"{measured['bf16']['decoder_max_pixel_difference']} grey levels from fp32's; its encoder quantises "
            f"{100 * measured['bf16']['encoder_changed_symbols']:.2f}% of components into another bin)")
    say(f"Headline rule: {head['rule']}.")
    for label, h in per_model.items():
        if h.get("ratio") is not None:
            say(f"  {label}: {_sentence(h)}")
    if head.get("ratio") is not None:
        say(f"Headline: {_sentence(head)}")
    say(f"Wrote {paths['table']}, {paths['json']} and {paths['plot']} ({result['seconds']:.0f} s)")
    return result


def _sentence(h: dict) -> str:
    floor = (" (its lowest quality: it makes no smaller file)" if h.get("traditional_at_lowest_quality") else "")
    return (f"{h['aelab_setting']}: {h['aelab_bytes_per_image']:.2f} bytes/image at {h['aelab_psnr_db']:.2f} dB; the "
            f"best traditional codec at >= that PSNR is {h['best_traditional_codec']} with "
            f"{h['best_traditional_bytes_per_image']:.2f} bytes/image at {h['best_traditional_psnr_db']:.2f} dB"
            f"{floor}: {h['ratio']:.2f}x")


def main(argv: Sequence[str] | None = None) -> int:
    result = run(argv)
    final = {"headline": result["headline"], "n_images": result["n_images"], "single_image": result["single_image"],
             "speed": result["speed"],
             "files": result["files"]}
    print(strict_json(final), flush=True)
    return 0


if __name__ == "__main__":
    from aelab.errors import run_script
    sys.exit(run_script(main, "rate_distortion.py"))
