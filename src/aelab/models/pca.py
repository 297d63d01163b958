"""The principal components of a set of rows: the residual model's starting point and the baseline
that ``aelab evaluate`` shows beside every model."""
from __future__ import annotations

import numpy as np
import torch

PCA_ROWS = 20_000  # a PCA is fitted on at most this many rows: the residual model's start and the baseline alike
PCA_VALUES = 1 << 28  # and on at most this many values (rows x inputs), 2 GiB in float64: 5,461 rows of
                      # 128x128 colour images, where 20,000 took 8 GiB per copy
PCA_EXACT_LIMIT = 4096  # up to this many inputs (32x32 colour and more) the PCA comes from an exact eigendecomposition


def pca_row_index(n: int, seed: int = 0, inputs: int = 1) -> np.ndarray:
    """Which of ``n`` training rows of ``inputs`` values a PCA is fitted on: all of them up to
    ``PCA_ROWS`` rows and ``PCA_VALUES`` values, else as many as fit, drawn with ``seed``, in order. The
    residual model's starting PCA and the baseline PCA both use it, so with the same rows and seed the
    model starts exactly where the baseline stands."""
    limit = max(2, min(PCA_ROWS, PCA_VALUES // max(inputs, 1)))
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 0x9CA]).choice(n, limit, replace=False))


def pca_basis(rows: torch.Tensor, k: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mean (d,), the top ``k`` principal directions (k, d) and the standard deviation of each
    direction's scores (k,) of ``rows`` (n, d), in float32.

    Exact (the covariance's eigenvectors) up to ``PCA_EXACT_LIMIT`` inputs; above, a seeded randomised
    SVD with enough power iterations to match the exact directions closely. Directions beyond the
    data's rank (a code longer than the rows can fill) are zero, with scale 1. Each direction's sign
    is fixed (its largest entry positive), so the result depends on the data and the seed alone.
    """
    centred = rows.detach().to(device="cpu", dtype=torch.float64, copy=True)  # centred in place: one copy
    n, d = centred.shape
    mean = centred.mean(dim=0)
    centred -= mean
    if d <= PCA_EXACT_LIMIT or k >= d // 2:
        values, vectors = torch.linalg.eigh(centred.t() @ centred)
        order = torch.argsort(values, descending=True)[:k]
        components = vectors[:, order].t()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, _, v = torch.svd_lowrank(centred, q=min(k + 16, min(n, d)), niter=6)
        components = v[:, :k].t()
    components = torch.cat([components, torch.zeros(max(k - components.shape[0], 0), d, dtype=centred.dtype)])
    signs = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))
    components = components * torch.where(signs == 0, torch.ones_like(signs), signs)
    scale = (centred @ components.t()).std(dim=0) if n > 1 else torch.ones(k, dtype=centred.dtype)
    rank = min(n - 1, d)
    scale = torch.where((scale > 1e-8) & (torch.arange(k) < rank), scale, torch.ones_like(scale))
    components[torch.arange(k) >= rank] = 0.0
    return mean.float(), components.float(), scale.float()
