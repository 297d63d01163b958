"""scripts/train_pretrained.py's fine-tune, which makes the shipped mnist-codec from mnist-conv."""
import dataclasses

import numpy as np
import pytest
import torch

from aelab.models.networks import build_model, model_config

from helpers import repo_script


def _script():
    return repo_script("scripts", "train_pretrained")


def test_shifted_images_move_by_at_most_a_pixel_as_often_as_the_spec_says():
    script = _script()
    torch.manual_seed(0)
    images = torch.zeros(4000, 8, 8, dtype=torch.uint8)
    images[:, 2:6, 2:6] = torch.randint(1, 256, (4000, 4, 4), dtype=torch.uint8)  # blank borders, as in MNIST
    assert torch.equal(script.shifted(images, 0.0), images)
    moved = script.shifted(images, 0.5)
    offsets = []
    for before, after in zip(images, moved):
        ink = before.nonzero()
        shifted_ink = after.nonzero()
        assert len(ink) == len(shifted_ink)  # nothing lost: the ink is a whole pixel away from every edge
        offset = tuple((shifted_ink[0] - ink[0]).tolist())
        assert max(abs(o) for o in offset) <= 1
        assert torch.equal(after[2 + offset[0]:6 + offset[0], 2 + offset[1]:6 + offset[1]], before[2:6, 2:6])
        offsets.append(offset)
    share_moved = sum(o != (0, 0) for o in offsets) / len(offsets)
    assert abs(share_moved - 0.5 * 8 / 9) < 0.03  # probability 0.5 of a draw, one draw in 9 is no shift
    assert len(set(offsets)) == 9


@pytest.mark.parametrize("kind", ["conv", "residual"])
def test_the_fine_tune_lowers_the_squared_error_of_a_conv_model(mnist, kind):
    """The conv model's BCE outputs pass through the sigmoid, the residual model's MSE outputs are the pixels."""
    script = _script()
    model = build_model(model_config(kind, channels=(4, 8), **({"loss": "mse"} if kind == "residual" else {})),
                        seed=0).float()
    images = mnist.train.images[:256]
    x = torch.from_numpy(np.ascontiguousarray(images)).reshape(256, -1)

    def squared_error() -> float:
        with torch.no_grad():
            return float(((model.decode(model.encode(x)) - x.float() / 255) ** 2).sum(1).mean())

    before = squared_error()
    spec = dataclasses.replace(script.FINE_TUNED[0], sweeps=10, lr=3e-3, minibatch_size=64, warmup_steps=1)
    script.fine_tune_squared_error(model, images, spec, say=lambda *a, **k: None)
    assert squared_error() < 0.8 * before


def test_the_fine_tune_is_reproducible_from_its_seed(mnist):
    script = _script()
    spec = dataclasses.replace(script.FINE_TUNED[0], sweeps=2, lr=3e-3, minibatch_size=64, warmup_steps=1)
    images = mnist.train.images[:128]
    weights = []
    for _ in range(2):
        model = build_model(model_config("conv", channels=(4, 8)), seed=0).float()
        script.fine_tune_squared_error(model, images, spec, say=lambda *a, **k: None)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_fine_tuned_models_record_shows_the_fine_tune_and_keeps_the_base():
    script = _script()
    spec = script.FINE_TUNED[0]
    base_info = {"weights_sha256": "ab" * 32,
                 "training": {"model": "conv", "code_size": 32, "recipe": "adam-long", "sweeps": 40.0, "seconds": 1000.0}}
    record = script.fine_tune_record(spec, 20.0, 300.0, 60_000, base_info, threads=2)
    assert record["sweeps"] == 20.0 and record["seconds"] == 300.0 and record["recipe"] != "adam-long"
    assert record["samples_seen"] == 60_000 * 20 // spec.minibatch_size * spec.minibatch_size
    assert record["model"] == "conv" and record["code_size"] == 32
    assert record["base"] == {"name": spec.base, "weights_sha256": "ab" * 32, "training": base_info["training"]}
