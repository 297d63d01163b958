"""The ``aelab`` codec commands, ``compress``, ``decompress`` and ``codec fit`` (which stores a checkpoint's
tables): parsing and printing only, as in :mod:`aelab.cli`, which adds them."""
from __future__ import annotations

import argparse
import sys

from .cli_choices import CODERS, DEFAULT_BITS, DEFAULT_QUANTISER, DEFAULT_RATE_WEIGHT, MAX_BITS, MIN_BITS, QUANTISERS
from .cli_choices import CODEC_FIT_BITS, PREDICTIVE_CODERS, coder_help
from .cli_options import _add_checkpoint, _add_image_reading, _api, _non_negative_float, _non_negative_int


def add_compress(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compress", help="images to one .aez file of quantised, entropy-coded codes",
                       description="Encode images with a trained model, quantise the codes (--bits) and entropy code "
                                   "them into one .aez file (format: docs/format.md). `aelab decompress` reverses it "
                                   "with the same model.")
    p.add_argument("input", help="images: an IDX, CTF or .npz file, a picture, or a folder of them")
    _add_checkpoint(p)
    _add_image_reading(p.add_argument_group("reading INPUT's image files (default: as the model's training "
                                            "images were read)"))
    p.add_argument("-o", "--output", required=True, metavar="FILE.aez", help="the compressed file to write")
    p.add_argument("--bits", type=int, default=DEFAULT_BITS, metavar="N",
                   help=f"quantiser bit depth, {MIN_BITS} to {MAX_BITS}: at most 2**N levels per component "
                        "(default: %(default)s)")
    p.add_argument("--quantiser", choices=tuple(QUANTISERS), default=DEFAULT_QUANTISER,
                   help="transform: decorrelated components weighted by the decoder's sensitivity, one step for all "
                        "(default; fewer bytes at equal PSNR); uniform: each code number on its own [min, max]")
    p.add_argument("--table", choices=("checkpoint", "embedded"), default="checkpoint",
                   help="where the probability model lives: the checkpoint's, fitted to its training codes and "
                        "stored in it as codec.safetensors (default), or this set's own, stored in the file")
    p.add_argument("--coder", choices=tuple(CODERS), default=None, help=coder_help())
    p.add_argument("--data", metavar="PATH", default=None,
                   help="the model's training data, to learn a probability table the checkpoint does not store "
                        "(`aelab codec fit` stores it; default: the bundled MNIST, if the model was trained on it)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="the encoder's arithmetic: fp32 (default) or bf16, faster for convolutional models on CPUs "
                        "with bfloat16 units (AMX, AVX512-BF16); a few code numbers land in a neighbouring "
                        "quantiser bin, the PSNR stays the same")
    p.add_argument("--search", type=_non_negative_int, default=0, metavar="STEPS",
                   help="search each image's symbols through the decoder for STEPS steps (e.g. 100): higher PSNR "
                        "for the bytes, and any aelab decodes the file, but compressing is far slower (default: 0, "
                        "no search)")
    p.add_argument("--rate-weight", type=_non_negative_float, default=DEFAULT_RATE_WEIGHT, metavar="W",
                   help="what the search trades a bit for, in squared error (pixels in 0..1, summed per image): "
                        "higher: fewer bytes, a lower PSNR (default: %(default)s)")
    return p


def add_decompress(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("decompress", help="an .aez file back to images (PNG folder, IDX or .npz)",
                       description="Decode an .aez file written by `aelab compress`, with the same model.")
    p.add_argument("input", metavar="FILE.aez", help="the compressed file")
    _add_checkpoint(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="FILE.npz (array 'images'); an IDX file, a name ending in -idx3-ubyte, .idx3-ubyte or .idx "
                        "(add .gz to gzip it); anything else is a new or empty folder for PNGs")
    p.add_argument("--data", metavar="PATH", default=None,
                   help="the model's training data, for a probability table the checkpoint does not store")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="the decoder's arithmetic: fp32 (default) or bf16, faster for convolutional models on CPUs "
                        "with bfloat16 units; pixels a few grey levels at most from fp32's; either decodes a "
                        "file compressed with either")
    return p


def add_codec(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("codec", help="the codec's probability tables in a checkpoint",
                       description="Manage the probability tables a checkpoint stores for `aelab compress`.")
    csub = p.add_subparsers(dest="codec_command", required=True, metavar="COMMAND")
    q = csub.add_parser("fit", help="fit the codec's tables to the training data and store them in the checkpoint",
                        description="Fit the codec's probability tables to the codes of the model's training images "
                                    "and store them in the checkpoint (codec.safetensors): for a checkpoint saved "
                                    "without them, or for tables training does not store (more bits, the range-ar "
                                    "and range-ctx coders). Tables it already holds stay as they are unless --again.")
    _add_checkpoint(q)
    q.add_argument("--data", metavar="PATH", default=None,
                   help="the model's training data (default: the bundled MNIST, if the model was trained on it)")
    q.add_argument("--bits", type=int, nargs="+", default=list(CODEC_FIT_BITS), metavar="N",
                   help="bit depths to fit (default: %(default)s)")
    q.add_argument("--quantiser", choices=tuple(QUANTISERS), nargs="+", default=list(QUANTISERS),
                   help="quantisers to fit (default: both)")
    q.add_argument("--coder", choices=PREDICTIVE_CODERS, nargs="+", default=[],
                   help="also fit these coders' tables at every --bits (slow: each learns a predictor)")
    q.add_argument("--again", action="store_true",
                   help="fit every table again (files made with the old ones may no longer decode)")
    return p


def _notice(line: str | None) -> None:
    if line:
        print(line, file=sys.stderr, flush=True)


def cmd_compress(args) -> int:
    result = _api().compress(args.input, args.checkpoint, args.output, args.bits, quantiser=args.quantiser,
                          table=args.table, coder=args.coder, data=args.data, precision=args.precision,
                          search=args.search, rate_weight=args.rate_weight, log=_notice,
                          **_api().data_options(vars(args)))
    print(f"Compressed {result['count']} image{'' if result['count'] == 1 else 's'} into {result['bytes']:,} bytes ({result['bytes_per_image']:.2f} "
          f"bytes/image; {result['quantiser']} quantiser, {result['bits']} bits, {result['coder']} coder, "
          f"{result['table']} table): {result['path']}")
    return 0


def cmd_decompress(args) -> int:
    result = _api().decompress(args.input, args.checkpoint, args.output, data=args.data, precision=args.precision,
                            log=_notice)
    what = {"png": "a folder of PNGs", "npz": "a .npz file", "idx": "an IDX file",
            "idx.gz": "a gzipped IDX file"}[result["format"]]
    print(f"Decompressed {result['count']} image{'' if result['count'] == 1 else 's'} to {what}: {result['path']}")
    return 0


def cmd_codec(args) -> int:
    coders = set(args.coder)
    path = _api().save_tables(args.checkpoint, args.bits, args.quantiser, data=args.data,
                              predictive="range-ar" in coders, spread="range-ctx" in coders, keep=not args.again,
                              log=_notice)
    print(f"Stored the codec's tables in {path}")
    return 0
