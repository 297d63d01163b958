"""The conv, sparse and vae models, the dense preset, denoisers, and their CLI: shapes, registry,
checkpoints, reproducibility, and the sparse penalty's effect. Tiny data, a few minibatches."""
import json

import numpy as np
import pytest
import torch

from aelab.models.checkpoint import load_checkpoint, save_checkpoint
from aelab.cli import main
from aelab.errors import OptionError
from aelab.models.layers import ResidualBlock
from aelab.models.networks import (MODEL_KINDS, MODEL_NAMES, ConvAutoencoder, DenseAutoencoder, ModelConfig,
                                   SparseAutoencoder, VariationalAutoencoder, build_model, model_config)
from aelab.training.loop import TrainConfig, get_recipe, train

NEW_KINDS = ("dense", "conv", "sparse", "vae")


def test_registry_lists_every_kind():
    assert set(MODEL_NAMES) == {"simple", "deep", "dense", "conv", "sparse", "vae", "residual"}
    assert all(MODEL_KINDS[k].description for k in MODEL_NAMES)
    classes = {"dense": DenseAutoencoder, "conv": ConvAutoencoder, "sparse": SparseAutoencoder,
               "vae": VariationalAutoencoder}
    for kind, cls in classes.items():
        assert type(build_model(model_config(kind))) is cls


@pytest.mark.parametrize("kind", NEW_KINDS)
@pytest.mark.parametrize("shape", [(28, 28), (9, 7)])
def test_shapes_for_each_kind(kind, shape):
    channels = (4, 8) if kind != "dense" else None
    cfg = model_config(kind, input_shape=shape, code_size=5, hidden=(16,), channels=channels)
    m = build_model(cfg, seed=0).eval()
    x = torch.randint(0, 256, (3, shape[0] * shape[1])).float()
    z = m.encode(x)
    assert z.shape == (3, 5)
    logits = m.decode_logits(z)
    assert logits.shape == (3, shape[0] * shape[1])
    y = m(x)
    assert torch.allclose(y, torch.sigmoid(logits)) and (y >= 0).all() and (y <= 1).all()
    if hasattr(m, "training_terms"):
        out, extra = m.training_terms(x)
        assert out.shape == logits.shape and extra.ndim == 0 and extra >= 0


def test_conv_rejects_images_too_small_for_its_stages():
    model_config("conv", input_shape=(8, 8), channels=(4, 4, 4))
    with pytest.raises(OptionError, match="too small.*3 stride-2.*8x8"):
        model_config("conv", input_shape=(8, 6), channels=(4, 4, 4))


@pytest.mark.parametrize("kwargs", [{"kind": "deep", "channels": (8,)}, {"kind": "conv", "channels": ()},
                                    {"kind": "conv", "channels": (0,)}, {"kind": "conv", "sparsity": 0.1},
                                    {"kind": "sparse", "sparsity": -1.0}, {"kind": "vae", "beta": 0.0},
                                    {"kind": "sparse", "beta": 2.0}, {"kind": "vae", "sparsity": float("nan")},
                                    {"kind": "deep", "activation": "silu"}, {"kind": "conv", "activation": "tanh"},
                                    {"kind": "conv", "conv_depth": 0}, {"kind": "vae", "conv_depth": 2},
                                    {"kind": "conv", "res_blocks": -1}, {"kind": "conv", "res_blocks": True},
                                    {"kind": "deep", "res_blocks": 1}, {"kind": "residual", "res_blocks": 1},
                                    {"kind": "conv", "norm": "batch"}, {"kind": "dense", "norm": "group"}])
def test_bad_options_for_new_kinds(kwargs):
    kind = kwargs.pop("kind")
    with pytest.raises(OptionError):
        model_config(kind, **kwargs)


def test_config_round_trip_keeps_every_field_and_old_configs_load():
    cfg = model_config("vae", input_shape=(12, 10), code_size=7, hidden=(9,), channels=(3, 5), beta=0.5,
                       conv_depth=2, activation="silu")
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    m = build_model(cfg)
    assert sum(isinstance(layer, torch.nn.SiLU) for layer in m.modules()) == 2 * (2 * 2 + 1)
    assert sum(isinstance(layer, torch.nn.Conv2d) for layer in m.encoder) == 4
    old = {"kind": "deep", "input_shape": [28, 28], "code_size": 32, "hidden": [128, 64]}
    assert ModelConfig.from_dict(old) == model_config("deep")
    assert "res_blocks" not in cfg.to_dict() and "norm" not in cfg.to_dict()  # older checkpoints read as before


def test_residual_blocks_follow_each_stage_and_round_trip():
    cfg = model_config("residual", input_shape=(3, 16, 12), code_size=5, channels=(4, 8), res_blocks=2, norm="group",
                       loss="mse")
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    model = build_model(cfg, seed=0)
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 2 * 2 * 2  # encoder and decoder, two stages, two blocks each
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == len(convs) - 1  # every convolution but the output's is normalised
    assert {m.num_groups for m in norms} == {4, 8}  # as many groups as divide the channels, up to 8
    x = torch.rand(3, 3 * 16 * 12) * 255
    with torch.no_grad():  # the nonlinear part starts at zero whatever its blocks: the model is its linear path
        linear = (x / 255 - model.mean) @ model.components.t()
        torch.testing.assert_close(model.encode(x), linear)


def test_a_residual_block_adds_its_input_even_with_in_place_activations():
    torch.manual_seed(0)
    block = ResidualBlock(4, torch.nn.ReLU)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        want = torch.relu(x + block.body(x))
        for m in block.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = True
        kept = x.clone()
        torch.testing.assert_close(block(x), want)
    assert torch.equal(x, kept)


@pytest.fixture(scope="module")
def tiny_runs(tiny_data, tmp_path_factory):
    """Each new kind (and a denoiser) trained for a few minibatches and saved."""
    root = tmp_path_factory.mktemp("extra")
    runs = {}
    settings = {"conv": {"channels": (4, 8), "conv_depth": 2, "activation": "silu"}, "vae": {"hidden": (32,)}, "sparse": {"hidden": (32,)},
                "dense": {"hidden": (32,)}, "denoiser": {"hidden": (32,), "noise": "masking:0.3"}}
    for name, extra in settings.items():
        config = TrainConfig(model="dense" if name == "denoiser" else name, recipe="adam-long", sweeps=0.08,
                             seed=3, device="cpu", **extra)
        result = train(tiny_data, config, log=None, progress_bar=False)
        folder = save_checkpoint(root / name, result.model, result.model_config, training=config.to_dict())
        runs[name] = (result, folder)
    return runs


@pytest.mark.parametrize("name", ["conv", "vae", "sparse", "dense", "denoiser"])
def test_checkpoint_round_trip(tiny_runs, tiny_data, name):
    result, folder = tiny_runs[name]
    ckpt = load_checkpoint(folder)
    assert ckpt.model_config == result.model_config and type(ckpt.model) is type(result.model)
    x = torch.as_tensor(tiny_data.test.images[:8].reshape(8, -1)).float()
    saved, trained = ckpt.model.state_dict(), result.model.state_dict()
    assert saved.keys() == trained.keys() and all(torch.equal(saved[k], trained[k]) for k in saved)
    with torch.no_grad():  # same weights; conv kernels may round differently for differently aligned memory
        assert torch.allclose(ckpt.model.encode(x), result.model.encode(x), atol=1e-6)
        assert torch.allclose(ckpt.model(x), result.model(x), atol=1e-6)


def test_denoiser_records_its_noise(tiny_runs):
    _, folder = tiny_runs["denoiser"]
    assert load_checkpoint(folder).info["training"]["noise"] == "masking:0.3"


def test_vae_training_is_reproducible_and_does_not_touch_the_global_rng(tiny_data):
    config = TrainConfig(model="vae", hidden=(16,), recipe="adam", sweeps=0.03, seed=1, device="cpu")
    torch.manual_seed(0)
    before = torch.rand(3)
    a = train(tiny_data, config, log=None, progress_bar=False).model
    torch.manual_seed(0)
    b = train(tiny_data, config, log=None, progress_bar=False).model
    after = torch.rand(3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.equal(before, after)  # training drew nothing from the global RNG
    assert int(a.sampling_seed) == 1 and int(a.sampling_step) == 3  # 3 minibatches of 64


def test_vae_resume_draws_the_same_noise(tiny_data, tmp_path, monkeypatch):
    """A VAE run stopped after 3 minibatches and resumed ends with the same weights as an uninterrupted one."""
    import contextlib

    import aelab.training.loop as train_module
    from aelab.training.loop import TrainingInterrupted

    class StopAfter(dict):
        def __init__(self, reads):
            super().__init__(stop=False)
            self.left = reads

        def __getitem__(self, key):  # the loop asks once per minibatch
            self.left -= 1
            return self.left <= 0

    config = TrainConfig(model="vae", hidden=(16,), recipe="adam-long", sweeps=0.06, minibatch_size=64, seed=2,
                         device="cpu")
    straight = train(tiny_data, config, log=None, progress_bar=False).model
    resume = tmp_path / "resume.safetensors"
    with monkeypatch.context() as m:
        m.setattr(train_module, "stop_requests", lambda enabled: contextlib.nullcontext(StopAfter(3)))
        with pytest.raises(TrainingInterrupted):
            train(tiny_data, config, log=None, progress_bar=False, resume_file=resume, checkpoint_every=0)
    resumed = train(tiny_data, config, log=None, progress_bar=False, resume_file=resume, resume=True).model
    assert int(resumed.sampling_step) == int(straight.sampling_step) == 6
    for (k, p), q in zip(resumed.state_dict().items(), straight.state_dict().values()):
        assert torch.equal(p, q), k


def test_vae_sampling_is_reproducible_with_a_seed(tiny_runs):
    from aelab.evaluation.generate import sample
    model = tiny_runs["vae"][0].model
    a, b, c = sample(model, 6, seed=4), sample(model, 6, seed=4), sample(model, 6, seed=5)
    assert a.shape == (6, 28, 28) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_vae_encodes_its_posterior_mean_deterministically(tiny_runs, tiny_data):
    model = tiny_runs["vae"][0].model
    x = torch.as_tensor(tiny_data.test.images[:4].reshape(4, -1)).float()
    mu, logvar = model.posterior(x)
    assert torch.equal(model.encode(x), mu) and torch.equal(model.encode(x), model.encode(x))


def test_sparse_penalty_sparsifies_the_codes(tiny_data):
    """Same model, seed and data: the L1 penalty leaves far more code units at exactly zero."""
    def zero_fraction(sparsity):
        config = TrainConfig(model="sparse", hidden=(64,), sparsity=sparsity, recipe="adam", sweeps=0.5, seed=0,
                             device="cpu")
        model = train(tiny_data, config, log=None, progress_bar=False).model
        with torch.no_grad():
            codes = model.encode(torch.as_tensor(tiny_data.test.images.reshape(len(tiny_data.test.images), -1)))
        return float((codes == 0).float().mean())
    plain, sparse = zero_fraction(0.0), zero_fraction(1.0)
    assert sparse > plain + 0.2, (plain, sparse)


def test_adam_long_follows_a_cosine_schedule():
    from aelab.training.schedules import ScheduledAdam, scheduled_lr
    recipe = get_recipe("adam-long")
    assert recipe.schedule == "cosine" and recipe.optimizer == "adam"
    assert scheduled_lr(1.0, 0, 100, "cosine", warmup_steps=10) == pytest.approx(0.1)
    assert scheduled_lr(1.0, 10, 100, "cosine", warmup_steps=10) == pytest.approx(1.0)
    assert scheduled_lr(1.0, 99, 100, "cosine", warmup_steps=10) == pytest.approx(0.0, abs=1e-12)
    p = torch.nn.Parameter(torch.zeros(3))
    opt = ScheduledAdam([p], lr=0.5, total_steps=4, schedule="cosine")
    lrs = []
    for _ in range(4):
        p.grad = torch.ones(3)
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.5, 0.375, 0.125, 0.0])


def test_train_cli_takes_the_new_model_options(tiny_npz, tmp_path):
    out = tmp_path / "conv"
    assert main(["train", "--model", "conv", "--channels", "4,8", "--hidden", "none", "--code-size", "6",
                 "--recipe", "adam", "--sweeps", "0.01", "--data", str(tiny_npz), "--device", "cpu",
                 "--noise", "salt-pepper:0.1", "--out", str(out), "--quiet"]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["model"]["channels"] == [4, 8] and info["model"]["code_size"] == 6
    assert info["training"]["noise"] == "salt-pepper:0.1"
    assert main(["train", "--model", "deep", "--channels", "4", "--data", str(tiny_npz), "--out",
                 str(tmp_path / "x"), "--quiet"]) == 2


def test_denoise_cli_writes_triplets_and_reports_psnrs(tiny_runs, tiny_npz, tmp_path, capsys):
    _, folder = tiny_runs["denoiser"]
    out = tmp_path / "dn"
    assert main(["denoise", "--checkpoint", str(folder), "--data", str(tiny_npz), "--limit", "40", "--draw", "3",
                 "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["noise"] == "masking:0.3" and report["n"] == 40  # the checkpoint's noise
    assert 0 < report["noisy_psnr_db"] < 40 and 0 < report["denoised_psnr_db"] < 40
    assert sorted(p.name for p in out.iterdir()) == ["triplet-00000.png", "triplet-00001.png",
                                                      "triplet-00002.png", "triplets.png"]
    from PIL import Image
    assert Image.open(out / "triplet-00000.png").size == (84, 28)
    # an explicit noise wins; the same seed gives the same figures
    args = ["denoise", "--checkpoint", str(folder), "--data", str(tiny_npz), "--limit", "40", "--noise",
            "gaussian:0.5", "-o", str(out), "--json", "--draw", "0"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == first and first["noise"] == "gaussian:0.5"


def test_denoise_without_any_noise_is_a_clear_error(trained, tiny_npz, tmp_path, capsys):
    assert main(["denoise", "--checkpoint", str(trained.folder), "--data", str(tiny_npz), "-o",
                 str(tmp_path / "d")]) == 2
    assert "--noise" in capsys.readouterr().err


def test_sample_and_interpolate_write_pictures(tiny_runs, tiny_npz, tmp_path, capsys):
    from PIL import Image
    _, vae = tiny_runs["vae"]
    assert main(["sample", "--checkpoint", str(vae), "--draw", "12", "-o", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size[0] > 100
    _, conv = tiny_runs["conv"]
    assert main(["interpolate", "--checkpoint", str(conv), "3", "7", "--steps", "5", "--data", str(tiny_npz),
                 "-o", str(tmp_path / "i.png")]) == 0
    assert Image.open(tmp_path / "i.png").size[0] > 200
    assert main(["sample", "--checkpoint", str(conv), "-o", str(tmp_path / "x.png")]) == 2
    assert "vae" in capsys.readouterr().err
    assert main(["interpolate", "--checkpoint", str(conv), "3", "999", "--data", str(tiny_npz),
                 "-o", str(tmp_path / "y.png")]) == 2


def test_interpolation_ends_at_the_two_codes(tiny_runs, tiny_data):
    from aelab.evaluation.generate import interpolate
    from aelab.models.inference import encode
    model = tiny_runs["conv"][0].model
    a, b = tiny_data.test.images[0], tiny_data.test.images[1]
    walk = interpolate(model, a, b, steps=4)
    codes = encode(model, np.stack([a, b]))
    assert np.allclose(walk["codes"][0], codes[0]) and np.allclose(walk["codes"][-1], codes[1])
    assert walk["decoded"].shape == (4, 28, 28)
