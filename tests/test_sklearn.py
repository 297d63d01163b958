"""aelab.sklearn.AutoencoderTransformer: scikit-learn's own estimator checks, pipelines, search, persistence."""
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from aelab.errors import DataError, OptionError
from aelab.cli import main
from aelab.sklearn import AutoencoderTransformer


def tiny(**params) -> AutoencoderTransformer:
    return AutoencoderTransformer(**{"model": "simple", "code_size": 3, "sweeps": 2, "device": "cpu",
                                     "random_state": 0, **params})


@parametrize_with_checks([tiny()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def table(n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    X = rng.normal(size=(n, d)) * 3 + 10 + 4 * y[:, None]
    return X, y


def test_fit_transform_inverse_and_scores_on_a_table():
    X, _ = table()
    t = tiny(model="deep", code_size=4, hidden=(16, 8), sweeps=20).fit(X)
    codes = t.transform(X)
    assert codes.shape == (len(X), 4) and codes.dtype == np.float32
    assert t.get_feature_names_out().tolist() == [f"autoencodertransformer{i}" for i in range(4)]
    back = t.inverse_transform(codes)
    assert back.shape == X.shape
    assert np.abs(back - X).mean() < np.abs(X - X.mean(axis=0)).mean()  # in the table's own units
    scores = t.score_samples(X)
    assert scores.shape == (len(X),) and np.all(scores <= 0)
    odd = X[:5] + 40.0
    assert t.score_samples(odd).max() < np.median(scores)  # far-away rows score as less normal
    with pytest.raises(ValueError, match="features"):
        t.transform(X[:, :3])


def test_uint8_images_grey_and_colour(mnist):
    grey = mnist.train.images[:200]
    t = tiny(code_size=8).fit(grey)
    assert t.input_kind_ == "images" and t.n_features_in_ == 784
    assert t.transform(grey[:5]).shape == (5, 8)
    decoded = t.inverse_transform(t.transform(grey[:5]))
    assert decoded.shape == (5, 28, 28) and 0 <= decoded.min() and decoded.max() <= 255
    colour = np.random.default_rng(0).integers(0, 256, size=(40, 8, 6, 3), dtype=np.uint8)
    c = tiny(model="conv", code_size=4).fit(colour)
    assert c.transform(colour).shape == (40, 4) and c.score_samples(colour).shape == (40,)
    with pytest.raises(DataError, match="do not fit"):
        c.transform(colour[:, :4])


def test_pipeline_grid_search_and_clone():
    X, y = table(n=160)
    pipe = Pipeline([("ae", tiny()), ("clf", LogisticRegression())])
    search = GridSearchCV(pipe, {"ae__code_size": [2, 4]}, cv=2).fit(X, y)
    assert search.best_params_["ae__code_size"] in (2, 4)
    assert search.score(X, y) > 0.6
    fresh = clone(search.best_estimator_.named_steps["ae"])
    assert not hasattr(fresh, "model_") and fresh.get_params()["code_size"] in (2, 4)


def test_save_load_and_pickle_keep_the_model(tmp_path):
    X, _ = table()
    t = tiny(hidden=None, code_size=5).fit(X)
    folder = t.save(tmp_path / "ae")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    back = AutoencoderTransformer.load(folder)
    assert back.get_params() == t.get_params()
    np.testing.assert_array_equal(back.transform(X), t.transform(X))
    np.testing.assert_array_equal(back.score_samples(X), t.score_samples(X))
    blob = pickle.dumps(t)
    assert b"torch" not in blob  # the weights travel as safetensors bytes, not pickled tensors
    np.testing.assert_array_equal(pickle.loads(blob).inverse_transform(t.transform(X)),
                                  t.inverse_transform(t.transform(X)))


def test_a_transformer_saved_over_a_trained_model_leaves_none_of_its_curve_or_options(tmp_path):
    """The replaced model's metrics.csv and run.toml stayed, so `aelab report` drew its curve under the new
    model and `--config run.toml` trained the old one again."""
    X, _ = table()
    folder = tmp_path / "ae"
    assert main(["train", "--data", str(_saved_table(tmp_path, X)), "--model", "simple", "--code-size", "3",
                 "--sweeps", "1", "--minibatch-size", "8", "--out", str(folder), "--quiet"]) == 0
    assert {"metrics.csv", "run.toml"} <= {p.name for p in folder.iterdir()}
    tiny(hidden=None, code_size=5).fit(X).save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_a_transformer_is_not_saved_over_files_of_a_checkpoints_names_that_aelab_did_not_write(tmp_path):
    """save() removed a replaced model's curve and options, and with them a user's own metrics.csv in a
    folder that held no checkpoint."""
    X, _ = table()
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "metrics.csv").write_text("epoch,accuracy\n1,0.9\n")
    with pytest.raises(OptionError, match="holds metrics.csv but no aelab checkpoint"):
        tiny(hidden=None, code_size=5).fit(X).save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.csv"]
    assert (folder / "metrics.csv").read_text() == "epoch,accuracy\n1,0.9\n"


def _saved_table(folder, X):
    np.save(folder / "table.npy", X)
    return folder / "table.npy"


def test_a_transformer_without_a_training_loss_saves_as_json_and_loads(tmp_path):
    """config.json holds null where a figure is NaN (strict JSON); loading reads it back as NaN."""
    import json
    X, _ = table()
    t = tiny(hidden=None, code_size=2).fit(X)
    t.train_loss_ = float("nan")
    folder = t.save(tmp_path / "ae")
    assert json.loads((folder / "config.json").read_text())["training"]["train_loss"] is None
    assert np.isnan(AutoencoderTransformer.load(folder).train_loss_)


def test_a_saved_transformer_works_with_aelab_score(tmp_path, capsys):
    from aelab.cli import main
    X, _ = table()
    t = tiny().fit(X)
    t.save(tmp_path / "ae")
    np.save(tmp_path / "x.npy", X)
    assert main(["score", "--checkpoint", str(tmp_path / "ae"), str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "s.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "s.npy")["score"], -t.score_samples(X), rtol=1e-6)


def test_a_reloaded_or_unpickled_transformer_gives_the_same_bits_on_an_avx2_cpu(tmp_path):
    """Trained weights used to stay in the training's transposed layout while loaded ones are plain: matrix
    kernels that sum in another order for the two (MKL on AMD EPYC, or any CPU told to use AVX2 only) then
    made transform differ after save and load, or pickling, by float rounding."""
    import os
    import subprocess
    import sys
    script = f"""
import pickle, numpy as np, torch
from aelab.sklearn import AutoencoderTransformer
X = np.random.default_rng(0).normal(size=(300, 30)).astype(np.float32)
t = AutoencoderTransformer(model="deep", hidden=(24,), code_size=7, sweeps=2, recipe="adam", random_state=0).fit(X)
for p in t.model_.parameters():
    assert p.ndim != 2 or p.t().is_contiguous(), p.shape  # the training layout
back = AutoencoderTransformer.load(t.save({str(tmp_path / "ae")!r}))
again = pickle.loads(pickle.dumps(t))
for other in (back, again):
    assert np.array_equal(other.transform(X), t.transform(X)), np.abs(other.transform(X) - t.transform(X)).max()
    assert np.array_equal(other.score_samples(X), t.score_samples(X))
print("same")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    assert result.stdout.strip() == "same", result.stderr[-2000:]


def test_a_refit_that_fails_leaves_the_transformer_unfitted_not_half_old():
    from sklearn.exceptions import NotFittedError
    from aelab.errors import OptionError
    x1, x2 = table(seed=0)[0], table(seed=1)[0] * 100 + 7
    est = tiny().fit(x1)
    est.set_params(code_size=0)
    with pytest.raises(OptionError):
        est.fit(x2)
    with pytest.raises(NotFittedError):  # not the old model beside x2's scaling
        est.transform(x1)


@pytest.mark.parametrize("method", ["transform", "score_samples", "inverse_transform"])
def test_using_it_before_fit_raises_not_fitted(method):
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        getattr(tiny(), method)(table()[0])


def test_numpy_integers_are_taken_as_integers_and_a_bare_width_is_refused_in_one_line():
    from aelab.errors import OptionError
    x, y = table()
    codes = tiny(code_size=np.int64(2), hidden=[np.int64(8)]).fit(x).transform(x)
    assert codes.shape == (len(x), 2)
    pipe = Pipeline([("ae", tiny()), ("clf", LogisticRegression())])
    search = GridSearchCV(pipe, {"ae__code_size": np.arange(1, 3)}, cv=2, error_score="raise").fit(x, y)
    assert search.best_params_["ae__code_size"] in (1, 2)  # np.arange hands the grid numpy integers
    with pytest.raises(OptionError, match="sequence of positive integers"):
        tiny(hidden=8).fit(x)


def test_samples_that_do_not_fit_are_value_errors_as_scikit_learns_checks_are():
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8)
    est = tiny().fit(images)
    with pytest.raises(ValueError, match="do not fit"):
        est.transform(images[:, :6, :6])
    with pytest.raises(DataError):
        est.inverse_transform(np.zeros((3, est.model_config_.code_size + 1)))
