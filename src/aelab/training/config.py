"""What decides a training run: recipes (optimiser and loss), ``TrainConfig`` and ``TrainResult``."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..data.augment import check_shift
from ..data.noise import parse_noise
from ..errors import OptionError
from ..runconfig import MAX_SEED
from ..models.networks import LOSSES, ModelConfig, model_config
from .optim import FlatFSAdaGrad
from .schedules import ScheduledAdam


@dataclass(frozen=True)
class Recipe:
    """How to train: the optimizer, its settings and how the loss is reduced.

    ``loss_reduction="sum"`` is the tutorial's: per-sample BCE summed over the
    pixels and over the minibatch (learning rates per sample);
    ``"mean"`` averages over every pixel of the minibatch, as PyTorch's BCELoss.
    The loss itself follows the data (``TrainConfig.loss``): BCE for pixels
    and data in [0, 1], the squared error for anything else; every recipe
    sums or averages it the same way.
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
    weight_decay: float = 0.0           # Adam only: decoupled (AdamW's), per step lr * weight_decay * weight


RECIPES: dict[str, Recipe] = {
    # the tutorial: CNTK's FSAdaGrad, lr 3e-5 per sample, momentum time constant 700
    "tutorial": Recipe("tutorial", "fsadagrad", lr=3e-5),
    # a modern default for comparison: Adam on the mean BCE
    "adam": Recipe("adam", "adam", lr=1e-3, loss_reduction="mean"),
    # for long runs (the shipped models): Adam at a higher rate, 2% warm-up, cosine decay to 0
    "adam-long": Recipe("adam-long", "adam", lr=2e-3, minibatch_size=128, loss_reduction="mean",
                        schedule="cosine", warmup=0.02),
    # what `aelab train` chooses for the user's own data: Adam, 5% warm-up, cosine decay, small minibatches
    # (on the CPU the number of steps decides more than their size)
    "fit": Recipe("fit", "adam", lr=1e-3, minibatch_size=64, loss_reduction="mean", schedule="cosine",
                  warmup=0.05),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise OptionError(f"unknown recipe {name!r}", hint=f"choose one of: {', '.join(RECIPES)}")
    return RECIPES[name]


def plain_settings(settings: dict) -> dict:
    """``settings`` with numpy numbers as Python's (``np.int64(32)`` as 32; a grid search over
    ``np.arange`` hands those), and their lists as tuples, so the checks take them."""
    return {key: _plain(value) for key, value in settings.items()}


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_plain(v) for v in value)
    return value


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
    res_blocks: int | None = None       # residual blocks per conv stage; None: the model's default
    norm: str | None = None             # "none" or "group" (GroupNorm after each convolution); None: the model's
    activation: str | None = None       # conv, sparse, vae: "relu" or "silu"; None: the model's default
    sparsity: float | None = None       # the sparse model's L1 weight; None: its default
    beta: float | None = None           # the VAE's KL weight; None: its default
    loss: str | None = None             # "bce" or "mse"; None: what the data suits (bce for data in [0, 1])
    validation: float = 0.0             # share of the training split held out for early stopping; 0: none
    budget: float | None = None         # seconds of training at most (an upper bound on wall time); None: no limit
    shift: int = 0                      # images: each training image moves by up to this many pixels each way

    def __post_init__(self) -> None:  # numpy's numbers as Python's, so the checks take them and JSON holds them
        for name, value in plain_settings(asdict(self)).items():
            setattr(self, name, value)

    def validate(self) -> None:
        parse_noise(self.noise)
        check_shift(self.shift)
        model_config(self.model, code_size=self.code_size, hidden=self.hidden, channels=self.channels,
                     conv_depth=self.conv_depth, res_blocks=self.res_blocks, norm=self.norm,
                     activation=self.activation, sparsity=self.sparsity,
                     beta=self.beta,
                     input_shape=(1 << 16, 1 << 16))  # image size: in train()
        if not (isinstance(self.sweeps, (int, float)) and math.isfinite(self.sweeps) and self.sweeps > 0):
            raise OptionError(f"sweeps must be a positive number, got {self.sweeps!r}", hint="use e.g. --sweeps 5")
        if self.minibatch_size is not None and (not isinstance(self.minibatch_size, int) or self.minibatch_size < 1):
            raise OptionError(f"minibatch size must be a positive integer, got {self.minibatch_size!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise OptionError(f"seed must be an integer from 0 to {MAX_SEED} (2**32 - 1), got {self.seed!r}")
        get_recipe(self.recipe)
        if not (isinstance(self.validation, (int, float)) and not isinstance(self.validation, bool)
                and 0 <= self.validation < 1):
            raise OptionError(f"the validation share must be a number in [0, 1), got {self.validation!r}",
                              hint="use e.g. --validation 0.1")
        if self.budget is not None and not (isinstance(self.budget, (int, float)) and not isinstance(self.budget, bool)
                                            and math.isfinite(self.budget) and self.budget > 0):
            raise OptionError(f"the time budget must be a positive number of seconds, got {self.budget!r}",
                              hint="use e.g. --budget 10m")
        if self.loss is not None and self.loss not in LOSSES:
            raise OptionError(f"unknown loss {self.loss!r}", hint=f"choose one of: {', '.join(LOSSES)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = None if self.hidden is None else list(self.hidden)
        d["channels"] = None if self.channels is None else list(self.channels)
        if not self.shift:  # as configs stored before the field existed: they compare equal on resuming
            del d["shift"]
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
    validation: dict | None = None      # the validation split and its curve (see aelab.training.validation)

    @property
    def samples_per_second(self) -> float:
        return self.samples_seen / self.seconds if self.seconds > 0 else math.inf


def _decay(recipe: Recipe) -> dict:
    return {"weight_decay": recipe.weight_decay, "decoupled_weight_decay": True} if recipe.weight_decay else {}


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
                             warmup_steps=int(recipe.warmup * total_steps), foreach=True, **_decay(recipe))
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, foreach=True, **_decay(recipe))
    raise OptionError(f"unknown optimizer {recipe.optimizer!r}")
