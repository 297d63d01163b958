"""Reconstruction metrics, including CNTK's ``classification_error`` as the tutorial used it.

All functions take ``target`` as pixel values in [0, 1] and the model's
output in [0, 1] (or its logits where named), both of shape (n, pixels).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def bce_sum_per_sample_from_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The tutorial's loss: -(t log p + (1 - t) log(1 - p)) summed over pixels, per sample.

    Computed from the logits z (p = sigmoid(z)) as softplus(z) - t * z, which is
    the same quantity without the log(0) of a saturated sigmoid.
    """
    return (F.softplus(logits) - target * logits).sum(dim=1)


def cntk_classification_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CNTK 2.x ``classification_error(output, target)`` per sample.

    CNTK computes ``1 - TransposeTimes(target, Hardmax(output))``: one minus the
    target's value at the position where the output is largest (the first such
    position on ties). With a 0..1 image as the target this is 1 minus the
    brightness, in the original, of the brightest decoded pixel; it is *not* an
    argmax-vs-argmax comparison.
    """
    winner = output.max(dim=1, keepdim=True).indices  # first maximum, as argmax; faster on CPU
    return 1.0 - target.gather(1, winner).squeeze(1)


def mse(decoded: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """Mean squared error per pixel on the [0, 1] scale."""
    d = torch.as_tensor(decoded, dtype=torch.float64)
    t = torch.as_tensor(target, dtype=torch.float64)
    return float(((d - t) ** 2).mean())


def psnr_db(mean_squared_error: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error (peak 1 on the [0, 1] scale)."""
    if mean_squared_error <= 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mean_squared_error)


def cosine_similarity(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Cosine of the angle between two vectors (1: same direction, 0: orthogonal).

    The tutorial prints this as a "distance" (1 - scipy's cosine distance); it is
    a similarity.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        from ..errors import OptionError
        raise OptionError(f"cannot compare vectors of {x.size} and {y.size} values")
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0 or ny == 0:
        return 0.0
    return float(np.dot(x, y) / (nx * ny))
