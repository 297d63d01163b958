"""Models on the user's own data: colour images of any size and feature tables, through the API and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from aelab import api
from aelab.evaluation.evaluate import evaluate
from aelab.cli import main
from aelab.data import load_dataset
from aelab.errors import DataError, OptionError
from aelab.models import inference
from aelab.models.checkpoint import load_checkpoint
from aelab.models.networks import ModelConfig, build_model, model_config
from aelab.training import TrainConfig, train
from aelab.training.steps import AutogradStep


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))


def _colour_folder(root, h=10, w=14, per_class=24):
    """Two classes told apart by colour: reddish and bluish noise."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("blue", "red")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
            pixels[..., 2 if name == "blue" else 0] += 130
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def _table_csv(path, n=160):
    """Rows on a 2-D curve in 6 columns of very different scales, a text label, a header."""
    rng = np.random.default_rng(1)
    t = rng.uniform(-1, 1, (n, 2))
    x = np.c_[t, t[:, :1] ** 2, np.sin(3 * t[:, 1:]), t.sum(1, keepdims=True), t[:, :1] * t[:, 1:]]
    x = x * np.array([1, 10, 100, 1000, 0.1, 5]) + np.array([0, 5, -50, 3000, 1, 0])
    labels = np.where(t[:, 0] > 0, "right", "left")
    lines = [",".join([f"col{i}" for i in range(6)] + ["side"])]
    lines += [",".join(f"{v:.6g}" for v in row) + f",{lab}" for row, lab in zip(x, labels)]
    path.write_text("\n".join(lines) + "\n")
    return path, x.astype(np.float32)


# --- models take any input ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["simple", "deep", "conv", "sparse", "vae"])
def test_every_kind_maps_colour_images_of_an_odd_size_back_to_their_shape(kind):
    config = model_config(kind, input_shape=(3, 13, 9), code_size=5)
    model = build_model(config, seed=0).eval()
    pixels = torch.randint(0, 256, (4, 3 * 13 * 9)).float()
    out = model(pixels)
    assert out.shape == (4, 3 * 13 * 9) and bool(((out >= 0) & (out <= 1)).all())
    assert model.encode(pixels).shape == (4, 5)


def test_a_table_model_has_linear_outputs_and_refuses_convolutions():
    config = model_config("deep", input_shape=(7,), code_size=2, loss="mse", input_max=1.0)
    model = build_model(config, seed=0).eval()
    with torch.no_grad():
        model.layers[-1].bias.fill_(-5.0)  # a sigmoid could not go below 0
        out = model(torch.randn(3, 7))
    assert out.shape == (3, 7) and bool((out < 0).all())
    with pytest.raises(OptionError, match="convolutions need images"):
        model_config("conv", input_shape=(7,))


def test_grey_configs_are_described_as_before_and_one_channel_means_grey():
    assert model_config("simple").to_dict() == {"kind": "simple", "input_shape": [28, 28], "code_size": 32,
                                                "hidden": []}
    assert model_config("simple", input_shape=(1, 28, 28)).input_shape == (28, 28)
    colour = model_config("conv", input_shape=(3, 8, 8))
    assert ModelConfig.from_dict(colour.to_dict()) == colour
    table = model_config("dense", input_shape=(30,), loss="mse", input_max=1.0)
    assert ModelConfig.from_dict(table.to_dict()) == table


def test_the_mse_step_is_the_summed_squared_error_and_its_gradient():
    torch.manual_seed(0)
    model = build_model(model_config("deep", input_shape=(6,), code_size=2, loss="mse", input_max=1.0), seed=0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    x = torch.randn(5, 6)
    loss, metric = AutogradStep(model)(x, x)
    twin = build_model(model.config, seed=0)
    expected = ((twin(x) - x) ** 2).sum()
    expected.backward()
    assert torch.allclose(loss, expected.detach(), rtol=1e-5)
    assert torch.allclose(metric, ((twin(x) - x) ** 2).mean(1).sum().detach(), rtol=1e-5)
    for mine, theirs in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(mine.grad, theirs.grad, rtol=1e-4, atol=1e-6)


# --- training follows the data --------------------------------------------------------------------

def test_a_table_trains_with_mse_and_its_codes_beat_chance(tmp_path):
    path, _ = _table_csv(tmp_path / "t.csv")
    data = load_dataset(path, label_column="side")
    result = train(data, TrainConfig(model="deep", hidden=(16,), code_size=3, recipe="adam", sweeps=100,
                                     minibatch_size=16),
                   log=None, progress_bar=False)
    assert result.model_config.loss == "mse" and result.model_config.input_shape == (6,)
    scores = evaluate(result.model, data.test.images)
    assert "test_error_pct" not in scores and scores["test_r2"] > 0.5


def test_the_loss_must_suit_the_data(tmp_path):
    path, _ = _table_csv(tmp_path / "t.csv")
    table = load_dataset(path, label_column="side")
    with pytest.raises(OptionError, match="needs data in \\[0, 1\\]"):
        train(table, TrainConfig(loss="bce", sweeps=1), log=None, progress_bar=False)
    unit = load_dataset(path, label_column="side", scale="minmax")
    result = train(unit, TrainConfig(model="simple", code_size=2, sweeps=1, minibatch_size=16), log=None,
                   progress_bar=False)
    assert result.model_config.loss == "bce"


def test_images_train_with_mse_too_and_their_outputs_stay_pixels(tmp_path, tiny_npz, capsys):
    out = tmp_path / "mse"
    assert main(["train", "--data", str(tiny_npz), "--loss", "mse", "--model", "deep", "--code-size", "8",
                 "--recipe", "adam", "--sweeps", "1", "--quiet", "--out", str(out)]) == 0
    model = load_checkpoint(out)
    assert model.model_config.loss == "mse" and model.model_config.is_image
    # linear outputs, clipped to [0, 1] where they become images: far codes decode to valid pixels
    decoded = inference.decode(model.model, np.full((3, 8), 1e3, dtype=np.float32))
    assert decoded.min() >= 0.0 and decoded.max() <= 1.0 and decoded.max() == 1.0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(tiny_npz), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["test_r2"] > 0.1 and scores["test_psnr_db"] > 12  # it learned: better than each pixel's mean
    assert "test_error_pct" in scores and "test_bce" not in scores
    assert main(["reconstruct", "--checkpoint", str(out), "--data", str(tiny_npz), "--limit", "3",
                 "-o", str(tmp_path / "rec")]) == 0
    assert np.asarray(Image.open(tmp_path / "rec" / "img-00000.png")).shape == (28, 28)


# --- the CLI, end to end --------------------------------------------------------------------------

def test_a_csv_table_trains_evaluates_encodes_and_reconstructs_in_its_own_units(tmp_path, capsys):
    path, x = _table_csv(tmp_path / "t.csv")
    out = tmp_path / "model"
    assert main(["train", "--data", str(path), "--label-column", "side", "--model", "deep", "--hidden", "16",
                 "--code-size", "3", "--recipe", "adam", "--sweeps", "100", "--minibatch-size", "16",
                 "--out", str(out), "--quiet"]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["model"]["input_shape"] == [6] and info["model"]["loss"] == "mse"
    assert info["data"]["scaler"]["method"] == "standard" and info["data"]["options"]["label_column"] == "side"
    assert info["data"]["class_names"] == ["left", "right"]
    capsys.readouterr()

    assert main(["evaluate", "--checkpoint", str(out), "--data", str(path), "--knn", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n"] == 16 and scores["test_r2"] > 0.5 and scores["knn_acc"] > 0.7

    assert main(["encode", "--checkpoint", str(out), "--data", str(path), "-o", str(tmp_path / "c.csv")]) == 0
    header, first = (tmp_path / "c.csv").read_text().splitlines()[:2]
    assert header == "label,c0,c1,c2" and first.split(",")[0] in ("left", "right")  # the class names

    assert main(["reconstruct", "--checkpoint", str(out), str(path), "-o", str(tmp_path / "r.csv")]) == 0
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0] == ",".join(f"col{i}" for i in range(6)) and len(lines) == 1 + len(x)
    rebuilt = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    # back in the table's own units: each column's scale is the data's, and the fit is close
    assert np.allclose(rebuilt.mean(0), x.mean(0), atol=0.2 * x.std(0))
    assert np.mean((rebuilt - x) ** 2 / x.var(0)) < 0.5

    assert main(["decode", "--checkpoint", str(out), str(tmp_path / "c.csv"), "-o", str(tmp_path / "d.npy")]) == 0
    assert np.load(tmp_path / "d.npy").shape == (16, 6)


def test_a_colour_folder_trains_a_conv_model_and_writes_colour_pngs(tmp_path, capsys):
    folder = _colour_folder(tmp_path / "photos")
    out = tmp_path / "model"
    assert main(["train", "--data", str(folder), "--model", "conv", "--channels", "8,16", "--code-size", "4",
                 "--recipe", "adam", "--sweeps", "10", "--minibatch-size", "8", "--out", str(out), "--quiet"]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.model_config.input_shape == (3, 10, 14)
    assert ckpt.info["data"]["class_names"] == ["blue", "red"]
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(folder), "--knn", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["knn_acc"] == 1.0 and scores["test_psnr_db"] > 10
    assert main(["reconstruct", "--checkpoint", str(out), "--data", str(folder), "-o", str(tmp_path / "r")]) == 0
    with Image.open(tmp_path / "r" / "img-00000.png") as picture:
        assert picture.mode == "RGB" and picture.size == (14, 10)
    # the codec: colour in, colour out, close to what the model reconstructs
    assert main(["compress", str(folder), "--checkpoint", str(out), "--data", str(folder), "--bits", "8",
                 "-o", str(tmp_path / "p.aez")]) == 0
    assert main(["decompress", str(tmp_path / "p.aez"), "--checkpoint", str(out), "--data", str(folder),
                 "-o", str(tmp_path / "back")]) == 0
    with Image.open(tmp_path / "back" / "img-00000.png") as picture:
        assert picture.mode == "RGB" and picture.size == (14, 10)
        back = np.asarray(picture, dtype=np.float64)
    original = api.input_images(folder)[0][0].astype(np.float64)
    decoded = inference.reconstruct(ckpt.model, original[None])[0] * 255
    assert np.abs(back - decoded).mean() < 0.5 * np.abs(back - original).mean()
    # the same folder, as encode reads it, gives the codes of the training run's test split
    data = api.load_data(folder, ckpt)
    assert np.array_equal(data.test.images, load_dataset(folder).test.images)


def test_data_of_another_shape_is_refused_naming_both_shapes(tmp_path, capsys):
    folder = _colour_folder(tmp_path / "photos")
    out = tmp_path / "model"
    assert main(["train", "--data", str(folder), "--code-size", "4", "--sweeps", "1", "--minibatch-size", "8",
                 "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(folder), "--grayscale"]) == 2
    err = capsys.readouterr().err
    assert "10x14 grey images" in err and "10x14 colour images" in err and "--rgb" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(folder), "--resize", "8x8"]) == 2
    assert "--resize 10x14" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(out)]) == 2  # the bundled MNIST: grey 28x28
    assert "28x28 grey images" in capsys.readouterr().err


def test_the_api_refuses_pixels_already_scaled_to_one():
    model = build_model(model_config("simple"), seed=0).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28))
    inference.encode(model, images)
    for call in (inference.encode, inference.reconstruct, evaluate):
        with pytest.raises(DataError, match="scaled to 0..1"):
            call(model, images / 255.0)


def test_a_table_denoiser_keeps_its_noise_unclipped_and_refuses_salt_pepper(tmp_path):
    import torch as t

    from aelab.data.noise import corrupt, parse_noise
    rows = t.full((4, 3), -2.0)
    noisy = corrupt(rows, parse_noise("gaussian:0.1"), t.Generator().manual_seed(0), bounded=False)
    assert bool((noisy < -1).all())  # not clipped into [0, 1]
    path, _ = _table_csv(tmp_path / "t.csv")
    data = load_dataset(path, label_column="side")
    with pytest.raises(OptionError, match="salt-pepper"):
        train(data, TrainConfig(noise="salt-pepper:0.1", sweeps=1), log=None, progress_bar=False)
    result = train(data, TrainConfig(model="deep", hidden=(16,), code_size=3, noise="gaussian:0.3", sweeps=5,
                                     minibatch_size=16, recipe="adam"), log=None, progress_bar=False)
    assert np.isfinite(result.train_loss) and result.model_config.loss == "mse"
