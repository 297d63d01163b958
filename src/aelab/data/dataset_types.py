"""The ``Split`` and ``Dataset`` types every loader returns.

Array layout (one per kind, so that every existing grey-image path is unchanged):

* grey images: ``uint8 (n, h, w)``;
* colour images: ``uint8 (n, h, w, 3)`` (channels last, as stored; models that
  want channels first transpose to ``(n, 3, h, w)``, and :attr:`Dataset.input_shape`
  reports that channels-first shape);
* tables: ``float32 (n, d)``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import DataError

# --- the data classes ----------------------------------------------------------

@dataclass(frozen=True, eq=False)  # eq=False: numpy arrays have no single truth value
class Split:
    """The images of one split, uint8 ``(n, h, w)``, and their labels, int64 ``(n,)`` or None."""

    images: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, np.ndarray) or images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"images must be a uint8 array of shape (n, h, w), got "
                            f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
                raise DataError(f"labels must be integers of shape ({len(images)},), got "
                                f"{labels.dtype} {labels.shape}")
            object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))

    @property
    def n(self) -> int:
        """The number of images."""
        return len(self.images)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train and a test split of same-sized images, with where they came from.

    ``sha256`` identifies the data: the SHA-256 of the per-file content digests
    in a fixed order. ``files`` maps each file name to the SHA-256 of its
    content (after gunzip). ``num_classes`` is 0 when there are no labels.
    """

    name: str
    train: Split
    test: Split
    sha256: str
    files: dict[str, str] = field(default_factory=dict)
    num_classes: int = 0

    def __post_init__(self) -> None:
        if self.train.images.shape[1:] != self.test.images.shape[1:]:
            raise DataError(f"train images are {_shape_text(self.train.images.shape[1:])} but test "
                            f"images are {_shape_text(self.test.images.shape[1:])}",
                            hint="both splits must have the same image size")

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(h, w)`` of every image."""
        h, w = self.train.images.shape[1:]
        return int(h), int(w)

    @property
    def input_dim(self) -> int:
        """The number of pixels per image, ``h * w``."""
        h, w = self.image_shape
        return h * w


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def combined_digest(digests: Sequence[str]) -> str:
    """The SHA-256 over per-file hex digests, in the order given."""
    return hashlib.sha256("".join(digests).encode("ascii")).hexdigest()


