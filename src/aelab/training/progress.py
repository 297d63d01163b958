"""CNTK's progress table (``ProgressPrinter(0)``), and a progress bar for long runs."""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable, TextIO

import torch

from ..errors import OptionError, OutputError
from ..fileio import write_text

HEADER = (" average      since    average      since      examples\n"
          "    loss       last     metric       last              \n"
          " ------------------------------------------------------")


def _g(value: float) -> str:
    return f"{value:.3g}"


class ProgressTable:
    """Prints CNTK's table: averages since the start and since the last line.

    As CNTK's ``ProgressPrinter(freq=0)`` it prints after minibatches 1, 3, 7,
    15, ... (doubling intervals). It also keeps every printed row, so callers
    can plot the curve or store it in a summary.
    """

    def __init__(self, write: Callable[[str], None] | None = None, learning_rate: float | None = None,
                 rate_unit: str = "sample") -> None:
        self.write = write
        self.rows: list[dict] = []
        self._loss_total = self._metric_total = 0.0
        self._loss_last = self._metric_last = 0.0
        self._samples = self._samples_last = 0
        self._minibatches = 0
        self._next_print = 1
        if self.write:
            self.write(HEADER)
            if learning_rate is not None:
                self.write(f"Learning rate per {rate_unit}: {learning_rate:g}")

    @property
    def average_loss(self) -> float:
        return self._loss_total / self._samples if self._samples else math.nan

    @property
    def average_metric(self) -> float:
        return self._metric_total / self._samples if self._samples else math.nan

    @property
    def samples(self) -> int:
        return self._samples

    @property
    def minibatches(self) -> int:
        return self._minibatches

    _STATE = ("_loss_total", "_metric_total", "_loss_last", "_metric_last", "_samples", "_samples_last",
              "_minibatches", "_next_print", "rows")

    def state_dict(self) -> dict:
        """Everything needed to continue the table after a resume (plain JSON data)."""
        return {name.lstrip("_"): getattr(self, name) for name in self._STATE}

    def load_state_dict(self, state: dict) -> None:
        for name in self._STATE:
            setattr(self, name, state[name.lstrip("_")])

    def due(self, minibatches_after_this: int) -> bool:
        """Whether the update for minibatch number ``minibatches_after_this`` prints a row."""
        return minibatches_after_this == self._next_print

    def add(self, loss_sum: float, metric_sum: float, samples: int, minibatches: int = 1) -> None:
        """Account for ``minibatches`` minibatches holding ``samples`` samples in all."""
        self._loss_total += loss_sum
        self._metric_total += metric_sum
        self._loss_last += loss_sum
        self._metric_last += metric_sum
        self._samples += samples
        self._samples_last += samples
        self._minibatches += minibatches
        if self._minibatches >= self._next_print:
            self._emit()
            self._next_print = 2 * self._next_print + 1

    def pending_row(self) -> dict | None:
        """The row the next print would show for what was added since the last one (None: nothing)."""
        if not self._samples_last:
            return None
        return {"examples": self._samples, "loss_since_last": self._loss_last / self._samples_last,
                "metric_since_last": self._metric_last / self._samples_last}

    def _emit(self) -> None:
        row = {
            "examples": self._samples,
            "loss": self._loss_total / self._samples,
            "loss_since_last": self._loss_last / self._samples_last,
            "metric": self._metric_total / self._samples,
            "metric_since_last": self._metric_last / self._samples_last,
        }
        self.rows.append(row)
        self._loss_last = self._metric_last = 0.0
        self._samples_last = 0
        if self.write:
            self.write(f" {_g(row['loss']):>8} {_g(row['loss_since_last']):>10} {_g(row['metric']):>10} "
                       f"{_g(row['metric_since_last']):>10} {row['examples']:>13}")


class ProgressBar:
    """A tqdm bar on stderr that appears only if the run lasts more than ``delay`` seconds, and only on a
    terminal: redirected to a file (often the same as stdout's), its redraws would be mixed into the log."""

    def __init__(self, total: int, desc: str, enabled: bool = True, delay: float = 2.0,
                 stream: TextIO | None = None) -> None:
        self._bar = None
        stream = stream or sys.stderr
        if enabled and _is_terminal(stream):
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, desc=desc, unit="sample", unit_scale=True, delay=delay,
                             leave=False, file=stream, dynamic_ncols=True)
        self._pending = 0
        self._created = self._last = time.monotonic()
        self._delay = delay

    def print_above(self, write: Callable[[str], None]) -> Callable[[str], None]:
        """Wrap ``write`` so that its lines appear above the bar instead of through it."""
        if self._bar is None:
            return write

        def write_above(text: str) -> None:
            if time.monotonic() - self._created < self._delay:  # the bar is not shown yet
                write(text)
                return
            with self._bar.external_write_mode(file=sys.stdout):
                write(text)
        return write_above

    def update(self, n: int) -> None:
        if self._bar is None:
            return
        self._pending += n
        now = time.monotonic()
        if now - self._last > 0.25:  # tqdm's own rate limit still costs a call per step
            self._bar.update(self._pending)
            self._pending = 0
            self._last = now

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._pending)
            self._bar.close()


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class Windows:
    """The loss and metric summed since the progress table's last row, as float64 0-d tensors on the device
    (adding a step's 0-d tensors there needs no device-to-host copy per step)."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.metric = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, loss: torch.Tensor, metric: torch.Tensor) -> None:
        self.loss += loss
        self.metric += metric

    def take(self) -> tuple[float, float]:
        """The sums so far, and start again from zero."""
        sums = self.loss.item(), self.metric.item()
        self.loss.zero_()
        self.metric.zero_()
        return sums

    def state_dict(self) -> dict:
        return {"loss": self.loss, "metric": self.metric}

    def load_state_dict(self, state: dict) -> None:
        self.loss.copy_(state["loss"])
        self.metric.copy_(state["metric"])


METRICS_COLUMNS = ("step", "samples_seen", "loss", "metric", "learning_rate", "seconds")


class MetricsLog:
    """``metrics.csv``: one line per progress-table row (CNTK's doubling steps, and the last step),
    written and flushed as training goes, so a crash keeps the curve so far; with ``tensorboard``,
    the same values as TensorBoard scalars in that folder (x axis: samples seen).

    ``loss`` and ``metric`` are the averages per sample since the previous line. With ``validation``,
    a last column ``val_loss`` holds the validation split's mean squared error per value, on lines of
    their own (whose ``loss`` and ``metric`` are empty) at each step it is measured. A resumed run
    appends to the file it finds, less the lines the interrupted run wrote after ``resumed_at``
    samples (its state was saved there; it logs them again), and never a line for a point the file
    has already; TensorBoard drops what the interrupted run logged after ``resumed_at`` samples.
    """

    def __init__(self, path=None, append: bool = False, tensorboard=None, resumed_at: int | None = None,
                 validation: bool = False) -> None:
        self.path = path
        self.validation = validation
        self._board = tensorboard_writer(tensorboard, resumed_at) if tensorboard is not None else None
        self._file = None
        self._logged_to = -1  # the samples_seen of the file's last line
        if path is not None:
            fresh = not append or not os.path.exists(path)
            if not fresh and resumed_at is not None:
                self._logged_to = _keep_lines_up_to(path, resumed_at)
            self._file = open(path, "w" if fresh else "a", encoding="utf-8", newline="")
            if fresh:
                self._write(",".join(METRICS_COLUMNS + (("val_loss",) if validation else ())))

    def add(self, step: int, row: dict, learning_rate: float, seconds: float) -> None:
        if self._file is not None and row["examples"] > self._logged_to:
            self._write(f"{step},{row['examples']},{row['loss_since_last']:.6g},{row['metric_since_last']:.6g},"
                        f"{learning_rate:.6g},{seconds:.3f}" + ("," if self.validation else ""))
        if self._board is not None:
            for name, value in (("loss", row["loss_since_last"]), ("metric", row["metric_since_last"]),
                                ("learning_rate", learning_rate), ("seconds", seconds)):
                self._board.add_scalar(f"train/{name}", value, global_step=row["examples"])
            self._board.flush()

    def add_validation(self, step: int, examples: int, loss: float, learning_rate: float, seconds: float) -> None:
        if self._file is not None and examples > self._logged_to:
            self._write(f"{step},{examples},,,{learning_rate:.6g},{seconds:.3f},{loss:.6g}")
        if self._board is not None:
            self._board.add_scalar("validation/loss", loss, global_step=examples)
            self._board.flush()

    def _write(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._board is not None:
            self._board.close()


def _keep_lines_up_to(path, samples: int) -> int:
    """Rewrite the metrics file ``path`` without its lines past ``samples`` samples seen; returns the
    samples_seen of the last line kept (-1: none)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        lines = f.read().splitlines()
    kept, last = lines[:1], -1
    width = len(lines[0].split(",")) if lines else len(METRICS_COLUMNS)  # val_loss makes one more
    for line in lines[1:]:
        fields = line.split(",")
        if len(fields) != width or not fields[1].isdigit():
            continue  # a line cut short by a kill
        seen = int(fields[1])
        if seen <= samples:
            kept.append(line)
            last = max(last, seen)
    write_text(path, "".join(f"{line}\n" for line in kept))
    return last


def tensorboard_writer(folder, resumed_at: int | None = None):
    """A TensorBoard ``SummaryWriter`` into ``folder``; a clear error when TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise OptionError("--tensorboard needs the tensorboard package",
                          hint="pip install 'aelab[tensorboard]', or leave out --tensorboard "
                               "(metrics.csv holds the same values)") from None
    try:
        return SummaryWriter(log_dir=str(folder), purge_step=resumed_at)
    except OSError as e:
        raise OutputError(f"cannot write TensorBoard logs there ({e.strerror or e})", path=folder,
                          hint="choose another --tensorboard folder") from None


def current_learning_rate(optimizer) -> float:
    """The learning rate the optimiser's next step uses (FSAdaGrad's per sample, Adam's scheduled)."""
    settings = getattr(optimizer, "settings", None)
    return float((settings or optimizer.param_groups[0])["lr"])
