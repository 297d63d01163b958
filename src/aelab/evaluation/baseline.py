"""PCA with the model's code size, fitted on the same training split: the baseline a model must beat.

Scored in the model's own units (pixels / 255, or a table's scaled features). For images the PCA's
reconstruction is clipped to [0, 1], as an image model's output is (this only helps the PCA).
"""
from __future__ import annotations

import numpy as np
import torch

from ..models.inference import tensor_view, to_model_rows
from ..models.pca import pca_basis, pca_row_index
from .metrics import knn_accuracy, psnr_db


class PCABaseline:
    """The PCA of a model's training rows with as many components as the model's code."""

    def __init__(self, config, train_samples, seed: int = 0) -> None:
        self.config = config
        index = pca_row_index(len(train_samples), seed, config.input_dim)
        rows = self._rows(np.asarray(train_samples[index]))
        self.mean, self.components, _ = pca_basis(rows, min(config.code_size, config.input_dim), seed=seed)

    def _rows(self, samples) -> torch.Tensor:
        return to_model_rows(self.config, tensor_view(np.asarray(samples))).to(torch.float32) / self.config.input_max

    def encode(self, samples) -> np.ndarray:
        return ((self._rows(samples) - self.mean) @ self.components.t()).numpy()

    def reconstruct_rows(self, samples) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples as model rows, and the PCA's reconstruction of them (clipped to [0, 1] for images)."""
        rows = self._rows(samples)
        out = (rows - self.mean) @ self.components.t() @ self.components + self.mean
        return rows, (out.clamp_(0.0, 1.0) if self.config.is_image else out)


def pca_scores(config, train_samples, samples, *, train_labels=None, labels=None, knn: bool = False,
               seed: int = 0) -> dict:
    """``mse`` (per value), ``psnr_db`` for images, and with ``knn`` and labels ``knn_acc`` (5-NN on the
    PCA codes, fitted on the training codes) of a PCA with the model's code size on ``samples``."""
    pca = PCABaseline(config, train_samples, seed=seed)
    rows, out = pca.reconstruct_rows(samples)
    mse = float((out - rows).double().square().mean())
    scores = {"code_size": int(pca.components.shape[0]), "mse": mse}
    if config.is_image:
        scores["psnr_db"] = psnr_db(mse)
    if knn and train_labels is not None and labels is not None:
        scores["knn_acc"] = knn_accuracy(pca.encode(train_samples), np.asarray(train_labels), pca.encode(samples),
                                         np.asarray(labels))
    return scores
