"""aelab.evaluation.compare and `aelab compare`: every model measured one way, with a PCA baseline (tiny data)."""
import json

import numpy as np
import pytest
import torch

from aelab.cli import main
from aelab.evaluation.compare import (COLUMNS, PCAModel, entries_from, fit_pca, knn_accuracy, markdown_table, mean_ssim,
                           quick_subset, run_comparison, write_results)
from aelab.errors import OptionError
from aelab.evaluation.evaluate import evaluate

METRICS = ("params", "train_seconds", "test_bce", "test_mse", "test_psnr_db", "test_ssim", "knn_acc",
           "tsne_trust", "tsne_trust_pixels", "code_zeros", "denoised_psnr_db")


@pytest.fixture(scope="module")
def small(tiny_data):
    return quick_subset(tiny_data, train=1000, test=120)


@pytest.fixture(scope="module")
def comparison(small):
    entries = entries_from(["simple", "conv", "vae@masking:0.2"], recipe="adam", sweeps=0.2, device="cpu")
    return run_comparison(small, entries, tsne_samples=60, reconstruct_count=4, log=None)


def test_rows_have_every_metric_and_pca_comes_first(comparison):
    rows = comparison["rows"]
    assert [r["name"] for r in rows] == ["pca-32", "simple", "conv", "vae@masking:0.2"]
    for row in rows:
        for key in METRICS:
            assert isinstance(row[key], (int, float)) and np.isfinite(row[key]), (row["name"], key)
        assert 0 <= row["knn_acc"] <= 1 and 0 <= row["tsne_trust"] <= 1 and -1 <= row["test_ssim"] <= 1
    assert rows[3]["noise"] == "masking:0.2" and rows[3]["kind"] == "vae"
    assert rows[0]["test_psnr_db"] > rows[1]["test_psnr_db"]  # a few minibatches do not beat PCA
    meta = comparison["meta"]
    assert meta["test_images"] == 120 and meta["tsne_samples"] == 60 and meta["knn_neighbours"] == 5


def test_outputs_markdown_json_and_picture(comparison, tmp_path):
    paths = write_results(comparison, tmp_path)
    text = paths["markdown"].read_text()
    assert all(h in text for _, h, _ in COLUMNS) and "| pca-32 |" in text
    data = json.loads(paths["json"].read_text())
    assert [r["name"] for r in data["rows"]] == [r["name"] for r in comparison["rows"]]
    from PIL import Image
    assert Image.open(paths["picture"]).size[1] > 100  # 5 rows: originals and four models
    assert set(comparison["reconstructions"]) == {"original", "pca-32", "simple", "conv", "vae@masking:0.2"}
    assert markdown_table(comparison).count("\n|") == 2 + 4


def test_pca_model_follows_the_protocol_and_is_scored_like_any_model(small):
    pca = fit_pca(small.train.images, 8)
    assert isinstance(pca, PCAModel) and pca.config.code_size == 8
    x = torch.as_tensor(small.test.images[:5].reshape(5, -1)).float()
    assert pca.encode(x).shape == (5, 8) and pca(x).shape == (5, 784)
    # sklearn's own reconstruction, clipped, gives the same MSE
    from sklearn.decomposition import PCA
    flat = small.train.images.reshape(len(small.train.images), -1) / 255.0
    ref = PCA(8, svd_solver="full").fit(flat)
    test = small.test.images.reshape(len(small.test.images), -1) / 255.0
    mse = float(np.mean((np.clip(ref.inverse_transform(ref.transform(test)), 1e-4, 1 - 1e-4) - test) ** 2))
    assert evaluate(pca, small.test.images)["test_mse"] == pytest.approx(mse, rel=1e-3)


def test_metric_helpers():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 28, 28)).astype(np.uint8)
    assert mean_ssim(images / 255.0, images) == pytest.approx(1.0)
    codes = np.r_[rng.normal(0, 0.1, (20, 3)), rng.normal(5, 0.1, (20, 3))]
    labels = np.r_[np.zeros(20, int), np.ones(20, int)]
    assert knn_accuracy(codes, labels, codes + 0.01, labels) == 1.0


def test_bad_model_specs_are_clear_errors():
    with pytest.raises(OptionError, match="neither a model kind nor a checkpoint"):
        entries_from(["nonsense"], recipe="adam", sweeps=1)
    with pytest.raises(OptionError, match="unknown noise"):
        entries_from(["dense@fog:1"], recipe="adam", sweeps=1)
    with pytest.raises(OptionError, match="no models"):
        entries_from([" "], recipe="adam", sweeps=1)


def test_compare_cli_quick_on_tiny_data(tiny_npz, trained, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--quick", "--models", f"deep,{trained.folder}", "--sweeps", "0.2", "--data",
                 str(tiny_npz), "--tsne-limit", "50", "--device", "cpu", "-o", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["pca-32", "deep", str(trained.folder)]
    assert rows[2]["params"] == 784 * 32 * 2 + 32 + 784  # a checkpoint is measured as it is
    assert sorted(p.name for p in out.iterdir()) == ["quality.json", "quality.md", "quality.png"]


def test_ssim_without_scikit_image_names_the_extra(monkeypatch):
    import sys

    from aelab.errors import OptionError
    from aelab.evaluation.compare import mean_ssim
    monkeypatch.setitem(sys.modules, "skimage.metrics", None)  # import fails as if not installed
    images = np.zeros((2, 8, 8), np.uint8)
    with pytest.raises(OptionError, match="scikit-image") as info:
        mean_ssim(images / 255.0, images)
    assert "aelab[quality]" in info.value.hint
