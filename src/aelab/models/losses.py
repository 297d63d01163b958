"""The training objective and the tutorial's metric, per sample.

Both take ``target`` as pixel values in [0, 1] and the model's output in
[0, 1] (or its logits where named), both of shape (n, pixels).
"""
from __future__ import annotations

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


def mean_squared_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The squared error averaged over each sample's values, per sample."""
    return (output - target).square().mean(dim=1)


# the training metric of a model's loss, per sample: the tutorial's for bce (pixels), the MSE otherwise
SAMPLE_METRICS = {"bce": cntk_classification_error, "mse": mean_squared_error}
