"""The validation split and early stopping on it.

``TrainConfig.validation`` holds out that share of the training split (drawn with the run's seed, so a
resumed run holds out the same rows). The model's mean squared error on those rows, per value in the
model's output units (pixels / 255, or a table's scaled features), is measured before the first step,
at ``EVALUATIONS`` evenly spaced steps and at the end, on at most ``MEASURED_ROWS`` of them, evenly
spaced (the held-out rows are a random draw already), so that on a large set the measurements cost a
bounded share of the run, not several passes over the data; training stops once ``PATIENCE`` measurements
in a row found no better loss, and the weights of the best one are restored. A measurement only counts
as better than the starting point (for the residual model: the PCA) when the per-row improvement is
clear of the noise of a small validation split: its mean more than ``margin(n)`` standard errors above
zero, where ``margin`` is Student's t quantile for ``n`` rows (one-sided 2.5%), at least ``MARGIN``. On a
few dozen rows, a lower mean alone often turns out worse on other data; on a handful, two standard
errors are no margin at all, since the standard error is itself a guess from those few rows, and
below ``MIN_GAIN_ROWS`` rows nothing counts as a gain. Both apply to a start worth keeping (the residual
model's PCA); a randomly initialised model needs ``MARGIN`` standard errors on 2 rows or more. Everything here depends
only on the step count and the weights, so a resumed run stops, and ends, where an uninterrupted one does.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import numpy as np
import torch

from ..data.dataset_types import Dataset, Split
from ..errors import OptionError
from ..models.inference import encode, tensor_view, to_model_rows

EVALUATIONS = 40   # validation measurements per run (besides the one before the first step)
PATIENCE = 20      # measurements in a row without a better loss that stop the run (half of them)
MIN_TRAIN_ROWS = 2
EVAL_ROWS = 1024   # rows per forward pass while measuring
MARGIN = 2.0       # standard errors by which a measurement must beat the starting point's per-row errors (at least)
MIN_GAIN_ROWS = 10  # fewer validation rows cannot show a gain over a PCA start: Linnerud's 3 held out of 16 rows
                    # passed even the t test with a model at 2.35 times PCA's test error
MARGIN_TAIL = 0.025  # the t test's one-sided tail: from 62 rows on, the flat MARGIN is the larger
MEASURED_ROWS = 2048  # validation rows measured during the run: enough for MARGIN's test, cheap on MNIST
NEIGHBOURS = 5     # the k of the k-NN classifier by which codes are compared with the PCA's
NEIGHBOUR_MARGIN = 1.0  # standard errors by which the PCA's codes must classify better for the model to be dropped


def margin(rows: int) -> float:
    """Standard errors by which the mean per-row gain over ``rows`` (2 or more) validation rows must
    exceed zero: the one-sided ``MARGIN_TAIL`` quantile of Student's t with ``rows - 1`` degrees of
    freedom (12.7 for 2 rows, 2.26 for 10), never below ``MARGIN``."""
    from scipy.special import stdtrit  # scikit-learn's own dependency; imported here, where it is needed
    return max(MARGIN, float(stdtrit(rows - 1, 1.0 - MARGIN_TAIL)))


def split_rows(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices of the rows kept for training and of the rows held out, ``fraction`` of ``n``
    (at least one), drawn with ``seed``."""
    held = max(1, int(round(fraction * n)))
    if n - held < MIN_TRAIN_ROWS:
        raise OptionError(f"a validation share of {fraction:g} leaves {n - held} of {n} training samples",
                          hint="use more data, or train without early stopping: --validation 0 (TrainConfig: "
                               "validation=0; the scikit-learn transformer: a named model, such as model='simple')")
    order = np.random.default_rng([int(seed), 0x7A11D]).permutation(n)
    return np.sort(order[held:]), np.sort(order[:held])


def carve(data: Dataset, fraction: float, seed: int) -> tuple[Dataset, Split, dict]:
    """``data`` with the validation rows taken out of its training split, those rows, and a record of
    the split (share, seed, row count and a digest of the held-out indices) for the checkpoint."""
    keep, held = split_rows(data.train.n, fraction, seed)
    labels = data.train.labels
    train = Split(np.ascontiguousarray(data.train.images[keep]), None if labels is None else labels[keep])
    validation = Split(np.ascontiguousarray(data.train.images[held]), None if labels is None else labels[held])
    record = {"share": float(fraction), "seed": int(seed), "rows": int(len(held)),
              "rows_sha256": hashlib.sha256(held.astype("<i8").tobytes()).hexdigest()}
    source = {k: v for k, v in data.source.items() if k not in ("packed", "format")}
    return replace(data, train=train, source=source), validation, record


def model_rows(config, samples: np.ndarray) -> torch.Tensor:
    """Samples as the model's raw (n, input_dim) rows, on the CPU."""
    return to_model_rows(config, tensor_view(samples))


def measured_rows(rows: torch.Tensor, limit: int) -> torch.Tensor:
    """The rows early stopping measures: all of them up to ``limit``, else ``limit`` evenly spaced ones
    (first and last included), so that a split held out from a file sorted by class keeps every class."""
    n = rows.shape[0]
    if n <= limit:
        return rows
    return rows[torch.from_numpy(np.linspace(0, n - 1, limit).round().astype(np.int64))]


@torch.no_grad()
def sample_errors(model: torch.nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """Each row's mean squared reconstruction error in the model's output units (float64, on the CPU)."""
    config = model.config
    device = next(model.parameters()).device
    errors = []
    for start in range(0, rows.shape[0], EVAL_ROWS):
        raw = rows[start:start + EVAL_ROWS].to(device)
        target = raw.to(torch.float32) * (1.0 / config.input_max)
        out = model.decode(model.encode(raw))
        errors.append((out - target).square().mean(dim=1).to(torch.float64).cpu())
    return torch.cat(errors)


def held_out_scores(model: torch.nn.Module, rows: torch.Tensor) -> list[float]:
    """The anomaly scores (each row's mean squared error) of the validation split's rows, sorted, to 6
    digits: what ``aelab score --fpr`` sets its threshold from. Measured on the weights early stopping
    kept, before the residual model that kept its start is refitted on the whole split, these rows
    included; after that its errors on them are in-sample, and a threshold from them flags far more
    than the asked share of new normal data."""
    return [float(f"{v:.6g}") for v in np.sort(sample_errors(model, rows).numpy())]


def neighbour_accuracies(model: torch.nn.Module, pca: torch.nn.Module, train: Split, held: Split) -> dict | None:
    """How well the codes of ``model`` and of ``pca`` (the same model as its PCA start) tell the validation
    split's classes apart: the accuracy of a ``NEIGHBOURS``-nearest-neighbour classifier fitted on the
    codes of the ``train`` rows, on those of the ``held`` rows, for each, and whether the model's is
    clearly the lower (:func:`clearly_fewer`). None where either split has no labels, or too few rows or
    classes to say anything."""
    if train.labels is None or held.labels is None or train.n <= NEIGHBOURS or held.n < MIN_GAIN_ROWS:
        return None
    if len(np.unique(train.labels)) < 2:
        return None
    from sklearn.neighbors import KNeighborsClassifier

    def right(m: torch.nn.Module) -> np.ndarray:
        classifier = KNeighborsClassifier(n_neighbors=NEIGHBOURS).fit(encode(m, train.images), train.labels)
        return classifier.predict(encode(m, held.images)) == held.labels
    ours, theirs = right(model), right(pca)
    return {"k": NEIGHBOURS, "rows": int(held.n), "model": float(ours.mean()), "pca": float(theirs.mean()),
            "worse": clearly_fewer(ours, theirs)}


def clearly_fewer(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """Whether the rows ``ours`` gets right are clearly fewer than those ``theirs`` does, on the same rows:
    the rows only theirs gets right outnumber those only ours does by more than ``NEIGHBOUR_MARGIN``
    standard errors of that difference (McNemar's test, as a z score). A row or two on a small split is
    noise, and falling back to the PCA over it would throw away a model that reconstructs far better."""
    only_theirs = int(np.sum(theirs & ~ours))
    only_ours = int(np.sum(ours & ~theirs))
    return only_theirs - only_ours > NEIGHBOUR_MARGIN * math.sqrt(only_theirs + only_ours)


class EarlyStopping:
    """The validation curve, the best loss and its weights, and when to stop.

    ``due(step)`` says whether step ``step`` (minibatches done) is measured; ``measure`` records the
    loss and keeps a copy of ``flat`` when it is the best so far; ``stop`` is set after ``PATIENCE``
    measurements without improvement.
    """

    def __init__(self, rows: torch.Tensor, total_steps: int, record: dict, *, baseline_start: bool = False) -> None:
        self.rows = measured_rows(rows, MEASURED_ROWS)
        self.baseline_start = baseline_start  # the start is a model worth keeping (the residual model's PCA)
        self.every = max(1, total_steps // EVALUATIONS)
        self.total = total_steps
        self.record = record
        self.curve: list[list[float]] = []   # [step, loss]
        self.best_loss = math.inf
        self.best_step = -1
        self.since_best = 0
        self.stopped_at: int | None = None
        self.best: torch.Tensor | None = None
        self.start: list[float] | None = None   # the per-row errors of the first measurement (step 0)

    def due(self, step: int) -> bool:
        return step == 0 or step == self.total or step % self.every == 0

    @property
    def stop(self) -> bool:
        return self.since_best >= PATIENCE

    def measure(self, model: torch.nn.Module, flat: torch.Tensor, step: int) -> float:
        was_training = model.training
        model.eval()
        errors = sample_errors(model, self.rows)
        loss = float(errors.mean())
        model.train(was_training)
        self.curve.append([step, loss])
        if self.start is None and step == 0:
            self.start = errors.tolist()
        if loss < self.best_loss and (step == 0 or self.clearly_better_than_start(errors)):
            self.best_loss, self.best_step, self.since_best = loss, step, 0
            self.best = flat.detach().clone()
        else:
            self.since_best += 1
        return loss

    def clearly_better_than_start(self, errors: torch.Tensor) -> bool:
        """Whether ``errors`` improve on the starting point's by more than ``margin(n)`` standard errors
        (always, when the start was not measured: a resumed run from before it existed)."""
        if self.start is None:
            return True
        gain = torch.tensor(self.start, dtype=torch.float64) - errors
        if len(gain) < (MIN_GAIN_ROWS if self.baseline_start else 2):
            return False
        needed = margin(len(gain)) if self.baseline_start else MARGIN
        return float(gain.mean()) > needed * float(gain.std()) / math.sqrt(len(gain))

    def restore_best(self, flat: torch.Tensor) -> None:
        """Put the best weights back into ``flat`` (nothing measured yet: nothing changes)."""
        if self.best is not None:
            with torch.no_grad():
                flat.copy_(self.best)

    def state_dict(self) -> dict:
        return {"curve": self.curve, "best_loss": self.best_loss, "best_step": self.best_step,
                "since_best": self.since_best, "stopped_at": self.stopped_at, "start": self.start}

    def load_state_dict(self, state: dict, best: torch.Tensor | None) -> None:
        self.curve = [list(p) for p in state["curve"]]
        self.best_loss = float(state["best_loss"])
        self.best_step = int(state["best_step"])
        self.since_best = int(state["since_best"])
        self.stopped_at = state.get("stopped_at")
        self.start = state.get("start")
        if self.start is not None and len(self.start) != self.rows.shape[0]:
            raise ValueError(f"its start holds {len(self.start)} rows' errors, this run measures {self.rows.shape[0]}")
        self.best = None if best is None else best.clone()

    def summary(self) -> dict:
        """What the checkpoint keeps: the split's record, the rows measured, the best loss, where it was,
        and the curve."""
        return {**self.record, "measured_rows": int(self.rows.shape[0]), "best_loss": self.best_loss,
                "best_step": self.best_step, "stopped_at": self.stopped_at, "curve": self.curve}
