"""Cosine similarity of two images, of their decodings and of their codes, and the tutorial's pairs."""
from __future__ import annotations

import numpy as np
import torch

from ..models.inference import encode, reconstruct
from .metrics import cosine_similarity

# The tutorial reads its comparison images from the same test reader right after the first 50
# (reader_eval), so its digit pairs come from test images 50..99.
PAIRS_OFFSET = 50
PAIRS_WINDOW = 50
SAME_DIGIT = 6             # two 6s ...
DIFFERENT_DIGITS = (3, 8)  # ... and a 3 against an 8


def first_indices_by_label(labels: np.ndarray, start: int = PAIRS_OFFSET,
                           count: int = PAIRS_WINDOW) -> dict[int, list[int]]:
    """Indices of the images ``start .. start+count-1``, grouped by label (the tutorial's label_dict)."""
    found: dict[int, list[int]] = {}
    for i in range(start, min(start + count, len(labels))):
        found.setdefault(int(labels[i]), []).append(i)
    return found


def tutorial_pairs(labels: np.ndarray | None) -> list[tuple[str, int, int]]:
    """(title, index A, index B) of the tutorial's comparisons that ``labels`` allow: two 6s, a 3 and an 8."""
    if labels is None:
        return []
    by_label = first_indices_by_label(labels)
    pairs = []
    if len(by_label.get(SAME_DIGIT, [])) >= 2:
        a, b = by_label[SAME_DIGIT][:2]
        pairs.append((f"two {SAME_DIGIT}s", a, b))
    da, db = DIFFERENT_DIGITS
    if by_label.get(da) and by_label.get(db):
        pairs.append((f"a {da} and an {db}", by_label[da][0], by_label[db][0]))
    return pairs


def pair_similarity(model: torch.nn.Module, images: np.ndarray, title: str, a: int, b: int) -> dict:
    """One row of the similarity figure: images ``a`` and ``b``, their decodings and the three cosines."""
    decoded = reconstruct(model, images[[a, b]])
    codes = encode(model, images[[a, b]])
    return {"title": title, "index_a": a, "index_b": b,
            "a": images[a], "b": images[b], "a_decoded": decoded[0], "b_decoded": decoded[1],
            "cos_original": cosine_similarity(images[a], images[b]),
            "cos_decoded": cosine_similarity(decoded[0], decoded[1]),
            "cos_code": cosine_similarity(codes[0], codes[1])}


def similarity_rows(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray | None) -> list[dict]:
    """The tutorial's comparisons: two images of the same digit, then two different digits."""
    return [pair_similarity(model, images, title, a, b) for title, a, b in tutorial_pairs(labels)]
