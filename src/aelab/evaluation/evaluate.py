"""Measuring a trained model: reconstruction quality on images and how well its codes keep classes apart."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from ..models.inference import _batches, _device_of, as_pixel_rows, computing_in, encode
from ..models.losses import cntk_classification_error
from ..models.networks import output_of
from .metrics import knn_accuracy as knn_on_codes, psnr_db


@torch.no_grad()
def evaluate(model: torch.nn.Module, images, batch_size: int | None = None) -> dict:
    """Reconstruction quality on ``images`` (or table rows), in the model's units (pixels / 255, or
    the scaled features).

    Returns ``test_mse`` (per value), ``test_r2`` (the fraction of the test
    data's variance about its per-value means that the reconstruction
    explains) and ``n``; an image model, or a ``bce`` model of data in [0, 1],
    adds ``test_error_pct`` (CNTK's classification_error averaged over the
    samples, in percent: the tutorial's "Average test error") and
    ``test_psnr_db`` (PSNR of the MSE, peak 1); a ``bce`` model also
    ``test_bce`` (binary cross-entropy per value).
    """
    rows = as_pixel_rows(model, images)
    n = rows.shape[0]
    if n == 0:
        raise DataError("no images to evaluate")
    config = model.config
    in_unit = config.loss == "bce" or config.is_image  # outputs and targets in [0, 1]
    device = _device_of(model)
    error = bce = se = 0.0
    total = torch.zeros(rows.shape[1], dtype=torch.float64)
    total_sq = torch.zeros(rows.shape[1], dtype=torch.float64)
    with computing_in(model) as m:
        for b in _batches(rows, batch_size, model):
            target = b.to(device, torch.float32) * (1.0 / config.input_max)
            logits = m.decode_logits(m.encode(b.to(device, torch.float32)))
            output = output_of(logits.clone(), config)
            if in_unit:
                error += float(cntk_classification_error(output, target).double().sum())
            if config.loss == "bce":
                bce += float(F.binary_cross_entropy_with_logits(logits, target, reduction="sum").double())
            se += float(((output - target).double() ** 2).sum())
            t = target.double().cpu()
            total += t.sum(dim=0)
            total_sq += (t * t).sum(dim=0)
    values = n * rows.shape[1]
    mse_value = se / values
    spread = float((total_sq - total * total / n).sum())  # the test data's summed squared deviations
    scores = {"test_mse": mse_value, "test_r2": 1.0 - se / spread if spread > 0 else float("nan"), "n": n}
    if in_unit:
        scores.update(test_error_pct=100.0 * error / n, test_psnr_db=psnr_db(mse_value))
    if config.loss == "bce":
        scores["test_bce"] = bce / values
    return scores


def image_stats(image) -> dict:
    """The tutorial's "Max, Median, Mean, Min" of an image on the 0..255 scale."""
    a = np.asarray(image, dtype=np.float64)
    return {"max": float(a.max()), "median": float(np.median(a)), "mean": float(a.mean()), "min": float(a.min())}


def format_image_stats(stats: dict) -> str:
    return "Max: {max:.2f}, Median: {median:.2f}, Mean: {mean:.2f}, Min: {min:.2f}".format(**stats)


def knn_accuracy(model: torch.nn.Module, train_images, train_labels, test_images, test_labels,
                 k: int = 5) -> float:
    """Accuracy (0..1) on ``test_images`` of a k-nearest-neighbour classifier (Euclidean, scikit-learn)
    fitted on the codes of ``train_images``: how well the codes keep the classes apart."""
    return knn_on_codes(encode(model, train_images), np.asarray(train_labels), encode(model, test_images),
                        np.asarray(test_labels), k=k)
