"""--shift: training images moved by a few pixels, edges repeated; the fast gather against a per-image twin."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aelab.cli import main
from aelab.data import Dataset, Split
from aelab.data.augment import MAX_SHIFT, shift_images
from aelab.errors import OptionError
from aelab.training import TrainConfig, train
from aelab.training.auto import choose, image_shift


def shifted_one_by_one(rows: torch.Tensor, size: tuple[int, int], pixels: int, seed: int) -> np.ndarray:
    """The slow, obvious twin: the same offsets, each image padded with its edges (numpy) and cut."""
    n, (h, w) = len(rows), size
    dy, dx = torch.randint(-pixels, pixels + 1, (2, n), generator=torch.Generator().manual_seed(seed)).numpy()
    images = rows.numpy().reshape(n, -1, h, w)
    out = np.empty_like(images)
    for i in range(n):
        padded = np.pad(images[i], ((0, 0), (pixels, pixels), (pixels, pixels)), mode="edge")
        out[i] = padded[:, pixels - dy[i]:pixels - dy[i] + h, pixels - dx[i]:pixels - dx[i] + w]
    return out.reshape(n, -1)


@pytest.mark.parametrize("channels, size, pixels", [(1, (28, 28), 1), (3, (9, 13), 2), (3, (6, 5), MAX_SHIFT)])
def test_shifts_match_padding_each_image_with_its_edges_and_cutting(channels, size, pixels):
    rows = torch.rand(50, channels * size[0] * size[1])
    fast = shift_images(rows, size, pixels, torch.Generator().manual_seed(7))
    np.testing.assert_array_equal(fast.numpy(), shifted_one_by_one(rows, size, pixels, 7))


def test_a_shift_moves_content_and_keeps_a_plain_background_plain():
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 3, 4] = 1.0  # one lit pixel on a plain background
    rows = image.reshape(1, -1).repeat(400, 1)
    moved = shift_images(rows, (8, 8), 1, torch.Generator().manual_seed(0)).reshape(400, 8, 8)
    assert bool((moved.sum(dim=(1, 2)) == 1).all())  # nothing lost, nothing smeared in from an edge
    where = {divmod(int(m.argmax()), 8) for m in moved}
    assert where == {(3 + a, 4 + b) for a in (-1, 0, 1) for b in (-1, 0, 1)}  # every offset, none beyond
    assert shift_images(rows, (8, 8), 0) is rows


@pytest.mark.parametrize("bad", [-1, MAX_SHIFT + 1, 1.5, True, "1"])
def test_unusable_shifts_are_refused(bad):
    with pytest.raises(OptionError, match="shift"):
        TrainConfig(model="residual", shift=bad).validate()


def images(n: int = 300, side: int = 16) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset("img", Split(rng.integers(0, 256, (n, side, side), dtype=np.uint8)),
                   Split(rng.integers(0, 256, (30, side, side), dtype=np.uint8)), sha256="1" * 64)


def test_images_are_shifted_by_default_and_tables_and_named_models_are_not():
    from aelab.api import train_settings
    chosen = choose(images())
    assert chosen.config.shift == 1 and "moved by up to 1 pixel each way" in chosen.reason
    assert choose(images(), shift=0).config.shift == 0 and "moved" not in choose(images(), shift=0).reason
    table = Dataset("t", Split(np.zeros((300, 6), np.float32)), Split(np.zeros((30, 6), np.float32)), sha256="2" * 64)
    assert choose(table).config.shift == 0
    assert choose(images(side=8)).config.shift == 0  # dense layers for small images: a pixel is too much there
    assert [image_shift(side) for side in (16, 28, 32, 64, 128, 512)] == [1, 2, 2, 4, 8, MAX_SHIFT]
    assert train_settings(images(), model="conv").config.shift == 0
    assert train_settings(images(), shift=2).config.shift == 2
    assert "shift" not in TrainConfig(model="conv").to_dict()  # as stored before the option existed
    assert TrainConfig(model="conv", shift=1).to_dict()["shift"] == 1


def test_a_shifted_run_is_reproducible_and_differs_from_an_unshifted_one():
    def weights(shift: int) -> list[torch.Tensor]:
        config = TrainConfig(model="residual", code_size=4, hidden=(16,), recipe="fit", sweeps=2, loss="mse",
                             minibatch_size=32, shift=shift)
        return [p.detach().clone() for p in train(images(), config, log=None, progress_bar=False).model.parameters()]
    once, again, plain = weights(1), weights(1), weights(0)
    assert all(torch.equal(a, b) for a, b in zip(once, again))
    assert not all(torch.equal(a, b) for a, b in zip(once, plain))


def test_shift_on_a_table_is_refused_in_one_line(tmp_path, capsys):
    table = tmp_path / "t.csv"
    np.savetxt(table, np.random.default_rng(0).normal(size=(100, 5)), delimiter=",", header="a,b,c,d,e",
               comments="")
    out = tmp_path / "m"
    assert main(["train", "--data", str(table), "--shift", "1", "--sweeps", "1", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().count("\n") == 0 and "--shift moves images" in captured.err and "table" in captured.err
    assert "Chose" not in captured.out and not out.exists()  # refused before anything was chosen or written
    with pytest.raises(OptionError, match="table"):  # from Python too
        train(Dataset("t", Split(np.zeros((50, 3), np.float32)), Split(np.zeros((5, 3), np.float32)), sha256="3" * 64),
              TrainConfig(model="residual", code_size=1, loss="mse", shift=1), log=None)


def test_train_records_the_shift_in_run_toml_and_the_checkpoint(tmp_path, capsys, tiny_npz):
    out = tmp_path / "m"
    assert main(["train", "--data", str(tiny_npz), "--sweeps", "0.05", "--out", str(out), "--device", "cpu",
                 "--quiet"]) == 0
    assert "shift = 2" in (out / "run.toml").read_text()  # 28 px images
    assert json.loads((out / "config.json").read_text())["training"]["shift"] == 2
