"""Corruptions for denoising autoencoders: ``gaussian:SIGMA``, ``masking:P``, ``salt-pepper:P``.

All act on images scaled to [0, 1] and return images in [0, 1]; randomness
comes from the generator passed in, so a run is reproducible (and resumable).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import OptionError

KINDS = ("gaussian", "masking", "salt-pepper")


@dataclass(frozen=True)
class Noise:
    kind: str
    amount: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.amount:g}"


def parse_noise(spec: str | None) -> Noise | None:
    """``"gaussian:0.5"`` -> Noise("gaussian", 0.5); None or "" -> None."""
    if not spec:
        return None
    kind, sep, amount = str(spec).partition(":")
    if kind not in KINDS or not sep:
        raise OptionError(f"unknown noise {spec!r}", hint="use gaussian:SIGMA, masking:P or salt-pepper:P, "
                                                           "e.g. --noise gaussian:0.5")
    try:
        value = float(amount)
    except ValueError:
        raise OptionError(f"noise amount must be a number, got {amount!r}") from None
    if not value >= 0 or (kind != "gaussian" and value > 1) or value == float("inf"):
        raise OptionError(f"noise amount {value:g} is out of range for {kind}",
                          hint="gaussian takes a standard deviation >= 0; masking and salt-pepper a probability 0..1")
    return Noise(kind, value)


def corrupt(images: torch.Tensor, noise: Noise | None, generator: torch.Generator | None = None,
            bounded: bool = True) -> torch.Tensor:
    """A corrupted copy of ``images`` (values in [0, 1], or any values unless ``bounded``); the input
    when ``noise`` is None. Gaussian noise is clipped to [0, 1] only for bounded data."""
    if noise is None:
        return images
    if noise.kind == "gaussian":
        jitter = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        noisy = images + noise.amount * jitter
        return noisy.clamp_(0.0, 1.0) if bounded else noisy
    draw = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    if noise.kind == "masking":
        return images * (draw >= noise.amount)
    # salt-pepper: with probability P a pixel becomes 0 or 1, each half the time
    out = images.clone()
    out[draw < noise.amount / 2] = 0.0
    out[(draw >= noise.amount / 2) & (draw < noise.amount)] = 1.0
    return out
