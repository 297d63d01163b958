"""Using a trained model: encode, decode, reconstruct and evaluate.

Inputs are validated here, at the boundary: images are (n, h, w) grey or
(n, h, w, c) colour pixel values 0..255 (uint8 or float; floats that look
scaled to 0..1 are refused), or flat (n, input_dim) rows; table rows are
(n, d) scaled features. Each must have the shape the model was trained on,
with no NaN or infinity.
"""
from __future__ import annotations

import contextlib
import warnings
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


def _config(model: torch.nn.Module):
    return model.config


def sample_shape(config) -> tuple[int, ...]:
    """One sample as callers hold it: ``(h, w)`` grey, ``(h, w, c)`` colour (channels last, as images are
    stored), ``(d,)`` a table row."""
    shape = tuple(config.input_shape)
    return (*shape[1:], shape[0]) if len(shape) == 3 else shape


def to_model_rows(config, samples) -> torch.Tensor:
    """Samples in the caller's layout (see :func:`sample_shape`; a single one, or already flat rows in
    the model's channels-first order) as (n, input_dim) rows; a shape that does not fit names both."""
    arr = samples if isinstance(samples, torch.Tensor) else tensor_view(numeric_array(samples, "inputs"))
    one, dim = sample_shape(config), config.input_dim
    if tuple(arr.shape[1:]) == one:
        rows = arr
    elif tuple(arr.shape) == one:
        rows = arr.unsqueeze(0)
    elif arr.ndim == 2 and arr.shape[1] == dim:
        return arr
    else:
        raise DataError(f"inputs of shape {tuple(arr.shape)} do not fit this model, which was trained on "
                        f"{_describe(config)}", hint=f"pass {_fitting_shapes(one, dim)} values")
    if len(one) == 3:  # channels last as stored -> channels first, as the model's rows
        rows = rows.permute(0, 3, 1, 2)
    return rows.reshape(rows.shape[0], dim)


def _fitting_shapes(one: tuple[int, ...], dim: int) -> str:
    """The shapes a model takes: samples as callers hold them, and flat rows where those differ."""
    shapes = [f"(n, {', '.join(map(str, one))})"] + ([f"(n, {dim})"] if one != (dim,) else [])
    return " or ".join(shapes)


def numeric_array(values, what: str) -> np.ndarray:
    """``values`` (an array, a list, ...) as a NumPy array of numbers; sparse matrices and arrays of
    strings or objects are refused with a DataError that names what they were and what is accepted."""
    if _is_sparse(values):
        raise DataError(f"{what} must be a dense numeric array, got a {type(values).__name__} (scipy.sparse)",
                        hint="convert it with .toarray()")
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as e:  # ragged lists, objects numpy cannot hold as an array
        raise DataError(f"{what} must be a numeric array: {e}", hint=ACCEPTED_ARRAYS) from None
    if array.dtype.kind not in NUMERIC_KINDS:
        raise DataError(f"{what} must be a numeric array, got dtype {array.dtype} ({type(values).__name__})",
                        hint=ACCEPTED_ARRAYS)
    if array.dtype.kind == "u" and array.dtype.itemsize > 1:  # torch has no arithmetic on uint16 and wider
        array = array.astype(np.int64 if array.dtype.itemsize < 8 else np.float64)
    if any(stride < 0 for stride in array.strides):  # a flipped view, which torch cannot share
        array = array.copy()
    return array


NUMERIC_KINDS = "biufc"  # bool, integers, floats, complex: numbers (bool and complex are refused later, by name)
ACCEPTED_ARRAYS = "pass uint8 images (or pixel values 0..255) or a float array of rows (n, d)"


def _is_sparse(values) -> bool:
    return type(values).__module__.startswith("scipy.sparse")


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32_range(values, what: str, error: type[DataError] = DataError) -> None:
    """Refuse finite values too large for float32, which models compute in (raising ``error``): cast,
    they would become infinite, and then NaN codes or a diverged training, far from their cause."""
    if values.dtype not in (np.float64, torch.float64) or not _count(values):
        return
    largest = float(abs(values).max())
    if FLOAT32_MAX < largest < float("inf"):
        raise error(f"values as large as {largest:.3g} in {what} are beyond float32's range (at most "
                    f"{FLOAT32_MAX:.3g}), which models compute in", hint="rescale them, e.g. divide by a power of ten")


def _count(values) -> int:
    return values.numel() if isinstance(values, torch.Tensor) else values.size


def tensor_view(array: np.ndarray) -> torch.Tensor:
    """``array`` as a tensor without a copy, read-only ones too (the folder cache maps its arrays
    read-only; nothing here writes into its inputs, which torch's warning is about)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(array)


def from_model_rows(config, rows: torch.Tensor) -> torch.Tensor:
    """(n, input_dim) rows back to the caller's layout (:func:`sample_shape`)."""
    shape = tuple(config.input_shape)
    if len(shape) == 3:
        return rows.reshape(-1, *shape).permute(0, 2, 3, 1).contiguous()
    return rows.reshape(-1, *shape)


def _describe(config) -> str:
    shape = tuple(config.input_shape)
    if len(shape) == 1:
        return f"table rows of {shape[0]} columns"
    if len(shape) == 2:
        return f"{shape[0]}x{shape[1]} grey images"
    return f"{shape[1]}x{shape[2]} images of {shape[0]} channels"


def as_pixel_rows(model: torch.nn.Module, images) -> torch.Tensor:
    """Validate ``images`` (or table rows) for ``model`` and return them as (n, input_dim) on the CPU.

    Images are raw pixel values 0..255; values that look already scaled to
    [0, 1] (floats no larger than 1) are refused. Table rows are the scaled
    features the model was trained on, any finite values.
    """
    config = _config(model)
    rows = to_model_rows(config, images)
    if rows.dtype == torch.bool or rows.dtype.is_complex:
        raise DataError(f"inputs must be real numbers, got dtype {rows.dtype}")
    if rows.is_floating_point() and not torch.isfinite(rows).all():
        raise DataError("inputs contain NaN or infinite values", hint="clean the data first")
    check_float32_range(rows, "inputs")
    if config.is_image:
        _check_pixel_range(rows, config.input_max)
    return rows


def _check_pixel_range(rows: torch.Tensor, top: float) -> None:
    if rows.dtype == torch.uint8 or not rows.numel():
        return
    low, high = float(rows.min()), float(rows.max())
    if low < 0 or high > top:
        raise DataError(f"pixel values must lie in 0..{top:g}, found {low:g}..{high:g}",
                        hint=_pixel_range_hint(low, high))
    if rows.is_floating_point() and 0 < high <= 1 < top:
        raise DataError(f"pixel values lie in {low:g}..{high:g}: they look scaled to 0..1 already, but models "
                        f"take raw pixels 0..{top:g}", hint="pass the raw 8-bit values (multiply by 255)")


def _pixel_range_hint(low: float, high: float) -> str | None:
    """What values outside the pixel range suggest: scaled to 0..1 or -1..1, or not pixels at all."""
    if -1 <= low and high <= 1:
        return "pass raw pixel values, not values already scaled to 0..1 or -1..1"
    if low < 0:
        return "pass raw 8-bit pixel values; pixels are never negative, so undo any standardising first"
    return None


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
    """Samples decoded from ``codes`` (n, code_size), float32 in the layout of :func:`sample_shape`:
    images (n, h, w) or (n, h, w, c) in [0, 1], or table rows (n, d) in the model's scaled units.
    ``precision``: see ``computing_in``."""
    out = list(_decoded_batches(model, codes, batch_size, precision))
    return from_model_rows(model.config, torch.cat(out) if out else torch.zeros(0, model.config.input_dim)).numpy()


@torch.no_grad()
def decode_to_pixels(model: torch.nn.Module, codes, batch_size: int | None = None,
                     precision: str = "fp32") -> np.ndarray:
    """Images decoded from ``codes`` as 8-bit levels: uint8 (n, h, w) or (n, h, w, c), each
    ``round(255 * p)`` of :func:`decode`'s p (halves to even), converted batch by batch while the batch
    is in the caches."""
    if not model.config.is_image:
        raise OptionError("only image models decode to pixels", hint="use decode() for a table's rows")
    out = [p.mul_(255.0).round_().to(torch.uint8) for p in _decoded_batches(model, codes, batch_size, precision)]
    empty = torch.zeros(0, model.config.input_dim, dtype=torch.uint8)
    return from_model_rows(model.config, torch.cat(out) if out else empty).numpy()


def _decoded_batches(model: torch.nn.Module, codes, batch_size: int | None, precision: str) -> Iterator[torch.Tensor]:
    """Validated ``codes``, decoded batch by batch: float32 (b, h*w) on the CPU."""
    z = codes if isinstance(codes, torch.Tensor) else torch.as_tensor(numeric_array(codes, "codes"))
    check_float32_range(z, "codes")
    size = model.config.code_size
    if z.ndim == 1 and z.shape[0] == size:
        z = z.reshape(1, size)
    if z.ndim != 2 or z.shape[1] != size:
        raise DataError(f"codes of shape {tuple(z.shape)} do not fit this model's code size {size}",
                        hint=f"pass an array of shape (n, {size})")
    if z.dtype == torch.bool or z.dtype.is_complex:
        raise DataError(f"codes must be real numbers, got {str(z.dtype).replace('torch.', '')} values",
                        hint="pass the float codes that encode gave")
    z = z.to(torch.float32)
    if not torch.isfinite(z).all():
        raise DataError("codes contain NaN or infinite values", hint="pass the finite codes that encode gave")
    device = _device_of(model)
    with computing_in(model, precision) as m:
        for b in _batches(z, batch_size, model):
            yield _finite_decodings(m.decode(b.to(device)).float().cpu(), b)


def _finite_decodings(decoded: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``decoded`` if all finite; codes far outside the model's range overflow the decoder, which is the codes' fault."""
    if not torch.isfinite(decoded).all():
        raise DataError(f"codes as large as {float(codes.abs().max()):.3g} overflow the decoder (it returns NaN or "
                        "infinite values)", hint="pass codes in the range `aelab encode` writes for this model")
    return decoded


@torch.no_grad()
def reconstruct(model: torch.nn.Module, images, batch_size: int | None = None) -> np.ndarray:
    """``images`` encoded and decoded, float32 in the layout of :func:`decode`."""
    rows = as_pixel_rows(model, images)
    device = _device_of(model)
    with computing_in(model) as m:
        out = [m(b.to(device, torch.float32)).cpu() for b in _batches(rows, batch_size, model)]
    return from_model_rows(model.config, torch.cat(out) if out else torch.zeros(0, model.config.input_dim)).numpy()


def check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise OptionError(f"batch size must be a positive integer, got {batch_size!r}")
    return batch_size


__all__ = ["encode", "decode", "decode_to_pixels", "reconstruct", "default_batch_size"]
