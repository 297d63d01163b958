"""How many bytes could a better probability model save? A study for the codec's 4x target.

The codec codes each quantised component with its own histogram (learned from
the training codes). Components are decorrelated (the transform's rotation),
but not independent. On the test images, at the headline setting (``--bits``,
default 7, transform quantiser), this measures the ideal code length
(-log2 p, summed; the range coder is within 0.01 B of it) of:

- ``histograms``: what the codec does now;
- ``rdoq``: rate-distortion optimised rounding (each component to whichever
  of its two nearest levels minimises squared error + lambda * bits), with
  its PSNR, since it trades quality for bytes;
- ``mixture``: 64 sets of histograms (k-means on the components, refined
  by hard EM), each image coded with its cheapest set, the set's index
  included;
- ``energy context``: component k's histogram chosen by a bucket (of 8) of
  the mean squared size of components < k;
- ``ar mean``: the range-ar coder's predictor (``aelab.codec.predictor``: a MADE
  with 2 hidden layers, in exact integer arithmetic) at ``--hidden`` units
  predicts each component from the earlier ones; the residual ``symbol -
  prediction`` is coded with per-component histograms (not wrapped around,
  as the coder does, which changes little).

It writes ``study.md`` and ``study.json`` into ``--out``, prints the table and, last, one JSON object with the bytes per image of each
and the headline ratio each would give against the benchmark's best
traditional codec (from ``benchmarks/results/rate_distortion/results.json``).
The codec's ``range-ar`` coder is the last of these with 256 units; the
study's default of 1024 shows what a wider one would give. The others are not
in the codec: see the README's Compression section.

    python benchmarks/entropy_study.py [--bits 7] [--epochs 20] [--hidden 1024]   # about a minute and a half on 2 cores
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "rate_distortion" / "results.json"
OUT = Path(__file__).resolve().parent / "results" / "entropy_study"


def ideal_bytes(log2p: np.ndarray) -> float:
    """Bytes per image from per-symbol log2 probabilities (n, d)."""
    return float(-log2p.sum(axis=1).mean() / 8)


def histogram_logp(symbols: np.ndarray, table) -> np.ndarray:
    p = table.freq / table.freq.sum(axis=1, keepdims=True)
    return np.log2(p[np.arange(symbols.shape[1]), symbols])


def rdoq(codes: np.ndarray, table, lam: float) -> np.ndarray:
    """Symbols rounded to the cheaper of the two nearest levels under squared error + lam * bits."""
    from aelab.codec import api as codec
    y = codec.components(codes, table)
    step, offset = table.step.astype(np.float64), table.offset.astype(np.float64)
    v = np.divide(y - offset, step, out=np.zeros_like(y), where=step > 0)
    lo = np.clip(np.floor(v), 0, table.levels - 1).astype(np.int64)
    hi = np.clip(lo + 1, 0, table.levels - 1)
    bits = -np.log2(table.freq / table.freq.sum(axis=1, keepdims=True) + 1e-300)
    k = np.arange(y.shape[1])[None, :]
    cost = lambda q: (v - q) ** 2 + lam * bits[k, q]  # noqa: E731
    return np.where(cost(lo) <= cost(hi), lo, hi)


def smoothed(counts: np.ndarray, prior: np.ndarray, weight: float) -> np.ndarray:
    p = counts + weight * prior
    return p / p.sum(axis=-1, keepdims=True)


def mixture_logp(train_s, test_s, train_y, table, sets: int = 64, rounds: int = 6) -> np.ndarray:
    """Per-image cheapest of ``sets`` histogram sets, plus the set index's cost (as log2p over d)."""
    from sklearn.cluster import KMeans
    from aelab.codec import api as codec
    d, levels = train_s.shape[1], 1 << table.bits
    prior = table.freq / table.freq.sum(axis=1, keepdims=True)
    assign = KMeans(sets, n_init=2, random_state=0).fit_predict(train_y[:, :8])

    def tables_for(assign):
        return np.stack([np.log2(np.maximum(smoothed(codec._histograms(train_s[assign == c], levels), prior, 30.0),
                                            1e-300)) for c in range(sets)])

    for _ in range(rounds):
        logp = tables_for(assign)
        index = np.log2((np.bincount(assign, minlength=sets) + 1.0) / (len(assign) + sets))
        assign = np.argmax(logp[:, np.arange(d), train_s].sum(axis=2) + index[:, None], axis=0)
    logp = tables_for(assign)
    index = np.log2((np.bincount(assign, minlength=sets) + 1.0) / (len(assign) + sets))
    per_set = logp[:, np.arange(d), test_s].sum(axis=2) + index[:, None]  # (sets, n)
    best = per_set.max(axis=0)
    return np.repeat(best[:, None] / d, d, axis=1)


def energy_context_logp(train_q, test_q, train_s, test_s, table, buckets: int = 8) -> np.ndarray:
    d, levels = train_s.shape[1], 1 << table.bits
    prior = table.freq / table.freq.sum(axis=1, keepdims=True)
    scale = train_q.std(axis=0) + 1e-9

    def energy(q):
        e = np.cumsum((q / scale) ** 2, axis=1)
        return np.concatenate([np.zeros((len(q), 1)), e[:, :-1]], axis=1) / np.maximum(np.arange(d), 1)

    e_train, e_test = energy(train_q), energy(test_q)
    out = np.empty(test_s.shape)
    for k in range(d):
        edges = np.quantile(e_train[:, k], np.linspace(0, 1, buckets + 1)[1:-1]) if k else np.array([])
        b_train, b_test = np.searchsorted(edges, e_train[:, k]), np.searchsorted(edges, e_test[:, k])
        for b in np.unique(b_test):
            counts = np.bincount(train_s[b_train == b, k], minlength=levels).astype(np.float64)
            p = smoothed(counts, prior[k], 30.0)
            out[b_test == b, k] = np.log2(p[test_s[b_test == b, k]])
    return out


def ar_mean_logp(train_q, test_q, hidden: int, epochs: int, seed: int = 0) -> np.ndarray:
    """The range-ar coder's predictor (``aelab.codec.predictor``, exact integers) at width ``hidden``;
    residual histograms per component."""
    from aelab.codec.predictor import fit_predictor
    predictor = fit_predictor(train_q, hidden=hidden, epochs=epochs, seed=seed)
    pred_train, pred_test = predictor.predict(train_q), predictor.predict(test_q)
    out = np.empty(test_q.shape)
    for k in range(train_q.shape[1]):
        r_train, r_test = train_q[:, k] - pred_train[:, k], test_q[:, k] - pred_test[:, k]
        lo, hi = min(r_train.min(), r_test.min()), max(r_train.max(), r_test.max())
        counts = np.bincount(r_train - lo, minlength=hi - lo + 1).astype(np.float64) + 0.05
        out[:, k] = np.log2(counts[r_test - lo] / counts.sum())
    return out


def main(argv: list[str] | None = None) -> int:
    from aelab.codec import api as codec
    from aelab.models.checkpoint import load_checkpoint
    from aelab.data import load_dataset
    from aelab.models.inference import decode, encode
    from aelab.evaluation.metrics import psnr_db

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="mnist-conv", help="model (default: mnist-conv)")
    parser.add_argument("--bits", type=int, default=7, help="bit depth (default: 7, the headline's)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the AR predictor (default: 20)")
    parser.add_argument("--hidden", type=int, default=1024, help="its hidden width (default: 1024)")
    parser.add_argument("--out", default=str(OUT), help=f"output folder (default: {OUT})")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    from aelab.models.checkpoint import resolve_checkpoint
    ckpt = load_checkpoint(resolve_checkpoint(args.checkpoint))
    data = load_dataset()
    train_codes, test_codes = encode(ckpt.model, data.train.images), encode(ckpt.model, data.test.images)
    table = codec.codec_table(ckpt, args.bits, "transform")
    train_s, test_s = codec.quantise(train_codes, table), codec.quantise(test_codes, table)
    zero = table.zero_symbols()
    train_q, test_q = train_s - zero, test_s - zero  # signed: 0 is the component's mean
    pixels = data.test.images.astype(np.float64) / 255.0

    def psnr(symbols):
        return psnr_db(float(((decode(ckpt.model, codec.dequantise(symbols, table)) - pixels) ** 2).mean()))

    rows = [("histograms (the codec now)", ideal_bytes(histogram_logp(test_s, table)), psnr(test_s))]
    for lam in (0.1, 0.3):
        s = rdoq(test_codes, table, lam)
        rows.append((f"rdoq, lambda {lam}", ideal_bytes(histogram_logp(s, table)), psnr(s)))
    same = rows[0][2]
    rows.append(("mixture of 64 histogram sets", ideal_bytes(
        mixture_logp(train_s, test_s, codec.components(train_codes, table), table)), same))
    rows.append(("energy context, 8 buckets", ideal_bytes(
        energy_context_logp(train_q, test_q, train_s, test_s, table)), same))
    rows.append((f"ar mean, MADE {args.hidden}x2, {args.epochs} epochs", ideal_bytes(
        ar_mean_logp(train_q, test_q, args.hidden, args.epochs)), same))

    head = json.loads(RESULTS.read_text())["headline"] if RESULTS.is_file() else None
    base = rows[0][1]
    lines = [f"{ckpt.path.name}: transform quantiser, {args.bits} bits, 10,000 test images; ideal code lengths "
             "(-log2 p; the range coder is within 0.01 B of them)", "",
             "| probability model | B/image | saved | PSNR (dB) | ratio |", "|---|---:|---:|---:|---:|"]
    result = []
    for name, size, quality in rows:
        ratio = head["best_traditional_bytes_per_image"] / size if head else None
        lines.append(f"| {name} | {size:.3f} | {100 * (1 - size / base):.1f}% | {quality:.3f} | "
                     f"{'-' if ratio is None else f'{ratio:.2f}x'} |")
        result.append({"model": name, "bytes_per_image": size, "saved": 1 - size / base, "psnr_db": quality,
                       "ratio_vs_headline_codec": ratio})
    if head:
        lines += ["", f"ratio: {head['best_traditional_codec']}'s {head['best_traditional_bytes_per_image']} B/image "
                      f"(the rate-distortion headline's codec, {head['best_traditional_psnr_db']} dB) over each row's; "
                      "it holds while a row's PSNR stays at or below that codec's."]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"checkpoint": ckpt.path.name, "bits": args.bits, "epochs": args.epochs, "hidden": args.hidden,
               "rows": result, "seconds": time.perf_counter() - start}
    (out / "study.md").write_text("\n".join(lines) + "\n")
    (out / "study.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(lines))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    from aelab.errors import run_script
    sys.exit(run_script(main, "entropy_study.py"))
