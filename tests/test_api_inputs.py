"""Inputs of the wrong kind given to the API and the scikit-learn transformer: each is refused with an
aelab error that names what was wrong and what to pass, never a torch, numpy or pathlib traceback."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

import aelab
from aelab.cli import main
from aelab.errors import DataError, OptionError
from aelab.models import inference
from aelab.sklearn import AutoencoderTransformer, SampleError


def tiny(**params) -> AutoencoderTransformer:
    return AutoencoderTransformer(**{"model": "simple", "code_size": 3, "sweeps": 2, "device": "cpu",
                                     "random_state": 0, **params})


@pytest.fixture(scope="module")
def model():
    return aelab.load_model("mnist-deep", device="cpu")


@pytest.fixture(scope="module")
def images(mnist):
    return mnist.test.images[:8]


@pytest.fixture(scope="module")
def grey():
    return np.random.default_rng(0).integers(0, 256, (12, 6, 6)).astype(np.uint8)


@pytest.fixture(scope="module")
def rows():
    return np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)


CALLS = {
    "encode_images": lambda m, x, tmp: aelab.encode_images(m, x),
    "reconstruct_images": lambda m, x, tmp: aelab.reconstruct_images(m, x),
    "anomaly_scores": lambda m, x, tmp: aelab.anomaly_scores(m, x),
    "compress": lambda m, x, tmp: aelab.compress(x, m, tmp / "x.aez"),
}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("kind, named", [("object", "dtype object"), ("str", "dtype <U"),
                                         ("sparse", "csr_matrix .*toarray")])
def test_non_numeric_and_sparse_inputs_are_refused_by_name(model, images, tmp_path, call, kind, named):
    given = {"object": images.astype(object), "str": images.astype(str),
             "sparse": sp.csr_matrix(images.reshape(len(images), -1))}[kind]
    with pytest.raises(DataError, match=named):
        CALLS[call](model, given, tmp_path)


def test_decode_codes_takes_a_list_of_codes(model, images):
    codes = aelab.encode_images(model, images)
    np.testing.assert_array_equal(aelab.decode_codes(model, codes.tolist()), aelab.decode_codes(model, codes))


def test_decode_codes_refuses_what_is_neither_codes_nor_a_path(model):
    with pytest.raises(OptionError, match="codes must be an array or a codes file's path, got dict"):
        aelab.decode_codes(model, {"codes": [0.0] * 32})
    with pytest.raises(DataError, match="rows of equal length"):
        aelab.decode_codes(model, [[0.0] * 32, [0.0]])


def test_load_data_given_an_array_says_it_takes_a_path(images):
    with pytest.raises(OptionError, match="must be the path of a file or folder.*got ndarray.*encode_images"):
        aelab.load_data(images)


def test_anomaly_scores_refuses_labels_of_another_length_and_a_threshold_that_is_no_number(model, images):
    with pytest.raises(OptionError, match=r"labels must have shape \(8,\), one per sample, got \(3,\)"):
        aelab.anomaly_scores(model, images, labels=np.arange(3))
    with pytest.raises(OptionError, match="the threshold must be a finite number, got '0.1'"):
        aelab.anomaly_scores(model, images, threshold="0.1")
    scored = aelab.anomaly_scores(model, images, labels=[0, 1] * 4, threshold=np.float32(0.5))
    assert scored["table"]["label"].tolist() == [0, 1] * 4 and scored["flagged"] == 0


@pytest.mark.parametrize("limit", [0, -1, 1.5])
def test_decode_codes_refuses_limits_below_one(model, images, limit):
    codes = aelab.encode_images(model, images)
    with pytest.raises(OptionError, match="limit must be a positive integer"):
        aelab.decode_codes(model, codes, limit=limit)
    assert aelab.decode_codes(model, codes, limit=np.int64(3)).shape == (3, 28, 28)


def test_float_and_one_channel_images_say_what_the_transformer_takes(grey):
    with pytest.raises(SampleError, match=r"uint8 pixels 0..255.*float32.*\(12, 6, 6\).*\* 255.*rows \(n, h\*w\)"):
        tiny().fit(grey / np.float32(255))
    with pytest.raises(SampleError, match=r"got 1 channel .*X\[\.\.\., 0\]"):
        tiny().fit(grey[..., None])
    fitted = tiny().fit(grey)
    with pytest.raises(SampleError, match="uint8 pixels 0..255.*got float32"):
        fitted.transform(grey.astype(np.float32))
    with pytest.raises(SampleError, match="uint8 pixels 0..255.*got int64 list"):
        fitted.transform(grey.tolist())
    with pytest.raises(SampleError, match=r"a single image: pass X\[None\]"):
        fitted.transform(grey[0])
    assert fitted.transform(grey).shape == (12, 3)


def test_values_beyond_float32_range_are_named_as_such(model, images, rows):
    with pytest.raises(SampleError, match="beyond float32's range"):
        tiny().fit(rows.astype(np.float64) * 1e300)
    fitted = tiny().fit(rows)
    with pytest.raises(SampleError, match="beyond float32's range"):
        fitted.transform(rows.astype(np.float64) * 1e39)
    with pytest.raises(SampleError, match="beyond float32's range"):
        fitted.inverse_transform(fitted.transform(rows).astype(np.float64) * 1e300)
    codes = aelab.encode_images(model, images)
    with pytest.raises(DataError, match=r"1.*e\+30\d in codes are beyond float32's range"):
        aelab.decode_codes(model, codes.astype(np.float64) * 1e300)


def test_a_loaded_shipped_model_gives_parameters_that_clone_the_same_kind():
    loaded = AutoencoderTransformer.load("mnist-deep")
    params = clone(loaded).get_params()
    assert params["model"] == "deep" and params["code_size"] == 32
    assert params["recipe"] == "adam-long" and params["sweeps"] == 30.0


def test_a_loaded_cli_trained_table_model_gives_its_training_parameters(tmp_path, rows):
    np.savetxt(tmp_path / "t.csv", rows * 10 + 3, delimiter=",", header="a,b,c,d,e", comments="")
    assert main(["train", "--data", str(tmp_path / "t.csv"), "--model", "simple", "--code-size", "2",
                 "--sweeps", "1", "--minibatch-size", "8", "--scale", "minmax", "--device", "cpu",
                 "--out", str(tmp_path / "ck")]) == 0
    params = AutoencoderTransformer.load(tmp_path / "ck").get_params()
    assert (params["model"], params["code_size"], params["sweeps"], params["scale"]) == ("simple", 2, 1.0, "minmax")
    assert params["minibatch_size"] == 8 and params["recipe"] == "tutorial"
    assert clone(AutoencoderTransformer.load(tmp_path / "ck")).fit(rows).transform(rows).shape == (40, 2)


def test_negative_pixels_are_not_called_scaled(model, images):
    with pytest.raises(DataError, match="found -300..-45") as refused:
        aelab.encode_images(model, images.astype(np.int64) - 300)
    assert "scaled" not in str(refused.value) and "never negative" in str(refused.value)
    with pytest.raises(DataError, match="already scaled to 0..1 or -1..1"):
        aelab.encode_images(model, images / 127.5 - 1)


def test_a_table_model_names_the_shape_it_takes_once(rows):
    fitted = tiny().fit(rows)
    with pytest.raises(DataError) as refused:
        inference.encode(fitted.model_, rows[:, :3])
    assert refused.value.hint == "pass (n, 5) values"


def test_reconstruct_images_of_no_images_works_with_and_without_output(model, tmp_path):
    empty = np.zeros((0, 28, 28), np.uint8)
    assert aelab.reconstruct_images(model, empty).shape == (0, 28, 28)
    assert aelab.reconstruct_images(model, empty, output=tmp_path / "out").shape == (0, 28, 28)


# every API function whose first argument is a model: its other arguments, for a grey 28x28 model
MODEL_CALLS = {
    "encode_images": lambda m, x, data: aelab.encode_images(m, x),
    "decode_codes": lambda m, x, data: aelab.decode_codes(m, np.zeros((2, 32), np.float32)),
    "reconstruct_images": lambda m, x, data: aelab.reconstruct_images(m, x),
    "anomaly_scores": lambda m, x, data: aelab.anomaly_scores(m, x)["scores"],
    "evaluate_model": lambda m, x, data: aelab.evaluate_model(m, data)["test_mse"],
    "similarity_pairs": lambda m, x, data: [v for v in aelab.similarity_pairs(m, data, pair=(0, 1))[0].values()
                                                     if isinstance(v, float)],
    "interpolate_images": lambda m, x, data: aelab.interpolate_images(m, data, 0, 1, steps=3)["codes"],
    "export_model": lambda m, x, data: None,  # writes files; its loading is the same as the others'
}


@pytest.mark.parametrize("call", MODEL_CALLS)
def test_a_checkpoint_folder_or_a_shipped_name_serves_where_a_loaded_model_does(model, images, mnist, call):
    """``aelab.encode_images("mnist-deep", x)`` loads the model as load_model would; a number or a dict is
    refused saying what to pass (it raised AttributeError: 'str' object has no attribute 'model')."""
    from aelab.data import Dataset, Split
    data = Dataset(name="few", train=Split(images, None), test=Split(images, None), sha256="0" * 64)
    by_name = MODEL_CALLS[call]("mnist-deep", images, data)
    loaded = MODEL_CALLS[call](model, images, data)
    if by_name is not None:
        np.testing.assert_allclose(np.asarray(by_name, dtype=np.float64), np.asarray(loaded, dtype=np.float64),
                                   rtol=1e-5, atol=1e-6)
    for wrong in (42, {"model": "mnist-deep"}):
        with pytest.raises(OptionError, match="checkpoint must be a loaded model, a checkpoint folder or a shipped"):
            getattr(aelab, call)(wrong, images)


def test_encode_images_refuses_labels_of_another_length(model, images, tmp_path):
    """Three codes were written beside fifty labels (.npy), or with the first three of them (.csv)."""
    for out in ("c.npy", "c.csv"):
        with pytest.raises(OptionError, match=r"labels must have shape \(3,\)"):
            aelab.encode_images(model, images[:3], labels=np.arange(8), output=tmp_path / out)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_or_name_serves_as_the_checkpoint_of_load_data_and_read_input(model, mnist, tmp_path):
    np.savez(tmp_path / "few.npz", images=mnist.test.images[:20], labels=mnist.test.labels[:20])
    by_name = aelab.load_data(tmp_path / "few.npz", "mnist-deep")
    loaded = aelab.load_data(tmp_path / "few.npz", model)
    np.testing.assert_array_equal(by_name.test.images, loaded.test.images)
    assert aelab.read_input(tmp_path / "few.npz", checkpoint="mnist-deep").images.shape == (20, 28, 28)
    with pytest.raises(OptionError, match="checkpoint must be a loaded model"):
        aelab.load_data(tmp_path / "few.npz", 3)


def test_encode_images_refuses_class_names_that_cannot_name_the_labels(model, images, tmp_path):
    with pytest.raises(OptionError, match="1 class names cannot name the labels 0 to 9"):
        aelab.encode_images(model, images[:3], labels=np.array([0, 5, 9]), class_names=["zero"],
                            output=tmp_path / "cn.csv")
    assert list(tmp_path.iterdir()) == []


def test_indices_and_neighbour_counts_that_are_not_whole_numbers_are_refused(model, images):
    """pair=(0.0, 1) raised numpy's IndexError; knn_accuracy(k=0) scikit-learn's InvalidParameterError."""
    from aelab.data import Dataset, Split
    data = Dataset(name="few", train=Split(images, None), test=Split(images, None), sha256="0" * 64)
    for pair in ((0.0, 1), (True, 1), (0, 8)):
        with pytest.raises(OptionError, match="out of range"):
            aelab.similarity_pairs(model, data, pair=pair)
    labels = np.arange(8) % 2
    for k in (0, -1, 2.5):
        with pytest.raises(OptionError, match="k must be a positive integer"):
            aelab.knn_accuracy(model.model, images, labels, images, labels, k=k)


DATA_CALLS = {
    "evaluate_model": lambda m, data: aelab.evaluate_model(m, data)["test_mse"],
    "similarity_pairs": lambda m, data: [v for v in aelab.similarity_pairs(m, data, pair=(0, 1))[0].values()
                                         if isinstance(v, float)],
    "interpolate_images": lambda m, data: aelab.interpolate_images(m, data, 0, 1, steps=3)["codes"],
    "denoise_images": lambda m, data: aelab.denoise_images(m, data, "gaussian:0.3", limit=4)["denoised_psnr_db"],
}


@pytest.mark.parametrize("call", DATA_CALLS)
def test_a_data_path_serves_where_a_loaded_data_set_does(model, mnist, tmp_path, call):
    """``aelab.evaluate_model(model, "few.npz")`` reads the data as load_data(path, model) would (it raised
    AttributeError: 'str' object has no attribute 'part'); a number is refused saying what to pass."""
    np.savez(tmp_path / "few.npz", images=mnist.test.images[:40], labels=mnist.test.labels[:40])
    by_path = DATA_CALLS[call](model, tmp_path / "few.npz")
    loaded = DATA_CALLS[call](model, aelab.load_data(tmp_path / "few.npz", model))
    np.testing.assert_array_equal(np.asarray(by_path, dtype=np.float64), np.asarray(loaded, dtype=np.float64))
    with pytest.raises(OptionError, match="data must be a data set or the path of one, got int"):
        DATA_CALLS[call](model, 3)


def test_reconstruct_stopped_before_its_grid_leaves_none_of_its_pngs(model, images, tmp_path, monkeypatch):
    """Its PNGs and grid.png appear together, or not at all (Ctrl-C left the PNGs without the grid)."""
    from aelab.evaluation import plots

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(plots, "save_reconstruction_grid", stopped)
    with pytest.raises(KeyboardInterrupt):
        aelab.reconstruct_images(model, images, output=tmp_path / "rec")
    assert list(tmp_path.iterdir()) == []


def test_counts_and_pairs_from_python_are_checked_as_the_command_line_checks_them(model, mnist):
    """tsne_map(limit=-5) mapped 45 of 50 points (a negative slice), sample_images(columns=0) and
    report_model(limit=-1) were accepted, and pair=(1, 2, 3) raised Python's own ValueError."""
    from aelab.data import Dataset, Split
    data = Dataset(name="few", train=Split(mnist.test.images[:50], mnist.test.labels[:50]),
                   test=Split(mnist.test.images[:50], mnist.test.labels[:50]), sha256="0" * 64)
    for call, message in [(lambda: aelab.tsne_map(model, data, limit=-5), "limit must be a positive integer"),
                          (lambda: aelab.report_model(model, data, limit=-1), "limit must be a non-negative integer"),
                          (lambda: aelab.similarity_pairs(model, data, pair=(1, 2, 3)), "pair must be two"),
                          (lambda: aelab.sample_images("mnist-vae", draw=4, columns=0), "columns must be a positive")]:
        with pytest.raises(OptionError, match=message):
            call()
