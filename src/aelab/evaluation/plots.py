"""Pictures: image pairs and grids, cosine-similarity figures,
t-SNE maps of the codes and training curves.

Images are numpy arrays (torch tensors are accepted too), either ``uint8``
0..255 or float in [0, 1], of shape ``(h, w)`` for one image or
``(n, h, w)`` for many; labels are integer arrays of shape ``(n,)``.

Every function writes its file atomically (:func:`aelab.fileio.atomic_write`)
and returns the written :class:`~pathlib.Path`. Figures are drawn on a
matplotlib :class:`~matplotlib.figure.Figure` with an Agg canvas attached
directly, so pyplot's global state and the user's backend (a notebook's, say)
are never touched, and each figure is freed once written. matplotlib and
scikit-learn are imported only when a function needs them.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from ..data.images import _array, to_unit
from ..errors import OptionError
from ..fileio import atomic_write
from ..terminal import exit_on_sigterm

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "save_image_pair",
    "save_reconstruction_grid",
    "save_similarity_figure",
    "save_tsne_map",
    "save_training_curve",
    "save_image_grid",
    "tsne_2d",
]

DPI = 150
_INK = "#222222"
_MUTED = "#5f6368"
_FRAME = "#bdbdbd"

# One style for every figure, applied on top of matplotlib's defaults so that
# a user's rcParams or style sheet cannot change the pictures.
_STYLE: dict[str, Any] = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.transparent": False,
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.titleweight": "normal",
    "axes.titlecolor": _INK,
    "axes.titlepad": 5,
    "axes.labelsize": 10,
    "axes.labelcolor": _INK,
    "axes.edgecolor": _FRAME,
    "axes.linewidth": 0.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.7,
    "xtick.color": _MUTED,
    "ytick.color": _MUTED,
    "xtick.labelcolor": _MUTED,
    "ytick.labelcolor": _MUTED,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "figure.titlesize": 12.5,
    "figure.titleweight": "bold",
    "text.color": _INK,
    "image.cmap": "gray",
    "image.interpolation": "nearest",
    "lines.linewidth": 1.8,
}

_LABEL_OF_COS = {
    "cos_original": "original pixels",
    "cos_decoded": "decoded pixels",
    "cos_code": "codes",
}
_COLOR_OF_COS = {
    "cos_original": "#9aa5b1",
    "cos_decoded": "#4c78a8",
    "cos_code": "#f58518",
}


# --------------------------------------------------------------------------
# argument checking


def _labels(labels: Any, n: int, name: str = "labels") -> np.ndarray:
    a = _array(labels, name)
    if a.ndim != 1 or a.shape[0] != n:
        raise OptionError(f"{name} must have shape ({n},), one per image/point, got {a.shape}")
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64)
    if np.issubdtype(a.dtype, np.floating) and np.isfinite(a).all() and (a == np.round(a)).all():
        return a.astype(np.int64)
    raise OptionError(f"{name} must hold integers, got dtype {a.dtype}")


def label_text(label: int, class_names: Sequence[str] | None = None) -> str:
    """How a label is written on a figure: its class's name where the data names its classes, else its number."""
    if class_names is not None and 0 <= int(label) < len(class_names):
        return str(class_names[int(label)])
    return str(int(label))


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise OptionError(f"{name_b} has shape {b.shape} but {name_a} has shape {a.shape}; "
                          "they must match")


def _title(text: Any, name: str) -> str | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise OptionError(f"{name} must be a string, got {type(text).__name__}")
    return text


# --------------------------------------------------------------------------
# figure plumbing


@contextlib.contextmanager
def _figure(**kwargs: Any) -> Iterator[Figure]:
    """A fresh Figure on an Agg canvas, drawn under aelab's style; freed on exit."""
    from matplotlib import style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with style.context(["default", _STYLE]):
        fig = Figure(**kwargs)
        FigureCanvasAgg(fig)
        try:
            yield fig
        finally:
            fig.clear()


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Render ``fig`` as a PNG straight into an atomically renamed temp file."""
    target = Path(path)
    with atomic_write(target, "wb") as f:
        fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.1,
                    facecolor="white", metadata={"Software": None})
    return target


def _show_image(ax: Axes, img: np.ndarray, title: str | None = None,
                ylabel: str | None = None, title_size: float | None = None) -> None:
    """Draw one [0, 1] image, white digit on black, without ticks or frame."""
    ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title is not None:
        ax.set_title(title, fontsize=title_size)
    if ylabel is not None:
        ax.set_ylabel(ylabel, rotation=0, ha="right", va="center", labelpad=6,
                      color=_MUTED)


def _blank(ax: Axes) -> None:
    ax.set_axis_off()


def _cell_inches(ncols: int) -> float:
    """Side of one image cell: 0.62 in, smaller for very wide grids."""
    return min(0.62, max(0.3, 10.0 / max(ncols, 1)))


# --------------------------------------------------------------------------
# figures


def save_image_pair(path: str | os.PathLike[str], left: Any, right: Any,
                    left_title: str = "Original image", right_title: str = "Decoded image",
                    suptitle: str | None = None) -> Path:
    """Two images side by side (the tutorial's ``plot_image_pair``)."""
    a = to_unit(left, "left", ndims=(2,))
    b = to_unit(right, "right", ndims=(2,))
    _same_shape(a, b, "left", "right")
    left_title = _title(left_title, "left_title")
    right_title = _title(right_title, "right_title")
    suptitle = _title(suptitle, "suptitle")
    with _figure(figsize=(4.6, 2.7 if suptitle else 2.45), layout="constrained") as fig:
        axes = fig.subplots(1, 2)
        _show_image(axes[0], a, left_title)
        _show_image(axes[1], b, right_title)
        if suptitle:
            fig.suptitle(suptitle)
        return _save(fig, path)


def save_image_grid(path: str | os.PathLike[str], images: Any, ncols: int = 10,
                    labels: Any = None, title: str | None = None, class_names: Sequence[str] | None = None) -> Path:
    """A grid of (n, h, w) grey or (n, h, w, 3) colour images, ``ncols`` per row, optionally labelled (by
    ``class_names[label]`` where given)."""
    imgs = to_unit(images, "images", ndims=(3,))
    n = imgs.shape[0]
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise OptionError(f"ncols must be a positive integer, got {ncols!r}")
    labs = None if labels is None else _labels(labels, n)
    title = _title(title, "title")
    ncols = int(min(ncols, n))
    nrows = math.ceil(n / ncols)
    cell = _cell_inches(ncols)
    h, w = imgs.shape[1:3]
    gap = 0.06 + (0.3 / cell if labs is not None else 0.0)  # fraction of a cell
    top_gap = 0.25 if labs is not None else 0.0  # inches for the first row's labels
    width = ncols * cell * (w / h) + 0.06 * cell * (ncols - 1)
    height = nrows * cell + (nrows - 1) * gap * cell + top_gap
    with _figure(figsize=(max(width, 1.0), max(height, 0.5))) as fig:
        grid = fig.add_gridspec(nrows, ncols, left=0, right=1, bottom=0,
                                top=1 - top_gap / height, wspace=0.06, hspace=gap)
        for k in range(nrows * ncols):
            ax = fig.add_subplot(grid[k // ncols, k % ncols])
            if k < n:
                _show_image(ax, imgs[k], None if labs is None else label_text(labs[k], class_names),
                            title_size=9)
            else:
                _blank(ax)
        if title:
            fig.suptitle(title, y=1 + 0.08 / height, va="bottom")
        return _save(fig, path)


def save_reconstruction_grid(path: str | os.PathLike[str], originals: Any, decoded: Any,
                             labels: Any = None, title: str | None = None,
                             class_names: Sequence[str] | None = None) -> Path:
    """Originals (top row) above their decodings (bottom row), one column per image, labelled (by
    ``class_names[label]`` where given) when ``labels`` are."""
    orig = to_unit(originals, "originals", ndims=(3,))
    dec = to_unit(decoded, "decoded", ndims=(3,))
    _same_shape(orig, dec, "originals", "decoded")
    n = orig.shape[0]
    labs = None if labels is None else _labels(labels, n)
    title = _title(title, "title")
    cell = _cell_inches(n)
    h, w = orig.shape[1:3]
    top_gap = 0.25 if labs is not None else 0.0  # inches for the digit labels
    width = n * cell * (w / h) + 0.06 * cell * (n - 1)
    height = 2 * cell + 0.08 * cell + top_gap
    with _figure(figsize=(max(width, 1.0), height)) as fig:
        grid = fig.add_gridspec(2, n, left=0, right=1, bottom=0, top=1 - top_gap / height,
                                wspace=0.06, hspace=0.08)
        for j in range(n):
            top = fig.add_subplot(grid[0, j])
            bottom = fig.add_subplot(grid[1, j])
            _show_image(top, orig[j], None if labs is None else label_text(labs[j], class_names),
                        title_size=9)
            _show_image(bottom, dec[j])
            if j == 0:
                top.set_ylabel("original", rotation=0, ha="right", va="center",
                               labelpad=6, color=_MUTED)
                bottom.set_ylabel("decoded", rotation=0, ha="right", va="center",
                                  labelpad=6, color=_MUTED)
        if title:
            fig.suptitle(title, y=1 + 0.08 / height, va="bottom")
        return _save(fig, path)


def _similarity_row(row: Any, i: int, shape: tuple[int, ...] | None) -> dict[str, Any]:
    where = f"rows[{i}]"
    if not isinstance(row, Mapping):
        raise OptionError(f"{where} must be a dict, got {type(row).__name__}")
    missing = [k for k in ("title", "a", "b", "a_decoded", "b_decoded", *_LABEL_OF_COS)
               if k not in row]
    if missing:
        raise OptionError(f"{where} lacks {', '.join(repr(k) for k in missing)}")
    out: dict[str, Any] = {"title": _title(row["title"], f"{where}['title']")}
    for key in ("a", "b", "a_decoded", "b_decoded"):
        img = to_unit(row[key], f"{where}[{key!r}]", ndims=(2,))
        ref_shape = shape if shape is not None else img.shape
        if img.shape != ref_shape:
            raise OptionError(f"{where}[{key!r}] has shape {img.shape} but the other "
                              f"images have shape {ref_shape}; they must match")
        shape = img.shape
        out[key] = img
    for key in _LABEL_OF_COS:
        value = row[key]
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise OptionError(f"{where}[{key!r}] must be a number, got {value!r}") from None
        if not math.isfinite(v) or not -1.0 - 1e-4 <= v <= 1.0 + 1e-4:
            raise OptionError(f"{where}[{key!r}] is {v!r}; a cosine similarity lies in [-1, 1]")
        out[key] = min(max(v, -1.0), 1.0)
    return out


def save_similarity_figure(path: str | os.PathLike[str],
                           rows: Sequence[Mapping[str, Any]]) -> Path:
    """For each pair: images A, B, decoded A, decoded B and their three cosine similarities.

    Each row is ``{"title", "a", "b", "a_decoded", "b_decoded", "cos_original",
    "cos_decoded", "cos_code"}``: the cosine similarity of A and B as original
    pixels, as decoded pixels and as codes, drawn as labelled bars.
    """
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence) or len(rows) == 0:
        raise OptionError("rows must be a non-empty list of dicts")
    checked: list[dict[str, Any]] = []
    shape = None
    for i, row in enumerate(rows):
        checked.append(_similarity_row(row, i, shape))
        shape = checked[-1]["a"].shape
    lowest = min(r[k] for r in checked for k in _LABEL_OF_COS)
    x_min = -1.0 if lowest < 0 else 0.0
    keys = list(_LABEL_OF_COS)

    row_h = 1.55
    with _figure(figsize=(8.2, row_h * len(checked) + 0.25 * (len(checked) - 1)),
                 layout="constrained") as fig:
        fig.get_layout_engine().set(h_pad=0.06, hspace=0.08)
        subfigs = np.atleast_1d(fig.subfigures(len(checked), 1, hspace=0.06))
        for sub, r in zip(subfigs, checked):
            sub.set_facecolor("white")
            if r["title"]:
                sub.suptitle(r["title"], x=0.0, ha="left", fontsize=11.5,
                             fontweight="bold")
            axes = sub.subplots(1, 5, width_ratios=[1, 1, 1, 1, 3.2])
            for ax, key, label in zip(axes[:4], ("a", "b", "a_decoded", "b_decoded"),
                                      ("A", "B", "A decoded", "B decoded")):
                _show_image(ax, r[key], label, title_size=9.5)
            bars = axes[4]
            values = [r[k] for k in keys]
            ypos = np.arange(len(keys))[::-1]
            bars.barh(ypos, values, height=0.62,
                      color=[_COLOR_OF_COS[k] for k in keys])
            bars.set_yticks(ypos, [_LABEL_OF_COS[k] for k in keys])
            bars.tick_params(axis="y", length=0, labelsize=9.5, labelcolor=_INK)
            bars.set_xlim(x_min, 1.0)
            bars.set_ylim(-0.55, len(keys) - 0.45)
            bars.set_xticks([x_min, 0.5, 1.0] if x_min == 0 else [-1.0, 0.0, 1.0])
            bars.xaxis.set_major_formatter("{x:g}")
            bars.spines["left"].set_visible(False)
            bars.set_title("cosine similarity of A and B", fontsize=9.5, color=_MUTED)
            bars.axvline(0.0, color=_FRAME, linewidth=0.8)
            span = 1.0 - x_min
            for y, v in zip(ypos, values):
                # The value sits inside the end of a long bar, else just beyond it.
                inside = abs(v) >= 0.28 * span
                outward = 1.0 if v >= 0 else -1.0
                pad = 0.015 * span * (-outward if inside else outward)
                bars.text(v + pad, y, f"{v:.3f}", va="center",
                          ha=("right" if inside else "left") if v >= 0
                          else ("left" if inside else "right"),
                          color="white" if inside else _INK, fontsize=9.5,
                          fontweight="bold")
        return _save(fig, path)


def _class_colors(classes: np.ndarray) -> list[Any]:
    """One distinct colour per class: tab10 (digits keep their tab10 colour), tab20, or turbo."""
    from matplotlib import colormaps

    k = len(classes)
    if k <= 10:
        cmap = colormaps["tab10"]
        if classes.min() >= 0 and classes.max() <= 9:
            return [cmap(int(c)) for c in classes]
        return [cmap(i) for i in range(k)]
    if k <= 20:
        cmap = colormaps["tab20"]
        return [cmap(i) for i in range(k)]
    cmap = colormaps["turbo"]
    # Golden-ratio steps along the colormap keep neighbouring labels apart in colour.
    return [cmap(0.05 + 0.9 * ((i * 0.6180339887) % 1.0)) for i in range(k)]


def save_tsne_map(path: str | os.PathLike[str], points: Any, labels: Any,
                  title: str | None = "t-SNE map of the codes", class_names: Sequence[str] | None = None) -> Path:
    """Scatter (n, 2) points coloured by label, each class named (``class_names[label]`` where given, else
    its number) at its median point."""
    from matplotlib import patheffects

    pts = _array(points, "points")
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise OptionError(f"points must have shape (n, 2), got {pts.shape}")
    if not np.issubdtype(pts.dtype, np.number) or not np.isfinite(pts).all():
        raise OptionError("points must hold finite numbers")
    pts = pts.astype(np.float64)
    n = pts.shape[0]
    labs = _labels(labels, n)
    title = _title(title, "title")
    classes = np.unique(labs)
    colors = _class_colors(classes)
    size = float(np.clip(3000.0 / n, 2.0, 30.0))
    alpha = 0.75 if n > 2000 else 0.85
    halo = [patheffects.withStroke(linewidth=3.2, foreground="white")]

    with _figure(figsize=(6.4, 5.6), layout="constrained") as fig:
        ax = fig.add_subplot()
        # Shuffle the drawing order so that no class is painted over all others.
        order = np.random.default_rng(0).permutation(n)
        color_of = {int(c): colors[i] for i, c in enumerate(classes)}
        ax.scatter(pts[order, 0], pts[order, 1], s=size, c=[color_of[int(c)] for c in labs[order]],
                   alpha=alpha, linewidths=0)
        for c in classes:
            centre = np.median(pts[labs == c], axis=0)
            ax.text(centre[0], centre[1], label_text(c, class_names), ha="center", va="center",
                    fontsize=15 if len(classes) <= 20 else 10, fontweight="bold",
                    color=color_of[int(c)], path_effects=halo)
        if len(classes) <= 20:
            from matplotlib.lines import Line2D

            handles = [Line2D([], [], linestyle="", marker="o", markersize=6,
                              markerfacecolor=color_of[int(c)], markeredgewidth=0,
                              label=label_text(c, class_names)) for c in classes]
            ax.legend(handles=handles, title="label", loc="center left",
                      bbox_to_anchor=(1.01, 0.5), handletextpad=0.2, borderaxespad=0.0,
                      labelspacing=0.55)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(True)
            spine.set_color(_FRAME)
        ax.set_box_aspect(1)
        ax.set_aspect("equal", adjustable="datalim")
        ax.margins(0.04)
        if title:
            ax.set_title(title, fontsize=12.5, fontweight="bold", pad=8)
        return _save(fig, path)


def save_training_curve(path: str | os.PathLike[str],
                        curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
                        ylabel: str, title: str | None = None, logy: bool = False,
                        mark: tuple[float, str] | None = None) -> Path:
    """One line per model (or per split) of a metric against samples seen (log x axis).

    Points with samples seen <= 0 cannot sit on a log axis and are left out;
    NaN metric values (a diverged run) leave gaps. ``logy`` draws the positive values on a log axis
    when they span a power of ten or more (else, or when a curve has none, all values on a linear one, whose
    ticks are labelled). ``mark`` (samples seen,
    label) draws a dashed vertical line there, named in the legend (left out at samples seen <= 0).
    """
    if not isinstance(curves, Mapping) or not curves:
        raise OptionError("curves must be a non-empty dict of name -> (samples, values)")
    ylabel = _title(ylabel, "ylabel") or ""
    title = _title(title, "title")
    lines: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name, curve in curves.items():
        where = f"curves[{name!r}]"
        try:
            xs_raw, ys_raw = curve
        except (TypeError, ValueError):
            raise OptionError(f"{where} must be a pair (samples seen, values)") from None
        xs = _array(xs_raw, f"{where} samples seen")
        ys = _array(ys_raw, f"{where} values")
        if not (np.issubdtype(xs.dtype, np.number) and np.issubdtype(ys.dtype, np.number)):
            raise OptionError(f"{where} must hold numbers")
        if xs.ndim != 1 or ys.ndim != 1 or xs.shape != ys.shape:
            raise OptionError(f"{where} has {xs.shape} samples-seen values and {ys.shape} "
                              "metric values; they must be 1-D and of equal length")
        xs = xs.astype(np.float64)
        ys = ys.astype(np.float64)
        ys[~np.isfinite(ys)] = np.nan
        keep = np.isfinite(xs) & (xs > 0)
        if logy and (keep & (ys > 0)).any():  # values of 0 (a loss reached exactly): a linear axis then
            keep &= ~(ys <= 0)
        elif logy:
            logy = False
        if not keep.any():
            raise OptionError(f"{where} has no point with samples seen > 0")
        order = np.argsort(xs[keep], kind="stable")
        lines.append((str(name), xs[keep][order], ys[keep][order]))
    mark = _mark(mark)

    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(lines) <= 10 else "tab20"]
    with _figure(figsize=(6.4, 4.0), layout="constrained") as fig:
        ax = fig.add_subplot()
        for i, (name, xs, ys) in enumerate(lines):
            few = len(xs) <= 30
            ax.plot(xs, ys, color=cmap(i % cmap.N), label=name,
                    marker="o" if few else None, markersize=3.5)
        if mark is not None:
            ax.axvline(mark[0], color=_INK, linestyle="--", linewidth=1.0, alpha=0.7, label=mark[1])
        ax.set_xscale("log")
        _log_labels(ax.xaxis, [xs for _, xs, _ in lines], counts=True)
        if logy and _spans_a_decade([ys for _, _, ys in lines]):
            ax.set_yscale("log")
            _log_labels(ax.yaxis, [ys for _, _, ys in lines], counts=False)
        ax.grid(True, which="major")
        ax.set_xlabel("samples seen")
        ax.set_ylabel(ylabel)
        ax.tick_params(length=3)
        if len(lines) > 1 or lines[0][0] or mark is not None:
            ax.legend(loc="best")
        if title:
            ax.set_title(title, fontsize=12.5, fontweight="bold", loc="left", pad=8)
        return _save(fig, path)


def _mark(mark: Any) -> tuple[float, str] | None:
    """``mark`` checked: None, or (samples seen > 0, label); a mark at or before the first sample is left out."""
    if mark is None:
        return None
    try:
        x, label = mark
        x = float(x)
    except (TypeError, ValueError):
        raise OptionError("mark must be a pair (samples seen, label)") from None
    label = _title(label, "mark label") or ""
    return (x, label) if math.isfinite(x) and x > 0 else None


def _log_tick_text(x: float, minor: bool, counts: bool) -> str:
    """Text for a log-axis tick: decades (1, 10, 100, ...) or, with ``minor``, their
    2x and 5x; counts are written 100, 1k, 10k, 1M, other values as 0.1, 0.05, ..."""
    if not x > 0 or not math.isfinite(x):
        return ""
    mantissa = x / 10 ** math.floor(math.log10(x) + 1e-9)
    wanted = (2.0, 5.0) if minor else (1.0,)
    if not any(abs(mantissa - m) < 1e-6 for m in wanted):
        return ""
    if counts:
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if x >= scale:
                return f"{x / scale:g}{suffix}"
    return f"{x:g}"


def _spans_a_decade(data: Sequence[np.ndarray]) -> bool:
    """Whether the positive values reach from one power of ten to the next: a log axis over less may hold no
    labelled tick at all (0.55 to 0.9 has no 1, 2 or 5 in it), so such values get a linear axis."""
    values = np.concatenate([np.asarray(d, dtype=np.float64) for d in data])
    values = values[np.isfinite(values) & (values > 0)]
    return values.size > 0 and values.max() / values.min() >= 10


def _log_labels(axis: Any, data: Sequence[np.ndarray], counts: bool) -> None:
    """Plain tick labels on a log axis; 2x and 5x labelled too when it spans < 2 decades."""
    values = np.concatenate([np.asarray(d, dtype=np.float64) for d in data])
    values = values[np.isfinite(values) & (values > 0)]
    few_decades = values.size > 0 and values.max() / values.min() < 100
    axis.set_major_formatter(lambda x, pos=None: _log_tick_text(x, False, counts))
    axis.set_minor_formatter(
        (lambda x, pos=None: _log_tick_text(x, True, counts)) if few_decades
        else (lambda x, pos=None: ""))


# --------------------------------------------------------------------------
# t-SNE


TSNE_PERPLEXITY = 30.0  # scikit-learn's default; a map needs more points than this


def auto_perplexity(n: int) -> float:
    """The perplexity for a map of ``n`` codes: scikit-learn's default, lowered for small sets to a third of
    the other points (t-SNE needs it below ``n``)."""
    return float(max(1.0, min(TSNE_PERPLEXITY, math.floor((n - 1) / 3))))


def tsne_2d(codes: Any, seed: int = 0, perplexity: float = TSNE_PERPLEXITY, max_iter: int = 500) -> np.ndarray:
    """Embed (n, d) codes in 2-D with scikit-learn's t-SNE; returns (n, 2) float32.

    Deterministic for a fixed ``seed``. ``perplexity`` must be below n.
    ``max_iter`` 500 (scikit-learn's default is 1000) gives the same clusters
    on MNIST codes in half the time.
    """
    x = _array(codes, "codes")
    if x.ndim != 2:
        raise OptionError(f"codes must have shape (n, d), got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise OptionError("codes must hold finite numbers")
    n, d = x.shape
    if n < 2:
        raise OptionError(f"t-SNE needs at least 2 codes, got {n}")
    if d < 1:
        raise OptionError("codes have no features (shape (n, 0))")
    try:
        perplexity = float(perplexity)
    except (TypeError, ValueError):
        raise OptionError(f"perplexity must be a number, got {perplexity!r}") from None
    if not math.isfinite(perplexity) or perplexity <= 0:
        raise OptionError(f"perplexity must be positive, got {perplexity!r}")
    if perplexity >= n:
        raise OptionError(f"perplexity {perplexity:g} must be smaller than the number of "
                          f"codes ({n})", hint=f"try --perplexity {auto_perplexity(n):g}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise OptionError(f"seed must be an integer, got {seed!r}")

    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca" if d >= 2 else "random",
                learning_rate="auto", random_state=int(seed), max_iter=int(max_iter))
    with _one_thread():
        return np.asarray(tsne.fit_transform(x.astype(np.float32)), dtype=np.float32)


def tsne_2d_timed(codes: Any, seed: int = 0) -> tuple[np.ndarray, float]:
    """``tsne_2d(codes, seed)`` and the seconds it took (for work done in a helper process)."""
    import time
    started = time.perf_counter()
    points = tsne_2d(codes, seed=seed)
    return points, time.perf_counter() - started


def ignore_interrupts() -> None:
    """For a helper process: leave Ctrl-C to the main process, which stops the helper itself."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_helper() -> None:
    """A helper process's first work: leave Ctrl-C to the main process, and let the SIGTERM with which the
    main process ends it remove the temporary file of a figure being written. It lives here, in a module
    that imports no torch, because a spawned helper imports the module of its initializer."""
    ignore_interrupts()
    exit_on_sigterm()


def preload() -> None:
    """Import what drawing and t-SNE need (matplotlib, scikit-learn): for a helper process to do early."""
    from matplotlib.backends import backend_agg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401
    from sklearn.manifold import TSNE  # noqa: F401


def _one_thread() -> contextlib.AbstractContextManager[Any]:
    """One OpenMP thread for t-SNE.

    For the few thousand points aelab maps, the Barnes-Hut gradient's threads
    cost more than they save, and on a busy machine their spin-waiting turns
    seconds into minutes (seen on 2 cores: 2.5 s with one thread, 14 s with
    two). The result is the same.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="openmp")
