import pytest
import torch

from aelab.errors import OptionError
from aelab.data.noise import Noise, corrupt, parse_noise
from aelab.training.loop import TrainConfig, train

from helpers import synthetic


def test_parse():
    assert parse_noise("gaussian:0.5") == Noise("gaussian", 0.5)
    assert parse_noise(None) is None
    for bad in ("gauss:0.5", "masking", "masking:1.5", "salt-pepper:x", "gaussian:-1"):
        with pytest.raises(OptionError):
            parse_noise(bad)


def images():
    return torch.rand(200, 50, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("spec", ["gaussian:0.5", "masking:0.3", "salt-pepper:0.1"])
def test_corruptions_stay_in_range_and_are_reproducible(spec):
    x = images()
    a = corrupt(x, parse_noise(spec), torch.Generator().manual_seed(1))
    b = corrupt(x, parse_noise(spec), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)


def test_masking_and_salt_pepper_rates():
    x = torch.full((400, 100), 0.5)
    masked = corrupt(x, parse_noise("masking:0.3"), torch.Generator().manual_seed(2))
    assert (masked == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    sp = corrupt(x, parse_noise("salt-pepper:0.2"), torch.Generator().manual_seed(3))
    assert (sp == 0).float().mean().item() == pytest.approx(0.1, abs=0.01)
    assert (sp == 1).float().mean().item() == pytest.approx(0.1, abs=0.01)


def test_denoising_training_is_reproducible_and_differs_from_plain():
    data = synthetic()
    cfg = TrainConfig(sweeps=2, minibatch_size=16, device="cpu", noise="gaussian:0.3")
    a = train(data, cfg, log=None).model.layers[0].weight
    b = train(data, cfg, log=None).model.layers[0].weight
    plain = train(data, TrainConfig(sweeps=2, minibatch_size=16, device="cpu"), log=None).model.layers[0].weight
    assert torch.equal(a, b) and not torch.equal(a, plain)
