"""Splitting off a seeded, reproducible test set from a source that has none."""
from __future__ import annotations

import hashlib
import math
import warnings
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


def split_indices(count: int, labels: np.ndarray | None, test_fraction: float, seed: int,
                  class_names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Sorted train and test row indices, and how they were drawn.

    Stratified by ``labels`` when there are any and every class has at least
    two members (scikit-learn cannot stratify otherwise; the record says so,
    and a class with a single member gets a warning).
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
    stratify = None if labels is None else _stratify_by(np.asarray(labels), count, fraction, class_names)
    train, test = train_test_split(np.arange(count), test_size=fraction, random_state=seed,
                                   shuffle=True, stratify=stratify)
    train, test = np.sort(train), np.sort(test)
    record = {"method": "fraction", "test_fraction": fraction, "seed": int(seed),
              "stratified": stratify is not None, "test_count": int(len(test)),
              "test_indices_sha256": indices_digest(test)}
    return train, test, record


def _stratify_by(labels: np.ndarray, count: int, fraction: float,
                 class_names: list[str] | None = None) -> np.ndarray | None:
    """``labels`` where a stratified split can be drawn, else None (with a warning where a class has a single
    sample: the whole split is then drawn without regard to the classes)."""
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        single = classes[counts < 2].tolist()
        by_name = bool(class_names) and max(single) < len(class_names)
        _warn_single_sample_classes([class_names[c] for c in single] if by_name else single, by_name=by_name)
        return None
    test_count = int(np.ceil(fraction * count))
    return labels if len(counts) <= min(test_count, count - test_count) else None


SHOWN_CLASSES = 8  # classes a warning names before "and N more"


def _warn_single_sample_classes(classes: list, by_name: bool = False) -> None:
    shown = ", ".join(str(c) for c in classes[:SHOWN_CLASSES]) + (
        f" and {len(classes) - SHOWN_CLASSES} more" if len(classes) > SHOWN_CLASSES else "")
    which = f"class {shown} has a single sample" if len(classes) == 1 else f"classes {shown} have a single sample each"
    numbered = "" if by_name else " (classes numbered from 0)"
    warnings.warn(f"{which}{numbered}, so the test split is not stratified by class and such a class "
                  "lands in only one of train and test (give every class at least two samples, or remove the single "
                  "ones)", stacklevel=4)
