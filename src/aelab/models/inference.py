"""Using a trained model: encode, decode, reconstruct and evaluate.

Inputs are validated here, at the boundary: images are (n, h, w) or
(n, h*w) pixel values 0..255 (uint8 or float), of the size the model was
trained on, with no NaN or infinity.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

from .cpu_inference import cached_fast_copy
from ..errors import DataError, OptionError

DEFAULT_BATCH = 8192  # images per batch for dense models
# for models with convolutions: their activations for a few hundred images stay in the caches; on our
# 2-core machine batches of 512 ran about 1.5 times faster than 8192, and 256 another 4-7% faster
CONV_BATCH = 256
PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise OptionError(f"unknown precision {precision!r}", hint=f"choose one of: {', '.join(PRECISIONS)}")
    return precision


@contextlib.contextmanager
def computing_in(model: torch.nn.Module, precision: str = "fp32") -> Iterator[torch.nn.Module]:
    """The model to run under ``precision``, inside the context that precision needs.

    ``"fp32"``: the model as it is, except that on the CPU a model with
    convolutions runs as a copy laid out for oneDNN (channels-last, activations
    in place, the one-channel output layer as taps; see
    :mod:`aelab.models.cpu_inference`): about twice as fast, with numbers that differ
    from the model's own by float32 rounding only.
    ``"bf16"``: that copy under bfloat16 autocast, so that CPUs with bfloat16
    matrix units (AMX, AVX512-BF16) run the conv model about twice as fast
    again; decoded pixels differ from fp32's by a few grey levels at most (the
    rate-distortion benchmark measures both). Results come back as float32
    either way.
    """
    if check_precision(precision) == "fp32":
        cpu_conv = _device_of(model).type == "cpu" and _has_convolutions(model)
        yield cached_fast_copy(model) if cpu_conv else model
        return
    with torch.autocast(_device_of(model).type, dtype=torch.bfloat16):
        yield cached_fast_copy(model)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _input_shape(model: torch.nn.Module) -> tuple[int, int]:
    return tuple(model.config.input_shape)


def as_pixel_rows(model: torch.nn.Module, images) -> torch.Tensor:
    """Validate ``images`` for ``model`` and return them as (n, pixels) on the CPU."""
    arr = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    h, w = _input_shape(model)
    if arr.ndim == 2 and arr.shape[1] == h * w:
        rows = arr
    elif arr.ndim == 3 and tuple(arr.shape[1:]) == (h, w):
        rows = arr.reshape(arr.shape[0], h * w)
    elif arr.ndim == 2 and tuple(arr.shape) == (h, w):
        rows = arr.reshape(1, h * w)
    else:
        raise DataError(f"images of shape {tuple(arr.shape)} do not fit this model, which was trained on "
                        f"{h}x{w} images", hint=f"pass (n, {h}, {w}) or (n, {h * w}) pixel values")
    if rows.dtype == torch.bool or rows.dtype.is_complex:
        raise DataError(f"images must be numbers 0..255, got dtype {rows.dtype}")
    if rows.is_floating_point() and not torch.isfinite(rows).all():
        raise DataError("images contain NaN or infinite values", hint="clean the data first")
    if rows.dtype != torch.uint8 and rows.numel():  # integer images can be out of range too
        if rows.min() < 0 or rows.max() > 255:
            raise DataError(f"pixel values must lie in 0..255, found {float(rows.min()):g}..{float(rows.max()):g}",
                            hint="pass raw pixel values, not values already scaled to 0..1" if rows.max() <= 1 else None)
    return rows


def default_batch_size(model: torch.nn.Module) -> int:
    """Images per batch for ``model``'s inference: CONV_BATCH with convolutions, else DEFAULT_BATCH."""
    return CONV_BATCH if _has_convolutions(model) else DEFAULT_BATCH


def _has_convolutions(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def _batches(rows: torch.Tensor, batch_size: int | None, model: torch.nn.Module):
    size = default_batch_size(model) if batch_size is None else check_batch_size(batch_size)
    for start in range(0, rows.shape[0], size):
        yield rows[start:start + size]


@torch.no_grad()
def encode(model: torch.nn.Module, images, batch_size: int | None = None, precision: str = "fp32") -> np.ndarray:
    """Codes of ``images``: float32 array (n, code_size). ``precision``: see ``computing_in``;
    ``batch_size``: images per batch (default: ``default_batch_size(model)``)."""
    rows = as_pixel_rows(model, images)
    device = _device_of(model)
    with computing_in(model, precision) as m:
        out = [m.encode(b.to(device, torch.float32)).float().cpu() for b in _batches(rows, batch_size, model)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.config.code_size), np.float32)


@torch.no_grad()
def decode(model: torch.nn.Module, codes, batch_size: int | None = None, precision: str = "fp32") -> np.ndarray:
    """Images decoded from ``codes`` (n, code_size): float32 (n, h, w) in [0, 1]. ``precision``: see
    ``computing_in``."""
    h, w = _input_shape(model)
    out = list(_decoded_batches(model, codes, batch_size, precision))
    return (torch.cat(out) if out else torch.zeros(0, h * w)).reshape(-1, h, w).numpy()


@torch.no_grad()
def decode_to_pixels(model: torch.nn.Module, codes, batch_size: int | None = None,
                     precision: str = "fp32") -> np.ndarray:
    """Images decoded from ``codes`` as grey levels: uint8 (n, h, w), each ``round(255 * p)`` of
    :func:`decode`'s p (halves to even), converted batch by batch while the batch is in the caches."""
    h, w = _input_shape(model)
    out = [p.mul_(255.0).round_().to(torch.uint8) for p in _decoded_batches(model, codes, batch_size, precision)]
    return (torch.cat(out) if out else torch.zeros(0, h * w, dtype=torch.uint8)).reshape(-1, h, w).numpy()


def _decoded_batches(model: torch.nn.Module, codes, batch_size: int | None, precision: str) -> Iterator[torch.Tensor]:
    """Validated ``codes``, decoded batch by batch: float32 (b, h*w) on the CPU."""
    z = codes if isinstance(codes, torch.Tensor) else torch.as_tensor(np.asarray(codes, dtype=np.float32))
    size = model.config.code_size
    if z.ndim == 1 and z.shape[0] == size:
        z = z.reshape(1, size)
    if z.ndim != 2 or z.shape[1] != size:
        raise DataError(f"codes of shape {tuple(z.shape)} do not fit this model's code size {size}",
                        hint=f"pass an array of shape (n, {size})")
    z = z.to(torch.float32)
    if not torch.isfinite(z).all():
        raise DataError("codes contain NaN or infinite values")
    device = _device_of(model)
    with computing_in(model, precision) as m:
        for b in _batches(z, batch_size, model):
            yield m.decode(b.to(device)).float().cpu()


@torch.no_grad()
def reconstruct(model: torch.nn.Module, images, batch_size: int | None = None) -> np.ndarray:
    """``images`` encoded and decoded: float32 (n, h, w) in [0, 1]."""
    rows = as_pixel_rows(model, images)
    h, w = _input_shape(model)
    device = _device_of(model)
    with computing_in(model) as m:
        out = [m(b.to(device, torch.float32)).cpu() for b in _batches(rows, batch_size, model)]
    return (torch.cat(out) if out else torch.zeros(0, h * w)).reshape(-1, h, w).numpy()


def check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise OptionError(f"batch size must be a positive integer, got {batch_size!r}")
    return batch_size


__all__ = ["encode", "decode", "decode_to_pixels", "reconstruct", "default_batch_size"]
