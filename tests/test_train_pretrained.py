"""scripts/train_pretrained.py's fine-tune, which makes the shipped mnist-codec from mnist-conv."""
import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from aelab.models import build_model, model_config


def _script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "train_pretrained.py"
    spec = importlib.util.spec_from_file_location("train_pretrained", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_shifted_images_move_by_at_most_a_pixel_and_keep_their_ink():
    script = _script()
    torch.manual_seed(0)
    images = torch.zeros(200, 8, 8, dtype=torch.uint8)
    images[:, 2:6, 2:6] = torch.randint(1, 256, (200, 4, 4), dtype=torch.uint8)  # blank borders, as in MNIST
    assert torch.equal(script.shifted(images, 0.0), images)
    moved = script.shifted(images, 1.0)
    offsets = set()
    for before, after in zip(images, moved):
        assert int(after.sum()) == int(before.sum())
        found = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                 if torch.equal(torch.roll(before, (dy, dx), (0, 1)), after)]
        assert found
        offsets.add(found[0])
    assert len(offsets) == 9  # the eight shifts and, when it draws (0, 0), none


def test_the_fine_tune_lowers_the_squared_error_of_a_conv_model(mnist):
    script = _script()
    model = build_model(model_config("conv", channels=(4, 8)), seed=0).float()
    images = mnist.train.images[:256]
    x = torch.from_numpy(np.ascontiguousarray(images)).reshape(256, -1)

    def squared_error() -> float:
        with torch.no_grad():
            decoded = torch.sigmoid(model.decode_logits(model.encode(x)))
            return float(((decoded - x.float() / 255) ** 2).sum(1).mean())

    before = squared_error()
    spec = dataclasses.replace(script.FINE_TUNED[0], sweeps=10, lr=3e-3, minibatch_size=64, warmup_steps=1)
    script.fine_tune_squared_error(model, images, spec, say=lambda *a, **k: None)
    assert squared_error() < 0.8 * before
