"""The encoder's search: for each image, the symbols whose decoded image is closest, at a price in bits.

Quantising the encoder's code is a good first guess, not the best symbols: the
encoder was trained on unquantised codes, and it is one network for all images.
The search starts from that guess and moves each image's components by
gradient descent on ``squared error + rate_weight * bits`` through the decoder,
rounding on the way forward and passing the gradient straight through
(the rounding's own gradient is zero almost everywhere). The bits are those of
the plain range coder's per-component histograms, interpolated between
symbols. After every step each image keeps the rounded symbols with the
lowest objective seen, the plain quantisation included, so the search never
returns worse symbols than it started from.

It changes only which symbols the encoder writes: the file format, the tables
and the decoder stay as they are, and any aelab decodes the file. It costs a
decoder pass forward and back per step and image.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .format import DEFAULT_RATE_WEIGHT
from .quantiser import CodecTable, quantise

_LEARNING_RATE = 0.05       # Adam's step, in quantiser steps
_BATCH = 1000               # images searched together


def search_symbols(model: torch.nn.Module, pixels: torch.Tensor, codes: np.ndarray, table: CodecTable, *,
                   steps: int, rate_table: CodecTable | None = None,
                   rate_weight: float = DEFAULT_RATE_WEIGHT) -> np.ndarray:
    """Symbols (int32 (n, d)) for the images ``pixels`` ((n, input_dim) raw 0..255 values) under ``table``,
    searched for ``steps`` steps from the encoder's ``codes``.

    The bits are counted with ``rate_table``'s per-component frequencies (by default ``table``'s; a
    predictive coder passes the plain table of the same quantiser and bits). Each image's result
    has an objective no higher than that of ``quantise(codes, table)``.
    """
    if steps == 0:
        return quantise(codes, table)
    rate_table = rate_table or table
    if rate_table.params_bytes() != table.params_bytes() or rate_table.predictor is not None:
        raise ValueError("the rate table must be a plain table with the same quantiser grid")
    # gradients even when the caller is in torch.no_grad() or torch.inference_mode()
    with torch.inference_mode(False), torch.enable_grad():
        problem = _Problem(_with_plain_tensors(model), table, rate_table, rate_weight)
        out = [problem.search(pixels[i:i + _BATCH], codes[i:i + _BATCH], steps)
               for i in range(0, len(codes), _BATCH)]
    return np.concatenate(out) if out else np.zeros((0, table.code_size), np.int32)


def _with_plain_tensors(model: torch.nn.Module) -> torch.nn.Module:
    """``model``, or a copy of it when it was loaded in torch.inference_mode() (whose tensors autograd
    cannot use)."""
    if not any(t.is_inference() for t in (*model.parameters(), *model.buffers())):
        return model
    from ..models.networks import build_model
    twin = build_model(model.config).to(next(model.parameters()).dtype)
    twin.load_state_dict({name: value.clone() for name, value in model.state_dict().items()})
    return twin.eval()


class _Problem:
    """The objective of one model, table and rate weight, in the table's component space."""

    def __init__(self, model: torch.nn.Module, table: CodecTable, rate_table: CodecTable, rate_weight: float):
        self.model = model
        self.table = table
        self.rate_weight = float(rate_weight)
        self.offset = torch.from_numpy(table.offset.astype(np.float32))
        self.step = torch.from_numpy(np.where(table.step > 0, table.step, 1).astype(np.float32))
        self.top = torch.from_numpy((table.levels - 1).astype(np.float32))
        if table.matrix is None:
            self.mean = self.matrix = self.inverse = None
        else:
            self.mean = torch.from_numpy(table.mean.astype(np.float32))
            self.matrix = torch.from_numpy(table.matrix.astype(np.float32))
            self.inverse = torch.from_numpy(table.inverse.astype(np.float32))
        freq = rate_table.freq.astype(np.float64)
        p = freq / np.maximum(freq.sum(axis=1, keepdims=True), 1)
        self.cost = torch.from_numpy(-np.log2(np.maximum(p, 1e-12)).astype(np.float32))  # (d, max_levels)
        self.columns = torch.arange(table.code_size)[None, :]

    def symbol_scale(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes -> components in units of symbols (continuous)."""
        y = codes if self.matrix is None else (codes - self.mean) @ self.matrix
        return (y - self.offset) / self.step

    def codes_of(self, s: torch.Tensor) -> torch.Tensor:
        """Symbols (continuous or whole) -> codes, as :func:`aelab.codec.quantiser.dequantise` maps them."""
        y = self.offset + s * self.step
        return y if self.matrix is None else y @ self.inverse + self.mean

    def bits(self, s: torch.Tensor) -> torch.Tensor:
        """Bits per image of symbols ``s`` (n, d), linear between whole symbols."""
        s = s.clamp(torch.zeros_like(self.top), self.top)
        low = s.floor().long().clamp(max=self.cost.shape[1] - 2)
        frac = s - low
        return ((1 - frac) * self.cost[self.columns, low] + frac * self.cost[self.columns, low + 1]).sum(1)

    def whole(self, s: torch.Tensor) -> torch.Tensor:
        """The nearest symbols, within each component's levels (as :func:`aelab.codec.quantiser.quantise`)."""
        return s.round().clamp(torch.zeros_like(self.top), self.top)

    def squared_error(self, s: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per image, the squared error of the image decoded from symbols ``s``."""
        decoded = self.model.decode(self.codes_of(s)).reshape(len(target), -1)
        return ((decoded - target) ** 2).sum(1)

    def search(self, pixels: torch.Tensor, codes: np.ndarray, steps: int) -> np.ndarray:
        target = pixels.reshape(len(pixels), -1).to(torch.float32) / 255.0
        s = self.symbol_scale(torch.from_numpy(np.asarray(codes, dtype=np.float32))).detach().requires_grad_(True)
        optimizer = torch.optim.Adam([s], lr=_LEARNING_RATE)
        best_symbols = torch.from_numpy(quantise(codes, self.table).astype(np.float32))  # what no search writes
        with _frozen(self.model):
            with torch.no_grad():
                best = self.squared_error(best_symbols, target) + self.rate_weight * self.bits(best_symbols)
            for step in range(steps + 1):
                whole = self.whole(s.detach())
                # decoded from the whole symbols; the gradient passes the rounding straight through to s
                error = self.squared_error(s + (whole - s).detach(), target)
                with torch.no_grad():
                    value = error + self.rate_weight * self.bits(whole)
                    better = value < best
                    best = torch.where(better, value, best)
                    best_symbols[better] = whole[better]
                if step == steps:
                    break
                loss = (error + self.rate_weight * self.bits(s)).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return best_symbols.numpy().astype(np.int32)


class _frozen:
    """The model's parameters without gradients while searching, as they were afterwards."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __enter__(self) -> Any:
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc: Any) -> None:
        for p in self.params:
            p.requires_grad_(True)
