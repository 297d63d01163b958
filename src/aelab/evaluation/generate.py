"""Denoising, sampling and interpolating with a trained model: the API behind
``aelab denoise``, ``aelab sample`` and ``aelab interpolate``, and their pictures.
"""
from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import OptionError

# the most images one picture of `aelab sample` or `aelab interpolate` holds: 1,024 take ~20 s to draw on one
# core; 5,000 took 90 s and 2 GB, and nobody reads that many tiles (cli_options repeats it for --help)
MAX_PICTURE_IMAGES = 1024


def denoise(model: torch.nn.Module, images: np.ndarray, noise: str, seed: int = 0, batch_size: int = 4096) -> dict:
    """Corrupt ``images`` (n, h, w) 0..255 with ``noise`` (seeded) and run ``model`` on the result.

    Returns ``clean``, ``noisy`` and ``denoised`` as float32 (n, h, w) in
    [0, 1], the PSNR (dB) of ``noisy`` and of ``denoised`` against ``clean``
    over all images, the noise and the seed.
    """
    from ..models.inference import as_pixel_rows
    from .metrics import psnr_db
    from ..data.noise import corrupt, parse_noise
    refuse_table_model(model, "denoise", "score a table model's reconstructions with `aelab evaluate`")
    spec = parse_noise(noise)
    if spec is None:
        raise OptionError("denoising needs a noise", hint="e.g. --noise gaussian:0.5")
    rows = as_pixel_rows(model, images)
    if rows.shape[0] == 0:
        raise OptionError("no images to denoise")
    clean = rows.to(torch.float32) / 255.0
    noisy = corrupt(clean, spec, torch.Generator().manual_seed(seed))
    device = next(model.parameters()).device
    with torch.no_grad():
        out = torch.cat([model(noisy[i:i + batch_size].to(device) * 255.0).cpu()
                         for i in range(0, len(noisy), batch_size)])
    shape = (-1, *model.config.input_shape)
    return {"clean": clean.reshape(shape).numpy(), "noisy": noisy.reshape(shape).numpy(),
            "denoised": out.reshape(shape).numpy(), "noise": str(spec), "seed": seed, "n": int(len(clean)),
            "noisy_psnr_db": psnr_db(float(((noisy - clean).double() ** 2).mean())),
            "denoised_psnr_db": psnr_db(float(((out - clean).double() ** 2).mean()))}


def refuse_table_model(model: torch.nn.Module, command: str, instead: str) -> None:
    """Refuse, before any work, a table model in a command that draws images; ``instead`` says what serves a table."""
    if not model.config.is_image:
        raise OptionError(f"{command} draws images, and this model was trained on table rows", hint=instead)


def check_picture_size(n: int, what: str, option: str) -> None:
    """Refuse, before any work, a picture of more than :data:`MAX_PICTURE_IMAGES` images (``n`` ``what``)."""
    if n > MAX_PICTURE_IMAGES:
        raise OptionError(f"one picture holds at most {MAX_PICTURE_IMAGES:,} images, and {n:,} {what} were asked for",
                          hint=f"use {option} {MAX_PICTURE_IMAGES} or less")


def check_sampling(model: torch.nn.Module, n: int, drawing: bool = True) -> None:
    """Refuse, before any work, what :func:`draw_samples` cannot do: a table model, a model without a
    prior, a count that is not a positive integer, or (``drawing``) more than one picture holds."""
    refuse_table_model(model, "sample", "decode codes of your choosing into table rows with `aelab decode`")
    if not hasattr(model, "sample"):
        raise OptionError(f"a {model.config.kind} model cannot draw new images: it has no prior",
                          hint="use a vae checkpoint, e.g. --checkpoint mnist-vae")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise OptionError(f"the number of samples must be a positive integer, got {n!r}")
    if drawing:
        check_picture_size(n, "samples", "--draw")


def sample(model: torch.nn.Module, n: int, seed: int = 0) -> np.ndarray:
    """``n`` new images (n, h, w) in [0, 1] from a VAE's prior, reproducible for a ``seed``."""
    check_sampling(model, n, drawing=False)
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    return model.sample(n, generator).cpu().reshape(-1, *model.config.input_shape).numpy()


def draw_samples(model: torch.nn.Module, n: int, seed: int = 0, columns: int = 8,
                 output: str | os.PathLike | None = None) -> np.ndarray:
    """:func:`sample`'s ``n`` images, drawn as a grid of ``columns`` per row to ``output`` when given."""
    check_sampling(model, n, drawing=output is not None)
    if isinstance(columns, bool) or not isinstance(columns, numbers.Integral) or columns < 1:
        raise OptionError(f"columns must be a positive integer, got {columns!r}", hint="e.g. columns=8")
    images = sample(model, n, seed=seed)
    if output is not None:
        save_grid(output, images, ncols=min(columns, n))
    return images


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise OptionError(f"interpolation needs at least 2 steps, got {steps!r}")


def check_interpolation(model: torch.nn.Module, steps: int, drawing: bool = True) -> None:
    """Refuse, before any work, what interpolating between two images cannot do: a table model, fewer than
    2 steps, or (``drawing``) more steps than one picture holds."""
    refuse_table_model(model, "interpolate", "use `aelab encode` and `aelab decode` for a table's codes and rows")
    _check_steps(steps)
    if drawing:
        check_picture_size(steps, "steps", "--steps")


def interpolate(model: torch.nn.Module, image_a: np.ndarray, image_b: np.ndarray, steps: int = 10) -> dict:
    """Decodings of ``steps`` codes evenly spaced on the line from image A's code to image B's (ends included)."""
    from ..models.inference import decode, encode
    _check_steps(steps)
    codes = encode(model, np.stack([image_a, image_b]))
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    path = (1.0 - t) * codes[0] + t * codes[1]
    return {"t": t[:, 0], "codes": path, "decoded": decode(model, path)}


def save_image_rows(path: str | os.PathLike, rows: dict[str, np.ndarray], *, col_titles: Sequence[str] | None = None,
                    title: str | None = None) -> Path:
    """A picture with one row of images per entry of ``rows`` (name -> (k, h, w) in [0, 1]), names on the left."""
    from .plots import _MUTED, _figure, _save, _show_image
    names = list(rows)
    if not names:
        raise OptionError("no images to draw")
    ncols = max(len(v) for v in rows.values())
    h, w = next(iter(rows.values())).shape[1:]
    cell = min(0.62, max(0.3, 10.0 / ncols))
    label_in = 0.15 + 0.07 * max(len(n) for n in names)
    top_in = 0.22 if col_titles else 0.0
    width = label_in + ncols * cell * (w / h) * 1.06
    height = len(names) * cell * 1.06 + top_in
    with _figure(figsize=(width, height)) as fig:
        grid = fig.add_gridspec(len(names), ncols, left=label_in / width, right=1, bottom=0,
                                top=1 - top_in / height, wspace=0.06, hspace=0.06)
        for i, name in enumerate(names):
            images = rows[name]
            for j in range(ncols):
                ax = fig.add_subplot(grid[i, j])
                if j < len(images):
                    _show_image(ax, np.clip(np.asarray(images[j], dtype=np.float32), 0.0, 1.0),
                                title=col_titles[j] if (col_titles and i == 0 and j < len(col_titles)) else None,
                                title_size=8)
                else:
                    ax.set_axis_off()
                if j == 0:
                    ax.set_ylabel(name, rotation=0, ha="right", va="center", labelpad=6, color=_MUTED, fontsize=8)
        if title:
            fig.suptitle(title, y=1 + 0.05 / height, va="bottom", fontsize=10)
        return _save(fig, path)


def save_grid(path: str | os.PathLike, images: np.ndarray, ncols: int = 8, title: str | None = None) -> Path:
    """``images`` (n, h, w) in [0, 1] as a plain grid, ``ncols`` per row."""
    from .plots import save_image_grid
    return save_image_grid(path, images, ncols=ncols, title=title)
