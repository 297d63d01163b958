"""Tests for aelab.models.cpu_inference: the rewritten copy computes what the model computes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from aelab.models.cpu_inference import GreyTransposedConv, cached_fast_copy, fast_copy
from aelab.models.inference import computing_in, decode, decode_to_pixels
from aelab.models.networks import build_model, model_config


@pytest.mark.parametrize("output_padding", [(0, 0), (1, 1), (0, 1), (1, 0)])
def test_grey_transposed_conv_as_taps_equals_the_transposed_convolution(output_padding):
    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(5, 1, 3, stride=2, padding=1, output_padding=output_padding)
    for shape in [(3, 5, 7, 6), (2, 5, 1, 1), (1, 5, 4, 9)]:
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            want, got = conv(x), GreyTransposedConv(conv)(x)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind, options", [
    ("conv", dict(channels=(4, 8), input_shape=(28, 28))),
    ("conv", dict(channels=(4, 8), input_shape=(27, 21), hidden=(16,), conv_depth=2, activation="silu")),
    ("conv", dict(channels=(3,), input_shape=(9, 10), conv_depth=1)),
    ("conv", dict(channels=(4, 8), input_shape=(15, 17), res_blocks=2, activation="silu")),
    ("conv", dict(channels=(8, 12), input_shape=(16, 16), res_blocks=1, norm="group")),
    ("sparse", dict(channels=(4, 8))),
    ("vae", dict(channels=(4, 8), input_shape=(15, 17))),
])
def test_the_fast_copy_encodes_and_decodes_as_the_model_does(kind, options):
    """Odd sizes (no output padding), hidden dense layers, one stage, and every conv kind."""
    model = build_model(model_config(kind, **options), seed=1).eval()
    before = {k: (v.clone(), v.stride()) for k, v in model.state_dict().items()}
    h, w = model.config.input_shape
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (6, h * w)).astype(np.float32))
    fast = fast_copy(model)
    assert fast.decoder[-2].__class__ is GreyTransposedConv or not model.config.channels
    with torch.no_grad():
        codes = model.encode(x)
        torch.testing.assert_close(fast.encode(x), codes, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fast.decode_logits(codes), model.decode_logits(codes), rtol=1e-4, atol=1e-5)
    for k, v in model.state_dict().items():  # the model itself is untouched
        assert torch.equal(v, before[k][0]) and v.stride() == before[k][1]


def test_the_cached_copy_is_reused_until_the_weights_change_even_through_numpy():
    model = build_model(model_config("conv", channels=(4, 8)), seed=0).eval()
    codes = np.random.default_rng(0).standard_normal((5, 32)).astype(np.float32)
    first = cached_fast_copy(model)
    assert cached_fast_copy(model) is first
    before = decode(model, codes)
    weight = model.decoder[0].weight
    weight.detach().numpy()[:] *= 2.0  # as a training loop writing through a numpy view: no version bump
    again = cached_fast_copy(model)
    assert again is not first
    with torch.no_grad():
        want = torch.sigmoid(model.decode_logits(torch.from_numpy(codes))).reshape(5, 28, 28).numpy()
    after = decode(model, codes)
    np.testing.assert_allclose(after, want, atol=1e-5)
    assert np.abs(after - before).max() > 1e-3
    with computing_in(model) as m:
        assert m is again


def test_decode_to_pixels_rounds_the_decoded_probabilities_to_grey_levels():
    for config in (model_config("conv", channels=(4, 8)), model_config("deep")):
        model = build_model(config, seed=3).eval()
        codes = np.random.default_rng(4).standard_normal((7, 32)).astype(np.float32) * 3
        pixels = decode_to_pixels(model, codes, batch_size=3)
        assert pixels.dtype == np.uint8 and pixels.shape == (7, 28, 28)
        np.testing.assert_array_equal(pixels, np.clip(np.rint(decode(model, codes) * np.float32(255)), 0, 255))
        assert decode_to_pixels(model, np.zeros((0, 32), np.float32)).shape == (0, 28, 28)


def test_grey_transposed_conv_keeps_float64_and_adds_bf16_taps_in_float32():
    torch.manual_seed(1)
    conv = torch.nn.ConvTranspose2d(4, 1, 3, stride=2, padding=1, output_padding=1).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        got = GreyTransposedConv(conv)(x)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, conv(x), rtol=0, atol=1e-12)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert GreyTransposedConv(conv.float())(x.float()).dtype == torch.float32
