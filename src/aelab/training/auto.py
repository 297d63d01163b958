"""Settings chosen for the data when the user chooses none: ``aelab train --data PATH`` alone.

The model is the ``residual`` kind (PCA plus a nonlinear part that starts at zero, see
:mod:`aelab.models.networks`), so that, with early stopping on a validation split, what it learns
starts from the best linear code and keeps only what improves on it. Its size follows the data: for
images of 16 pixels a side and more, conv stages (one per halving down to 4 pixels or fewer, at most
four), each a strided convolution and one residual block, with GroupNorm after every convolution
(``benchmarks/architecture_study.py`` measured the alternatives; docs/own-data.md has the study);
for smaller images and tables, dense layers a few times wider than a table's columns. The code size,
when not given, is 32 for images (at most a quarter of the inputs) and about a quarter of a table's
columns (always fewer than its columns). The recipe is ``fit`` (Adam, warm-up, cosine decay); the
length is a number of optimiser steps that shrinks for large inputs, turned into sweeps of the data,
with early stopping and a time budget as upper bounds. Images of 16 pixels and more move by a pixel
or a few each way during training (:mod:`aelab.data.augment`): a small set then overfits much later.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from ..data.dataset_types import Dataset
from ..models.layers import conv_sizes
from ..data.augment import MAX_SHIFT
from .config import TrainConfig, get_recipe
from .distributed import process_count

AUTO_RECIPE = "fit"
AUTO_VALIDATION = 0.1
SMALL_VALIDATION, SMALL_ROWS = 0.2, 1000  # a training split below SMALL_ROWS holds out more: a few dozen rows
                                          # cannot tell a real gain over PCA from noise
AUTO_BUDGET = 600.0        # seconds: the longest a run with chosen settings trains
STEPS = 6000               # optimiser steps for inputs up to REFERENCE_INPUTS values
REFERENCE_INPUTS = 3 * 32 * 32
MIN_SWEEPS, MAX_SWEEPS = 3.0, 1000.0
IMAGE_CODE = 32
RES_BLOCKS = 1             # residual blocks per conv stage
NORM = "group"             # GroupNorm after each convolution
MAX_STAGES = 4
SHIFT_PER_PIXELS = 16      # conv-sized images move by up to a pixel each way per this many pixels of side
SMALL_SET, SMALL_MINIBATCH = 2000, 32  # below this many training rows, smaller minibatches: more steps per sweep


@dataclass(frozen=True)
class Choice:
    """The settings chosen and a one-line reason for them."""

    config: TrainConfig
    reason: str


def table_code_size(columns: int) -> int:
    """About a quarter of the columns, at least 1 and fewer than the columns (when there are 2 or more)."""
    return max(1, min(columns - 1, math.ceil(columns / 4)))


def image_code_size(inputs: int) -> int:
    return max(1, min(IMAGE_CODE, inputs // 4))


def conv_channels(side: int) -> tuple[int, ...]:
    """Conv stages for images whose shorter side is ``side``: halvings (rounding up) down to 4 pixels
    or fewer, at most ``MAX_STAGES``; none below 16 pixels (dense layers do better there). A small last
    feature map keeps the dense code layer small (28 px: 1,024 inputs to it, not 3,136)."""
    if side < 16:
        return ()
    sides = [h for h, _ in conv_sizes((side, side), MAX_STAGES)]  # after 0, 1, ... halvings
    stages = next((i for i, s in enumerate(sides) if s <= 4), MAX_STAGES)
    return (32, 64, 64)[:stages] if stages <= 3 else (16, 32, 64, 64)


def image_shift(side: int) -> int:
    """Pixels each way that training images of shorter side ``side`` (16 and more: conv stages) move:
    about one per ``SHIFT_PER_PIXELS``. Smaller images, dense layers, get none: on 8x8 digits a pixel is
    an eighth of the picture, and moving them raised the test error (docs/own-data.md)."""
    return min(MAX_SHIFT, max(1, round(side / SHIFT_PER_PIXELS)))


def dense_widths(inputs: int, rows: int) -> tuple[int, int]:
    """Two hidden layers, the first about four times the inputs (32 to 512, a power of two), and
    at most an eighth of the training rows: wider layers overfit a few hundred rows within a few
    hundred steps."""
    first = min(512, 1 << math.ceil(math.log2(4 * inputs)), 1 << int(math.log2(max(rows // 8, 1))))
    first = max(32, first)
    return first, first // 2


def training_sweeps(rows: int, inputs: int, minibatch: int) -> float:
    """Sweeps of ``rows`` samples that make about ``STEPS`` steps (fewer for inputs larger than
    ``REFERENCE_INPUTS``, whose steps cost more), within ``MIN_SWEEPS`` .. ``MAX_SWEEPS``."""
    steps = STEPS * min(1.0, math.sqrt(REFERENCE_INPUTS / inputs))
    sweeps = steps * minibatch / max(rows, 1)
    return float(round(min(MAX_SWEEPS, max(MIN_SWEEPS, sweeps)), 2))


def choose(data: Dataset, base: TrainConfig | None = None, *, code_size: int | None = None,
           sweeps: float | None = None, budget: float | None = None, shift: int | None = None) -> Choice:
    """Settings for ``data``: the model, code size, recipe and length that :mod:`aelab.training.auto`
    describes, on top of ``base`` (seed, device, noise: kept as given). ``code_size``, ``sweeps``,
    ``budget`` and ``shift`` given are kept; the others are chosen."""
    base = base or TrainConfig()
    inputs = data.input_dim
    share = SMALL_VALIDATION if data.train.n < SMALL_ROWS else AUTO_VALIDATION
    train_rows = data.train.n - max(1, round(share * data.train.n))
    minibatch = min(get_recipe(AUTO_RECIPE).minibatch_size if train_rows >= SMALL_SET else SMALL_MINIBATCH,
                    max(8, train_rows // 4))
    if data.kind == "table":
        code = code_size or table_code_size(inputs)
        channels, hidden = (), dense_widths(inputs, train_rows)
    else:
        code = code_size or image_code_size(inputs)
        channels = conv_channels(min(data.image_shape))
        hidden = () if channels else dense_widths(min(inputs, 128), train_rows)
    length = sweeps or training_sweeps(train_rows, inputs, minibatch)
    shift = shift if shift is not None else image_shift(min(data.image_shape)) if channels else 0
    # early stopping needs the data in memory, and a budget one clock: neither for a packed set or torchrun
    packed = data.source.get("format") == "packed"
    validation = 0.0 if packed else share
    budget = budget if budget is not None else (None if process_count() > 1 else AUTO_BUDGET)
    config = replace(base, model="residual", code_size=code, hidden=hidden, channels=channels or None,
                     conv_depth=None, res_blocks=RES_BLOCKS if channels else None,
                     norm=NORM if channels else None, activation=None,
                     recipe=AUTO_RECIPE, sweeps=length, minibatch_size=minibatch, loss="mse",
                     validation=validation, budget=budget, shift=shift)
    body = f"conv stages {','.join(map(str, channels))} with a residual block each, GroupNorm" if channels else \
        f"dense layers {','.join(map(str, hidden))}"
    shape = f"{data.train.n} rows of {inputs} columns" if data.kind == "table" else \
        f"{data.train.n} {data.image_shape[0]}x{data.image_shape[1]} {'colour' if data.channels == 3 else 'grey'} images"
    code_why = "given" if code_size else ("a quarter of the columns" if data.kind == "table" else "the default")
    reason = (f"Chose for {shape}: model residual (PCA plus {body}), code size {code} ({code_why}), "
              f"recipe {AUTO_RECIPE} (Adam, warm-up, cosine decay), {length:g} sweeps of minibatch {minibatch}"
              + (f", early stopping on a {validation:g} validation split" if validation else
                 ", no early stopping (a packed data set)")
              + (f", each training image moved by up to {shift} pixel{'s' if shift > 1 else ''} each way"
                 if shift else "")
              + (f", budget {budget:g} s" if budget else ""))
    return Choice(config, reason)
