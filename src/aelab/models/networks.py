"""The autoencoders, and a registry from names to model configurations.

A model maps raw inputs, flattened to ``input_dim``, to a code and back.
Its input is one of three shapes (``ModelConfig.input_shape``): grey images
``(h, w)``, colour images ``(c, h, w)`` (flattened channels first) or table
rows ``(d,)``. Raw inputs are divided by ``input_max`` inside the model: 255
for 8-bit pixels (as in the tutorial, so callers pass raw pixels: inference,
evaluation, the codec), 1 for table features (already scaled by the data's
``Scaler``). The output follows ``loss``: ``bce`` models end in a sigmoid
(values in [0, 1], what pixels and min-max scaled features need), ``mse``
models are linear (any real value). Training's targets are the inputs divided
by ``input_max``; ``aelab.training`` describes how its steps meet this
convention.

Every model follows one protocol: ``encode(inputs (n, input_dim)) -> codes (n,
code_size)``, ``decode_logits(codes) -> (n, input_dim)``, ``decode`` (the
output of that: a sigmoid or nothing), ``forward`` (both) and the attribute
``config`` (a :class:`ModelConfig`).
Models that train differently from how they encode also define
``training_terms(pixels) -> (logits, extra_loss)``, which the training loop
calls instead (``extra_loss`` is summed over the minibatch, like the BCE):

``simple``, ``deep``, ``dense``
    :class:`DenseAutoencoder`: dense layers, ReLU everywhere (the code too).
``conv``
    :class:`ConvAutoencoder`: stride-2 3x3 convolutions (``channels``), each
    stage optionally deeper (``conv_depth``) and with residual blocks
    (``res_blocks``), then optional dense layers (``hidden``), then a linear code; the decoder mirrors
    it with transposed convolutions. Any image size works whose sides survive
    halving once per stage (at least ``2 ** len(channels)`` pixels).
``residual``
    :class:`ResidualPCAAutoencoder`: a linear path that starts as the PCA of
    the training data (fitted by ``fit_linear`` before training), plus a
    nonlinear part (the conv model's layers for images, dense layers for a
    table) whose contribution starts at zero. Trained with early stopping on
    a validation split, it starts where PCA ends and keeps only what improves on it.
``sparse``
    :class:`SparseAutoencoder`: ReLU code with an L1 penalty
    ``sparsity * sum(|code|)`` per image, in the units of the per-image summed
    BCE (so ``sparsity`` means the same under every recipe).
``vae``
    :class:`VariationalAutoencoder`: the code is the posterior mean; training
    samples ``mu + sigma * eps`` and adds ``beta * KL(q(z|x) || N(0, I))``.

Denoising is not a kind: any model trained with ``TrainConfig.noise`` is one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import nn

from ..errors import OptionError
from .layers import ACTIVATIONS, MAX_RES_BLOCKS, NORMS, ResidualBlock, conv_sizes, normalisation
from .pca import pca_basis


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model: plain data, stored in checkpoints.

    ``hidden`` lists the encoder's dense hidden widths; the decoder mirrors them.
    ``simple`` is 784 -> 32 -> 784, ``deep`` 784 -> 128 -> 64 -> 32 -> 64 -> 128 -> 784.
    ``channels`` lists the output channels of the stride-2 convolutions that
    come first in ``conv`` (and optionally ``sparse``, ``vae``) encoders;
    ``conv_depth`` is the number of 3x3 convolutions per stage (the first
    strided, the others not), ``res_blocks`` the residual blocks that follow them in each stage (two 3x3
    convolutions whose output is added to the block's input), ``norm`` the normalisation after each of
    their convolutions (``none``, or ``group``: GroupNorm). ``activation`` is the hidden layers'
    nonlinearity in conv, sparse and vae models (``relu`` or ``silu``; the
    dense models are ReLU throughout).
    ``sparsity`` weighs the sparse model's L1 penalty; ``beta`` the VAE's KL term.
    ``linear_step`` is the residual model's step on its linear path, as a fraction of the optimiser's
    (see :class:`ResidualPCAAutoencoder`; models saved before it was a field used 0.1).
    ``input_shape`` is ``(h, w)`` for grey images, ``(c, h, w)`` for colour, ``(d,)`` for a table;
    ``loss`` (``bce`` or ``mse``) decides the output layer, ``input_max`` the raw input that means 1.
    """

    kind: str = "simple"
    input_shape: tuple[int, ...] = (28, 28)
    code_size: int = 32
    hidden: tuple[int, ...] = ()
    channels: tuple[int, ...] = ()
    conv_depth: int = 1
    res_blocks: int = 0
    norm: str = "none"
    activation: str = "relu"
    sparsity: float = 0.0
    beta: float = 1.0
    linear_step: float = 0.1
    loss: str = "bce"
    input_max: float = 255.0

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def is_image(self) -> bool:
        """Whether the model takes images (grey or colour), not table rows."""
        return len(self.input_shape) >= 2

    @property
    def image_channels(self) -> int:
        """1 for grey images, ``c`` for colour ones, 0 for a table."""
        if not self.is_image:
            return 0
        return self.input_shape[0] if len(self.input_shape) == 3 else 1

    @property
    def image_size(self) -> tuple[int, int]:
        """``(h, w)`` of the images (a table's rows have none: ``(1, d)``)."""
        return tuple(self.input_shape[-2:]) if self.is_image else (1, self.input_shape[0])

    def to_dict(self) -> dict:
        """Plain JSON data; the optional fields (``OPTIONAL_FIELDS``) appear only when they differ from
        their defaults, so a dense model's description holds only what a dense model uses (``from_dict``
        reads descriptions with or without them)."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["hidden"] = list(self.hidden)
        d["channels"] = list(self.channels)
        for name in OPTIONAL_FIELDS:
            if d[name] == (list(_DEFAULTS[name]) if isinstance(_DEFAULTS[name], tuple) else _DEFAULTS[name]):
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        _check_json_types(d)  # "32" or 32.9 is refused, not coerced
        # a description may leave out the fields with defaults (to_dict leaves out the optional ones)
        return cls(kind=str(d["kind"]), input_shape=tuple(int(v) for v in d["input_shape"]),
                   code_size=int(d["code_size"]), hidden=tuple(int(v) for v in d.get("hidden", ())),
                   channels=tuple(int(v) for v in d.get("channels", ())), conv_depth=int(d.get("conv_depth", 1)),
                   res_blocks=int(d.get("res_blocks", 0)), norm=str(d.get("norm", "none")),
                   activation=str(d.get("activation", "relu")),
                   sparsity=float(d.get("sparsity", 0.0)), beta=float(d.get("beta", 1.0)),
                   linear_step=float(d.get("linear_step", 0.1)), loss=str(d.get("loss", "bce")),
                   input_max=float(d.get("input_max", 255.0)))


def _check_json_types(d: dict) -> None:
    """Each known field of a model description must have its default's JSON type (a bool is no number)."""
    for name, default in ((f.name, f.default) for f in fields(ModelConfig)):
        if name not in d:
            continue
        value = d[name]
        if isinstance(default, tuple):
            ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        elif isinstance(default, (int, float)):
            number = (int,) if isinstance(default, int) else (int, float)
            ok = isinstance(value, number) and not isinstance(value, bool)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise OptionError(f"model field {name!r} must be {_json_kind(default)}, got {value!r}")


def _json_kind(default: object) -> str:
    if isinstance(default, tuple):
        return "a list of integers"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(type(default), "valid")


OPTIONAL_FIELDS = ("channels", "conv_depth", "res_blocks", "norm", "activation", "sparsity", "beta",
                   "linear_step", "loss", "input_max")
LOSSES = ("bce", "mse")
_DEFAULTS = {name: getattr(ModelConfig, name) for name in OPTIONAL_FIELDS}


@dataclass(frozen=True)
class ModelKind:
    """A registered model: its defaults and a one-line description."""

    name: str
    description: str
    # a kind's defaults start from ModelConfig's own
    hidden: tuple[int, ...] = ModelConfig.hidden
    channels: tuple[int, ...] = ModelConfig.channels
    conv_depth: int = ModelConfig.conv_depth
    res_blocks: int = ModelConfig.res_blocks
    norm: str = ModelConfig.norm
    activation: str = ModelConfig.activation
    sparsity: float = ModelConfig.sparsity
    beta: float = ModelConfig.beta
    linear_step: float = ModelConfig.linear_step

    @property
    def dense(self) -> bool:
        """Whether this is a plain DenseAutoencoder (trained by the explicit backward pass)."""
        return self.name in DENSE_PRESETS


# name -> default hidden widths of the encoder (the decoder mirrors them)
DENSE_PRESETS: dict[str, tuple[int, ...]] = {
    "simple": (),
    "deep": (128, 64),
    "dense": (512, 256),
}

MODEL_KINDS: dict[str, ModelKind] = {
    "simple": ModelKind("simple", "the tutorial's 784-32-784 dense autoencoder, ReLU code"),
    "deep": ModelKind("deep", "the tutorial's 784-128-64-32-64-128-784 dense autoencoder, ReLU code",
                      hidden=DENSE_PRESETS["deep"]),
    "dense": ModelKind("dense", "a wider dense autoencoder, 784-512-256-32 and back, ReLU code",
                       hidden=DENSE_PRESETS["dense"]),
    "conv": ModelKind("conv", "convolutional: 2 stages (32, 64 channels) of 2 3x3 convolutions, SiLU, linear "
                              "code, transposed convolutions back", channels=(32, 64), conv_depth=2,
                      activation="silu"),
    # sparse and vae default to the deep model's body, so that a comparison shows what the objective changes
    "sparse": ModelKind("sparse", "the deep model's layers, ReLU code with an L1 penalty (sparsity 0.01)",
                        hidden=DENSE_PRESETS["deep"], sparsity=0.01),
    "vae": ModelKind("vae", "variational, the deep model's layers, Gaussian code (posterior mean), KL weight 1",
                     hidden=DENSE_PRESETS["deep"], beta=1.0),
    "residual": ModelKind("residual", "PCA as a linear path, plus conv (images) or dense (tables) layers whose "
                                      "part starts at zero; linear outputs", activation="silu", linear_step=1.0),
}
MODEL_NAMES = tuple(MODEL_KINDS)


def _unknown_model(kind: object) -> OptionError:
    return OptionError(f"unknown model {kind!r}", hint=f"choose one of: {', '.join(MODEL_NAMES)}")


MAX_SIZE = 2**31 - 1  # any size (code, width, channels, image side) above this is refused, not handed to torch


def _positive_ints(values: tuple, what: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise OptionError(f"{what} must be a sequence of positive integers, got {values!r}",
                          hint="e.g. (128, 64); one layer is (128,)")
    values = tuple(int(v) if isinstance(v, np.integer) else v for v in values)
    if any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIZE for v in values):
        raise OptionError(f"{what} must be positive integers up to {MAX_SIZE}, got {values!r}")
    return values


def _finite_number(value: object, what: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        raise OptionError(f"{what} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def model_config(kind: str = "simple", *, input_shape: tuple[int, ...] = (28, 28),
                 code_size: int = 32, hidden: tuple[int, ...] | None = None,
                 channels: tuple[int, ...] | None = None, conv_depth: int | None = None,
                 res_blocks: int | None = None, norm: str | None = None, activation: str | None = None,
                 sparsity: float | None = None,
                 beta: float | None = None, linear_step: float | None = None, loss: str = "bce",
                 input_max: float = 255.0) -> ModelConfig:
    """Validate the options and return the configuration of a registered model.

    Options left as None take the kind's defaults (``MODEL_KINDS``); an option
    that a kind has no use for (``channels`` for a dense model, ``sparsity``
    for anything but ``sparse``, ``beta`` for anything but ``vae``) is refused.
    ``input_shape`` is ``(h, w)``, ``(c, h, w)`` (``(1, h, w)`` becomes
    ``(h, w)``) or ``(d,)``; convolutions need images.
    """
    if kind not in MODEL_KINDS:
        raise _unknown_model(kind)
    preset = MODEL_KINDS[kind]
    if isinstance(code_size, bool) or not isinstance(code_size, int) or not 1 <= code_size <= MAX_SIZE:
        raise OptionError(f"code size must be a positive integer up to {MAX_SIZE}, got {code_size!r}",
                          hint="use e.g. --code-size 32")
    input_shape = _checked_input_shape(input_shape)
    widths = _positive_ints(preset.hidden if hidden is None else hidden, "hidden widths")
    stages = _positive_ints(preset.channels if channels is None else channels, "conv channels")
    if preset.dense and stages:
        raise OptionError(f"the dense model {kind!r} has no convolutions, got channels {stages!r}",
                          hint="use --model conv (or sparse, vae) for a convolutional encoder")
    if kind == "conv" and not stages:
        raise OptionError("the conv model needs at least one convolution stage", hint="use e.g. --channels 32,64")
    if stages and len(input_shape) == 1:
        raise OptionError(f"the {kind} model's convolutions need images, not table rows of {input_shape[0]} "
                          "columns", hint="use --model dense (or simple, deep, sparse, vae without --channels)")
    if stages:
        need = 2 ** len(stages)
        if min(input_shape[-2:]) < need:
            h, w = input_shape[-2:]
            raise OptionError(f"{h}x{w} images are too small for {len(stages)} stride-2 convolution stages, "
                              f"which need at least {need}x{need}",
                              hint=f"use at most {max(int(math.log2(min(h, w))), 1)} --channels "
                                   "values" if min(h, w) >= 2 else "use a dense model")
    depth = preset.conv_depth if conv_depth is None else conv_depth
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise OptionError(f"conv depth must be a positive integer, got {depth!r}")
    if depth != 1 and not stages:
        raise OptionError(f"conv depth {depth} needs convolution stages", hint="add --channels, e.g. 32,64")
    blocks = preset.res_blocks if res_blocks is None else res_blocks
    if isinstance(blocks, bool) or not isinstance(blocks, int) or not 0 <= blocks <= MAX_RES_BLOCKS:
        raise OptionError(f"residual blocks per stage must be an integer from 0 to {MAX_RES_BLOCKS}, got {blocks!r}")
    if blocks and not stages:
        raise OptionError(f"{blocks} residual block(s) per stage need convolution stages",
                          hint="add --channels, e.g. 32,64, or leave out --res-blocks")
    normalised = preset.norm if norm is None else norm
    if normalised not in NORMS:
        raise OptionError(f"unknown normalisation {normalised!r}", hint=f"choose one of: {', '.join(NORMS)}")
    if normalised != "none" and not stages:
        raise OptionError(f"--norm {normalised} normalises convolutions, and the {kind} model has none",
                          hint="add --channels, e.g. 32,64, or leave out --norm")
    act = preset.activation if activation is None else activation
    if act not in ACTIVATIONS:
        raise OptionError(f"unknown activation {act!r}", hint=f"choose one of: {', '.join(ACTIVATIONS)}")
    if preset.dense and act != "relu":
        raise OptionError(f"the dense model {kind!r} is ReLU throughout, got activation {act!r}",
                          hint="use --model conv, sparse or vae for another activation")
    if sparsity is not None and kind != "sparse" and sparsity != 0:
        raise OptionError(f"--sparsity applies to the sparse model, not {kind!r}", hint="use --model sparse")
    if beta is not None and kind != "vae" and beta != 1.0:
        raise OptionError(f"--beta applies to the vae model, not {kind!r}", hint="use --model vae")
    if linear_step is not None and kind != "residual" and linear_step != ModelConfig.linear_step:
        raise OptionError(f"a linear step applies to the residual model, not {kind!r}")
    sparsity = _finite_number(preset.sparsity if sparsity is None else sparsity, "sparsity", positive=False)
    beta = _finite_number(preset.beta if beta is None else beta, "beta", positive=True)
    linear_step = _finite_number(preset.linear_step if linear_step is None else linear_step, "linear step",
                                 positive=True)
    if loss not in LOSSES:
        raise OptionError(f"unknown loss {loss!r}", hint=f"choose one of: {', '.join(LOSSES)}")
    input_max = _finite_number(input_max, "input_max", positive=True)
    return ModelConfig(kind=kind, input_shape=input_shape, code_size=code_size, hidden=widths,
                       channels=stages, conv_depth=depth, res_blocks=blocks, norm=normalised, activation=act,
                       sparsity=sparsity, beta=beta, linear_step=linear_step, loss=loss, input_max=input_max)


def check_code_reduces(kind: str, code_size: int, inputs: int, *, images: bool) -> None:
    """Refuse training a residual model whose code is as long as the inputs: its PCA path would copy them.
    (Checked before training, not on loading: a checkpoint saved before this check still loads.)
    ``images``: whether the samples are images (else table rows), for the message."""
    if kind != "residual":
        return
    if inputs == 1 and images:
        raise OptionError("1x1 grey images hold one value each: there is nothing to reduce",
                          hint="use larger images, or pass --resize HxW")
    if inputs == 1:
        raise OptionError("a table of one column has nothing to reduce", hint="give the table two columns or more")
    if code_size >= inputs:
        raise OptionError(f"a code of {code_size} numbers is no smaller than the {inputs} values of each sample: "
                          "it would copy them, not reduce them", hint=f"choose a --code-size below {inputs}")


def _checked_input_shape(shape: tuple) -> tuple[int, ...]:
    """``shape`` as ints: (d,), (h, w) or (c, h, w) with c > 1, every size positive."""
    try:
        sizes = tuple(shape)
    except TypeError:
        sizes = ()
    if not 1 <= len(sizes) <= 3 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                       or not 1 <= v <= MAX_SIZE for v in sizes):
        raise OptionError(f"input shape must be (columns,), (height, width) or (channels, height, width) of "
                          f"positive integers, got {shape!r}")
    sizes = tuple(int(v) for v in sizes)
    return sizes[1:] if len(sizes) == 3 and sizes[0] == 1 else sizes


class DenseAutoencoder(nn.Module):
    """Fully connected autoencoder: ReLU everywhere but the sigmoid output.

    ``layers`` holds the encoder's layers followed by the decoder's; the first
    ``n_encoder`` of them make the code. Weights are glorot-uniform (CNTK's
    default in the tutorial), biases zero.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        encoder_dims = [config.input_dim, *config.hidden, config.code_size]
        decoder_dims = [config.code_size, *reversed(config.hidden), config.input_dim]
        widths = list(zip(encoder_dims[:-1], encoder_dims[1:])) + list(zip(decoder_dims[:-1], decoder_dims[1:]))
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in widths)
        self.n_encoder = len(encoder_dims) - 1
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.weight)  # glorot uniform: U(+-sqrt(6/(fan_in+fan_out)))
            nn.init.zeros_(layer.bias)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Raw inputs (n, input_dim), pixels 0..255 or scaled features, to codes (n, code_size)."""
        first, *rest = self.layers[: self.n_encoder]
        x = pixels.to(first.weight.dtype)
        # the 1/input_max scaling rides on the first product (addmm's alpha): no pass over the pixels
        h = torch.addmm(first.bias, x, first.weight.t(), alpha=1.0 / self.config.input_max).relu_()
        for layer in rest:
            h = torch.addmm(layer.bias, h, layer.weight.t()).relu_()
        return h

    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes to pre-sigmoid outputs (n, input_dim) (the outputs themselves for an ``mse`` model)."""
        h = codes
        decoder = self.layers[self.n_encoder:]
        for layer in decoder[:-1]:
            h = torch.addmm(layer.bias, h, layer.weight.t()).relu_()
        return torch.addmm(decoder[-1].bias, h, decoder[-1].weight.t())

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes to outputs (n, input_dim): in [0, 1] for an image model (pixels / 255)."""
        return output_of(self.decode_logits(codes), self.config)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(pixels))


def output_of(logits: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """A model's outputs from its last layer, in place: the sigmoid for ``bce``, the values for ``mse``,
    which an image model clips to [0, 1] (pixels / 255 cannot lie outside it)."""
    if config.loss == "bce":
        return logits.sigmoid_()
    return logits.clamp_(0.0, 1.0) if config.is_image else logits


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder: stride-2 convolutions, dense layers, a linear code, and back.

    Encoder: for each of ``config.channels`` a 3x3 convolution with stride 2
    and padding 1 (halving each side, rounding up) and the activation, then
    ``conv_depth - 1`` 3x3 convolutions with stride 1 and the activation, then
    ``res_blocks`` residual blocks (:class:`ResidualBlock`), each convolution
    followed by ``config.norm``'s layer (none, or GroupNorm); the feature map
    flattened; a dense layer and the activation for each of ``config.hidden``;
    a linear layer to the code. Decoder: the mirror image, with 3x3 transposed
    convolutions whose output padding restores each side exactly (so odd
    sizes work), the activation (``config.activation``, ReLU by default)
    between layers and none on the output logits.
    With no channels it is a dense autoencoder with a linear code, trained by
    autograd. Weights use PyTorch's default initialisation.
    """

    code_outputs = 1  # the code layer's width in codes (a VAE outputs mean and log-variance)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        act = ACTIVATIONS[config.activation]
        self.sizes = conv_sizes(config.image_size, len(config.channels))
        channels = [config.image_channels, *config.channels]
        encoder: list[nn.Module] = []
        norm = config.norm
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            encoder += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), *normalisation(norm, c_out), act()]
            for _ in range(config.conv_depth - 1):
                encoder += [nn.Conv2d(c_out, c_out, 3, padding=1), *normalisation(norm, c_out), act()]
            encoder += [ResidualBlock(c_out, act, norm) for _ in range(config.res_blocks)]
        encoder.append(nn.Flatten())
        fh, fw = self.sizes[-1]
        features = channels[-1] * fh * fw if config.channels else config.input_dim
        dims = [features, *config.hidden]
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            encoder += [nn.Linear(d_in, d_out), act()]
        self.encoder = nn.Sequential(*encoder)
        self.code_layer = nn.Linear(dims[-1], config.code_size * self.code_outputs)

        decoder: list[nn.Module] = []
        back = [config.code_size, *reversed(dims)]
        for i, (d_in, d_out) in enumerate(zip(back[:-1], back[1:])):
            decoder.append(nn.Linear(d_in, d_out))
            if config.channels or i < len(back) - 2:
                decoder.append(act())
        if config.channels:
            decoder.append(nn.Unflatten(1, (channels[-1], fh, fw)))
            for stage in range(len(config.channels), 0, -1):
                (th, tw), (sh, sw) = self.sizes[stage - 1], self.sizes[stage]
                padding = (th - (2 * sh - 1), tw - (2 * sw - 1))  # 0 or 1: hits the encoder's size exactly
                c = channels[stage]
                decoder += [ResidualBlock(c, act, norm) for _ in range(config.res_blocks)]
                for _ in range(config.conv_depth - 1):
                    decoder += [nn.Conv2d(c, c, 3, padding=1), *normalisation(norm, c), act()]
                decoder.append(nn.ConvTranspose2d(c, channels[stage - 1], 3, stride=2, padding=1,
                                                  output_padding=padding))
                if stage > 1:
                    decoder += [*normalisation(norm, channels[stage - 1]), act()]
            decoder.append(nn.Flatten())
        self.decoder = nn.Sequential(*decoder)

    def _dtype(self) -> torch.dtype:
        return self.code_layer.weight.dtype

    def _code_outputs(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(self._dtype()) * (1.0 / self.config.input_max)
        if self.config.channels:
            x = x.reshape(x.shape[0], self.config.image_channels, *self.config.image_size)
        return self.code_layer(self.encoder(x))

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Raw inputs (n, input_dim), pixels 0..255 or scaled features, to codes (n, code_size)."""
        return self._code_outputs(pixels)

    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes to pre-sigmoid outputs (n, input_dim) (the outputs themselves for an ``mse`` model)."""
        return self.decoder(codes)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes to outputs (n, input_dim): in [0, 1] for an image model (pixels / 255)."""
        return output_of(self.decode_logits(codes), self.config)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(pixels))


class SparseAutoencoder(ConvAutoencoder):
    """A ReLU code trained with an L1 penalty: ``sparsity * sum(|code|)`` per image.

    The penalty is added to the BCE summed over the pixels of each image, so
    with ``sparsity`` 0.01 and codes of a few units it is a fraction of a nat
    per image. ReLU makes the penalised units exactly zero, not just small.
    """

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.relu(self._code_outputs(pixels))

    def training_terms(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encode(pixels)
        return self.decode_logits(codes), self.config.sparsity * codes.abs().sum()


LOGVAR_RANGE = (-30.0, 20.0)  # keeps exp(logvar) finite in float32 early in training


def sampling_seed(seed: int, step: int) -> int:
    """The seed of the VAE's noise for training minibatch ``step`` of a run seeded ``seed``."""
    return (int(seed) * 1_000_003 + int(step)) * 2 + 2  # even: never equal to the input-noise seeds (odd)


class VariationalAutoencoder(ConvAutoencoder):
    """A VAE: the code layer outputs the mean and log-variance of q(z | x).

    ``encode`` returns the posterior mean (so codes, the codec and every
    metric are deterministic). ``training_terms`` draws ``z = mu + sigma * eps``
    (the reparameterisation trick) and adds ``beta * KL(q(z|x) || N(0, I))``
    summed over the minibatch.

    Randomness: ``eps`` for the k-th training minibatch comes from a fresh
    ``torch.Generator`` seeded from (``sampling_seed``, k), where both numbers
    are buffers of the model: ``build_model(config, seed=s)`` sets the seed to
    s, and the step counter goes up by one per ``training_terms`` call. They
    are saved with the weights (float64 scalars; exact up to 2**53), so a run
    resumed from its resume file draws exactly the noise an uninterrupted run
    would, and the global RNG is never touched.
    """

    code_outputs = 2

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.register_buffer("sampling_seed", torch.zeros((), dtype=torch.float64))
        self.register_buffer("sampling_step", torch.zeros((), dtype=torch.float64))

    def posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x), each (n, code_size)."""
        mu, logvar = self._code_outputs(pixels).chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.posterior(pixels)[0]

    def training_terms(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.posterior(pixels)
        generator = torch.Generator(device=mu.device)
        generator.manual_seed(sampling_seed(int(self.sampling_seed.item()), int(self.sampling_step.item())))
        with torch.no_grad():
            self.sampling_step += 1
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        kl = -0.5 * (1.0 + logvar - mu * mu - logvar.exp()).sum()
        return self.decode_logits(z), self.config.beta * kl

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` new images (n, input_dim) in [0, 1], decoded from codes drawn from the prior N(0, I)."""
        device = self.code_layer.weight.device
        z = torch.randn((n, self.config.code_size), generator=generator, device=device, dtype=self._dtype())
        return self.decode(z)


class ResidualPCAAutoencoder(nn.Module):
    """PCA as a linear path, and a nonlinear correction that starts at zero.

    With ``x`` the input divided by ``input_max`` and flattened, ``mean`` and ``components`` (code_size,
    input_dim) the training data's PCA and ``scale`` the standard deviation of each PCA score:

    ``code = (x - mean) E^T + scale * f(x)`` and ``output = mean + code D + g(code / scale)``,

    where ``E = components + linear_step * encoder_delta`` (``D`` likewise), and ``f``, ``g`` are the
    encoder and decoder of a :class:`ConvAutoencoder` with this configuration (its convolutions for images,
    its dense ``hidden`` layers otherwise) whose last layers start at zero. Before training, the model
    is exactly the PCA (after :meth:`fit_linear`); training moves it only where the loss goes down, and
    early stopping on a validation split keeps the best weights seen, the PCA's included. The deltas
    reparametrise the PCA weights so that Adam's step on them is ``config.linear_step`` times the step
    on the nonlinear layers. New models take the full step (1.0), freeing the codes from the PCA's
    geometry; older ones moved at a tenth. The output is linear (``loss`` mse), clipped for images.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.loss != "mse":
            raise OptionError("the residual model's PCA path needs linear outputs", hint="use --loss mse")
        self.config = config
        d, k = config.input_dim, config.code_size
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("components", torch.zeros(k, d))
        self.register_buffer("scale", torch.ones(k))
        self.encoder_delta = nn.Parameter(torch.zeros(k, d))
        self.decoder_delta = nn.Parameter(torch.zeros(k, d))
        self.body = ConvAutoencoder(config)
        self._zero_the_corrections()

    def _zero_the_corrections(self) -> None:  # the nonlinear part's last layers: it adds nothing to the PCA
        last = [m for m in self.body.decoder if isinstance(m, (nn.Linear, nn.ConvTranspose2d))][-1]
        for layer in (self.body.code_layer, last):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @torch.no_grad()
    def fit_linear(self, rows: torch.Tensor, seed: int = 0) -> None:
        """Set the linear path to the PCA of ``rows`` ((n, input_dim), already divided by ``input_max``)."""
        mean, components, scale = pca_basis(rows, self.config.code_size, seed=seed)
        self.mean.copy_(mean)
        self.components.copy_(components)
        self.scale.copy_(scale)

    @torch.no_grad()
    def become_pca(self, rows: torch.Tensor, seed: int = 0) -> None:
        """In place, exactly the PCA of ``rows`` (:meth:`fit_linear`), as it starts: deltas and corrections zero."""
        self.fit_linear(rows, seed=seed)
        for delta in (self.encoder_delta, self.decoder_delta):
            delta.zero_()
        self._zero_the_corrections()

    def _scaled(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.to(self.mean.dtype) * (1.0 / self.config.input_max)

    def _nonlinear_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.channels:
            return x.reshape(x.shape[0], self.config.image_channels, *self.config.image_size)
        return x

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Raw inputs (n, input_dim), pixels 0..255 or scaled features, to codes (n, code_size)."""
        x = self._scaled(pixels)
        weights = self.components + self.config.linear_step * self.encoder_delta
        linear = (x - self.mean) @ weights.t()
        return linear + self.scale * self.body.code_layer(self.body.encoder(self._nonlinear_input(x)))

    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes to outputs (n, input_dim), before an image model's clipping."""
        weights = self.components + self.config.linear_step * self.decoder_delta
        return torch.addmm(self.mean, codes, weights) + self.body.decoder(codes / self.scale)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes to outputs (n, input_dim): in [0, 1] for an image model (pixels / 255)."""
        return output_of(self.decode_logits(codes), self.config)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(pixels))


MODEL_CLASSES: dict[str, type[nn.Module]] = {"conv": ConvAutoencoder, "sparse": SparseAutoencoder,
                                             "vae": VariationalAutoencoder, "residual": ResidualPCAAutoencoder}


def build_model(config: ModelConfig, *, seed: int | None = None) -> nn.Module:
    """Instantiate the model a configuration describes (seeded init if ``seed`` is given).

    A VAE built with a seed also draws its training noise from that seed. Its weight matrices are
    stored as :func:`store_matrices_transposed` says, as every model's are.
    """
    if config.kind not in MODEL_KINDS:
        raise _unknown_model(config.kind)
    cls = DenseAutoencoder if MODEL_KINDS[config.kind].dense else MODEL_CLASSES[config.kind]
    if seed is None:
        return store_matrices_transposed(cls(config))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    if isinstance(model, VariationalAutoencoder):
        model.sampling_seed.fill_(float(seed))
    return store_matrices_transposed(model)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def glorot_limit(fan_in: int, fan_out: int) -> float:
    return math.sqrt(6.0 / (fan_in + fan_out))


def store_matrices_transposed(model: nn.Module) -> nn.Module:
    """Give each parameter its own memory, weight matrices (out, in) stored (in, out) row-major and seen
    through the usual (out, in) view: the layout training uses (``aelab.training.steps.flatten_parameters``).
    Matrix kernels may sum in another order for the two layouts (MKL on AVX2-only CPUs such as AMD EPYC
    does), so a trained model, the same model loaded from its checkpoint and an unpickled one all keep
    this one layout, and give the same output to the bit."""
    for p in model.parameters():
        p.data = p.detach().t().contiguous().t() if p.ndim == 2 else p.detach().clone()
    return model
