"""The ``aelab`` commands that take a model out into other tools: ``score`` (anomaly scores) and
``export`` (ONNX, torch.export). Parsing and printing only, as in :mod:`aelab.cli`, which adds them."""
from __future__ import annotations

import argparse

from .cli_choices import EXPORT_FORMATS
from .cli_options import _add_checkpoint, _add_device, _add_input, _api, _unit_fraction


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


def add_score(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("score", help="anomaly scores: each sample's reconstruction error (.csv or .npy)",
                       description="Score each image or table row by its reconstruction error (the mean squared "
                                   "error per value, in the model's units: pixels / 255 or the table's scaled "
                                   "features; higher = more anomalous). Writes index, file (for image files: a "
                                   "folder's relative to it), label (when known, by its class folder's name in "
                                   ".csv), score and, with --contamination, --threshold or --fpr, flag "
                                   "(1 = anomalous).")
    _add_checkpoint(p)
    _add_input(p, "samples")
    cut = p.add_mutually_exclusive_group()
    cut.add_argument("--contamination", type=_fraction, metavar="F",
                     help="flag the share F (0 < F <= 0.5) of samples with the highest scores")
    cut.add_argument("--threshold", type=_finite, metavar="T", help="flag the samples scoring above T")
    cut.add_argument("--fpr", type=_unit_fraction, metavar="F",
                     help="flag at the false-positive rate F (0 < F < 1) on held-out normal data: the scores "
                          "of the training run's validation split, kept in the checkpoint")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="FILE.csv (a header, one row per sample) or FILE.npy (a structured array with fields "
                        "index, file, label, score, flag; class names in FILE.classes.json)")
    return p


def cmd_score(args) -> int:
    api = _api()
    ckpt = api.load_model(args.checkpoint, args.device)
    samples = api.read_input(args.input, args.data, args.limit, ckpt, **api.data_options(vars(args)))
    result = api.anomaly_scores(ckpt, samples.images, samples.labels, contamination=args.contamination,
                                threshold=args.threshold, fpr=args.fpr, output=args.output, names=samples.names,
                                class_names=samples.class_names)
    flagged = "" if result["flags"] is None else \
        f"; {result['flagged']} flagged above {result['threshold']:.6g}"
    count = len(result["scores"])
    print(f"Wrote {count} score{'' if count == 1 else 's'} to {args.output}{flagged}")
    return 0


def add_export(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="the encoder and decoder as ONNX files or torch.export programs",
                       description="Write OUT/encoder.onnx and OUT/decoder.onnx (or .pt2 torch.export programs) "
                                   "and OUT/export.json, batch dimension dynamic. The encoder takes uint8 pixels "
                                   "(batch, C, H, W), channels first, or a table model's float32 rows (batch, d), "
                                   "scaled with the scaler in export.json; it returns float32 codes. The decoder "
                                   "returns float32 images (batch, C, H, W) in [0, 1], or scaled rows (batch, d). "
                                   "ONNX needs pip install 'aelab[export]'.")
    _add_checkpoint(p)
    _add_device(p)
    p.add_argument("--format", choices=EXPORT_FORMATS, default="onnx",
                   help="onnx (two .onnx files, opset 17) or pt2 (torch.export programs) (default: onnx)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="folder for the two files and export.json")
    return p


def cmd_export(args) -> int:
    api = _api()
    ckpt = api.load_model(args.checkpoint, args.device)
    paths = api.export_model(ckpt, args.format, args.output)
    print(f"Wrote {', '.join(p.name for p in paths)} to {args.output}")
    return 0
