"""Anomaly scores: each sample's reconstruction error, and flags from a threshold or a contamination rate.

A sample the model reconstructs badly is unlike its training data; the error is in the model's
units (pixels / 255, or a table's scaled features), so scores of one model compare across files.
"""
from __future__ import annotations

import csv
import io
import math
import numbers
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.codes import check_class_names, write_class_names
from ..errors import DataError, OptionError
from ..fileio import atomic_write, remove_file, write_text
from ..models.inference import _batches, _device_of, as_pixel_rows, computing_in
from ..models.networks import output_of

@torch.no_grad()
def sample_errors(model: torch.nn.Module, images, batch_size: int | None = None) -> np.ndarray:
    """The mean squared reconstruction error of each sample of ``images`` (or table rows), float64 (n,),
    in the model's units; higher = worse reconstructed = more anomalous."""
    rows = as_pixel_rows(model, images)
    config = model.config
    device = _device_of(model)
    out = []
    with computing_in(model) as m:
        for b in _batches(rows, batch_size, model):
            x = b.to(device, torch.float32)
            target = x * (1.0 / config.input_max)
            output = output_of(m.decode_logits(m.encode(x)), config)
            out.append(((output - target).double() ** 2).mean(dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def threshold_for(scores: np.ndarray, contamination: float) -> float:
    """The score above which the share ``contamination`` (0 < F < 0.5) of ``scores`` lies, as
    scikit-learn's outlier detectors set theirs."""
    if not 0 < contamination <= 0.5:
        raise OptionError(f"contamination must lie in (0, 0.5], got {contamination!r}", hint="e.g. --contamination 0.05")
    if not len(scores):
        raise OptionError("no scores to set a threshold from")
    return float(np.percentile(scores, 100.0 * (1.0 - contamination)))


def threshold_for_fpr(normal_scores: np.ndarray, fpr: float) -> float:
    """The lowest threshold that flags (``score > threshold``) at most the share ``fpr`` (0 < F < 1) of
    ``normal_scores``, scores of held-out data known to be normal."""
    if not 0 < fpr < 1:
        raise OptionError(f"the false-positive rate must lie in (0, 1), got {fpr!r}", hint="e.g. --fpr 0.01")
    scores = np.sort(np.asarray(normal_scores, dtype=np.float64))
    if not len(scores):
        raise OptionError("no scores of normal data to set a threshold from")
    if fpr * len(scores) < 1:
        warnings.warn(f"the model keeps {len(scores)} scores of held-out normal data, too few to set a false-positive "
                      f"rate of {fpr:g} (at least {math.ceil(1 / fpr)} are needed); the threshold is the highest of "
                      f"them, which flags about 1 in {len(scores) + 1} normal samples (train on more data, or with a "
                      "larger --validation share)", stacklevel=3)
    allowed = int(np.floor(fpr * len(scores) + 1e-9))  # normal samples that may lie above the threshold
    return float(scores[len(scores) - 1 - allowed])


def check_threshold(threshold: float | None) -> float | None:
    """``threshold`` (None: none) if it is a finite real number."""
    number = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool)
    if threshold is not None and not (number and math.isfinite(threshold)):
        raise OptionError(f"the threshold must be a finite number, got {threshold!r}", hint="e.g. threshold=0.05")
    return threshold


def flags_for(scores: np.ndarray, threshold: float) -> np.ndarray:
    """1 where a score is above ``threshold`` (anomalous), else 0; int64 (n,)."""
    return (np.asarray(scores) > threshold).astype(np.int64)


def score_samples(model: torch.nn.Module, images, labels: np.ndarray | None = None, *,
                  contamination: float | None = None, threshold: float | None = None,
                  names: Sequence[str] | None = None) -> dict:
    """:func:`sample_errors` of ``images``, flagged above ``threshold`` or in the top share ``contamination``
    (at most one of them; neither: no flags), and their :func:`score_table`."""
    if contamination is not None and threshold is not None:
        raise OptionError("give one of a contamination, a threshold or a false-positive rate")
    check_threshold(threshold)
    scores = sample_errors(model, images)  # first: it checks the samples' type and shape
    if not len(scores):
        raise DataError("no samples to score")
    cut = threshold_for(scores, contamination) if contamination is not None else threshold
    flags = None if cut is None else flags_for(scores, cut)
    return {"scores": scores, "labels": labels, "threshold": cut, "flags": flags,
            "table": score_table(scores, labels, flags, names), "flagged": None if flags is None else int(flags.sum())}


def score_table(scores: np.ndarray, labels: np.ndarray | None = None, flags: np.ndarray | None = None,
                names: Sequence[str] | None = None) -> np.ndarray:
    """One record per sample: ``index``, ``file`` (when the samples are files: ``names``), ``label`` (when
    known), ``score``, ``flag`` (when set): a structured array, which ``np.load`` reads back without pickle."""
    files = None if names is None else _sample_names(names, len(scores))
    fields = [("index", np.int64)] + ([("file", files.dtype)] if files is not None else []) + \
        ([("label", np.int64)] if labels is not None else []) + \
        [("score", np.float64)] + ([("flag", np.int64)] if flags is not None else [])
    table = np.zeros(len(scores), dtype=fields)
    table["index"] = np.arange(len(scores))
    table["score"] = scores
    if files is not None:
        table["file"] = files
    if labels is not None:
        table["label"] = _sample_labels(labels, len(scores))
    if flags is not None:
        table["flag"] = flags
    return table


def _sample_names(names: Sequence[str], n: int) -> np.ndarray:
    """``names`` as a unicode array (n,), one per sample scored, or an OptionError."""
    if isinstance(names, (str, bytes)) or len(names) != n:
        raise OptionError(f"names must be one file name per sample scored ({n})", hint="pass a list of names, or none")
    return np.asarray([str(name) for name in names], dtype=str) if n else np.zeros(0, dtype="U1")


def _sample_labels(labels, n: int) -> np.ndarray:
    """``labels`` as integers (n,), one per sample scored, or an OptionError that says what they were."""
    array = np.asarray(labels)
    if array.shape != (n,):
        raise OptionError(f"labels must have shape ({n},), one per sample, got {array.shape}",
                          hint="pass the labels of the samples scored, or none")
    if array.dtype.kind not in "biu" and not (array.dtype.kind == "f" and np.all(array == np.round(array))):
        raise OptionError(f"labels must be integers, got dtype {array.dtype}", hint="number the classes 0, 1, ...")
    return array


def write_scores(path: str | os.PathLike, table: np.ndarray, class_names: Sequence[str] | None = None) -> Path:
    """:func:`score_table`'s records to FILE.csv (a header, one row per sample; a label by its class name
    when ``class_names`` name the label numbers) or FILE.npy (with the class names in FILE.classes.json,
    as ``aelab encode`` writes them)."""
    out = Path(path)
    named = bool(class_names) and "label" in table.dtype.names
    if named:
        check_class_names(table["label"], class_names)
    if out.suffix == ".csv":
        write_text(out, _scores_csv(table, list(class_names) if named else None))
    elif out.suffix == ".npy":
        names_file = out.with_suffix(".classes.json")
        remove_file(names_file)  # an earlier run's names would name these labels
        with atomic_write(out) as f:
            np.save(f, table)
        if named:
            write_class_names(names_file, class_names)
    else:
        raise OptionError(f"cannot tell the format of {out}", hint="name the output FILE.csv or FILE.npy")
    return out


def _scores_csv(table: np.ndarray, class_names: list[str] | None) -> str:
    def cell(row, field: str):
        if field == "score":
            return f"{row[field]:.9g}"
        if field == "file":
            return str(row[field])
        return class_names[int(row[field])] if field == "label" and class_names else int(row[field])

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")  # quotes a file name with a comma or a quote in it
    writer.writerow(table.dtype.names)
    writer.writerows([cell(row, field) for field in table.dtype.names] for row in table)
    return text.getvalue()
