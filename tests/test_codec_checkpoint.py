"""Complete checkpoints: `aelab train` stores the codec's tables in the checkpoint, so that `aelab compress`
and `aelab decompress` need the checkpoint folder alone (no training data, no cache) and never write into
it; a checkpoint saved without them says what to pass, and `aelab codec fit` completes it. And the
encoder's output is the same on every machine: what may differ is only what docs/format.md says."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aelab.cli import main
from aelab.codec import api as codec
from aelab.codec import quantiser as codec_quantiser

ROOT = Path(__file__).parents[1]
MNIST_CODEC = ROOT / "src" / "aelab" / "models" / "pretrained" / "mnist-codec"


def _photo_folder(root: Path, per_class: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        for i in range(per_class):
            path = root / name / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            base = np.linspace(0, 255, 12 * 10).reshape(12, 10) if c else np.full((12, 10), 60.0)
            Image.fromarray(np.clip(base + rng.normal(0, 20, (12, 10)), 0, 255).astype(np.uint8)).save(path)
    return root


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def empty_home(tmp_path, monkeypatch) -> Path:
    """HOME an empty folder, and no other cache location: nothing to be found outside the checkpoint."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("AELAB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="module")
def own_model(tmp_path_factory) -> Path:
    """A model trained by `aelab train` on a folder of photos, the folder deleted afterwards."""
    root = tmp_path_factory.mktemp("own")
    photos = _photo_folder(root / "photos")
    out = root / "model"
    assert main(["train", "--data", str(photos), "--model", "simple", "--code-size", "4", "--sweeps", "2",
                 "--minibatch-size", "8", "--test-fraction", "0.25", "--out", str(out), "--quiet"]) == 0
    shutil.rmtree(photos)
    return out


def test_training_stores_the_tables_in_the_checkpoint(own_model):
    record = json.loads((own_model / "config.json").read_text())["codec"]
    stored = own_model / codec.CACHE_FILE
    assert record["sha256"] == hashlib.sha256(stored.read_bytes()).hexdigest()
    for bits in codec.FIT_BITS:
        for quantiser in codec.QUANTISERS:
            assert codec.has_cached_table(own_model, bits, quantiser)


def test_compress_and_decompress_need_only_the_checkpoint_and_never_write_into_it(own_model, empty_home, tmp_path,
                                                                                capsys):
    before = _hashes(own_model)
    images = np.random.default_rng(1).integers(0, 256, (5, 12, 10), dtype=np.uint8)
    np.savez(tmp_path / "new.npz", images=images)
    aez, out = tmp_path / "new.aez", tmp_path / "back.npz"
    for options in ([], ["--quantiser", "uniform", "--bits", "3"], ["--table", "embedded"]):
        assert main(["compress", str(tmp_path / "new.npz"), "--checkpoint", str(own_model), "-o", str(aez),
                     *options]) == 0, capsys.readouterr().err
        assert main(["decompress", str(aez), "--checkpoint", str(own_model), "-o", str(out)]) == 0
        assert np.load(out)["images"].shape == (5, 12, 10)
        out.unlink()
    assert _hashes(own_model) == before
    assert not any(empty_home.iterdir())  # no cache either


def test_a_checkpoint_saved_without_tables_says_what_to_pass_and_codec_fit_completes_it(own_model, tmp_path,
                                                                                      empty_home, capsys):
    old = Path(shutil.copytree(own_model, tmp_path / "old", ignore=shutil.ignore_patterns(codec.CACHE_FILE)))
    info = json.loads((old / "config.json").read_text())
    del info["codec"]  # as aelab saved checkpoints before they held their tables
    (old / "config.json").write_text(json.dumps(info))
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 12, 10), np.uint8))
    args = ["compress", str(tmp_path / "x.npz"), "--checkpoint", str(old), "-o", str(tmp_path / "x.aez")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "aelab codec fit --checkpoint" in err and "--data" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.aez").exists()
    photos = _photo_folder(tmp_path / "photos")  # the same training data, recreated
    assert main(["codec", "fit", "--checkpoint", str(old), "--data", str(photos), "--bits", "6"]) == 0
    shutil.rmtree(photos)
    assert main(args) == 0
    assert codec.codec_table(old, 6).digest == codec.codec_table(own_model, 6).digest  # as training stored it


def test_compressing_many_images_says_so_on_stderr(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(codec, "_PROGRESS_VALUES", 784 * 10)
    from aelab.data import load_dataset
    np.savez(tmp_path / "x.npz", images=load_dataset().test.images[:10])
    assert main(["compress", str(tmp_path / "x.npz"), "--checkpoint", "mnist-codec", "-o",
                 str(tmp_path / "x.aez")]) == 0
    out = capsys.readouterr()
    assert "Compressing 10 images" in out.err and "Compressing" not in out.out


# --- the same bytes on every machine ------------------------------------------------------------------

def test_quantising_takes_the_fixed_order_products_rounding_near_halfway(monkeypatch):
    """A component within a hair of halfway between two levels is rounded as the fixed-order product
    (one IEEE multiply and add at a time) gives it, whatever BLAS computed."""
    table = codec.codec_table(MNIST_CODEC, 6, "transform")
    codes = np.random.default_rng(0).normal(0, 1, (50, table.code_size)).astype(np.float32)
    exact = codec_quantiser._product_in_order(codes.astype(np.float64) - table.mean.astype(np.float64),
                                              table.matrix.astype(np.float64))
    reference = [[sum_in_order(row, table.matrix[:, k]) for k in range(table.code_size)]
                 for row in codes.astype(np.float64) - table.mean.astype(np.float64)]
    assert np.array_equal(exact, np.array(reference))
    # move every component to within 1e-9 of a step from halfway, then let "BLAS" err the other way
    scaled = np.floor(codec_quantiser._scaled(exact, table)) + 0.5 + 1e-9
    y_half = table.offset.astype(np.float64) + scaled * table.step.astype(np.float64)
    codes_half = y_half @ np.linalg.pinv(table.matrix.astype(np.float64)) + table.mean.astype(np.float64)
    fixed = codec_quantiser._scaled(codec_quantiser._product_in_order(
        codes_half - table.mean.astype(np.float64), table.matrix.astype(np.float64)), table)
    want = np.clip(np.rint(fixed), 0, table.levels - 1)
    real = codec_quantiser.components
    for error in (-1e-10, 1e-10):
        monkeypatch.setattr(codec_quantiser, "components", lambda c, t, e=error: real(c, t) + e * t.step)
        assert np.array_equal(codec.quantise(codes_half, table), want)


def sum_in_order(a: np.ndarray, b: np.ndarray) -> float:
    total = 0.0
    for x, y in zip(a.tolist(), b.tolist()):
        total += x * y
    return total


_OTHER_CPU = {  # numpy, torch and oneDNN restricted to older instruction sets: another machine's arithmetic
    "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR",
    "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "OPENBLAS_CORETYPE": "Nehalem",
    "OMP_NUM_THREADS": "1"}
x86_only = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                              reason="the instruction sets held back here are x86's")

_WRITE = """
import sys, numpy as np
from aelab.codec import api as codec
from aelab.models import inference
codes = np.load(sys.argv[1])
if codes.dtype != np.float32:  # images: the whole path
    blobs = [codec.encode_bytes(codes, sys.argv[2], 6, table=t) for t in ("checkpoint", "embedded")]
else:  # given codes: everything after the encoder
    inference.encode = lambda model, rows, precision="fp32": codes
    rows = np.zeros((len(codes), 28, 28), np.uint8)
    blobs = [codec.encode_bytes(rows, sys.argv[2], b, quantiser=q, table=t)
             for b in (3, 6, 8) for q in ("transform", "uniform") for t in ("checkpoint", "embedded")]
sys.stdout.buffer.write(b"".join(blobs))
"""


def _written_in(env: dict, inputs: Path) -> bytes:
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-c", _WRITE, str(inputs), str(MNIST_CODEC)], env=full, check=True,
                          capture_output=True, timeout=300).stdout


@x86_only
def test_given_codes_give_the_same_bytes_on_another_cpu(tmp_path):
    """Everything after the encoder (quantiser, embedded table, coder) is the same computation on any
    CPU: here the same process with numpy, torch, oneDNN and OpenBLAS kept to older instruction sets."""
    from aelab.data import load_dataset
    from aelab.models.checkpoint import load_checkpoint
    from aelab.models.inference import encode
    codes = encode(load_checkpoint(MNIST_CODEC).model, load_dataset().test.images[:200])
    np.save(tmp_path / "codes.npy", codes)
    assert _written_in(_OTHER_CPU, tmp_path / "codes.npy") == _written_in({}, tmp_path / "codes.npy")


@x86_only
def test_the_golden_images_give_the_same_files_on_another_cpu(tmp_path):
    """The encoder's codes differ in their last bits on another CPU; these images have no code within
    that of a bin's edge, so both table modes write the same file (the embedded one did not when it
    fitted its quantiser to the codes)."""
    from aelab.data import load_dataset
    np.save(tmp_path / "images.npy", load_dataset().test.images[:20])
    assert _written_in(_OTHER_CPU, tmp_path / "images.npy") == _written_in({}, tmp_path / "images.npy")


def test_a_model_saved_over_another_leaves_none_of_its_tables_and_the_same_model_keeps_them(own_model, tmp_path):
    """`aelab train --overwrite` with a table model over an image model left the image model's
    codec.safetensors behind, unvouched and unused; re-saving the very same weights keeps them."""
    from aelab.models.checkpoint import load_checkpoint, save_checkpoint
    from aelab.models.networks import build_model, model_config
    folder = Path(shutil.copytree(own_model, tmp_path / "model"))
    same = load_checkpoint(folder)
    save_checkpoint(folder, same.model, same.model_config, training=same.info["training"])
    assert json.loads((folder / "config.json").read_text())["codec"]["sha256"] == \
        hashlib.sha256((folder / codec.CACHE_FILE).read_bytes()).hexdigest()
    config = model_config("simple", input_shape=(5,), code_size=2)
    save_checkpoint(folder, build_model(config), config)
    assert not (folder / codec.CACHE_FILE).exists() and "codec" not in json.loads((folder / "config.json").read_text())


def test_compress_takes_the_reading_options_its_hints_name(own_model, tmp_path, capsys):
    """compress refused colour or larger pictures with a hint to pass --grayscale or --resize, which it did
    not accept: it reads its INPUT's image files with them now."""
    rng = np.random.default_rng(2)
    (tmp_path / "colour").mkdir()
    (tmp_path / "large").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / "colour" / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (24, 20), dtype=np.uint8)).save(tmp_path / "large" / f"{i}.png")
    for folder, option in (("colour", ["--grayscale"]), ("large", ["--resize", "12x10"])):
        args = ["compress", str(tmp_path / folder), "--checkpoint", str(own_model), "-o", str(tmp_path / "x.aez")]
        assert main(args) == 2
        assert option[0] in capsys.readouterr().err
        assert main(args + option) == 0, capsys.readouterr().err
        assert main(["decompress", str(tmp_path / "x.aez"), "--checkpoint", str(own_model), "-o",
                     str(tmp_path / f"{folder}.npz")]) == 0
        assert np.load(tmp_path / f"{folder}.npz")["images"].shape == (3, 12, 10)
