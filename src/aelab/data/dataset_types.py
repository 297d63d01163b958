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
from typing import Any, NamedTuple, Sequence

import numpy as np

from ..errors import DataError, OptionError

# --- the data classes ----------------------------------------------------------

@dataclass(frozen=True, eq=False)  # eq=False: numpy arrays have no single truth value
class Split:
    """The samples of one split and their labels, int64 ``(n,)`` or None.

    ``images`` is uint8 ``(n, h, w)`` (grey), uint8 ``(n, h, w, 3)`` (colour) or
    float32 ``(n, d)`` (a table's rows); the name stays ``images`` for every kind.
    """

    images: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, np.ndarray) or not _is_known_layout(images):
            raise DataError(f"samples must be uint8 (n, h, w) or (n, h, w, 3) images or float32 (n, d) "
                            f"rows, got {getattr(images, 'dtype', type(images).__name__)} "
                            f"{getattr(images, 'shape', '')}")
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
                raise DataError(f"labels must be integers of shape ({len(images)},), got "
                                f"{labels.dtype} {labels.shape}")
            object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))

    @property
    def n(self) -> int:
        """The number of samples."""
        return len(self.images)


class Samples(NamedTuple):
    """One input's samples (a file or folder, not a data set's split): the samples as :class:`Split` holds
    them, their labels or None, the names of the label numbers (None where the input names none), and each
    sample's file (a folder's, relative to it; None where the samples are not files of their own)."""

    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None
    names: list[str] | None

    def first(self, limit: int | None) -> Samples:
        """The first ``limit`` samples (None: all)."""
        if limit is None:
            return self
        cut = slice(None, limit)
        return Samples(self.images[cut], None if self.labels is None else self.labels[cut], self.class_names,
                       None if self.names is None else self.names[cut])


def _is_known_layout(a: np.ndarray) -> bool:
    if a.dtype == np.uint8:
        return a.ndim == 3 or (a.ndim == 4 and a.shape[3] == 3)
    return a.dtype == np.float32 and a.ndim == 2


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train and a test split of same-shaped samples, with where they came from.

    ``sha256`` identifies the data: the SHA-256 of the per-file content digests
    in a fixed order. ``files`` maps each file name to the SHA-256 of its
    content (after gunzip). ``num_classes`` is 0 when there are no labels;
    ``class_names`` names them when the source did (class folders, text labels).
    ``source`` records how the data was read and split (JSON-ready, for a
    checkpoint): the split's fraction, seed, stratification and test-index
    digest, skipped files, channel conversions, the table scaler.
    """

    name: str
    train: Split
    test: Split
    sha256: str
    files: dict[str, str] = field(default_factory=dict)
    num_classes: int = 0
    class_names: list[str] | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.train.images.shape[1:] != self.test.images.shape[1:]:
            raise DataError(f"train samples are {_shape_text(self.train.images.shape[1:])} but test "
                            f"samples are {_shape_text(self.test.images.shape[1:])}",
                            hint="both splits must have the same image size")

    @property
    def kind(self) -> str:
        """``'images'`` or ``'table'``."""
        return "table" if self.train.images.ndim == 2 else "images"

    @property
    def channels(self) -> int | None:
        """1 for grey images, 3 for colour, None for a table."""
        if self.kind == "table":
            return None
        return 3 if self.train.images.ndim == 4 else 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """What one sample looks like to a model: ``(c, h, w)`` channels first, or ``(d,)``."""
        if self.kind == "table":
            return (int(self.train.images.shape[1]),)
        h, w = self.image_shape
        return (int(self.channels), h, w)

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(h, w)`` of every image."""
        if self.kind == "table":
            raise DataError(f"{self.name!r} is a table of {self.input_dim} columns, not images",
                            hint="use input_shape or input_dim")
        h, w = self.train.images.shape[1:3]
        return int(h), int(w)

    @property
    def input_dim(self) -> int:
        """The number of inputs per sample: ``c * h * w`` pixels, or ``d`` columns."""
        return int(np.prod(self.train.images.shape[1:]))

    def part(self, split: str) -> Split:
        """The split named ``split``: ``"train"`` or ``"test"``."""
        if split not in ("train", "test"):
            raise OptionError(f"unknown split {split!r}", hint="choose 'train' or 'test'")
        return self.train if split == "train" else self.test

    @property
    def scaler(self) -> Any:
        """The fitted :class:`~aelab.data.scaling.Scaler` of a table (applied already), else None."""
        from .scaling import Scaler

        recorded = self.source.get("scaler")
        return Scaler.from_dict(recorded) if recorded else None


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def combined_digest(digests: Sequence[str]) -> str:
    """The SHA-256 over per-file hex digests, in the order given."""
    return hashlib.sha256("".join(digests).encode("ascii")).hexdigest()


