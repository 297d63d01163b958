"""benchmarks/own_data_quality.py: PCA and the autoencoder are scored in the same space, on tiny data."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import benchmark_script


@pytest.fixture(scope="module")
def bench():
    return benchmark_script("own_data_quality")


@pytest.fixture(scope="module")
def digits(bench, tmp_path_factory):
    """The first 300 scikit-learn digits written as a CSV and loaded as the benchmark loads them."""
    from aelab.data import load_dataset
    path = bench.make_digits(tmp_path_factory.mktemp("digits"), limit=300)
    return load_dataset(path, label_column="label", scale="standard", test_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def patches(bench, tmp_path_factory):
    """20 colour patches of each photograph as PNG class folders, loaded."""
    from aelab.data import load_dataset
    return load_dataset(bench.make_patches(tmp_path_factory.mktemp("patches"), per_photo=20), test_fraction=0.2)


def test_the_written_table_loads_standardised_with_its_labels(digits):
    assert digits.kind == "table" and digits.input_shape == (64,)
    assert digits.train.n + digits.test.n == 300 and digits.num_classes == 10
    np.testing.assert_allclose(digits.train.images.mean(axis=0), 0, atol=1e-4)


def test_the_patches_are_colour_images_labelled_by_photograph(bench, patches):
    assert patches.kind == "images" and patches.input_shape == (3, bench.PATCH, bench.PATCH)
    assert patches.num_classes == len(bench.PHOTOS)
    assert patches.train.n + patches.test.n == 20 * len(bench.PHOTOS)


def test_pca_is_scored_in_the_units_of_the_data(bench, digits, patches):
    """PCA with every component reconstructs exactly, and its MSE is the plain per-value mean squared error."""
    full = bench.pca_scores(digits, 64)
    assert full["test_mse"] < 1e-8 and full["test_r2"] > 0.999999
    few = bench.pca_scores(patches, 4)
    assert 0 < few["test_mse_clipped"] <= few["test_mse"] < 0.1   # pixels / 255: small numbers
    assert 0 <= few["knn_acc"] <= 1


@pytest.mark.parametrize("which", ["digits", "patches"])
def test_the_autoencoders_mse_is_aelabs_own_and_the_row_is_complete(bench, digits, patches, which):
    """The benchmark trains what `aelab train` chooses, and its MSE (from reconstruct) equals aelab's evaluate()."""
    data = {"digits": digits, "patches": patches}[which]
    setting = bench.Setting(code_size=4 if which == "digits" else None, quick_sweeps=2, repeats=2)
    row = bench.compare(data, setting, quick=True)
    ae, pca = row["ae"], row["pca"]
    assert row["model"] == "residual" and row["chosen"].startswith("Chose for")
    assert row["code_size"] == (4 if which == "digits" else 32)
    assert len(ae["runs"]) == 2
    for run in ae["runs"]:
        assert run["test_mse"] == pytest.approx(run["evaluate_mse"], rel=1e-4)
    assert row["mse_ratio_ae_over_pca"] == pytest.approx(ae["test_mse"] / pca["test_mse"])
    assert row["mse_ratio_worst_run"] >= row["mse_ratio_ae_over_pca"]
    assert row["units"] == ("standardised" if which == "digits" else "pixels / 255")
    table = bench.markdown_table([{"name": which, **row}])
    assert table.count("\n") == 2 and f"| {which} (" in table


def test_the_made_image_sets_are_what_they_say(bench, tmp_path):
    from aelab.data import load_dataset
    shapes = load_dataset(bench.make_shapes(tmp_path, 40), test_fraction=0.25)
    assert shapes.input_shape == (3, 32, 32) and shapes.num_classes <= len(bench.SHAPES)
    colour = bench.recolour(np.array([[[0, 255]]], np.uint8), np.random.default_rng(0))
    assert colour.shape == (1, 1, 2, 3) and not np.array_equal(colour[0, 0, 0], colour[0, 0, 1])


@pytest.mark.slow
def test_the_quick_run_writes_its_json(bench, tmp_path, capsys):
    import json
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "own-data-quality-quick.json").read_text())
    assert [r["name"] for r in result["rows"]] == list(bench.DATASETS)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["quick"] is True
