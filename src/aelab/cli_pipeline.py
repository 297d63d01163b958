"""The ``aelab`` commands that take a model out into other tools: ``score`` (anomaly scores) and
``export`` (ONNX, torch.export). Parsing and printing only, as in :mod:`aelab.cli`, which adds them."""
from __future__ import annotations

import argparse
from typing import Callable

from . import api


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 0.5], got {text!r}") from None
    if not 0 < value <= 0.5:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 0.5], got {text}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    return value


def add_commands(sub, add_checkpoint: Callable, add_data: Callable, add_device: Callable,
                 add_limit: Callable) -> None:
    """Add ``score`` and ``export`` to the subcommands ``sub``, with the CLI's shared option helpers."""
    p = sub.add_parser("score", help="anomaly scores: each sample's reconstruction error (.csv or .npy)",
                       description="Score each image or table row by its reconstruction error (the mean squared "
                                   "error per value, in the model's units: pixels / 255 or the table's scaled "
                                   "features; higher = more anomalous). Writes index, label (when known), score "
                                   "and, with --contamination or --threshold, flag (1 = anomalous).")
    add_checkpoint(p)
    p.add_argument("input", nargs="?", default=None,
                   help="images (IDX, CTF, .npz, PNG or a folder) or a table (.npy, .csv, .tsv, .parquet) for a "
                        "table model (default: the test split of --data)")
    add_data(p)
    add_device(p)
    add_limit(p, "samples")
    cut = p.add_mutually_exclusive_group()
    cut.add_argument("--contamination", type=_fraction, metavar="F",
                     help="flag the share F (0 < F <= 0.5) of samples with the highest scores")
    cut.add_argument("--threshold", type=_finite, metavar="T", help="flag the samples scoring above T")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="FILE.csv (a header, one row per sample) or FILE.npy (a structured array with fields "
                        "index, label, score, flag)")


def cmd_score(args, data_options: dict) -> int:
    ckpt = api.load_model(args.checkpoint, args.device)
    images, labels = api.input_images(args.input, args.data, args.limit, ckpt, **data_options)
    result = api.anomaly_scores(ckpt, images, labels, contamination=args.contamination,
                                threshold=args.threshold, output=args.output)
    flagged = "" if result["flags"] is None else \
        f"; {result['flagged']} flagged above {result['threshold']:.6g}"
    print(f"Wrote {len(result['scores'])} scores to {args.output}{flagged}")
    return 0
