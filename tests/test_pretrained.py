"""The shipped pretrained models: listed, small, usable by name, and scoring what they say they score."""
import json
import shutil

import pytest

from aelab.models.checkpoint import load_checkpoint
from aelab.cli import main
from aelab.models.checkpoint import pretrained_names, pretrained_path, resolve_checkpoint
from aelab.models.zoo import list_pretrained

SHIPPED = {"mnist-conv", "mnist-codec", "mnist-denoise", "mnist-vae", "mnist-sparse", "mnist-simple", "mnist-deep"}
BEST = "mnist-conv"  # the best trained from scratch; mnist-codec is it fine-tuned


def test_every_kind_ships_and_each_is_small():
    assert SHIPPED <= set(pretrained_names())
    kinds = {m["kind"] for m in list_pretrained()}
    assert {"conv", "vae", "sparse", "simple", "deep", "residual"} <= kinds
    assert any(m["noise"] for m in list_pretrained())  # a denoiser
    for name in SHIPPED:
        folder = pretrained_path(name)
        # float16 weights; the residual denoiser (its PCA path and residual blocks) is the largest, about 1.2 MB
        assert (folder / "model.safetensors").stat().st_size < 1_500_000
        assert (folder / "config.json").stat().st_size < 20_000


def test_models_json_lists_names_kinds_code_sizes_and_test_metrics(capsys):
    assert main(["models", "--json"]) == 0
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert SHIPPED <= set(models)
    for m in models.values():
        for key in ("name", "kind", "code_size", "params", "test_psnr_db", "test_mse", "knn_acc",
                    "test_ssim", "tsne_trust"):
            assert m[key] is not None, (m["name"], key)
        assert (m.get("test_bce") is None) == (m["kind"] == "residual")  # a squared-error model has no BCE
        assert m["code_size"] == 32 and 0 < m["knn_acc"] <= 1
    den = models["mnist-denoise"]
    assert den["noise"] == "gaussian:0.5" and den["denoised_psnr_db"] > den["noisy_psnr_db"]
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "mnist-conv" in text
    header, *rows = text.splitlines()[:len(models) + 1]
    for row in rows:  # columns line up whatever the longest kind's name
        name = row.split()[0]
        assert row.index(models[name]["description"]) == header.index("description"), row


def test_targets_of_the_shipped_models():
    models = {m["name"]: m for m in list_pretrained()}
    best = models[BEST]
    assert best["test_psnr_db"] >= 26.0 and best["knn_acc"] >= 0.98
    assert models["mnist-denoise"]["denoised_psnr_db"] >= 20.5
    # the codec's model: the same network fine-tuned for squared error, so a better PSNR than the model it starts from
    codec_model = models["mnist-codec"]
    assert codec_model["params"] == best["params"]
    assert codec_model["test_psnr_db"] >= best["test_psnr_db"] + 0.3


def test_names_resolve_and_real_folders_win(trained, tmp_path, monkeypatch):
    assert resolve_checkpoint("mnist-deep") == pretrained_path("mnist-deep")
    assert load_checkpoint("mnist-deep").model_config.kind == "deep"
    monkeypatch.chdir(tmp_path)
    shutil.copytree(trained.folder, tmp_path / "mnist-deep")
    assert load_checkpoint("mnist-deep").model_config.kind == "simple"  # the folder, not the shipped model
    assert resolve_checkpoint("no-such-model").name == "no-such-model"


def test_reconstruct_and_evaluate_take_a_name(tiny_npz, tmp_path, capsys):
    out = tmp_path / "rec"
    assert main(["reconstruct", "--checkpoint", "mnist-simple", "--data", str(tiny_npz), "--limit", "3",
                 "-o", str(out)]) == 0
    assert (out / "grid.png").is_file() and len(list(out.glob("img-*.png"))) == 3
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", "mnist-simple", "--data", str(tiny_npz), "--json", "--knn"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n"] == 200 and 0 < scores["knn_acc"] <= 1 and scores["test_psnr_db"] > 15
    assert main(["evaluate", "--checkpoint", "mnist-nonesuch", "--data", str(tiny_npz)]) == 2
    assert "aelab models" in capsys.readouterr().err


@pytest.fixture(scope="module")
def full_evaluations(mnist):
    """`aelab evaluate --json` of three shipped models on the full MNIST test set (a few seconds each);
    with --knn for the dense one (encoding the 60,000 training images with a conv model takes longer)."""
    import contextlib
    import io
    results = {}
    for name, extra in ((BEST, []), ("mnist-codec", []), ("mnist-deep", ["--knn"])):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert main(["evaluate", "--checkpoint", name, "--json", "--device", "cpu", *extra]) == 0
        results[name] = json.loads(buffer.getvalue())
    return results


@pytest.mark.parametrize("name", [BEST, "mnist-codec", "mnist-deep"])
def test_evaluate_reproduces_the_stored_metrics(full_evaluations, name):
    stored = load_checkpoint(name).info["metrics"]
    measured = full_evaluations[name]
    assert measured["n"] == 10_000
    assert measured["test_psnr_db"] == pytest.approx(stored["test_psnr_db"], abs=0.01)
    assert measured["test_bce"] == pytest.approx(stored["test_bce"], rel=1e-4)
    assert measured["test_error_pct"] == pytest.approx(stored["test_error_pct"], abs=0.01)
    if "knn_acc" in measured:
        assert measured["knn_acc"] == pytest.approx(stored["knn_acc"], abs=0.0005)  # 5 of 10,000 may flip elsewhere


def test_denoise_reproduces_the_stored_denoising_psnr(tmp_path, capsys):
    """The shipped denoiser is a residual model, its linear path trained at the full step."""
    loaded = load_checkpoint("mnist-denoise")
    assert loaded.model_config.kind == "residual" and loaded.model_config.linear_step == 1.0
    stored = loaded.info["metrics"]
    assert main(["denoise", "--checkpoint", "mnist-denoise", "--draw", "2", "-o", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["noise"] == "gaussian:0.5" and report["n"] == 10_000
    assert report["noisy_psnr_db"] == pytest.approx(stored["noisy_psnr_db"], abs=1e-6)
    assert report["denoised_psnr_db"] == pytest.approx(stored["denoised_psnr_db"], abs=0.01)
