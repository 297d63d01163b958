"""Scaling a table's columns, scikit-learn style, with a JSON form for checkpoints.

The rule when nothing is asked for: data already in [0, 1] stays as it is
(``'none'``), anything else is standardised (``'standard'``). Data in [0, 1]
suits a sigmoid output and binary cross-entropy; anything else, mean squared
error (:func:`suggest_loss`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError, OptionError

__all__ = ["Scaler", "SCALE_METHODS", "default_scaling", "suggest_loss", "in_unit_range"]

SCALE_METHODS = ("standard", "minmax", "none")


def in_unit_range(x: np.ndarray) -> bool:
    """Whether every value of ``x`` lies in [0, 1] (a packed set's rows read a few megabytes at a time)."""
    if x.size == 0:
        return False
    if isinstance(x, np.memmap):
        from .chunks import row_chunks

        return all(float(np.min(c)) >= 0.0 and float(np.max(c)) <= 1.0 for c in row_chunks(x))
    return float(np.min(x)) >= 0.0 and float(np.max(x)) <= 1.0


def default_scaling(x: np.ndarray) -> str:
    """``'none'`` for data already in [0, 1], else ``'standard'``."""
    return "none" if in_unit_range(x) else "standard"


def suggest_loss(x: np.ndarray) -> str:
    """``'bce'`` for data in [0, 1], ``'mse'`` otherwise."""
    return "bce" if in_unit_range(x) else "mse"


class Scaler:
    """Per-column ``(x - mean_) / scale_``; ``fit`` on the training rows only.

    ``method`` is ``'standard'`` (mean 0, standard deviation 1), ``'minmax'``
    (onto [0, 1]) or ``'none'``. A column that never varies gets ``scale_`` 1.
    """

    def __init__(self, method: str = "standard") -> None:
        if method not in SCALE_METHODS:
            raise OptionError(f"scaling {method!r} is not known", hint=f"use one of {', '.join(SCALE_METHODS)}")
        self.method = method
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> "Scaler":
        x = _rows(x)
        if self.method == "standard":
            center, spread = x.mean(axis=0, dtype=np.float64), x.std(axis=0, dtype=np.float64)
        elif self.method == "minmax":
            center = x.min(axis=0).astype(np.float64)
            spread = x.max(axis=0).astype(np.float64) - center
        else:
            center, spread = np.zeros(x.shape[1]), np.ones(x.shape[1])
        self.mean_ = center.astype(np.float32)
        self.scale_ = np.where(spread > 0, spread, 1.0).astype(np.float32)
        return self

    @property
    def columns(self) -> int | None:
        """The number of columns it was fitted on (None before ``fit``)."""
        return None if self.mean_ is None else len(self.mean_)

    def transform(self, x: np.ndarray) -> np.ndarray:
        mean, scale = self._fitted(x)
        return ((_rows(x) - mean) / scale).astype(np.float32)

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        mean, scale = self._fitted(x)
        return (_rows(x) * scale + mean).astype(np.float32)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    def _fitted(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.mean_ is None or self.scale_ is None:
            raise OptionError("the scaler is not fitted", hint="call fit(x) first")
        if np.ndim(x) != 2 or np.shape(x)[1] != len(self.mean_):
            raise OptionError(f"expected rows of {len(self.mean_)} columns, got shape {np.shape(x)}")
        return self.mean_, self.scale_

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (lists of floats), for a checkpoint's config."""
        mean, scale = self._fitted(np.zeros((0, 0 if self.mean_ is None else len(self.mean_))))
        return {"method": self.method, "mean": mean.tolist(), "scale": scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scaler":
        try:
            scaler = cls(d["method"])
            mean = np.asarray(d["mean"], dtype=np.float32)
            scale = np.asarray(d["scale"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"not a saved scaler ({e})", hint="expected method, mean and scale") from e
        if mean.ndim != 1 or mean.shape != scale.shape or not np.all(np.isfinite(mean)) \
                or not np.all(scale > 0):
            raise DataError("a saved scaler has mismatched or invalid mean/scale",
                            hint="the checkpoint is damaged")
        scaler.mean_, scaler.scale_ = mean, scale
        return scaler

    def __repr__(self) -> str:
        return f"Scaler(method={self.method!r})"


def _rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise OptionError(f"expected rows of shape (n, d), got shape {x.shape}")
    return x
