"""benchmarks/architecture_study.py: its variants build the layers the study says they do."""
from __future__ import annotations

import pytest
import torch
from helpers import benchmark_script

from aelab.models import networks
from aelab.models.networks import build_model, model_config


@pytest.fixture(scope="module")
def study():
    return benchmark_script("architecture_study")


def _config(**options):
    return model_config("residual", input_shape=(3, 32, 32), code_size=8, loss="mse", **options)


def _layer_types(module: torch.nn.Module) -> list[str]:
    return [type(m).__name__ for m in module.modules()]


def test_the_groupnorm_variant_is_what_aelab_now_builds_with_norm_group(study):
    channels = study.stages_to_four(32)
    ours = study.groupnorm_body(_config(channels=channels, res_blocks=1))
    aelabs = build_model(_config(channels=channels, res_blocks=1, norm="group"), seed=0).body
    assert _layer_types(ours) == _layer_types(aelabs)
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in aelabs.parameters()]


def test_the_gdn_variant_puts_gdn_where_the_activations_after_convolutions_were(study):
    config = _config(channels=(8, 16))
    plain, gdn = study.PLAIN_BODY(config), study.gdn_body(config)
    convs = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    silu_after_conv = sum(1 for seq in (plain.encoder, plain.decoder) for a, b in zip(seq, list(seq)[1:])
                          if isinstance(a, convs) and isinstance(b, torch.nn.SiLU))
    assert sum(isinstance(m, study.GDN) for m in gdn.modules()) == silu_after_conv == 3
    x = torch.randn(2, 8, 4, 4)
    layer = study.GDN(8)
    with torch.no_grad():  # at its start, gamma 0.1 I and beta 1: x / sqrt(1 + 0.1 x^2), and the inverse multiplies
        torch.testing.assert_close(layer(x), x / torch.sqrt(1 + 0.1 * x * x))
        torch.testing.assert_close(study.GDN(8, inverse=True)(x), x * torch.sqrt(1 + 0.1 * x * x))


def test_a_swapped_body_is_used_by_the_residual_model_and_put_back(study):
    with study.body_built_by(study.gdn_body):
        model = build_model(_config(channels=(8, 16)), seed=0)
    assert any(isinstance(m, study.GDN) for m in model.modules())
    assert networks.ConvAutoencoder is study.PLAIN_BODY
    assert not any(isinstance(m, study.GDN) for m in build_model(_config(channels=(8, 16)), seed=0).modules())
    x = torch.rand(2, 3 * 32 * 32) * 255
    with torch.no_grad():  # its output layer starts at zero: the model is still its linear path
        torch.testing.assert_close(model.encode(x), (x / 255 - model.mean) @ model.components.t())


@pytest.mark.parametrize("side, plain, skipped", [(32, (32, 64, 64), True), (28, (32, 64), False),
                                                  (16, (32, 64), True), (64, (16, 32, 64, 64), True)])
def test_stages_the_earlier_default_had_are_not_run_twice(study, side, plain, skipped):
    assert study.plain_channels(side) == plain
    assert study.same_as_plain("stages", side) is skipped and not study.same_as_plain("res", side)
