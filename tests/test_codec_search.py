"""The encoder's search (aelab.codec.search, `aelab compress --search`): it never returns worse symbols
than plain quantisation, measured by a slow twin of its objective; its files decode with the unchanged
decoder for every coder and table; bad options are refused."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from aelab.cli import main
from aelab.codec import api as codec
from aelab.codec.search import search_symbols
from aelab.errors import OptionError
from aelab.models.checkpoint import load_checkpoint, pretrained_path
from aelab.models.inference import decode, encode


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "user-cache"))


@pytest.fixture(scope="module")
def ckpt(trained, tiny_npz, tmp_path_factory) -> Path:
    """A copy of the tiny trained checkpoint with its 6-bit tables stored."""
    folder = Path(shutil.copytree(trained.folder, tmp_path_factory.mktemp("search") / "model"))
    codec.save_tables(folder, bits=(6,), data=tiny_npz)
    return folder


@pytest.fixture(scope="module")
def images(trained) -> np.ndarray:
    return trained.data.test.images[:40]


def slow_objective(model, images: np.ndarray, symbols: np.ndarray, table, weight: float) -> np.ndarray:
    """Per image: the squared error of the decoded image (pixels in 0..1) + weight x the bits of each
    symbol under its component's histogram, computed by the plain inference path."""
    decoded = decode(model, codec.dequantise(symbols, table)).reshape(len(images), -1).astype(np.float64)
    error = ((decoded - images.reshape(len(images), -1) / 255.0) ** 2).sum(1)
    p = table.freq / table.freq.sum(axis=1, keepdims=True)
    bits = -np.log2(p[np.arange(table.code_size)[None, :], symbols]).sum(1)
    return error + weight * bits


def _rows(images: np.ndarray) -> "torch.Tensor":  # noqa: F821
    import torch
    return torch.from_numpy(images.reshape(len(images), -1).copy())


@pytest.mark.parametrize("quantiser", sorted(codec.QUANTISERS))
@pytest.mark.parametrize("weight", [0.0, 0.03, 1.0])
def test_the_search_never_returns_worse_symbols_than_quantising(ckpt, images, quantiser, weight):
    model = load_checkpoint(ckpt).model
    table = codec.codec_table(ckpt, 6, quantiser)
    codes = encode(model, images)
    plain = codec.quantise(codes, table)
    found = search_symbols(model, _rows(images), codes, table, steps=15, rate_weight=weight)
    assert found.dtype == np.int32 and found.shape == plain.shape
    assert (found >= 0).all() and (found < table.levels).all()
    before, after = (slow_objective(model, images, s, table, weight) for s in (plain, found))
    assert (after <= before + 1e-5 * np.maximum(before, 1)).all()
    assert after.mean() < before.mean()  # and it does find better symbols


def test_zero_steps_is_plain_quantisation(ckpt, images):
    model = load_checkpoint(ckpt).model
    table = codec.codec_table(ckpt, 6, "transform")
    codes = encode(model, images)
    assert np.array_equal(search_symbols(model, _rows(images), codes, table, steps=0, rate_weight=0.0),
                          codec.quantise(codes, table))


@pytest.mark.parametrize("coder,table", [("range", "checkpoint"), ("range", "embedded"), ("zlib", "checkpoint"),
                                         ("range-ar", "checkpoint")])
def test_a_searched_file_decodes_with_the_unchanged_decoder(ckpt, images, tiny_npz, coder, table):
    plain = codec.encode_bytes(images, ckpt, 6, coder=coder, table=table, data=tiny_npz)
    searched = codec.encode_bytes(images, ckpt, 6, coder=coder, table=table, data=tiny_npz, search=20,
                                  rate_weight=0.0)
    assert codec.read_header(searched).coder == coder
    assert searched == codec.encode_bytes(images, ckpt, 6, coder=coder, table=table, data=tiny_npz, search=20,
                                          rate_weight=0.0)  # deterministic
    error = {name: ((codec.decode_bytes(blob, ckpt, data=tiny_npz).astype(np.float64) - images) ** 2).mean()
             for name, blob in (("plain", plain), ("searched", searched))}
    assert error["searched"] < error["plain"]


def test_the_shipped_codec_model_gains_with_range_ctx():
    """mnist-codec with its shipped range-ctx tables: the searched file is closer for about the same bytes."""
    from aelab.data import load_dataset
    images = load_dataset(None).test.images[:24]
    model = pretrained_path("mnist-codec")
    plain = codec.encode_bytes(images, model, 6, coder="range-ctx")
    searched = codec.encode_bytes(images, model, 6, coder="range-ctx", search=30)
    error = {name: ((codec.decode_bytes(blob, model).astype(np.float64) - images) ** 2).mean()
             for name, blob in (("plain", plain), ("searched", searched))}
    assert error["searched"] < 0.9 * error["plain"]
    assert len(searched) < 1.2 * len(plain)


@pytest.mark.parametrize("option", [{"search": -1}, {"search": True}, {"search": 2.5}, {"search": "10"},
                                    {"rate_weight": -0.1}, {"rate_weight": float("nan")},
                                    {"rate_weight": float("inf")}, {"rate_weight": "0.03"}])
def test_bad_search_options_are_refused(ckpt, images, tmp_path, option):
    with pytest.raises(OptionError, match="search|rate weight"):
        codec.encode_bytes(images, ckpt, 6, **option)
    with pytest.raises(OptionError):
        codec.compress(images, ckpt, tmp_path / "x.aez", 6, **option)
    assert not (tmp_path / "x.aez").exists()


def test_cli_compress_with_search(ckpt, trained, tmp_path, capsys):
    np.savez(tmp_path / "in.npz", images=trained.data.test.images[:20])
    assert main(["compress", str(tmp_path / "in.npz"), "--checkpoint", str(ckpt), "-o", str(tmp_path / "s.aez"),
                 "--search", "5", "--rate-weight", "0"]) == 0
    printed = capsys.readouterr()
    assert "Compressed 20 images" in printed.out and "Searching the symbols of 20 images, 5 steps" in printed.err
    assert main(["decompress", str(tmp_path / "s.aez"), "--checkpoint", str(ckpt), "-o", str(tmp_path / "out.npz")]) == 0
    with pytest.raises(SystemExit) as e:
        main(["compress", str(tmp_path / "in.npz"), "--checkpoint", str(ckpt), "-o", str(tmp_path / "t.aez"),
              "--search", "-3"])
    assert e.value.code == 2
    assert "--search" in capsys.readouterr().err
    assert not (tmp_path / "t.aez").exists()


@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
def test_the_search_works_inside_a_callers_no_grad(ckpt, images, context):
    import torch
    plain = codec.encode_bytes(images, ckpt, 6, search=5)
    with getattr(torch, context)():
        assert codec.encode_bytes(images, ckpt, 6, search=5) == plain
