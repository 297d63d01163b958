import math

import pytest
import torch

from aelab.errors import OptionError
from aelab.models.networks import ModelConfig, build_model, count_parameters, model_config


def test_simple_is_784_32_784():
    m = build_model(model_config("simple"))
    assert [(l.in_features, l.out_features) for l in m.layers] == [(784, 32), (32, 784)]
    assert count_parameters(m) == 784 * 32 + 32 + 32 * 784 + 784


def test_deep_is_784_128_64_32_64_128_784():
    m = build_model(model_config("deep"))
    dims = [m.layers[0].in_features] + [l.out_features for l in m.layers]
    assert dims == [784, 128, 64, 32, 64, 128, 784]
    assert m.n_encoder == 3


def test_encode_decode_shapes_and_ranges():
    m = build_model(model_config("deep", code_size=16))
    x = torch.randint(0, 256, (5, 784)).float()
    z = m.encode(x)
    y = m.decode(z)
    assert z.shape == (5, 16) and (z >= 0).all()  # ReLU codes, as in the tutorial
    assert y.shape == (5, 784) and (y >= 0).all() and (y <= 1).all()
    assert torch.allclose(m(x), y)


def test_input_is_scaled_by_1_over_255_inside_the_model():
    m = build_model(model_config("simple"), seed=0)
    x = torch.randint(0, 256, (3, 784)).float()
    by_hand = torch.relu(x / 255.0 @ m.layers[0].weight.T + m.layers[0].bias)
    assert torch.allclose(m.encode(x), by_hand, atol=1e-6)


def test_glorot_uniform_weights_and_zero_biases():
    m = build_model(model_config("deep"), seed=1)
    for layer in m.layers:
        limit = math.sqrt(6 / (layer.in_features + layer.out_features))
        w = layer.weight
        assert w.abs().max() <= limit and w.abs().max() > 0.9 * limit
        assert w.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.1)
        assert torch.count_nonzero(layer.bias) == 0


def test_seeded_build_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(model_config("simple"), seed=5)
    after = torch.rand(1)
    b = build_model(model_config("simple"), seed=5)
    assert torch.equal(a.layers[0].weight, b.layers[0].weight)
    assert torch.equal(before, after)


def test_config_round_trip_and_other_sizes():
    cfg = model_config("deep", input_shape=(8, 6), code_size=5, hidden=(20, 10))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    m = build_model(cfg)
    assert m.layers[0].in_features == 48 and m.encode(torch.zeros(2, 48)).shape == (2, 5)


@pytest.mark.parametrize("kwargs", [{"kind": "vgg"}, {"code_size": 0}, {"code_size": -3}, {"hidden": (0,)},
                                    {"input_shape": (0, 28)}])
def test_bad_model_options(kwargs):
    with pytest.raises(OptionError):
        model_config(**kwargs)
