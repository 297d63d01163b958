"""A Markdown report of a tutorial run: numbers next to the tutorial's, and the pictures."""
from __future__ import annotations

import html
from pathlib import Path

from ..fileio import write_text

# what the CNTK 105 tutorial printed in fast mode (5 sweeps)
TUTORIAL_FAST = {"simple": {"train_error_pct": 11.33, "test_error_pct": 3.12},
                 "deep": {"train_error_pct": 10.90, "test_error_pct": 3.37}}


def _stats_line(stats: dict) -> str:
    return "Max {max:.2f}, Median {median:.2f}, Mean {mean:.2f}, Min {min:.2f}".format(**stats)


def render_report(summary: dict) -> str:
    d = summary["data"]
    lines = ["# aelab tutorial report", "",
             f"Data: **{html.escape(d['name'], quote=False)}**, {d['train']} training and {d['test']} test images "
             f"(sha256 `{d['sha256'][:16]}…`). Device: {summary['device']}. Mode: {summary['mode']}. "
             f"Total time: {summary['total_seconds']:.1f} s.", "",
             "## Results", "",
             "| model | sweeps | avg. training error | avg. test error | tutorial (train / test) "
             "| test BCE/pixel | test MSE | test PSNR | parameters | samples/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, m in summary["models"].items():
        ref = TUTORIAL_FAST.get(name) if summary["mode"] == "fast" else None
        ref_text = f"{ref['train_error_pct']:.2f}% / {ref['test_error_pct']:.2f}%" if ref else "–"
        lines.append(f"| {name} | {m['sweeps']:g} | {m['train_error_pct']:.2f}% | {m['test_error_pct']:.2f}% | "
                     f"{ref_text} | {m['test_bce']:.4f} | {m['test_mse']:.4f} | {m['test_psnr_db']:.2f} dB | "
                     f"{m['parameters']:,} | {m['samples_per_second']:,.0f} |")
    lines += ["", "The error is CNTK's `classification_error(output, target)` as the tutorial used it: per image, "
              "1 minus the original's brightness (0..1) at the brightest decoded pixel.", ""]
    if any(m["progress"] for m in summary["models"].values()):
        lines += ["![training progress](training.png)", ""]
    for name, m in summary["models"].items():
        files = m["files"]
        lines += [f"## The {name} autoencoder", "",
                  f"Test image {m['image_stats']['index']}:", "",
                  f"- original: {_stats_line(m['image_stats']['original'])}",
                  f"- decoded: {_stats_line(m['image_stats']['decoded'])}", "",
                  f"![original and decoded]({files['pair']})", "",
                  f"![first ten test images and their decodings]({files['grid']})", "",
                  f"Code of test image {m['code']['index']} ({len(m['code']['values'])} numbers):", "",
                  "```", " ".join(f"{v:.3f}" for v in m["code"]["values"]), "```", ""]
        if m["similarities"]:
            lines += ["| pair | test images | cosine similarity: originals | decoded | codes |",
                      "| --- | --- | ---: | ---: | ---: |"]
            for s in m["similarities"]:
                lines.append(f"| {s['title']} | {s['index_a']}, {s['index_b']} | {s['cos_original']:.3f} | "
                             f"{s['cos_decoded']:.3f} | {s['cos_code']:.3f} |")
            lines += ["", f"![cosine similarities]({files['similarity']})", ""]
        if files.get("tsne"):
            lines += [f"![t-SNE map of the codes]({files['tsne']})", ""]
        lines += [f"Checkpoint: `{files['checkpoint']}/` (use it with `aelab evaluate --checkpoint`).", ""]
    return "\n".join(lines)


def write_report(out: Path, summary: dict) -> Path:
    return write_text(Path(out) / "report.md", render_report(summary))
