"""A report people open in a browser: one self-contained HTML page per run, nothing fetched.

A page holds, for each model: its scores, its training curve, the first test
images over their decodings, the tutorial's similarity figure where the data
has its digits, and an interactive map of the codes (t-SNE): hover a point
for its image and label, scroll to zoom, drag to pan, click a class in the
legend to hide it. Figures are inline PNGs, the map's script is inline, so the
page works offline and can be mailed as one file.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import numbers
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.dataset_types import Dataset
from ..errors import OptionError
from ..fileio import write_text
from ..models.checkpoint import METRICS_FILE, Checkpoint, taking_paths
from ..models.inference import encode, reconstruct
from . import plots
from .baseline import pca_scores
from .evaluate import evaluate
from .similarity import similarity_rows

MAP_LIMIT = 1000   # test samples on the map by default
GRID_COLUMNS = 10  # images in the originals-over-decodings grid


@dataclass(frozen=True)
class ValidationCurves:
    """A run with a validation split: its training and validation losses on one scale, against samples seen.

    ``training`` is the training loss per value (``training_label`` says which loss), ``validation`` the
    validation split's MSE per value; ``kept_at`` the samples seen at the measurement whose weights were
    kept (None: not recorded), ``kept_step`` its step (0: before the first step).
    """
    training: tuple[Sequence[int], Sequence[float]]
    validation: tuple[Sequence[int], Sequence[float]]
    training_label: str = "training MSE per value"
    kept_step: int | None = None
    kept_at: int | None = None


def metrics_curves(path: str | Path, config: Any, training: dict | None = None
                   ) -> tuple[list[int], list[float]] | ValidationCurves | None:
    """The training curve in a run's ``metrics.csv`` at ``path``: the training loss per sample against samples
    seen; where the file has validation lines, both losses per value (:class:`ValidationCurves`) and where the
    kept weights were measured. ``config`` is the model's config, ``training`` the checkpoint's record of its
    training (its ``validation_split``). None when there is no file or it cannot be read (the report goes
    without)."""
    validation_split = (training or {}).get("validation_split")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        train_rows = [r for r in rows if r["loss"]]  # validation lines have no training loss
        val_rows = [r for r in rows if r.get("val_loss")]
        samples = [int(r["samples_seen"]) for r in train_rows]
        if not val_rows:
            return samples, [float(r["loss"]) for r in train_rows]
        return _validation_curves(config, validation_split or {}, samples, train_rows, val_rows)
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _validation_curves(config: Any, split: dict, samples: list[int], train_rows: list[dict],
                       val_rows: list[dict]) -> ValidationCurves:
    if config.loss == "mse":  # the metric column is the MSE per value, as the validation loss is
        training = [float(r["metric"]) for r in train_rows]
    else:  # the loss column is summed over a sample's values
        training = [float(r["loss"]) / config.input_dim for r in train_rows]
    kept_step = split.get("best_step")
    kept_step = int(kept_step) if isinstance(kept_step, (int, float)) and kept_step >= 0 else None
    kept_at = next((int(r["samples_seen"]) for r in val_rows if kept_step is not None
                    and int(r["step"]) == kept_step), None)
    return ValidationCurves(training=(samples, training),
                            validation=([int(r["samples_seen"]) for r in val_rows],
                                        [float(r["val_loss"]) for r in val_rows]),
                            training_label=f"training {config.loss.upper()} per value",
                            kept_step=kept_step, kept_at=kept_at)


@taking_paths
def report_model(checkpoint: Checkpoint, data: Dataset, output: str | Path | None = None, *,
                 limit: int = MAP_LIMIT, seed: int = 0) -> str:
    """A self-contained HTML report of a model (scores, training curve from its ``metrics.csv``, images and
    decodings, similarities, an interactive map of the codes); written to ``output`` when given."""
    section = model_section(checkpoint.path.name, checkpoint.model, data, curve=_metrics_curve(checkpoint),
                            limit=_map_limit(limit), seed=seed)
    page = report_page(f"aelab report: {checkpoint.path.name}", [section],
                       f"{checkpoint.model_config.kind} model, code size {checkpoint.model_config.code_size}; "
                       f"test split of {data.name}")
    if output is not None:
        write_text(output, page)
    return page


def _metrics_curve(checkpoint: Checkpoint) -> tuple[list[int], list[float]] | ValidationCurves | None:
    return metrics_curves(checkpoint.path / METRICS_FILE, checkpoint.model_config, checkpoint.info.get("training"))


def model_section(name: str, model: torch.nn.Module, data: Dataset, *,
                  curve: tuple[Sequence[int], Sequence[float]] | ValidationCurves | None = None,
                  scores: dict | None = None,
                  limit: int = MAP_LIMIT, seed: int = 0, points: np.ndarray | None = None,
                  figures: dict[str, bytes] | None = None) -> str:
    """The HTML of one model's part of a report (see the module's docstring).

    ``curve`` is the training loss against samples seen, or with a validation split both losses
    (:class:`ValidationCurves`); ``scores`` the test
    scores (computed when not given, with those of a PCA of the model's code size fitted on
    the training split beside them); ``limit`` caps the map's points, and
    ``points`` is a t-SNE embedding of the first test samples' codes made
    already (the tutorial's), else one is made here. ``figures`` holds PNGs
    drawn already of the same images (the tutorial's ``grid`` and
    ``similarity``), shown instead of drawing them again.
    """
    figures = figures or {}
    test = data.test
    if scores is None:
        scores = evaluate(model, test.images)
        scores["pca"] = pca_scores(model.config, data.train.images, test.images)
    parts = [f'<section class="model"><h2>{html.escape(name)}</h2>', _scores_table(scores)]
    if isinstance(curve, ValidationCurves):
        if any(x > 0 for x in curve.training[0]):  # a log axis holds no point before the first sample
            parts.append(_figure(_validation_caption(curve), _validation_png(curve)))
    elif curve:
        parts.append(_figure("Training curve", _curve_png(name, *curve)))
    if data.kind == "images":
        n = min(GRID_COLUMNS, test.n)
        grid = figures.get("grid") or _png(plots.save_reconstruction_grid, test.images[:n],
                                           reconstruct(model, test.images[:n]),
                                           labels=test.labels[:n] if test.labels is not None else None,
                                           class_names=data.class_names)
        parts.append(_figure("First test images (top) and their decodings (bottom)", grid))
        rows = [] if "similarity" in figures else similarity_rows(model, test.images, test.labels)
        if rows or "similarity" in figures:
            parts.append(_figure("Cosine similarities of images, decodings and codes",
                                 figures.get("similarity") or _png(plots.save_similarity_figure, rows)))
    parts.append(_code_map(name, model, data, limit, seed, points))
    parts.append("</section>")
    return "\n".join(parts)


def report_page(title: str, sections: Sequence[str], subtitle: str = "") -> str:
    """A whole page around ``sections`` (from :func:`model_section`), with its style and script."""
    return PAGE.format(title=html.escape(title), subtitle=html.escape(subtitle), body="\n".join(sections),
                       style=STYLE, script=SCRIPT)


def _scores_table(scores: dict) -> str:
    names = {"test_error_pct": "average test error (%)", "test_bce": "BCE per value", "test_mse": "MSE per value",
             "test_psnr_db": "PSNR (dB)", "test_r2": "R²", "knn_acc": "5-NN accuracy of the codes"}
    rows = "".join(f"<tr><th>{label}</th><td>{scores[key]:.4g}</td></tr>"
                   for key, label in names.items() if isinstance(scores.get(key), (int, float)))
    pca = scores.get("pca") or {}
    rows += "".join(f"<tr><th>PCA with {pca['code_size']} components: {label}</th><td>{pca[key]:.4g}</td></tr>"
                    for key, label in (("mse", "MSE per value"), ("psnr_db", "PSNR (dB)")) if key in pca)
    return f'<table class="scores">{rows}</table>'


def _figure(caption: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _png(draw, *args: Any, **kwargs: Any) -> bytes:
    """What ``draw(path, ...)`` (a plots function) writes, as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        draw(path, *args, **kwargs)
        return path.read_bytes()


def _curve_png(name: str, samples: Sequence[int], losses: Sequence[float]) -> bytes:
    return _png(plots.save_training_curve, {name: (samples, losses)}, ylabel="loss per sample",
                title="Training loss (average since the previous point)", logy=True)


def _validation_png(curves: ValidationCurves) -> bytes:
    mark = None if not curves.kept_at else (curves.kept_at, "weights kept (best validation loss)")
    lines = {curves.training_label: curves.training}
    if any(x > 0 for x in curves.validation[0]):
        lines["validation MSE per value"] = curves.validation
    return _png(plots.save_training_curve, lines,
                ylabel="loss per value", title="Training and validation loss", logy=True, mark=mark)


def _validation_caption(curves: ValidationCurves) -> str:
    caption = ("Training curve: the training loss (average since the previous point) and the validation "
               "split's mean squared error, per value")
    if curves.kept_step == 0:
        return caption + "; no later measurement was clearly better than the start, so the weights from " \
                         "before the first step were kept"
    if curves.kept_step is not None:
        return caption + f"; the weights kept are those measured at step {curves.kept_step}" + (
            f" ({curves.kept_at} samples seen, dashed line)" if curves.kept_at else "")
    return caption


def _map_limit(limit: int) -> int:
    """``limit`` if it is a whole number of points for the map, 0 for none."""
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 0:
        raise OptionError(f"limit must be a non-negative integer (0: no map), got {limit!r}")
    return int(limit)


def _code_map(name: str, model: torch.nn.Module, data: Dataset, limit: int, seed: int,
              points: np.ndarray | None) -> str:
    n = min(limit, data.test.n) if points is None else len(points)
    if n == 0:
        return ""  # no map asked for
    if n <= plots.TSNE_PERPLEXITY:
        return "<p>Too few test samples for a map of the codes.</p>"
    samples = data.test.images[:n]
    points = plots.tsne_2d(encode(model, samples), seed=seed) if points is None else np.asarray(points)
    labels = data.test.labels[:n] if data.test.labels is not None else None
    payload = {
        "x": np.round(points[:, 0], 3).tolist(), "y": np.round(points[:, 1], 3).tolist(),
        "label": None if labels is None else [int(v) for v in labels],
        "names": data.class_names or (None if labels is None else [str(k) for k in range(int(labels.max()) + 1)]),
        "thumbs": [_thumbnail(image) for image in samples] if data.kind == "images" else None,
    }
    return (f'<h3>Map of the codes of {n} test samples (t-SNE)</h3>'
            f'<div class="map" data-name="{html.escape(name)}"><canvas></canvas><div class="tip"></div>'
            f'<div class="legend"></div></div>'
            f'<script type="application/json" class="map-data">{_json_for_html(payload)}</script>')


def _thumbnail(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


_HTML_SAFE_JSON = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                  "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _json_for_html(value: Any) -> str:
    """JSON safe inside a <script> element: no ``<``, ``>`` or ``&`` at all (so no ``</script>`` and no
    ``<!--``, which can change how the parser reads the rest of the element), all escaped as ``\\u``
    sequences that JSON.parse reads back unchanged."""
    return json.dumps(value, separators=(",", ":")).translate(_HTML_SAFE_JSON)


STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0; } .subtitle { color: #666; margin-top: .2em; }
section.model { border-top: 1px solid #ddd; margin-top: 2em; }
table.scores th { text-align: left; font-weight: normal; color: #555; padding-right: 1.5em; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption { color: #666; font-size: 90%; }
.map { position: relative; width: 100%; height: 560px; border: 1px solid #ddd; }
.map canvas { width: 100%; height: 100%; cursor: grab; display: block; }
.tip { position: absolute; pointer-events: none; background: #fff; border: 1px solid #999; padding: 4px;
       display: none; font-size: 13px; }
.tip img { width: 56px; height: 56px; image-rendering: pixelated; display: block; }
.legend { position: absolute; top: 6px; right: 6px; background: rgba(255,255,255,.9); font-size: 13px; }
.legend span { display: block; cursor: pointer; padding: 0 4px; } .legend span.off { opacity: .3; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
                 "#e6550d", "#31a354", "#756bb1", "#636363"];
  function colour(k) { return k === null ? "#1f77b4" : palette[k % palette.length]; }
  var total = 0;
  document.querySelectorAll(".map").forEach(function (box) {
    var data = JSON.parse(box.nextElementSibling.textContent);
    var canvas = box.querySelector("canvas"), tip = box.querySelector(".tip"), ctx = canvas.getContext("2d");
    var n = data.x.length, hidden = {}, view = {scale: 1, dx: 0, dy: 0}, drag = null;
    var minX = Math.min.apply(null, data.x), maxX = Math.max.apply(null, data.x);
    var minY = Math.min.apply(null, data.y), maxY = Math.max.apply(null, data.y);
    function base(i) {  // the point in canvas pixels before zoom and pan
      var w = canvas.width, h = canvas.height, m = 20;
      return [m + (data.x[i] - minX) / (maxX - minX || 1) * (w - 2 * m),
              m + (data.y[i] - minY) / (maxY - minY || 1) * (h - 2 * m)];
    }
    function place(i) { var p = base(i); return [p[0] * view.scale + view.dx, p[1] * view.scale + view.dy]; }
    function label(i) { return data.label ? data.label[i] : null; }
    function draw() {
      canvas.width = canvas.clientWidth; canvas.height = canvas.clientHeight;
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      for (var i = 0; i < n; i++) {
        if (hidden[label(i)]) continue;
        var p = place(i);
        ctx.fillStyle = colour(label(i));
        ctx.beginPath(); ctx.arc(p[0], p[1], 3, 0, 2 * Math.PI); ctx.fill();
      }
    }
    function nearest(mx, my) {
      var best = -1, bestD = 64;
      for (var i = 0; i < n; i++) {
        if (hidden[label(i)]) continue;
        var p = place(i), d = (p[0] - mx) * (p[0] - mx) + (p[1] - my) * (p[1] - my);
        if (d < bestD) { best = i; bestD = d; }
      }
      return best;
    }
    canvas.addEventListener("mousemove", function (e) {
      var r = canvas.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
      if (drag) { view.dx += mx - drag[0]; view.dy += my - drag[1]; drag = [mx, my]; draw(); return; }
      var i = nearest(mx, my);
      if (i < 0) { tip.style.display = "none"; return; }
      var name = label(i) === null ? "" : (data.names ? data.names[label(i)] : label(i));
      // built from nodes, never markup: a class name is text whatever it holds
      tip.textContent = "";
      if (data.thumbs) {
        var thumb = document.createElement("img");
        thumb.src = "data:image/png;base64," + data.thumbs[i];
        tip.appendChild(thumb);
      }
      tip.appendChild(document.createTextNode("#" + i + (name === "" ? "" : ": " + name)));
      tip.style.left = (mx + 12) + "px"; tip.style.top = (my + 12) + "px"; tip.style.display = "block";
    });
    canvas.addEventListener("mouseleave", function () { tip.style.display = "none"; drag = null; });
    canvas.addEventListener("mousedown", function (e) {
      var r = canvas.getBoundingClientRect(); drag = [e.clientX - r.left, e.clientY - r.top];
    });
    window.addEventListener("mouseup", function () { drag = null; });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      var r = canvas.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
      var f = e.deltaY < 0 ? 1.2 : 1 / 1.2;
      view.dx = mx - (mx - view.dx) * f; view.dy = my - (my - view.dy) * f; view.scale *= f; draw();
    }, {passive: false});
    if (data.names && data.label) {
      var legend = box.querySelector(".legend");
      data.names.forEach(function (name, k) {
        var item = document.createElement("span");
        var dot = document.createElement("b");
        dot.style.color = colour(k);
        dot.textContent = "\u25cf";
        item.appendChild(dot);
        item.appendChild(document.createTextNode(" " + name));
        item.addEventListener("click", function () { hidden[k] = !hidden[k]; item.classList.toggle("off"); draw(); });
        legend.appendChild(item);
      });
    }
    draw();
    box.dataset.points = String(n);
    total += n;
  });
  document.body.dataset.mapPoints = String(total);
  document.body.dataset.rendered = "ok";
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{style}</style>
<script>window.addEventListener("error", function (e) {{ document.documentElement.dataset.error = e.message; }});</script>
</head><body>
<h1>{title}</h1><p class="subtitle">{subtitle}</p>
{body}
<script>{script}</script>
</body></html>
"""
