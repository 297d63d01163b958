"""Tests for aelab.models.inference: shapes, dtypes, metrics and input validation at the boundary."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aelab.errors import DataError
from aelab.evaluation.evaluate import evaluate, format_image_stats, image_stats
from aelab.models.inference import as_pixel_rows, decode, encode, reconstruct
from aelab.models.networks import build_model, model_config


@pytest.fixture(scope="module")
def model(trained):
    return trained.model


@pytest.fixture(scope="module")
def images(trained) -> np.ndarray:
    return trained.data.test.images[:12]  # uint8 (12, 28, 28)


def _variants(images: np.ndarray):
    """The same images as (n, h, w) and (n, h*w), uint8 and float, numpy and torch."""
    n = len(images)
    flat = images.reshape(n, -1)
    return {"uint8-nhw": images, "uint8-flat": flat, "float32-nhw": images.astype(np.float32),
            "float64-flat": flat.astype(np.float64), "int64-nhw": images.astype(np.int64),
            "torch-uint8-flat": torch.from_numpy(flat.copy()), "list-nhw": images.tolist()}


# ------------------------------------------------------------------ shapes and dtypes


@pytest.mark.parametrize("kind", ["uint8-nhw", "uint8-flat", "float32-nhw", "float64-flat", "int64-nhw",
                                  "torch-uint8-flat", "list-nhw"])
def test_encode_decode_reconstruct_shapes_and_dtypes(model, images, kind: str) -> None:
    x = _variants(images)[kind]
    codes = encode(model, x)
    assert codes.shape == (12, 32) and codes.dtype == np.float32
    assert (codes >= 0).all()  # ReLU codes
    decoded = decode(model, codes)
    assert decoded.shape == (12, 28, 28) and decoded.dtype == np.float32
    assert decoded.min() >= 0.0 and decoded.max() <= 1.0
    rec = reconstruct(model, x)
    assert rec.shape == (12, 28, 28) and rec.dtype == np.float32
    # every representation of the same pixels gives the same answer
    np.testing.assert_allclose(codes, encode(model, images), rtol=0, atol=1e-6)
    np.testing.assert_allclose(rec, reconstruct(model, images), rtol=0, atol=1e-6)


def test_reconstruct_equals_decode_of_encode(model, images) -> None:
    np.testing.assert_allclose(reconstruct(model, images), decode(model, encode(model, images)),
                               rtol=0, atol=1e-6)


def test_single_image_and_single_code(model, images) -> None:
    assert encode(model, images[0]).shape == (1, 32)  # one (h, w) image
    code = encode(model, images[:1])[0]
    assert decode(model, code).shape == (1, 28, 28)  # one (code_size,) code
    np.testing.assert_allclose(decode(model, torch.from_numpy(code)), decode(model, code[None]), atol=0)


def test_batching_does_not_change_results(model, images) -> None:
    np.testing.assert_allclose(encode(model, images, batch_size=5), encode(model, images), atol=1e-6)
    np.testing.assert_allclose(reconstruct(model, images, batch_size=1), reconstruct(model, images), atol=1e-6)
    a, b = evaluate(model, images, batch_size=5), evaluate(model, images)
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-6), key


def test_empty_inputs(model) -> None:
    assert encode(model, np.zeros((0, 28, 28), np.uint8)).shape == (0, 32)
    assert reconstruct(model, np.zeros((0, 784), np.uint8)).shape == (0, 28, 28)
    assert decode(model, np.zeros((0, 32), np.float32)).shape == (0, 28, 28)
    with pytest.raises(DataError, match="no images"):
        evaluate(model, np.zeros((0, 28, 28), np.uint8))


def test_non_square_images() -> None:
    config = model_config("deep", input_shape=(6, 4), code_size=3, hidden=(8,))
    m = build_model(config, seed=0).eval()
    x = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    assert encode(m, x).shape == (5, 3)
    assert reconstruct(m, x.reshape(5, 24)).shape == (5, 6, 4)
    with pytest.raises(DataError, match="6x4"):
        encode(m, x.transpose(0, 2, 1))  # (5, 4, 6): the right pixel count, the wrong image shape


# ------------------------------------------------------------------ evaluate


def test_evaluate_keys_and_values_match_numpy(model, trained) -> None:
    x = trained.data.test.images[:100]
    scores = evaluate(model, x)
    assert set(scores) == {"test_error_pct", "test_bce", "test_mse", "test_psnr_db", "test_r2", "n"}
    assert scores["n"] == 100 and isinstance(scores["n"], int)
    assert all(isinstance(v, float) for k, v in scores.items() if k != "n")

    target = x.reshape(100, -1).astype(np.float64) / 255.0
    output = reconstruct(model, x).reshape(100, -1).astype(np.float64)
    mse = float(np.mean((output - target) ** 2))
    assert scores["test_mse"] == pytest.approx(mse, rel=1e-6)
    assert scores["test_psnr_db"] == pytest.approx(10 * math.log10(1.0 / mse), rel=1e-6)
    # CNTK's classification_error(output, target): per image, 1 - target at the output's argmax
    winner = np.argmax(output, axis=1)
    error = 1.0 - target[np.arange(100), winner]
    assert scores["test_error_pct"] == pytest.approx(100.0 * error.mean(), rel=1e-6, abs=1e-9)
    p = np.clip(output, 1e-7, 1 - 1e-7)
    bce = float(np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p))))
    assert scores["test_bce"] == pytest.approx(bce, rel=1e-3)


def test_evaluate_hand_built_model_and_metric_is_not_argmax_vs_argmax() -> None:
    """A 1x2-pixel "autoencoder" whose output always favours pixel 0 (first on ties)."""
    config = model_config("simple", input_shape=(1, 2), code_size=1)
    m = build_model(config, seed=0)
    with torch.no_grad():
        for layer in m.layers:
            layer.weight.zero_()
            layer.bias.zero_()
        m.layers[1].bias.copy_(torch.tensor([2.0, -2.0]))  # output = sigmoid([2, -2]), whatever the input
    m.eval()
    x = np.array([[255, 0], [51, 255], [0, 0]], dtype=np.uint8)
    scores = evaluate(m, x)
    # error per image: 1 - x[0]/255 -> 0, 0.8, 1 -> mean 0.6; an argmax-vs-argmax metric would give 1/3
    assert scores["test_error_pct"] == pytest.approx(60.0)
    out = 1 / (1 + np.exp(-np.array([2.0, -2.0])))
    mse = np.mean((out[None, :] - x / 255.0) ** 2)
    assert scores["test_mse"] == pytest.approx(mse, rel=1e-6)
    assert scores["test_psnr_db"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-6)


def test_perfect_reconstruction_has_infinite_psnr() -> None:
    config = model_config("simple", input_shape=(1, 1), code_size=1)
    m = build_model(config, seed=0)
    with torch.no_grad():
        for layer in m.layers:
            layer.weight.zero_()
            layer.bias.zero_()
        m.layers[1].bias.fill_(200.0)  # sigmoid(200) == 1.0 in float32
    scores = evaluate(m.eval(), np.full((3, 1, 1), 255, np.uint8))
    assert scores["test_mse"] == 0.0 and scores["test_psnr_db"] == math.inf and scores["test_error_pct"] == 0.0


# ------------------------------------------------------------------ invalid input


@pytest.mark.parametrize("shape", [(3, 27, 28), (3, 28 * 27), (28, 28, 1), (3,), (3, 1, 28, 28), ()])
def test_wrong_image_size(model, shape) -> None:
    x = np.zeros(shape, np.uint8)
    for fn in (encode, reconstruct, evaluate):
        with pytest.raises(DataError) as exc:
            fn(model, x)
        message = str(exc.value)
        assert "28x28" in message and "(n, 28, 28) or (n, 784)" in message, message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_pixels(model, images, bad: float) -> None:
    x = images.astype(np.float32)
    x[2, 5, 7] = bad
    for fn in (encode, reconstruct, evaluate):
        with pytest.raises(DataError, match="NaN or infinite"):
            fn(model, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int32, np.int64])
@pytest.mark.parametrize("bad", [-1, 256, 1000])
def test_pixels_outside_0_255(model, images, dtype, bad: int) -> None:
    x = images.astype(dtype)
    x[1, 0, 0] = bad
    for fn in (encode, reconstruct, evaluate):
        with pytest.raises(DataError, match="0..255") as exc:
            fn(model, x)
        assert str(bad) in str(exc.value)


def test_pixels_scaled_to_minus_one_one_get_a_hint(model, images) -> None:
    x = images.astype(np.float32) / 127.5 - 1.0
    with pytest.raises(DataError, match="not values already scaled"):
        encode(model, x)


def test_boolean_pixels(model) -> None:
    with pytest.raises(DataError, match="dtype"):
        encode(model, np.ones((2, 28, 28), dtype=bool))


def test_edge_values_are_accepted(model) -> None:
    x = np.zeros((2, 28, 28), np.float32)
    x[1] = 255.0
    assert encode(model, x).shape == (2, 32)
    assert as_pixel_rows(model, x).shape == (2, 784)


@pytest.mark.parametrize("shape", [(3, 31), (3, 33), (31,), (3, 32, 1), (2, 2, 16)])
def test_wrong_code_size(model, shape) -> None:
    with pytest.raises(DataError) as exc:
        decode(model, np.zeros(shape, np.float32))
    assert "code size 32" in str(exc.value) and "(n, 32)" in str(exc.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_codes(model, bad: float) -> None:
    codes = np.zeros((2, 32), np.float32)
    codes[1, 3] = bad
    with pytest.raises(DataError, match="NaN or infinite"):
        decode(model, codes)


# ------------------------------------------------------------------ image statistics


def test_image_stats() -> None:
    img = np.array([[0, 0, 10], [20, 255, 0]], dtype=np.uint8)
    stats = image_stats(img)
    assert stats == {"max": 255.0, "median": 5.0, "mean": pytest.approx(285 / 6), "min": 0.0}
    assert all(isinstance(v, float) for v in stats.values())
    assert image_stats(img.astype(np.float32) / 255 * 255) == stats


def test_format_image_stats() -> None:
    text = format_image_stats({"max": 255.0, "median": 0.0, "mean": 24.067602, "min": 0.0})
    assert text == "Max: 255.00, Median: 0.00, Mean: 24.07, Min: 0.00"


def test_tutorial_image_44_statistics(mnist) -> None:
    stats = image_stats(mnist.test.images[44])
    assert format_image_stats(stats) == "Max: 255.00, Median: 0.00, Mean: 24.07, Min: 0.00"


def test_bf16_inference_is_close_to_fp32_and_leaves_the_model_alone():
    import torch
    from aelab.models.inference import decode, encode
    from aelab.models.networks import build_model, model_config
    model = build_model(model_config("conv", channels=(8, 16)), seed=0).eval()
    before = {k: (v.clone(), v.stride()) for k, v in model.state_dict().items()}
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    codes = encode(model, images)
    fast = encode(model, images, precision="bf16")
    assert fast.dtype == np.float32 and np.abs(fast - codes).max() <= 0.02 * np.abs(codes).max() + 1e-3
    pixels = decode(model, codes)
    assert np.abs(decode(model, codes, precision="bf16") - pixels).max() < 0.05
    for k, v in model.state_dict().items():  # the fast copy is a copy: same values, same memory layout
        assert torch.equal(v, before[k][0]) and v.stride() == before[k][1]
    assert all(not getattr(m, "inplace", False) for m in model.modules())


def test_fp32_conv_inference_runs_channels_last_with_the_models_own_results():
    """On the CPU, fp32 encode/decode/reconstruct/evaluate of a conv model run a channels-last copy
    (faster convolutions): the same numbers up to float32 rounding, and the model itself untouched."""
    from aelab.models.inference import computing_in, decode, encode, reconstruct
    model = build_model(model_config("conv", channels=(8, 16)), seed=0).eval()
    before = {k: (v.clone(), v.stride()) for k, v in model.state_dict().items()}
    images = np.random.default_rng(1).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    x = torch.from_numpy(images.reshape(20, -1)).float()
    with computing_in(model) as fast:
        assert fast is not model and fast.encoder[0].weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        codes, logits = model.encode(x), model.decode_logits(model.encode(x))
    np.testing.assert_allclose(encode(model, images), codes.numpy(), rtol=1e-4, atol=1e-5)
    pixels = torch.sigmoid(logits).reshape(20, 28, 28).numpy()
    np.testing.assert_allclose(decode(model, codes.numpy()), pixels, atol=1e-5)
    np.testing.assert_allclose(reconstruct(model, images), pixels, atol=1e-5)
    mse = float(((torch.sigmoid(logits) - x / 255.0).double() ** 2).mean())
    assert evaluate(model, images)["test_mse"] == pytest.approx(mse, rel=1e-4)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k][0]) and v.stride() == before[k][1]
    dense = build_model(model_config("simple"), seed=0)
    with computing_in(dense) as same:  # no convolutions: nothing to gain from a copy
        assert same is dense


def test_conv_models_run_in_smaller_batches_and_bad_batch_sizes_are_refused():
    from aelab.errors import OptionError
    from aelab.models.inference import CONV_BATCH, DEFAULT_BATCH, default_batch_size
    conv, dense = build_model(model_config("conv", channels=(8, 16)), seed=0), build_model(model_config("deep"), seed=0)
    assert default_batch_size(conv) == CONV_BATCH < DEFAULT_BATCH == default_batch_size(dense)
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    for bad in (0, -1, 2.5):
        with pytest.raises(OptionError, match="batch size"):
            encode(conv, images, batch_size=bad)
