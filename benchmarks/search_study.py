"""Where the encoder's search (``aelab compress --search``) pays, and what else was tried, on one grid.

For mnist-codec (or ``--checkpoint``) on the first ``--limit`` MNIST test
images, with the transform quantiser, it measures bytes per image (whole
``.aez`` files, with the range coder and with range-ctx where the model's table
is there) and PSNR for:

- the plain quantisation at 6 and 7 bits (what ``aelab compress`` does without
  ``--search``);
- at 6 bits, decoding each symbol to the mean of the training components that
  fall in its bin instead of the bin's centre (a decoder-side change; it would
  need a new table in the format, so it is measured here only);
- at 6 bits, the search for ``--steps`` steps (each at ``--weights``'s first
  weight) and with each of ``--weights`` (at ``--weight-steps``).

It writes ``study.md`` and ``study.json`` into ``--out`` and prints, last, one
JSON object with the rows.

    python benchmarks/search_study.py        # about 10 minutes on 2 CPU cores
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "search_study"


def _list(kind: type) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
        if not values or any(v < 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected numbers >= 0, got {text!r}")
        return values
    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="mnist-codec", help="the model (default: the shipped mnist-codec)")
    p.add_argument("--limit", type=int, default=1000, metavar="N", help="the first N test images (default 1000)")
    p.add_argument("--bits", type=int, default=6, help="the searched bit depth (default 6)")
    p.add_argument("--steps", type=_list(int), default=(25, 50, 100, 200), metavar="LIST",
                   help="search steps, each at the first weight (default: 25,50,100,200)")
    p.add_argument("--weights", type=_list(float), default=(0.02, 0.0, 0.01, 0.03, 0.1), metavar="LIST",
                   help="rate weights, the others each at --weight-steps (default: 0.02,0,0.01,0.03,0.1)")
    p.add_argument("--weight-steps", type=int, default=100, metavar="N",
                   help="search steps of the weights after the first (default 100)")
    p.add_argument("--out", default=str(OUT), help=f"folder for study.md and study.json (default {OUT})")
    args = p.parse_args(argv)
    if args.limit < 1 or args.weight_steps < 0:
        p.error("--limit must be at least 1 and --weight-steps at least 0")
    return args


def psnr(decoded: np.ndarray, images: np.ndarray) -> float:
    from aelab.evaluation.metrics import psnr_db
    return psnr_db(float(((decoded.astype(np.float64) - images) ** 2).mean()) / 255.0 ** 2)


def centroid_codes(ckpt: Any, table: Any, symbols: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Codes for ``symbols`` with each component at the mean of the training components in its bin
    (the bin's centre where fewer than 20 fall in it)."""
    from aelab.codec import api as codec
    from aelab.models.inference import encode
    codes = encode(ckpt.model, train)
    y, s = codec.components(codes, table), codec.quantise(codes, table)
    levels = table.max_levels
    centre = table.offset[:, None].astype(np.float64) + np.arange(levels)[None, :] * table.step[:, None]
    for k in range(table.code_size):
        count = np.bincount(s[:, k], minlength=levels)
        total = np.bincount(s[:, k], y[:, k], minlength=levels)
        centre[k, count >= 20] = total[count >= 20] / count[count >= 20]
    components = centre[np.arange(table.code_size)[None, :], symbols]
    return (components @ table.inverse + table.mean).astype(np.float32)


def run(argv: Sequence[str] | None = None, say: Callable = print) -> dict:
    from aelab.codec import api as codec
    from aelab.data import load_dataset
    from aelab.models.checkpoint import load_checkpoint, pretrained_path
    import torch
    from aelab.codec.format import HEADER
    from aelab.codec.search import search_symbols
    from aelab.models.inference import decode_to_pixels, encode
    args = parse_args(argv)
    path = Path(args.checkpoint)
    ckpt = load_checkpoint(path if path.exists() else pretrained_path(args.checkpoint))
    data = load_dataset(None)
    images = np.ascontiguousarray(data.test.images[:args.limit])
    n = len(images)
    ctx = [c for c in ("range", "range-ctx")
           if c == "range" or codec.has_cached_table(ckpt, args.bits, "transform", coder=c)]
    say(f"{ckpt.path}: {n:,} test images, transform quantiser, coders {', '.join(ctx)}")
    rows = []

    rows_in = torch.from_numpy(images.reshape(n, -1).copy())
    codes = encode(ckpt.model, images)

    def add(name: str, bits: int, search: int = 0, weight: float | None = None) -> None:
        """One setting: its symbols found once, then coded by each coder as ``aelab compress`` codes them."""
        table = codec.codec_table(ckpt, bits, "transform")
        start = time.perf_counter()
        symbols = (search_symbols(ckpt.model, rows_in, codes, table, steps=search, rate_weight=weight or 0.0)
                   if search else codec.quantise(codes, table))
        row: dict = {"setting": name, "bits": bits, "search": search, "rate_weight": weight,
                     "search_seconds": time.perf_counter() - start,
                     "psnr_db": psnr(decode_to_pixels(ckpt.model, codec.dequantise(symbols, table)), images)}
        for coder in ctx:
            payload = codec.CODERS[coder].encode(symbols, codec.codec_table(ckpt, bits, "transform", coder=coder))
            row[f"{coder}_bytes_per_image"] = (HEADER.size + len(payload)) / n  # a whole .aez file's bytes
        rows.append(row)
        say(f"  {name:34s} {row['psnr_db']:.3f} dB  " + "  ".join(
            f"{c} {row[f'{c}_bytes_per_image']:.2f} B" for c in ctx) + f"  ({row['search_seconds']:.0f} s)")

    for bits in sorted({args.bits, args.bits + 1}):
        add(f"plain, {bits} bits", bits)
    table = codec.codec_table(ckpt, args.bits, "transform")
    symbols = codec.quantise(codes, table)
    cent = psnr(decode_to_pixels(ckpt.model, centroid_codes(ckpt, table, symbols, data.train.images)), images)
    plain = rows[0]
    rows.append({**{k: v for k, v in plain.items() if "bytes" in k}, "setting": f"bin centroids, {args.bits} bits",
                 "bits": args.bits, "search": 0, "rate_weight": None, "psnr_db": cent})
    say(f"  {rows[-1]['setting']:34s} {cent:.3f} dB  (the same bytes as plain)")
    first = args.weights[0]
    for steps in args.steps:
        add(f"search {steps}, weight {first:g}, {args.bits} bits", args.bits, steps, first)
    for weight in args.weights[1:]:
        add(f"search {args.weight_steps}, weight {weight:g}, {args.bits} bits", args.bits, args.weight_steps, weight)
    result = {"checkpoint": str(ckpt.path), "images": n, "coders": ctx, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "study.md").write_text(markdown(result))
    say(markdown(result))
    return result


def markdown(result: dict) -> str:
    coders = result["coders"]
    lines = [f"# The encoder's search ({result['images']:,} MNIST test images, {Path(result['checkpoint']).name})",
             "", "| setting | PSNR (dB) | " + " | ".join(f"{c} bytes/image" for c in coders) + " | search seconds |",
             "|---|---:|" + "---:|" * len(coders) + "---:|"]
    for r in result["rows"]:
        seconds = r.get("search_seconds")
        lines.append(f"| {r['setting']} | {r['psnr_db']:.3f} | "
                     + " | ".join(f"{r[f'{c}_bytes_per_image']:.2f}" for c in coders)
                     + f" | {'-' if seconds is None else f'{seconds:.1f}'} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    result = run(argv)
    print(json.dumps(result["rows"]))
    return 0


if __name__ == "__main__":
    from aelab.errors import run_script
    sys.exit(run_script(main, "search_study.py"))
