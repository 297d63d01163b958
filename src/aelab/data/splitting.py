"""Splitting off a seeded, reproducible test set from a source that has none."""
from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from ..errors import OptionError
from ..runconfig import MAX_SEED

__all__ = ["split_indices", "check_test_fraction", "indices_digest"]


def check_test_fraction(test_fraction: float) -> float:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not 0.0 < float(test_fraction) < 1.0:
        raise OptionError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}",
                          hint="e.g. 0.1 keeps a tenth of the samples for testing")
    return float(test_fraction)


def indices_digest(indices: np.ndarray) -> str:
    """SHA-256 of the indices as little-endian int64: the same rows give the same digest."""
    return hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest()


def split_indices(count: int, labels: np.ndarray | None, test_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Sorted train and test row indices, and how they were drawn.

    Stratified by ``labels`` when there are any and every class has at least
    two members (scikit-learn cannot stratify otherwise; the record says so).
    """
    from sklearn.model_selection import train_test_split

    fraction = check_test_fraction(test_fraction)
    if count < 2:
        raise OptionError(f"cannot split {count} sample(s) into train and test",
                          hint="give at least two samples, or a separate test set")
    if math.ceil(fraction * count) >= count:
        raise OptionError(f"a test fraction of {fraction:g} of {count} samples leaves no training samples",
                          hint="use a smaller --test-fraction, e.g. 0.2")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise OptionError(f"the split's seed must be an integer from 0 to {MAX_SEED} (2**32 - 1), got {seed!r}")
    stratify = labels if labels is not None and _can_stratify(labels, count, fraction) else None
    train, test = train_test_split(np.arange(count), test_size=fraction, random_state=seed,
                                   shuffle=True, stratify=stratify)
    train, test = np.sort(train), np.sort(test)
    record = {"method": "fraction", "test_fraction": fraction, "seed": int(seed),
              "stratified": stratify is not None, "test_count": int(len(test)),
              "test_indices_sha256": indices_digest(test)}
    return train, test, record


def _can_stratify(labels: np.ndarray, count: int, fraction: float) -> bool:
    counts = np.unique(labels, return_counts=True)[1]
    test_count = int(np.ceil(fraction * count))
    return counts.min() >= 2 and len(counts) <= min(test_count, count - test_count)
