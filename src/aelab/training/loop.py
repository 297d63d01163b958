"""The training loop: one readable loop for every model and recipe.

The data set lives on the device as one uint8 tensor; each sweep is one
shuffled copy of it, and minibatches are consecutive slices of the sweeps laid
end to end (as CNTK's randomising reader does, a minibatch may straddle two
sweeps). For the dense models the gradient comes from an explicit backward
pass (``DenseBackprop``), checked against autograd in the tests; any other
model uses autograd.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from ..data.datasets import Dataset
from ..device import describe_device, resolve_device
from ..errors import AelabError, CheckpointError, OptionError
from ..data.noise import corrupt, parse_noise
from ..models.networks import ModelConfig, build_model, model_config
from . import cuda_graphs
from .steps import flatten_parameters, make_step
from . import kernels
from .optim import FlatFSAdaGrad
from .schedules import ScheduledAdam
from .progress import ProgressBar, ProgressTable
from .resume import TrainingState, load_training_state, save_training_state


@dataclass(frozen=True)
class Recipe:
    """How to train: the optimizer, its settings and how the loss is reduced.

    ``loss_reduction="sum"`` is the tutorial's: per-sample BCE summed over the
    pixels and over the minibatch (learning rates per sample);
    ``"mean"`` averages over every pixel of the minibatch, as PyTorch's BCELoss.
    """

    name: str
    optimizer: str
    lr: float
    minibatch_size: int = 64
    loss_reduction: str = "sum"
    momentum_time_constant: float = 700.0
    variance_time_constant: float = 720_000.0
    schedule: str = "constant"          # "cosine": warm-up, then cosine decay to 0 over the run (Adam only)
    warmup: float = 0.0                 # fraction of the run's minibatches spent warming up


RECIPES: dict[str, Recipe] = {
    # the tutorial: CNTK's FSAdaGrad, lr 3e-5 per sample, momentum time constant 700
    "tutorial": Recipe("tutorial", "fsadagrad", lr=3e-5),
    # a modern default for comparison: Adam on the mean BCE
    "adam": Recipe("adam", "adam", lr=1e-3, loss_reduction="mean"),
    # for long runs (the shipped models): Adam at a higher rate, 2% warm-up, cosine decay to 0
    "adam-long": Recipe("adam-long", "adam", lr=2e-3, minibatch_size=128, loss_reduction="mean",
                        schedule="cosine", warmup=0.02),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise OptionError(f"unknown recipe {name!r}", hint=f"choose one of: {', '.join(RECIPES)}")
    return RECIPES[name]


@dataclass
class TrainConfig:
    """Everything that decides a training run: plain data, stored in checkpoints."""

    model: str = "simple"
    code_size: int = 32
    hidden: tuple[int, ...] | None = None
    recipe: str = "tutorial"
    sweeps: float = 5
    minibatch_size: int | None = None   # None: the recipe's
    seed: int = 0
    device: str = "auto"
    noise: str | None = None            # denoising: corrupt inputs, e.g. "gaussian:0.5"
    channels: tuple[int, ...] | None = None  # conv stages (conv, sparse, vae); None: the model's default
    conv_depth: int | None = None       # 3x3 convolutions per conv stage; None: the model's default
    activation: str | None = None       # conv, sparse, vae: "relu" or "silu"; None: the model's default
    sparsity: float | None = None       # the sparse model's L1 weight; None: its default
    beta: float | None = None           # the VAE's KL weight; None: its default

    def validate(self) -> None:
        parse_noise(self.noise)
        model_config(self.model, code_size=self.code_size, hidden=self.hidden, channels=self.channels,
                     conv_depth=self.conv_depth, activation=self.activation, sparsity=self.sparsity,
                     beta=self.beta,
                     input_shape=(1 << 16, 1 << 16))  # image size: in train()
        if not (isinstance(self.sweeps, (int, float)) and math.isfinite(self.sweeps) and self.sweeps > 0):
            raise OptionError(f"sweeps must be a positive number, got {self.sweeps!r}", hint="use e.g. --sweeps 5")
        if self.minibatch_size is not None and (not isinstance(self.minibatch_size, int) or self.minibatch_size < 1):
            raise OptionError(f"minibatch size must be a positive integer, got {self.minibatch_size!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise OptionError(f"seed must be a non-negative integer, got {self.seed!r}")
        get_recipe(self.recipe)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = None if self.hidden is None else list(self.hidden)
        d["channels"] = None if self.channels is None else list(self.channels)
        return d


@dataclass
class TrainResult:
    """What a training run gives back; ``model`` is trained and in eval mode."""

    model: torch.nn.Module
    model_config: ModelConfig
    config: TrainConfig
    recipe: Recipe
    device: str
    train_error_pct: float
    train_loss: float
    samples_seen: int
    minibatches: int
    seconds: float
    progress: list[dict] = field(default_factory=list)

    @property
    def samples_per_second(self) -> float:
        return self.samples_seen / self.seconds if self.seconds > 0 else math.inf


def make_optimizer(params: list[torch.Tensor], recipe: Recipe, minibatch_size: int,
                   total_steps: int | None = None) -> torch.optim.Optimizer | FlatFSAdaGrad:
    """The recipe's optimizer over ``params``, the engine's one flat parameter."""
    if recipe.optimizer == "fsadagrad":
        (flat,) = params
        return FlatFSAdaGrad(flat, lr=recipe.lr, momentum_time_constant=recipe.momentum_time_constant,
                         variance_time_constant=recipe.variance_time_constant, minibatch_size=minibatch_size)
    if recipe.optimizer == "adam" and recipe.schedule != "constant":
        if total_steps is None:
            raise OptionError(f"recipe {recipe.name!r} has a learning-rate schedule and needs the run's length")
        return ScheduledAdam(params, lr=recipe.lr, total_steps=total_steps, schedule=recipe.schedule,
                             warmup_steps=int(recipe.warmup * total_steps), foreach=True)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, foreach=True)
    raise OptionError(f"unknown optimizer {recipe.optimizer!r}")


def noise_generator(seed: int, minibatch_index: int, device: torch.device) -> torch.Generator:
    """The generator for minibatch k's noise: seeded from (seed, k), so resuming needs no RNG state."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + minibatch_index) * 2 + 1)


class SweepStream:
    """Consecutive minibatches from shuffled sweeps of the data laid end to end.

    Sweep ``s`` is shuffled by its own generator seeded from (seed, s), so any
    position in the stream can be reproduced without replaying the ones
    before it (what resuming needs). Each minibatch gathers its rows straight
    from the uint8 images; on the CPU one fused loop gathers, converts and
    scales them (``aelab.training.kernels``).
    """

    def __init__(self, images: torch.Tensor, seed: int, start_sample: int = 0) -> None:
        self.images = images  # (n, pixels) uint8 on the device
        self.n = images.shape[0]
        self.seed = seed
        self.position = start_sample
        self._sweep_index = -1
        self._order: torch.Tensor | np.ndarray | None = None
        self._fused = images.dtype == torch.uint8 and kernels.applies_to(images)
        self._images_np = kernels.as_numpy(images) if self._fused else None

    def _shuffled_order(self, sweep: int) -> torch.Tensor | np.ndarray:
        if sweep != self._sweep_index:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + sweep)
            order = torch.randperm(self.n, generator=g)
            self._order = order.numpy() if self._fused else order.to(self.images.device)
            self._sweep_index = sweep
        return self._order

    def next_rows(self, size: int) -> list[torch.Tensor]:
        """The rows of the next ``size`` images in ``images``: one index tensor, or two where the
        minibatch straddles two sweeps (what a CUDA graph copies into its index buffer)."""
        parts = []
        while size:
            sweep, offset = divmod(self.position, self.n)
            take = min(size, self.n - offset)
            order = self._shuffled_order(sweep)
            parts.append(torch.as_tensor(order[offset:offset + take]))
            self.position += take
            size -= take
        return parts

    def next(self, size: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """The next ``size`` images as float32 scaled to [0, 1]; on the CPU they may be written into
        ``out`` (float32, (size, pixels)), which the training loop reuses: a fresh tensor of a large
        minibatch costs page faults on every step."""
        if not self._fused:
            parts = self.next_rows(size)
            rows = parts[0] if len(parts) == 1 else torch.cat(parts)
            return self.images.index_select(0, rows).to(torch.float32).mul_(1.0 / 255.0)
        if out is None:
            out = torch.empty(size, self.images.shape[1], dtype=torch.float32)
        elif out.shape != (size, self.images.shape[1]) or out.dtype != torch.float32 or not kernels.applies_to(out):
            raise ValueError(f"out must be a contiguous float32 CPU tensor of shape {(size, self.images.shape[1])}, "
                             f"got {out.dtype} {tuple(out.shape)}")  # the loop writes without bounds checks
        sweep, offset = divmod(self.position, self.n)
        if offset + size <= self.n:  # within one sweep: straight from its order
            kernels.gather_scaled(self._images_np, self._shuffled_order(sweep), offset, size, 1.0 / 255.0, out.numpy())
            self.position += size
            return out
        done = 0
        for rows in self.next_rows(size):
            kernels.gather_scaled(self._images_np, rows.numpy(), 0, len(rows), 1.0 / 255.0, out.numpy()[done:])
            done += len(rows)
        return out


class TrainingInterrupted(AelabError):
    """Training stopped on Ctrl-C after a minibatch; the resume file is up to date."""


class TrainingDiverged(AelabError):
    """The loss became NaN or infinite; the last good resume file is kept."""


@contextlib.contextmanager
def stop_requests(enabled: bool) -> Iterator[dict]:
    """While active, Ctrl-C asks the loop to stop after the current minibatch (a second one stops at once)."""
    flag = {"stop": False}
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def on_sigint(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _optimizer_snapshot(optimizer: torch.optim.Optimizer, flat: torch.nn.Parameter):
    state = optimizer.state_dict()
    tensors = {k: (v if isinstance(v, torch.Tensor) else torch.tensor(v)) for k, v in state["state"].get(0, {}).items()}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]]
    return tensors, groups


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, groups: list[dict]) -> None:
    groups = [{**g, "params": [i]} for i, g in enumerate(groups)]
    optimizer.load_state_dict({"state": {0: dict(tensors)} if tensors else {}, "param_groups": groups})


def _check_resumable(saved: TrainingState, config: TrainConfig, data: Dataset, path: Path) -> None:
    ours = config.to_dict()
    different = [k for k in ours if k not in ("sweeps", "device") and saved.config.get(k) != ours[k]]
    if different:
        details = ", ".join(f"{k}: saved {saved.config.get(k)!r}, now {ours[k]!r}" for k in different)
        raise OptionError(f"cannot resume with other settings ({details})", path=path,
                          hint="repeat the original options, or drop --resume to start over")
    if saved.data_sha256 != data.sha256:
        raise OptionError("cannot resume on other data (checksum differs)", path=path,
                          hint="pass the same --data, or drop --resume to start over")


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
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


SINGLE_THREAD_ELEMENTS = 256 * 784  # minibatch x pixels up to which one thread trains best


def train(data: Dataset, config: TrainConfig | None = None, *, model: torch.nn.Module | None = None,
          log: Callable[[str], None] | None = print, progress_bar: bool = True,
          use_autograd: bool = False, resume_file: str | os.PathLike | None = None,
          checkpoint_every: float = 30.0, resume: bool = False) -> TrainResult:
    """Train an autoencoder on ``data.train`` as ``config`` says; returns a TrainResult.

    ``log`` receives the progress table's lines (None: silent); ``progress_bar``
    shows a bar on stderr for runs longer than a few seconds. With
    ``resume_file``, the run's state is saved there every ``checkpoint_every``
    seconds (0: only on Ctrl-C) and on Ctrl-C, which stops the run after the
    current minibatch (TrainingInterrupted); ``resume=True`` continues from it.
    The file is removed when the run completes.
    """
    config = config or TrainConfig()
    config.validate()
    if not (checkpoint_every >= 0):
        raise OptionError(f"checkpoint interval must be >= 0 seconds, got {checkpoint_every!r}")
    recipe = get_recipe(config.recipe)
    minibatch = config.minibatch_size or recipe.minibatch_size
    device = resolve_device(config.device)
    mconfig = model_config(config.model, input_shape=data.image_shape, code_size=config.code_size,
                           hidden=config.hidden, channels=config.channels, conv_depth=config.conv_depth,
                           activation=config.activation, sparsity=config.sparsity, beta=config.beta)
    saved = None
    if resume:
        if resume_file is None:
            raise OptionError("resume needs a resume file")
        saved = load_training_state(resume_file)
        _check_resumable(saved, config, data, Path(resume_file))
    if model is None:
        model = build_model(mconfig, seed=config.seed)
    if saved is not None:
        try:
            model.load_state_dict(saved.model)
        except RuntimeError as e:
            raise CheckpointError(f"the resume file's weights do not fit the model ({e})", path=resume_file) from e
    model = model.to(device).train()

    images = torch.from_numpy(np.ascontiguousarray(data.train.images.reshape(data.train.n, -1))).to(device)
    total_minibatches = int(config.sweeps * data.train.n) // minibatch
    if total_minibatches < 1:
        raise OptionError(f"{config.sweeps} sweeps of {data.train.n} samples make no minibatch of {minibatch}",
                          hint="train for more sweeps or use a smaller minibatch")
    grad_scale = 1.0 / (minibatch * mconfig.input_dim) if recipe.loss_reduction == "mean" else 1.0
    noise = parse_noise(config.noise)
    flat = flatten_parameters(model)
    step = make_step(model, grad_scale, use_autograd)
    optimizer = make_optimizer([flat], recipe, minibatch, total_steps=total_minibatches)

    bar = ProgressBar(total_minibatches * minibatch, desc=f"training {config.model}",
                      enabled=progress_bar and log is not None)
    table = ProgressTable(bar.print_above(log) if log else None,
                          learning_rate=recipe.lr if recipe.optimizer == "fsadagrad" else None)
    loss_window = torch.zeros((), dtype=torch.float64, device=device)
    metric_window = torch.zeros((), dtype=torch.float64, device=device)
    windows_np = (loss_window.numpy(), metric_window.numpy()) if device.type == "cpu" else None
    first, seconds_before = 0, 0.0
    if saved is not None:
        try:
            _restore_optimizer(optimizer, saved.optimizer_tensors, saved.optimizer_groups)
            table.load_state_dict(saved.table)
            loss_window.copy_(saved.window["loss"])
            metric_window.copy_(saved.window["metric"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            raise CheckpointError(f"the resume file does not fit this run ({e!r})", path=resume_file,
                                  hint="delete it to start the run over") from e
        first, seconds_before = saved.minibatches_done, saved.seconds
        if not 0 <= first < total_minibatches:
            raise CheckpointError(f"the resume file is at minibatch {first}, outside this run's "
                                  f"{total_minibatches}", path=resume_file,
                                  hint="train for more --sweeps, or delete it to start over")
        bar.update(first * minibatch)
        if log:
            log(f"Resuming after {first * minibatch} samples ({first} minibatches)")
    stream = SweepStream(images, config.seed, start_sample=first * minibatch)
    # reused by stream.next on the CPU
    batch = torch.empty(minibatch, images.shape[1], dtype=torch.float32) if device.type == "cpu" else None

    def check_finite(k: int) -> None:
        loss_sum = loss_window.item()
        if not math.isfinite(loss_sum) or not bool(torch.isfinite(flat).all()):
            kept = f"; the last good state is kept in {resume_file}" if resume_file else ""
            raise TrainingDiverged(f"the loss became {loss_sum} after {k} minibatches{kept}",
                                   hint="train with a smaller learning rate or another recipe")

    def save_state(k: int) -> None:
        check_finite(k)
        tensors, groups = _optimizer_snapshot(optimizer, flat)
        save_training_state(resume_file, TrainingState(
            config=config.to_dict(), data_sha256=data.sha256, minibatches_done=k, model=model.state_dict(),
            optimizer_tensors=tensors, optimizer_groups=groups, table=table.state_dict(),
            window={"loss": loss_window, "metric": metric_window},
            seconds=seconds_before + time.perf_counter() - started))

    if device.type == "cpu" and kernels.available():
        kernels.warm_up()  # numba's compilation or cache load stays out of the measured seconds
    started = time.perf_counter()
    last_save = started
    graphed = None
    if cuda_graphs.applies(device, step, optimizer, noise):
        graphed = cuda_graphs.GraphedStep(images, stream, step, optimizer, minibatch, loss_window, metric_window)
    with stop_requests(resume_file is not None) as stop, flushing_denormals(), \
            threads_for(device, minibatch, mconfig.input_dim):
        for k in range(first, total_minibatches):
            if graphed is not None:
                graphed.run()  # what the lines below do, as one CUDA graph
            else:
                target = stream.next(minibatch, out=batch)
                inputs = corrupt(target, noise, noise_generator(config.seed, k, device)) if noise else target
                loss, metric = step(inputs, target)
                optimizer.update(minibatch) if isinstance(optimizer, FlatFSAdaGrad) else optimizer.step()
                if type(loss) is float:  # from the fused CPU loops: added through numpy, not a PyTorch call
                    windows_np[0][()] += loss
                    windows_np[1][()] += metric
                else:
                    loss_window += loss
                    metric_window += metric
            done = k + 1
            if table.due(done) or done == total_minibatches:
                check_finite(done)
                table.add(loss_window.item(), metric_window.item(), (done - table.minibatches) * minibatch,
                          done - table.minibatches)
                loss_window.zero_()
                metric_window.zero_()
            elif done % 256 == 0:
                check_finite(done)
            bar.update(minibatch)
            if resume_file is not None and done < total_minibatches:
                if stop["stop"]:
                    save_state(done)
                    bar.close()
                    raise TrainingInterrupted(f"stopped after {done * minibatch} samples; the state is saved in "
                                              f"{resume_file}", hint="run the same command with --resume to continue")
                if checkpoint_every and time.perf_counter() - last_save >= checkpoint_every:
                    save_state(done)
                    last_save = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = seconds_before + time.perf_counter() - started
    bar.close()
    samples = total_minibatches * minibatch
    model.eval()
    for p in model.parameters():
        p.grad = None
    if resume_file is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(resume_file)
    return TrainResult(model=model, model_config=mconfig, config=config, recipe=recipe,
                       device=describe_device(device), train_error_pct=100.0 * table.average_metric,
                       train_loss=table.average_loss, samples_seen=samples,
                       minibatches=total_minibatches, seconds=seconds, progress=table.rows)
