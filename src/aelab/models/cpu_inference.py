"""A conv model rewritten for inference on the CPU: the same function, laid out for oneDNN.

:func:`fast_copy` returns a copy of a model whose

- weights and feature maps are channels-last (oneDNN's convolutions run
  about 1.7 times faster so) and whose activations work in place (no
  autograd here, so a pass over memory is saved per activation);
- dense layer that produces the decoder's first feature map writes it in
  channels-last order, and the dense layer that reads the encoder's last
  feature map reads it in that order (their weights permuted to match), so
  no layout copy is made on either side;
- last transposed convolution, to the one grey channel, is one matrix
  product of each pixel's channels with the kernel's 9 taps followed by
  adding the taps at their places: oneDNN runs that layer (a single output
  channel) at a few GFLOP/s, about three times slower.

Its outputs equal the model's own up to float32 rounding (the tests hold
them to 1e-5); the model itself is not touched. :func:`cached_fast_copy`
keeps the copy while the model's weights stay the same, so that many small
calls (a file of a few images, one image at a time) do not pay for it.
"""
from __future__ import annotations

import copy
import itertools
import weakref

import torch
from torch import nn

__all__ = ["fast_copy", "cached_fast_copy"]

# model -> (its weights and buffers when the copy was made, the copy)
_copies: "weakref.WeakKeyDictionary[nn.Module, tuple[list[torch.Tensor], nn.Module]]" = weakref.WeakKeyDictionary()


def fast_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for fast CPU inference. Any model gets channels-last weights and in-place
    activations; a ConvAutoencoder (or subclass) with convolutions also gets the rewritten layers."""
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    for module in fast.modules():
        if isinstance(module, (nn.SiLU, nn.ReLU)):
            module.inplace = True
    from .networks import ConvAutoencoder
    if isinstance(fast, ConvAutoencoder) and fast.config.channels:
        with torch.no_grad():
            _read_features_channels_last(fast)
            _write_features_channels_last(fast)
            _replace_grey_transposed_conv(fast)
    return fast


def cached_fast_copy(model: nn.Module) -> nn.Module:
    """:func:`fast_copy` of ``model``, made again only when its weights or buffers have changed since
    (compared by value: training may write them through numpy views, which no version counter sees)."""
    state = [t.detach() for t in itertools.chain(model.parameters(), model.buffers())]
    cached = _copies.get(model)
    if cached is not None and _same_tensors(cached[0], state):
        return cached[1]
    fast = fast_copy(model)
    _copies[model] = ([t.clone() for t in state], fast)
    return fast


def _same_tensors(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and x.dtype == y.dtype and x.device == y.device
                                    and torch.equal(x, y) for x, y in zip(a, b))


class ChannelsLastFlatten(nn.Module):
    """(n, c, h, w) -> (n, h*w*c): pixel-major order, a view of a channels-last feature map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


class ChannelsLastUnflatten(nn.Module):
    """(n, h*w*c) in pixel-major order -> (n, c, h, w), channels-last, without a copy."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__()
        self.shape = (height, width, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape).permute(0, 3, 1, 2)


class GreyTransposedConv(nn.Module):
    """``ConvTranspose2d(c, 1, 3, stride=2, padding=1, output_padding=p)`` as taps.

    Output pixel (2i - 1 + ky, 2j - 1 + kx) receives input pixel (i, j)'s
    channels dotted with kernel tap (ky, kx). So one matrix product gives
    every input pixel's 9 tap values, and each of the four output phases
    (even or odd row, even or odd column) is a sum of 1, 2 or 4 of them,
    taken from the pixel itself or its right/lower neighbour.
    """

    def __init__(self, conv: nn.ConvTranspose2d) -> None:
        super().__init__()
        # (9, c): row ky * 3 + kx is tap (ky, kx), so the product's rows are whole tap planes
        taps = conv.weight.detach().reshape(conv.in_channels, 9).T.contiguous()
        self.taps = nn.Parameter(taps, requires_grad=False)
        self.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.output_padding = tuple(conv.output_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        t = self.taps @ x.permute(0, 2, 3, 1).reshape(-1, c).T
        if t.dtype in (torch.bfloat16, torch.float16):  # autocast: add the taps in float32
            t = t.float()
        t = t.view(3, 3, n, h, w)  # t[ky, kx]
        out = t.new_empty(n, h, 2, w, 2)  # (image, row, row phase, column, column phase)
        out[:, :, 0, :, 0] = t[1, 1]
        even_odd = out[:, :, 0, :, 1]
        even_odd.copy_(t[1, 2])
        even_odd[:, :, :-1] += t[1, 0, :, :, 1:]
        odd_even = out[:, :, 1, :, 0]
        odd_even.copy_(t[2, 1])
        odd_even[:, :-1] += t[0, 1, :, 1:]
        odd_odd = out[:, :, 1, :, 1]
        odd_odd.copy_(t[2, 2])
        odd_odd[:, :, :-1] += t[2, 0, :, :, 1:]
        odd_odd[:, :-1] += t[0, 2, :, 1:]
        odd_odd[:, :-1, :-1] += t[0, 0, :, 1:, 1:]
        out = out.view(n, 1, 2 * h, 2 * w)
        ph, pw = self.output_padding  # 0: the last row/column lies beyond the output
        if ph == 0 or pw == 0:
            out = out[:, :, :2 * h - 1 + ph, :2 * w - 1 + pw]
        return out + self.bias.to(out.dtype)


def _is_grey_transposed_conv(module: nn.Module) -> bool:
    return (isinstance(module, nn.ConvTranspose2d) and module.out_channels == 1 and module.groups == 1
            and module.kernel_size == (3, 3) and module.stride == (2, 2) and module.padding == (1, 1)
            and module.dilation == (1, 1) and module.bias is not None and max(module.output_padding) <= 1)


def _replace_grey_transposed_conv(model: nn.Module) -> None:
    decoder = model.decoder
    for i, module in enumerate(decoder):
        if _is_grey_transposed_conv(module):
            decoder[i] = GreyTransposedConv(module)


def _pixel_major_columns(linear: nn.Linear, channels: int, height: int, width: int) -> None:
    """Reorder ``linear``'s input columns from (c, h, w) order to (h, w, c)."""
    w = linear.weight.reshape(-1, channels, height, width).permute(0, 2, 3, 1).reshape(linear.out_features, -1)
    linear.weight = nn.Parameter(w.contiguous(), requires_grad=False)


def _pixel_major_rows(linear: nn.Linear, channels: int, height: int, width: int) -> None:
    """Reorder ``linear``'s outputs from (c, h, w) order to (h, w, c)."""
    w = linear.weight.reshape(channels, height, width, -1).permute(1, 2, 0, 3).reshape(-1, linear.in_features)
    b = linear.bias.reshape(channels, height, width).permute(1, 2, 0).reshape(-1)
    linear.weight = nn.Parameter(w.contiguous(), requires_grad=False)
    linear.bias = nn.Parameter(b.contiguous(), requires_grad=False)


def _feature_map_shape(model: nn.Module) -> tuple[int, int, int]:
    height, width = model.sizes[-1]
    return model.config.channels[-1], height, width


def _read_features_channels_last(model: nn.Module) -> None:
    """The encoder's Flatten and the dense layer after it (in the encoder, or the code layer)."""
    layers = list(model.encoder) + [model.code_layer]
    at = next(i for i, m in enumerate(layers) if isinstance(m, nn.Flatten))
    reader = next(m for m in layers[at + 1:] if isinstance(m, nn.Linear))
    _pixel_major_columns(reader, *_feature_map_shape(model))
    model.encoder[at] = ChannelsLastFlatten()


def _write_features_channels_last(model: nn.Module) -> None:
    """The decoder's Unflatten and the dense layer before it (activations between them are per element)."""
    decoder = model.decoder
    at = next(i for i, m in enumerate(decoder) if isinstance(m, nn.Unflatten))
    writer = next(m for m in reversed(list(decoder)[:at]) if isinstance(m, nn.Linear))
    shape = _feature_map_shape(model)
    _pixel_major_rows(writer, *shape)
    decoder[at] = ChannelsLastUnflatten(*shape)
