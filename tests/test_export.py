"""`aelab export`: the encoder and decoder as ONNX files (run in onnxruntime) and torch.export programs,
matching aelab's own encode and decode."""
import json

import numpy as np
import pytest
import torch

from aelab import api
from aelab.cli import main
from aelab.data import Dataset, Split
from aelab.models import inference
from aelab.models.checkpoint import save_checkpoint
from aelab.training import TrainConfig, train

RTOL = 1e-4  # max |exported - aelab| / max |aelab|


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def channels_first(images: np.ndarray) -> np.ndarray:
    """aelab's (n, h, w) or (n, h, w, c) images as the exported encoder takes them: (n, c, h, w)."""
    return np.ascontiguousarray(images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2))


@pytest.fixture(scope="module")
def models(mnist, tmp_path_factory):
    """A dense model on grey MNIST, a conv model on colour images, a dense model on a table, and the
    residual model with the conv part the defaults choose, on colour images."""
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, size=(64, 12, 10, 3), dtype=np.uint8)
    table = rng.normal(size=(64, 7)).astype(np.float32)
    made = {}
    for name, kind, rows, extra in [("dense", "deep", mnist.train.images[:256], {}),
                                    ("conv", "conv", colour, {"channels": (4, 8)}),
                                    ("table", "deep", table, {"hidden": (8,)}),
                                    # what `aelab train --data` chooses for images: PCA, residual blocks, GroupNorm
                                    ("chosen", "residual", colour, {"channels": (8, 16), "res_blocks": 1,
                                                                    "norm": "group", "loss": "mse"})]:
        data = Dataset(name=name, train=Split(rows), test=Split(rows[:16]), sha256="0" * 64)
        result = train(data, TrainConfig(model=kind, code_size=6, sweeps=0.5, minibatch_size=16, device="cpu",
                                         recipe="adam", **extra), log=None, progress_bar=False)
        folder = save_checkpoint(tmp_path_factory.mktemp(name) / name, result.model, result.model_config)
        made[name] = (folder, rows)
    return made


@pytest.mark.parametrize("name", ["dense", "conv", "table", "chosen"])
def test_onnx_files_match_aelab(models, name, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'aelab[export]'")
    folder, rows = models[name]
    assert main(["export", "--checkpoint", str(folder), "--format", "onnx", "-o", str(tmp_path / "out")]) == 0
    assert "encoder.onnx, decoder.onnx, export.json" in capsys.readouterr().out
    ckpt = api.load_model(folder, "cpu")
    is_image = rows.dtype == np.uint8
    info = json.loads((tmp_path / "out" / "export.json").read_text())
    assert info["inputs"]["dtype"] == ("uint8" if is_image else "float32")
    encoder = ort.InferenceSession(str(tmp_path / "out" / "encoder.onnx"))
    decoder = ort.InferenceSession(str(tmp_path / "out" / "decoder.onnx"))
    for n in (1, 5, 16):  # the batch dimension is dynamic
        batch = rows[:n]
        inputs = channels_first(batch) if is_image else batch
        codes = encoder.run(None, {"inputs": inputs})[0]
        expected = inference.encode(ckpt.model, batch)
        assert codes.dtype == np.float32 and codes.shape == (n, 6)
        assert relative_difference(codes, expected) <= RTOL
        decoded = decoder.run(None, {"codes": expected})[0]
        reference = inference.decode(ckpt.model, expected)
        assert relative_difference(decoded, channels_first(reference) if is_image else reference) <= RTOL
        if is_image:
            assert decoded.shape == inputs.shape and 0 <= decoded.min() and decoded.max() <= 1


@pytest.mark.parametrize("name", ["dense", "conv", "chosen"])
def test_pt2_programs_match_aelab(models, name, tmp_path):
    folder, rows = models[name]
    ckpt = api.load_model(folder, "cpu")
    paths = api.export_model(ckpt, "pt2", tmp_path)
    assert [p.name for p in paths] == ["encoder.pt2", "decoder.pt2", "export.json"]
    encoder = torch.export.load(str(paths[0])).module()
    decoder = torch.export.load(str(paths[1])).module()
    for n in (1, 7):
        expected = inference.encode(ckpt.model, rows[:n])
        codes = encoder(torch.as_tensor(channels_first(rows[:n]))).detach().numpy()
        assert relative_difference(codes, expected) <= RTOL
        decoded = decoder(torch.as_tensor(expected)).detach().numpy()
        assert relative_difference(decoded, channels_first(inference.decode(ckpt.model, expected))) <= RTOL


def test_export_refuses_an_unknown_format(models, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["export", "--checkpoint", str(models["dense"][0]), "--format", "tflite", "-o", str(tmp_path)])
    assert stop.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    with pytest.raises(api.OptionError, match="unknown export format"):
        api.export_model(api.load_model(models["dense"][0], "cpu"), "tflite", tmp_path)
