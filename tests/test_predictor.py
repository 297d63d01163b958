"""Tests for aelab.codec.predictor: the codec's autoregressive predictor, exact in integer arithmetic."""
from __future__ import annotations

import numpy as np
import pytest

from aelab.codec.predictor import CLAMP, MAX_INPUT, Predictor, fit_predictor


def _components(rng, n):
    """Four integer components: the third is a nonlinear function of the first two (uncorrelated)."""
    a, b = rng.integers(-20, 21, n), rng.integers(-5, 6, n)
    c = (a * a) // 8 - 25 + b * np.sign(a) + rng.integers(-1, 2, n)
    return np.stack([a, b, c, rng.integers(-3, 4, n)], axis=1)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    q = _components(rng, 4000)
    return fit_predictor(q, hidden=64, epochs=20), q, _components(rng, 1000)


def test_predictions_depend_on_earlier_components_only(fitted):
    predictor, _, test = fitted
    base = predictor.predict(test)
    for k in range(test.shape[1]):
        changed = test.copy()
        changed[:, k:] = np.random.default_rng(k).integers(-MAX_INPUT, MAX_INPUT + 1, changed[:, k:].shape)
        np.testing.assert_array_equal(predictor.predict(changed)[:, :k + 1], base[:, :k + 1])


def test_predictions_are_the_same_integers_however_the_work_is_grouped(fitted):
    """One image at a time and all at once use different BLAS blockings: exact arithmetic gives the
    same integers, even at the extreme inputs, where the clamps keep every sum below 2**53."""
    predictor, _, test = fitted
    extreme = np.array([[MAX_INPUT, -MAX_INPUT, MAX_INPUT, -MAX_INPUT], [-MAX_INPUT] * 4, [MAX_INPUT] * 4])
    rows = np.concatenate([test[:50], extreme])
    together = predictor.predict(rows)
    assert together.dtype == np.int64
    one_by_one = np.concatenate([predictor.predict(rows[i:i + 1]) for i in range(len(rows))])
    np.testing.assert_array_equal(together, one_by_one)
    with pytest.raises(ValueError, match="out of range"):
        predictor.predict(np.full((1, 4), MAX_INPUT + 1))


def test_the_predictor_learns_what_earlier_components_say(fitted):
    predictor, _, test = fitted
    error = test - predictor.predict(test)
    assert np.abs(error[:, 2]).mean() < 0.25 * np.abs(test[:, 2] - np.median(test[:, 2])).mean()
    assert len(np.unique(predictor.predict(test)[:, 0])) == 1  # nothing to look back at


def test_a_predictor_that_looks_ahead_or_could_lose_exactness_is_refused(fitted):
    predictor = fitted[0]
    fields = predictor.tensors()
    peeking = dict(fields, w3=fields["w3"].copy())
    peeking["w3"][0, 0] = 1  # prediction 0 may see nothing
    with pytest.raises(ValueError, match="must not"):
        Predictor(**peeking)
    huge = dict(fields, w2=fields["w2"] * (1 << 30))
    with pytest.raises(ValueError, match="exact"):
        Predictor(**huge)
    with pytest.raises(ValueError, match="shapes"):
        Predictor(**dict(fields, b1=fields["b1"][:-1]))
    assert CLAMP < 2.0 ** 53


def test_a_component_that_never_varies_does_not_swamp_the_others():
    """A dead code unit (always the same symbol) once blew up its input weights when folded into the
    integer net, so every other weight rounded to 0 and nothing was predicted."""
    rng = np.random.default_rng(1)
    q = _components(rng, 4000)
    q = np.concatenate([q[:, :1], np.zeros((len(q), 1), np.int64), q[:, 1:]], axis=1)  # a dead unit second
    test = _components(rng, 1000)
    test = np.concatenate([test[:, :1], np.zeros((len(test), 1), np.int64), test[:, 1:]], axis=1)
    predictor = fit_predictor(q, hidden=64, epochs=20)
    error = test - predictor.predict(test)
    assert np.abs(error[:, 3]).mean() < 0.25 * np.abs(test[:, 3] - np.median(test[:, 3])).mean()


def test_weights_whose_int64_sums_would_wrap_around_are_refused(fitted):
    fields = fitted[0].tensors()
    for w1 in (np.full_like(fields["w1"], 0), fields["w1"].copy()):
        w1[-1, 0] = -2 ** 63  # abs() of this stays negative in int64
        with pytest.raises(ValueError, match="exact"):
            Predictor(**dict(fields, w1=w1))


def test_chunks_of_images_give_the_same_predictions(fitted, monkeypatch):
    import aelab.codec.predictor
    predictor, _, test = fitted
    whole = predictor.predict(test)
    monkeypatch.setattr(aelab.codec.predictor, "CHUNK", 7)
    np.testing.assert_array_equal(predictor.predict(test), whole)


def test_the_encoders_whole_pass_equals_the_decoders_component_by_component_loop(fitted):
    """The encoder multiplies whole (masked) matrices, the decoder only the units it newly can; exact
    arithmetic must make them the same integers, or files would not decode."""
    from aelab.codec.predictor import PredictorRun
    predictor, _, test = fitted
    extreme = np.random.default_rng(5).integers(-MAX_INPUT, MAX_INPUT + 1, (20, test.shape[1]))
    for q in (test, extreme):
        run, loop = PredictorRun(predictor, len(q)), np.empty(q.shape, np.int64)
        for k in range(q.shape[1]):
            loop[:, k] = run.prediction(k)
            run.feed(k, q[:, k])
        np.testing.assert_array_equal(predictor.predict(q), loop)


def test_undo_residuals_recovers_the_symbols_the_encoder_coded(fitted):
    """The decoder's loop inverts ``(symbol - zero - prediction) mod levels`` (the encoder's whole
    pass), also with symbols at both ends of 16-bit levels, where the inputs reach MAX_INPUT."""
    from aelab.codec.predictor import PredictorRun
    predictor, _, test = fitted
    rng = np.random.default_rng(7)
    levels = np.array([41, 11, 80, 65536])
    zero = np.array([20, 5, 30, 32768])
    symbols = np.clip(test + zero, 0, levels - 1)
    ends = np.array([[0, 0, 0, 0], [40, 10, 79, 65535], [0, 10, 0, 65535]])
    symbols = np.concatenate([symbols, ends, rng.integers(0, levels, (50, 4))])
    residuals = np.mod(symbols - zero - predictor.predict(symbols - zero), levels)
    run = PredictorRun(predictor, len(symbols))
    undone = run.undo_residuals(residuals, zero, levels)
    assert undone.dtype == np.int32
    np.testing.assert_array_equal(undone, symbols)


# --- the spread head (the range-ctx coder) -----------------------------------------------------------

def _uneven(rng, n):
    """Three components: the third is 0.3 x the first (so the prediction often lies between two
    integers) plus noise whose size the second decides."""
    a, loud = rng.integers(-20, 21, n), rng.integers(0, 2, n)
    noise = rng.normal(0.0, 1.0, n) * np.where(loud == 1, 5.0, 0.4)
    return np.stack([a, loud, np.rint(0.3 * a + noise).astype(np.int64)], axis=1)


LEVELS = np.array([64, 4, 128])


@pytest.fixture(scope="module")
def spread():
    from aelab.codec.predictor import fit_spread_head
    rng = np.random.default_rng(2)
    q = _uneven(rng, 4000)
    mean_only = fit_predictor(q, hidden=48, epochs=20)
    return fit_spread_head(mean_only, q, LEVELS, classes=4, epochs=20), mean_only, q, _uneven(rng, 1000)


def test_the_spread_classes_sort_residuals_by_size(spread):
    predictor, mean_only, q, test = spread
    assert predictor.has_spread and predictor.classes == 4 and not mean_only.has_spread
    np.testing.assert_array_equal(predictor.predict(test), mean_only.predict(test))  # the same predictions
    _, classes, _ = predictor.predict_with_classes(test)
    miss = np.abs(test[:, 2] - predictor.predict(test)[:, 2])
    assert miss[classes[:, 2] == 0].mean() < 0.2 * miss[classes[:, 2] == 3].mean()
    _, trained, _ = predictor.predict_with_classes(q)
    shares = np.bincount(trained[:, 2], minlength=4) / len(q)
    assert shares.min() > 0.15  # quantile edges: about equal shares on the training codes


def test_mirrored_residuals_lean_one_way_and_undo_exactly(spread):
    """A residual whose prediction was rounded up is mirrored; the decoder's loop, given each
    component's classes before its residuals, recovers the symbols, at the extremes too."""
    import torch
    from aelab.codec.predictor import PredictorRun
    predictor, _, _, test = spread
    zero = np.array([32, 0, 64])
    rng = np.random.default_rng(3)
    symbols = np.concatenate([np.clip(test + zero, 0, LEVELS - 1), [[0, 0, 0], [63, 3, 127]],
                              rng.integers(0, LEVELS, (50, 3))])
    residuals, classes = predictor.residuals_and_classes(symbols, zero, LEVELS)
    plain = np.mod(symbols - zero - predictor.predict(symbols - zero), LEVELS)
    _, _, up = predictor.predict_with_classes(symbols - zero)
    np.testing.assert_array_equal(residuals, np.where(up, np.mod(-plain, LEVELS), plain))

    def lean(r):  # of the residuals of +-1 in the noisy component, the share of +1
        signed = np.where(r > LEVELS // 2, r - LEVELS, r)[:len(test), 2]
        return np.mean(signed[np.abs(signed) == 1] == 1)
    assert abs(lean(residuals) - 0.5) > abs(lean(plain) - 0.5) + 0.05
    seen = []

    def residual_of(k, decoder_classes):
        seen.append(decoder_classes.numpy().copy())
        return torch.from_numpy(residuals[:, k].astype(np.float64))

    undone = PredictorRun(predictor, len(symbols)).undo(residual_of, zero, LEVELS)
    np.testing.assert_array_equal(undone, symbols)
    np.testing.assert_array_equal(np.stack(seen, axis=1), classes)


def test_a_spread_head_that_looks_ahead_or_is_incomplete_is_refused(spread):
    predictor = spread[0]
    fields = predictor.tensors()
    peeking = dict(fields, w4=fields["w4"].copy())
    peeking["w4"][1, -1] = 1  # component 1 may only see units of degree 0
    with pytest.raises(ValueError, match="must not"):
        Predictor(**peeking)
    with pytest.raises(ValueError, match="spread head needs"):
        Predictor(**{k: v for k, v in fields.items() if k != "edges"})
    backwards = dict(fields, edges=fields["edges"][:, ::-1].copy())
    backwards["edges"][:, 0] += 1
    with pytest.raises(ValueError, match="out of order"):
        Predictor(**backwards)
    with pytest.raises(ValueError, match="exact"):
        Predictor(**dict(fields, w4=fields["w4"] * (1 << 40)))


def test_a_run_over_one_image_leaves_the_predictor_as_it_was(spread):
    """A run sums into buffers that start from the heads' biases; with one image they once were the
    predictor's own biases, so the next run predicted from corrupted ones."""
    from aelab.codec.predictor import PredictorRun
    predictor, _, _, test = spread

    def loop(q):
        run, out = PredictorRun(predictor, len(q)), np.empty(q.shape, np.int64)
        for k in range(q.shape[1]):
            out[:, k] = run.prediction(k)
            run.feed(k, q[:, k])
        return out

    for q in (test[:1], test[:1], test):
        np.testing.assert_array_equal(loop(q), predictor.predict(q))


def test_a_predictor_with_fewer_units_than_components_decodes():
    """Degrees without units (fewer hidden units than components - 1) once made the decoder fail
    while the encoder worked: files that compressed but did not decompress."""
    from aelab.codec.predictor import PredictorRun, fit_spread_head
    rng = np.random.default_rng(4)
    q = np.concatenate([_components(rng, 500), _components(rng, 500)], axis=1)  # 8 components, 3 units
    for predictor in (fit_predictor(q, hidden=3, epochs=2),):
        for p in (predictor, fit_spread_head(predictor, q, np.full(8, 1 << 12), classes=2, epochs=1)):
            run, loop = PredictorRun(p, 40), np.empty((40, 8), np.int64)
            for k in range(8):
                loop[:, k] = run.prediction(k)
                run.feed(k, q[:40, k])
            np.testing.assert_array_equal(loop, p.predict(q[:40]))


def test_an_output_without_a_fractional_bit_is_refused(fitted):
    """Rounding, and range-ctx's mirroring, need the output's fractional bit (shifts[2] >= 1)."""
    fields = fitted[0].tensors()
    with pytest.raises(ValueError, match="shifts"):
        Predictor(**dict(fields, shifts=np.array([*fields["shifts"][:2], 0])))
