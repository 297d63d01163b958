"""The autoencoders, and a registry from names to model configurations.

A model maps raw pixel values (0..255, flattened to ``input_dim``) to a code
and back to pixel probabilities in [0, 1]. As in the tutorial, the 1/255
scaling happens inside the model, so callers pass raw pixels.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .errors import OptionError


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model: plain data, stored in checkpoints.

    ``hidden`` lists the encoder's hidden widths; the decoder mirrors them.
    ``simple`` is 784 -> 32 -> 784, ``deep`` 784 -> 128 -> 64 -> 32 -> 64 -> 128 -> 784.
    """

    kind: str = "simple"
    input_shape: tuple[int, int] = (28, 28)
    code_size: int = 32
    hidden: tuple[int, ...] = ()

    @property
    def input_dim(self) -> int:
        return self.input_shape[0] * self.input_shape[1]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(kind=str(d["kind"]), input_shape=tuple(int(v) for v in d["input_shape"]),
                   code_size=int(d["code_size"]), hidden=tuple(int(v) for v in d.get("hidden", ())))


# name -> default hidden widths of the encoder (the decoder mirrors them)
DENSE_PRESETS: dict[str, tuple[int, ...]] = {
    "simple": (),
    "deep": (128, 64),
}
MODEL_NAMES = tuple(DENSE_PRESETS)


def model_config(kind: str = "simple", *, input_shape: tuple[int, int] = (28, 28),
                 code_size: int = 32, hidden: tuple[int, ...] | None = None) -> ModelConfig:
    """Validate the options and return the configuration of a registered model."""
    if kind not in DENSE_PRESETS:
        raise OptionError(f"unknown model {kind!r}", hint=f"choose one of: {', '.join(MODEL_NAMES)}")
    if not isinstance(code_size, int) or code_size < 1:
        raise OptionError(f"code size must be a positive integer, got {code_size!r}",
                          hint="use e.g. --code-size 32")
    if len(input_shape) != 2 or min(input_shape) < 1:
        raise OptionError(f"input shape must be two positive sizes, got {input_shape!r}")
    widths = DENSE_PRESETS[kind] if hidden is None else tuple(hidden)
    if any((not isinstance(w, int)) or w < 1 for w in widths):
        raise OptionError(f"hidden widths must be positive integers, got {widths!r}")
    return ModelConfig(kind=kind, input_shape=tuple(input_shape), code_size=code_size, hidden=widths)


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
        """Raw pixels (n, input_dim), 0..255, to codes (n, code_size)."""
        h = pixels.to(self.layers[0].weight.dtype) * (1.0 / 255.0)
        for layer in self.layers[: self.n_encoder]:
            h = torch.relu(layer(h))
        return h

    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes to pre-sigmoid outputs (n, input_dim); the loss uses these for stability."""
        h = codes
        decoder = self.layers[self.n_encoder:]
        for layer in decoder[:-1]:
            h = torch.relu(layer(h))
        return decoder[-1](h)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes to pixel probabilities in [0, 1], shape (n, input_dim)."""
        return torch.sigmoid(self.decode_logits(codes))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(pixels))


def build_model(config: ModelConfig, *, seed: int | None = None) -> DenseAutoencoder:
    """Instantiate the model a configuration describes (seeded init if ``seed`` is given)."""
    if config.kind not in DENSE_PRESETS:
        raise OptionError(f"unknown model {config.kind!r}", hint=f"choose one of: {', '.join(MODEL_NAMES)}")
    if seed is None:
        return DenseAutoencoder(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DenseAutoencoder(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def glorot_limit(fan_in: int, fan_out: int) -> float:
    return math.sqrt(6.0 / (fan_in + fan_out))
