"""Reconstruction metrics: MSE, PSNR, cosine similarity, k-NN accuracy of the codes.

CNTK's ``classification_error``, which training reports too, is in :mod:`aelab.models.losses`.

All functions take ``target`` as pixel values in [0, 1] and the model's
output in [0, 1] (or its logits where named), both of shape (n, pixels).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import OptionError

KNN_NEIGHBOURS = 5  # the k of the k-NN accuracy on the codes


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
        raise OptionError(f"cannot compare vectors of {x.size} and {y.size} values")
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0 or ny == 0:
        return 0.0
    return float(np.dot(x, y) / (nx * ny))


def knn_accuracy(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray,
                 test_labels: np.ndarray, k: int = KNN_NEIGHBOURS) -> float:
    """Accuracy (0..1) on the test codes of a k-NN classifier fitted on the training codes."""
    from sklearn.neighbors import KNeighborsClassifier
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise OptionError(f"k must be a positive integer, got {k!r}", hint=f"e.g. k={KNN_NEIGHBOURS}")
    if len(train_codes) < k:
        raise OptionError(f"a {k}-NN classifier needs at least {k} training codes, got {len(train_codes)}")
    clf = KNeighborsClassifier(n_neighbors=k).fit(np.asarray(train_codes, np.float32), np.asarray(train_labels))
    return float(np.mean(clf.predict(np.asarray(test_codes, np.float32)) == np.asarray(test_labels)))
