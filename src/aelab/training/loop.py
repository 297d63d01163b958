"""The training loop: one readable loop for every model and recipe.

The data set lives on the device as one tensor (uint8 pixels, channels first,
or a table's float32 rows); each sweep is one
shuffled copy of it, and minibatches are consecutive slices of the sweeps laid
end to end (as CNTK's randomising reader does, a minibatch may straddle two
sweeps). For the dense models the gradient comes from an explicit backward
pass (``DenseBackprop``), checked against autograd in the tests; any other
model uses autograd.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from ..data.datasets import Dataset
from ..device import describe_device, one_cpu_thread, resolve_device
from ..errors import AelabError, CheckpointError, OptionError
from ..data.scaling import in_unit_range
from ..fileio import remove_file
from ..data.augment import check_shift_fits, shift_images
from ..data.noise import corrupt, parse_noise
from ..models.networks import build_model, check_code_reduces, model_config, store_matrices_transposed
from ..models.pca import pca_row_index
from . import cuda_graphs, kernels
from .distributed import ranks_from_environment
from .config import RECIPES, TrainConfig, TrainResult, get_recipe, make_optimizer  # noqa: F401 - RECIPES: the CLI imports it from here
from .progress import MetricsLog, ProgressBar, ProgressTable, Windows, current_learning_rate
from .steps import flatten_parameters, make_step
from .stream import minibatch_stream, noise_generator, shift_generator, training_rows
from .resume import TrainingState, load_training_state, save_training_state
from .validation import EarlyStopping, carve, held_out_scores, model_rows, neighbour_accuracies


class TrainingInterrupted(AelabError):
    """Training stopped on Ctrl-C or SIGTERM after a minibatch; the resume file is up to date.

    ``signum`` is the signal that stopped it (SIGINT or SIGTERM)."""

    signum: int = signal.SIGINT


class TrainingDiverged(AelabError):
    """The loss became NaN or infinite; the last good resume file is kept."""


REPEAT_AFTER = 0.5  # seconds: a second Ctrl-C sooner is the first one passed on by a launcher (torchrun)


@contextlib.contextmanager
def stop_requests(enabled: bool) -> Iterator[dict]:
    """While active, Ctrl-C or SIGTERM asks the loop to stop after the current minibatch and save;
    ``flag["signal"]`` says which came first. Once asked, only a second Ctrl-C typed by the user (a SIGINT
    at least ``REPEAT_AFTER`` seconds after a first SIGINT) stops at once, and never while the loop sets
    ``flag["saving"]``: a SIGTERM then (a scheduler's, or torchrun's passing on a signal it got) is the same
    request to stop, and must not cancel the save that keeps the run."""
    flag = {"stop": False, "signal": signal.SIGINT, "since": 0.0, "saving": False}
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def on_signal(signum, frame):
        now = time.monotonic()
        if not flag["stop"]:
            flag.update(stop=True, signal=signum, since=now)
        elif (signum == signal.SIGINT == flag["signal"] and now - flag["since"] >= REPEAT_AFTER
              and not flag["saving"]):
            raise KeyboardInterrupt
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _optimizer_snapshot(optimizer):
    state = optimizer.state_dict()
    tensors = {k: (v if isinstance(v, torch.Tensor) else torch.tensor(v)) for k, v in state["state"].get(0, {}).items()}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]]
    return tensors, groups


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, groups: list[dict]) -> None:
    groups = [{**g, "params": [i]} for i, g in enumerate(groups)]
    optimizer.load_state_dict({"state": {0: dict(tensors)} if tensors else {}, "param_groups": groups})


def _check_resumable(saved: TrainingState, config: TrainConfig, data: Dataset, path: Path) -> None:
    ours = config.to_dict()
    different = [k for k in ours if k not in ("sweeps", "device", "budget") and saved.config.get(k, DEFAULT_CONFIG.get(k))
                 != ours[k]]
    if different:
        details = ", ".join(f"{k}: saved {saved.config.get(k)!r}, now {ours[k]!r}" for k in different)
        raise OptionError(f"cannot resume with other settings ({details})", path=path,
                          hint="repeat the original options, or drop --resume to start over")
    if saved.data_sha256 != data.sha256:
        raise OptionError("cannot resume on other data (checksum differs)", path=path,
                          hint="pass the same --data, or drop --resume to start over")


DEFAULT_CONFIG = TrainConfig().to_dict()  # what a resume file written before a setting existed meant by it


def denormals_flushed() -> bool:
    """Whether the CPU currently flushes denormal floats to zero."""
    return torch.tensor([1e-39], dtype=torch.float32).mul(1.0).item() == 0.0


@contextlib.contextmanager
def flushing_denormals() -> Iterator[None]:
    """Flush denormals to zero while training, then restore the caller's setting.

    FSAdaGrad's variance accumulators decay into denormal floats, which make CPU
    arithmetic ~7x slower; flushing them changes no result we report. The flag
    is process-wide (it would change numpy's arithmetic too), hence the restore.
    """
    before = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


@contextlib.contextmanager
def threads_for(device: torch.device, minibatch: int, input_dim: int) -> Iterator[None]:
    """One CPU thread for small minibatches, then the caller's setting again.

    At minibatch 64 a second thread saves ~10% on an idle machine, but when
    another process holds a core each parallel region waits for a descheduled
    thread: measured here, 73,600 samples/s with one thread against 396 with two.
    """
    if device.type != "cpu" or minibatch * input_dim > SINGLE_THREAD_ELEMENTS:
        yield
        return
    with one_cpu_thread():
        yield


SINGLE_THREAD_ELEMENTS = 256 * 784  # minibatch x pixels up to which one thread trains best


def train(data: Dataset, config: TrainConfig | None = None, *, model: torch.nn.Module | None = None,
          log: Callable[[str], None] | None = print, progress_bar: bool = True,
          use_autograd: bool = False, resume_file: str | os.PathLike | None = None,
          checkpoint_every: float = 30.0, resume: bool = False, keep_resume_file: bool = False,
          metrics_file: str | os.PathLike | None = None,
          tensorboard: str | os.PathLike | None = None) -> TrainResult:
    """Train an autoencoder on ``data.train`` as ``config`` says; returns a TrainResult.

    ``log`` receives the progress table's lines (None: silent); ``progress_bar``
    shows a bar on stderr for runs longer than a few seconds. With
    ``resume_file``, the run's state is saved there every ``checkpoint_every``
    seconds (0: only on Ctrl-C) and on Ctrl-C, which stops the run after the
    current minibatch (TrainingInterrupted); ``resume=True`` continues from it.
    The file is removed when the run completes, unless ``keep_resume_file``:
    then it is brought up to the finished state and kept, for the caller to
    remove once the model is safely saved (resuming such a file just returns
    the finished model).
    With ``metrics_file``, each progress-table row also goes to that CSV as
    it is printed (see ``MetricsLog``), and with ``tensorboard`` to TensorBoard logs in that folder.
    """
    # --- set up: settings, model, data, step and optimiser
    config = config or TrainConfig()
    config.validate()
    if not (checkpoint_every >= 0):
        raise OptionError(f"checkpoint interval must be >= 0 seconds, got {checkpoint_every!r}")
    recipe = get_recipe(config.recipe)
    minibatch = config.minibatch_size or recipe.minibatch_size
    ranks = ranks_from_environment(resolve_device(config.device))  # one process, or torchrun's
    device = ranks.device
    if ranks.world > minibatch:
        raise OptionError(f"{ranks.world} training processes cannot share a minibatch of {minibatch}",
                          hint="use a larger --minibatch-size or fewer processes")
    if not ranks.main:  # rank 0 alone prints and writes
        log, progress_bar, metrics_file, tensorboard = None, False, None, None
    if config.budget is not None and ranks.world > 1:
        raise OptionError("--budget stops each process by its own clock, which several processes cannot share",
                          hint="leave out --budget, or train in one process")
    check_code_reduces(config.model, config.code_size, data.input_dim, images=data.kind == "images")
    mconfig = model_config(config.model, input_shape=data.input_shape, code_size=config.code_size,
                           hidden=config.hidden, channels=config.channels, conv_depth=config.conv_depth,
                           res_blocks=config.res_blocks, norm=config.norm,
                           activation=config.activation, sparsity=config.sparsity, beta=config.beta,
                           loss=loss_for(data, config.loss or PREFERRED_LOSS.get(config.model)),
                           input_max=255.0 if data.kind == "images" else 1.0)
    saved = _load_resumable(resume_file, config, data) if resume else None
    fitted, held_out, held_record = _held_out(data, config)  # the rows trained on, and the validation split
    fresh = model is None
    model = _prepare_model(model or build_model(mconfig, seed=config.seed), saved, resume_file, device)
    if fresh and saved is None and hasattr(model, "fit_linear"):
        # the rows trained on: the validation rows must stay unseen, or the start's validation error is
        # in-sample, which on wide images no trained model catches up with
        model.fit_linear(_pca_rows(mconfig, fitted, config.seed).to(device), seed=config.seed)
    images = training_rows(mconfig, fitted, device)  # one tensor, or a packed set's rows read in blocks
    total_minibatches = _count_minibatches(config, fitted.train.n, minibatch)
    grad_scale = 1.0 / (minibatch * mconfig.input_dim) if recipe.loss_reduction == "mean" else 1.0
    noise = parse_noise(config.noise)
    bounded = mconfig.loss == "bce" or mconfig.is_image  # data in [0, 1]
    if noise is not None and noise.kind == "salt-pepper" and not bounded:
        raise OptionError("salt-pepper noise sets values to 0 or 1, which means nothing for data outside [0, 1]",
                          hint="use gaussian:SIGMA or masking:P")
    check_shift_fits(config.shift, mconfig.is_image)
    flat = flatten_parameters(model)
    ranks.broadcast_(flat.data)  # every rank starts from rank 0's weights
    step = make_step(model, grad_scale, use_autograd)
    optimizer = make_optimizer([flat], recipe, minibatch, total_steps=total_minibatches)
    early = None if held_out is None else \
        EarlyStopping(model_rows(mconfig, held_out.images), total_minibatches, held_record,
                      baseline_start=hasattr(model, "fit_linear"))
    bar = ProgressBar(total_minibatches * minibatch, desc=f"training {config.model}",
                      enabled=progress_bar and log is not None)
    table = ProgressTable(bar.print_above(log) if log else None,
                          learning_rate=recipe.lr if recipe.optimizer == "fsadagrad" else None)
    windows = Windows(device)
    # each rank's own loss and metric since the ranks last summed them (with one process: the windows)
    own = Windows(device) if ranks.world > 1 else windows
    metrics = None
    if metrics_file is not None or tensorboard is not None:
        metrics = MetricsLog(metrics_file, append=resume, tensorboard=tensorboard,
                             resumed_at=saved.minibatches_done * minibatch if saved is not None else None,
                             validation=early is not None)

    # --- resume: the optimiser, the table and the windows from the resume file
    first, seconds_before = 0, 0.0
    if saved is not None:
        first, seconds_before = _restore(saved, resume_file, optimizer, table, windows, total_minibatches)
        if early is not None:
            _restore_early_stopping(early, saved, resume_file)
        bar.update(first * minibatch)
        if log:
            log(f"Resuming after {first * minibatch} samples ({first} minibatches)")
    stream = minibatch_stream(images, config.seed, start_sample=first * minibatch, scale=1.0 / mconfig.input_max)
    # the CPU stream writes each minibatch into this one buffer: a fresh large tensor costs page faults per step
    batch = torch.empty(minibatch, images.shape[1], dtype=torch.float32) if device.type == "cpu" else None

    def check_finite(k: int, *more: torch.Tensor) -> None:
        loss_sum = windows.loss.item()
        if not math.isfinite(loss_sum) or not all(bool(torch.isfinite(t).all()) for t in (flat, *more)):
            kept = f"; the last good state is kept in {resume_file}" if resume_file and \
                os.path.exists(resume_file) else ""
            raise TrainingDiverged(f"the loss became {loss_sum} after {k} minibatches{kept}",
                                   hint="train with a smaller learning rate or another recipe")

    def sum_windows() -> None:
        if own is not windows:
            sums = ranks.sum_(torch.stack([own.loss, own.metric]))
            windows.add(sums[0], sums[1])
            own.take()

    def save_state(k: int) -> None:
        if not ranks.main:
            return
        tensors, groups = _optimizer_snapshot(optimizer)
        # everything the file will hold must be finite, or it is no "last good state"
        check_finite(k, windows.metric, *model.state_dict().values(),
                     *(t for t in tensors.values() if t.is_floating_point()))
        save_training_state(resume_file, TrainingState(
            config=config.to_dict(), data_sha256=data.sha256, minibatches_done=k, model=model.state_dict(),
            optimizer_tensors=tensors, optimizer_groups=groups, table=table.state_dict(),
            window=windows.state_dict(), seconds=seconds_before + time.perf_counter() - started,
            validation=None if early is None else early.state_dict(), best=None if early is None else early.best))

    def validate(k: int) -> None:
        loss = early.measure(model, flat, k)
        if metrics is not None:
            metrics.add_validation(k, k * minibatch, loss, current_learning_rate(optimizer),
                                   seconds_before + time.perf_counter() - started)

    def eager_step(k: int) -> None:
        target = stream.next(minibatch, out=batch)
        if config.shift:
            target = shift_images(target, mconfig.image_size, config.shift, shift_generator(config.seed, k, device))
        inputs = corrupt(target, noise, noise_generator(config.seed, k, device), bounded) if noise else target
        if ranks.world > 1:  # this rank's share of the global minibatch (noise drawn for all of it, as one process)
            target, inputs = target[mine], inputs[mine]
        own.add(*step(inputs, target))  # forward and backward; the step zeroes what it accumulates into
        ranks.sum_(flat.grad)  # the parts' gradients add up to the global minibatch's (grad_scale is global)
        optimizer.step()

    mine = ranks.part(minibatch)
    train_step = eager_step
    varies_inputs = bool(noise or config.shift)
    if cuda_graphs.applies(device, step, optimizer, varies_inputs) and images.dtype == torch.uint8 and ranks.world == 1:
        graphed = cuda_graphs.GraphedStep(images, stream, step, optimizer, minibatch, windows.loss, windows.metric)
        train_step = lambda k: graphed.run()  # noqa: E731 - eager_step's work as one CUDA graph

    # --- the loop: step, then log, check and save
    if device.type == "cpu" and kernels.available():
        kernels.warm_up()  # numba's compilation or cache load stays out of the measured seconds
    started = time.perf_counter()
    last_save = started
    end, budget_spent = total_minibatches, False
    with stop_requests(resume_file is not None) as stop, flushing_denormals(), \
            threads_for(device, minibatch, mconfig.input_dim):
        ranks.stop = stop  # a collective left unanswered long after a stop was asked means a failed peer
        if early is not None and first == 0:
            validate(0)  # the starting point (for the residual model, the PCA) is a candidate too
        for k in range(first, total_minibatches):
            if early is not None and (early.stop or early.stopped_at is not None):
                end = early.stopped_at = early.stopped_at or k
                break
            if config.budget is not None and seconds_before + time.perf_counter() - started >= config.budget:
                end, budget_spent = k, True
                break
            train_step(k)
            done = k + 1
            if early is not None and early.due(done):
                validate(done)
            if table.due(done) or done == total_minibatches:
                sum_windows()
                check_finite(done)
                rows = len(table.rows)
                table.add(*windows.take(), (done - table.minibatches) * minibatch, done - table.minibatches)
                if metrics is not None and len(table.rows) > rows:
                    metrics.add(done, table.rows[-1], current_learning_rate(optimizer),
                                seconds_before + time.perf_counter() - started)
            elif done % 256 == 0:
                check_finite(done)
            bar.update(minibatch)
            if resume_file is not None and done < total_minibatches:
                save_due = bool(checkpoint_every) and time.perf_counter() - last_save >= checkpoint_every
                stopping, saving = ranks.stop_or_save(done, stop["stop"], save_due)
                if stopping or saving:
                    sum_windows()
                if stopping:
                    stop["saving"] = True
                    save_state(done)
                    ranks.saved()
                    bar.close()
                    stopped = TrainingInterrupted(f"stopped after {done * minibatch} samples; the state is saved in "
                                                  f"{resume_file}", hint="run the same command with --resume to continue")
                    stopped.signum = stop["signal"]
                    raise stopped
                if saving:
                    save_state(done)
                    last_save = time.perf_counter()

    # --- finish: the measured time, the model in eval mode, the resume file gone
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = seconds_before + time.perf_counter() - started
    bar.close()
    if metrics is not None:
        if table.pending_row() is not None:  # the last steps, past the table's last doubling
            metrics.add(end, table.pending_row(), current_learning_rate(optimizer), seconds)
        metrics.close()
    held_scores = neighbours = None
    if early is not None:
        early.restore_best(flat)
        model.eval()
        keeps_pca = False
        if fresh and hasattr(model, "become_pca"):
            start = _pca_start(model, mconfig, fitted, config.seed, device)
            neighbours = None if early.best_step == 0 else neighbour_accuracies(model, start, fitted.train, held_out)
            keeps_pca = early.best_step == 0 or (neighbours is not None and neighbours["worse"])
            if neighbours is not None:
                neighbours["kept"] = "pca" if keeps_pca else "model"
                if keeps_pca and log is not None:
                    log(f"Kept the PCA: its codes' {neighbours['k']}-NN accuracy on the validation split "
                        f"({100 * neighbours['pca']:.1f}%) is clearly above the trained model's "
                        f"({100 * neighbours['model']:.1f}%)")
            if keeps_pca:  # back to the start
                model.load_state_dict(start.state_dict())  # in place: the flat buffer's views stay
        held_scores = held_out_scores(model, model_rows(mconfig, held_out.images))  # before a refit sees them
        if keeps_pca:
            # nothing beat the start, or the model's codes tell the classes apart worse than the PCA's: the
            # model is the PCA of the whole training split, validation rows included
            model.fit_linear(_pca_rows(mconfig, data, config.seed).to(device), seed=config.seed)
    model.eval()
    for p in model.parameters():
        p.grad = None
    store_matrices_transposed(model)  # out of the flat buffer, in the layout a loaded model gets too
    if resume_file is not None and keep_resume_file:
        if first < total_minibatches:  # else the file already holds the finished state
            save_state(total_minibatches)
    elif resume_file is not None and ranks.main:
        unremoved = remove_file(resume_file)
        if unremoved is not None:
            warnings.warn(f"{resume_file}: the run is complete, but its resume file could not be removed "
                          f"({unremoved.strerror or unremoved})", stacklevel=2)
    stopped = {"budget_spent": budget_spent} if config.budget is not None else {}
    return TrainResult(model=model, model_config=mconfig, config=config, recipe=recipe,
                       device=describe_device(device), train_error_pct=100.0 * table.average_metric,
                       train_loss=table.average_loss, samples_seen=end * minibatch,
                       minibatches=end, seconds=seconds, progress=table.rows,
                       validation=None if early is None else {**early.summary(), **stopped, "scores": held_scores,
                                                              **({"neighbours": neighbours} if neighbours else {})})


# the loss a model kind trains with when none is asked for and the data allows it
PREFERRED_LOSS = {"residual": "mse"}


def _held_out(data: Dataset, config: TrainConfig):
    """The data to train on, the validation split (None without one) and its record."""
    if not config.validation:
        return data, None, None
    if data.source.get("format") == "packed":
        raise OptionError("a validation split needs the data in memory, and this is a packed data set",
                          hint="train with --validation 0, or on the unpacked data")
    return carve(data, config.validation, config.seed)


def _pca_start(model: torch.nn.Module, mconfig, fitted: Dataset, seed: int, device: torch.device) -> torch.nn.Module:
    """The residual ``model`` as it started: a copy made the PCA of the rows trained on again."""
    start = copy.deepcopy(model)
    start.become_pca(_pca_rows(mconfig, fitted, seed).to(device), seed=seed)
    return start.eval()


def _pca_rows(mconfig, data: Dataset, seed: int) -> torch.Tensor:
    """The training rows a PCA is fitted on (``pca_row_index``), divided by ``input_max``, as float32."""
    index = pca_row_index(data.train.n, seed, mconfig.input_dim)
    return model_rows(mconfig, np.asarray(data.train.images[index])).to(torch.float32) / mconfig.input_max


def _restore_early_stopping(early: EarlyStopping, saved: TrainingState, resume_file) -> None:
    if saved.validation is None:
        raise CheckpointError("the resume file has no validation state, but this run holds a validation split",
                              path=resume_file, hint="delete it to start the run over")
    try:
        early.load_state_dict(saved.validation, saved.best)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"the resume file's validation state does not fit this run ({e!r})",
                              path=resume_file, hint="delete it to start the run over") from e


def loss_for(data: Dataset, asked: str | None) -> str:
    """The loss a run on ``data`` uses: ``asked``, else BCE for images and tables in [0, 1], else MSE.

    BCE needs targets in [0, 1], so a table outside it is refused with what to do instead. Images
    (pixels / 255) suit either: BCE by default, as the tutorial; MSE gives linear outputs, clipped
    to [0, 1] wherever they become pixels.
    """
    if data.kind == "images":
        return asked or "bce"
    in_unit = in_unit_range(data.train.images)
    if asked == "bce" and not in_unit:
        raise OptionError(f"the bce loss needs data in [0, 1], but {data.name!r} is scaled "
                          f"{data.source.get('scaler', {}).get('method', 'otherwise')}",
                          hint="load it with --scale minmax, or use --loss mse")
    return asked or ("bce" if in_unit else "mse")


def _load_resumable(resume_file: str | os.PathLike | None, config: TrainConfig, data: Dataset) -> TrainingState:
    if resume_file is None:
        raise OptionError("resume needs a resume file")
    saved = load_training_state(resume_file)
    _check_resumable(saved, config, data, Path(resume_file))
    return saved


def _prepare_model(model: torch.nn.Module, saved: TrainingState | None, resume_file, device: torch.device):
    if saved is not None:
        try:
            model.load_state_dict(saved.model)
        except RuntimeError as e:
            raise CheckpointError(f"the resume file's weights do not fit the model ({e})", path=resume_file) from e
    return model.to(device).train()


def _count_minibatches(config: TrainConfig, samples: int, minibatch: int) -> int:
    total = int(config.sweeps * samples) // minibatch
    if total < 1:
        raise OptionError(f"{config.sweeps} sweeps of {samples} samples make no minibatch of {minibatch}",
                          hint="train for more sweeps, or with a smaller minibatch (aelab train --minibatch-size N)")
    return total


def _restore(saved: TrainingState, resume_file, optimizer, table: ProgressTable, windows: Windows,
             total_minibatches: int) -> tuple[int, float]:
    """Load the run's state from ``saved``; returns the minibatches done and the seconds spent."""
    try:
        _restore_optimizer(optimizer, saved.optimizer_tensors, saved.optimizer_groups)
        table.load_state_dict(saved.table)
        windows.load_state_dict(saved.window)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
        raise CheckpointError(f"the resume file does not fit this run ({e!r})", path=resume_file,
                              hint="delete it to start the run over") from e
    if not 0 <= saved.minibatches_done <= total_minibatches:  # == total: a finished run, kept until saved
        raise CheckpointError(f"the resume file is at minibatch {saved.minibatches_done}, outside this run's "
                              f"{total_minibatches}", path=resume_file,
                              hint="train for more --sweeps, or delete it to start over")
    return saved.minibatches_done, saved.seconds
