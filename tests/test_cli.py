"""Tests for the ``aelab`` command line, mostly in-process through ``aelab.cli.main``."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aelab.models.checkpoint import load_checkpoint
from aelab.cli import main
from aelab.data import Dataset, Split, load_dataset, save_dataset
from aelab.errors import AelabError, OptionError
from aelab.evaluation.evaluate import evaluate
from aelab.models.inference import encode, reconstruct
from aelab.evaluation.metrics import cosine_similarity

SUBPROCESS_TIMEOUT = 120


def run(capsys: pytest.CaptureFixture, *args) -> tuple[int, str, str]:
    """``aelab ARGS`` in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse: --help, --version, usage errors
        rc = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def user_error(capsys: pytest.CaptureFixture, command: str, *args) -> str:
    """Run ``aelab COMMAND ARGS``, expect a user error, return its one line (without the prefix, which
    names the command, and a data tool's action too: ``aelab data info: error:``)."""
    rc, out, err = run(capsys, command, *args)
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    prefix = f"aelab {command} {args[0]}: error: " if command == "data" else f"aelab {command}: error: "
    assert lines[0].startswith(prefix), err
    assert "Traceback" not in err
    return lines[0][len(prefix):]


def png(path: Path, size: tuple[int, int] | None = None) -> Image.Image:
    assert path.is_file(), path
    with Image.open(path) as im:
        im.verify()
    im = Image.open(path)
    im.load()
    assert im.format == "PNG"
    if size is not None:
        assert im.size == size
    return im


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.update(TEST_DEVICE="cpu", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return env


@pytest.fixture(scope="module")
def cli_ckpt(tiny_npz, tmp_path_factory) -> Path:
    """A checkpoint written by ``aelab train`` itself (the command the brief's users run)."""
    out = tmp_path_factory.mktemp("cli") / "model"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["train", "--model", "simple", "--sweeps", "0.01", "--data", str(tiny_npz), "--out", str(out),
                   "--device", "cpu", "--seed", "1", "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def small_npz(mnist, tmp_path_factory) -> Path:
    """A really small labelled dataset (40 + 20 images) for the format conversions."""
    d = Dataset(name="small", train=Split(mnist.train.images[:40], mnist.train.labels[:40]),
                test=Split(mnist.test.images[:20], mnist.test.labels[:20]), sha256="0" * 64, num_classes=10)
    return save_dataset(d, tmp_path_factory.mktemp("small") / "small.npz", "npz")


# ------------------------------------------------------------------ help and version

SUBCOMMAND_OPTIONS = {
    ("tutorial",): ["--out", "--data", "--fast", "--slow", "--sweeps", "--device", "--seed", "--tsne-limit",
                    "--models", "--quiet", "TEST_DEVICE"],
    ("train",): ["--model", "simple, deep", "--sweeps", "--code-size", "--recipe", "tutorial, adam",
                 "--minibatch-size", "--data", "--device", "--seed", "--out", "--overwrite", "--quiet"],
    ("evaluate",): ["--checkpoint", "--data", "--device", "--split", "--json"],
    ("encode",): ["--checkpoint", "input", "--data", "--output", ".npy", ".csv"],
    ("decode",): ["--checkpoint", "codes", "--output"],
    ("reconstruct",): ["--checkpoint", "input", "--limit", "--output"],
    ("similarity",): ["--checkpoint", "--pair", "--output", "--json"],
    ("tsne",): ["--checkpoint", "--limit", "--seed", "--output"],
    ("data",): ["info", "convert", "download"],
    ("data", "info"): ["path", "--json"],
    ("data", "convert"): ["source", "dest", "--to", "idx", "ctf", "npz"],
    ("data", "download"): ["dir", "--mirror"],
}


def test_top_level_help(capsys) -> None:
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    for word in ("tutorial", "train", "evaluate", "encode", "decode", "reconstruct", "similarity", "tsne",
                 "data", "--debug", "--version"):
        assert word in out, word


@pytest.mark.parametrize("command", list(SUBCOMMAND_OPTIONS), ids=" ".join)
def test_subcommand_help(capsys, command: tuple[str, ...]) -> None:
    rc, out, _ = run(capsys, *command, "--help")
    assert rc == 0
    assert out.startswith(f"usage: aelab {' '.join(command)}")
    for option in SUBCOMMAND_OPTIONS[command]:
        assert option in out, (command, option)


def test_version(capsys) -> None:
    import aelab
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.strip() == f"aelab {aelab.__version__}"


def test_no_command_is_a_usage_error(capsys) -> None:
    rc, _, err = run(capsys)
    assert rc == 2 and "usage: aelab" in err


# ------------------------------------------------------------------ train and evaluate


def test_train_writes_a_checkpoint(cli_ckpt: Path, tiny_npz: Path) -> None:
    assert sorted(p.name for p in cli_ckpt.iterdir()) == ["codec.safetensors", "config.json", "metrics.csv",
                                                           "model.safetensors", "run.toml"]
    ckpt = load_checkpoint(cli_ckpt)
    info = ckpt.info
    assert info["model"]["kind"] == "simple" and info["model"]["code_size"] == 32
    assert info["training"]["sweeps"] == 0.01 and info["training"]["seed"] == 1
    assert info["training"]["samples_seen"] == 64
    assert info["data"]["name"] == "tiny" and info["data"]["sha256"] == load_dataset(tiny_npz).sha256
    assert info["data"]["kind"] == "images" and info["data"]["input_shape"] == [1, 28, 28]
    assert set(info["metrics"]) == {"test_error_pct", "test_bce", "test_mse", "test_psnr_db", "test_r2"}



def test_a_table_training_reports_its_squared_error_not_a_pixel_percentage(capsys, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "t.npy", rng.normal(size=(300, 6)).astype(np.float32))
    rc, out, err = run(capsys, "train", "--data", tmp_path / "t.npy", "--model", "dense", "--code-size", "2",
                       "--recipe", "adam", "--sweeps", "1", "--out", tmp_path / "m")
    assert rc == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("Average training")]
    assert line.startswith("Average training MSE (scaled units): ") and "%" not in line, line
    mse = float(line.rsplit(" ", 1)[1])
    assert 0 < mse < 2  # standardised columns: about 1 before training, less after

def test_train_is_reproducible_and_talks_unless_quiet(capsys, cli_ckpt: Path, tiny_npz: Path,
                                                      tmp_path: Path) -> None:
    rc, out, _ = run(capsys, "train", "--model", "simple", "--sweeps", "0.01", "--data", tiny_npz,
                     "--out", tmp_path / "again", "--device", "cpu", "--seed", "1")
    assert rc == 0
    assert "Training simple on tiny (6400 images)" in out
    assert "Average training error:" in out and "Average test error:" in out
    assert str(tmp_path / "again" / "model.safetensors") in out
    # same seed, same data: the same weights
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (cli_ckpt / "model.safetensors").read_bytes()


def test_train_other_model_code_size_and_recipe(capsys, tiny_npz: Path, tmp_path: Path) -> None:
    rc, out, err = run(capsys, "train", "--model", "deep", "--code-size", "7", "--recipe", "adam",
                       "--minibatch-size", "32", "--sweeps", "0.01", "--data", tiny_npz, "--out", tmp_path / "d",
                       "--device", "cpu", "--quiet")
    assert rc == 0, err
    assert out == ""
    ckpt = load_checkpoint(tmp_path / "d")
    assert ckpt.model_config.kind == "deep" and ckpt.model_config.code_size == 7
    assert ckpt.info["training"]["recipe"] == "adam" and ckpt.info["training"]["samples_seen"] == 64


def test_evaluate_json(capsys, cli_ckpt: Path, tiny_npz: Path) -> None:
    rc, out, err = run(capsys, "evaluate", "--checkpoint", cli_ckpt, "--data", tiny_npz, "--device", "cpu",
                       "--json")
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    scores = json.loads(lines[0])
    assert isinstance(scores, dict)
    for key in ("test_error_pct", "test_bce", "test_mse", "test_psnr_db"):
        assert isinstance(scores[key], float)
        # the scores `aelab train` stored are those of the same model on the same data
        assert scores[key] == pytest.approx(load_checkpoint(cli_ckpt).info["metrics"][key], rel=1e-6)
    assert scores["n"] == 200 and scores["split"] == "test" and scores["data"] == "tiny"
    direct = evaluate(load_checkpoint(cli_ckpt).model, load_dataset(tiny_npz).test.images)
    assert scores["test_error_pct"] == pytest.approx(direct["test_error_pct"])


def test_evaluate_text_and_train_split(capsys, cli_ckpt: Path, tiny_npz: Path) -> None:
    rc, out, _ = run(capsys, "evaluate", "--checkpoint", cli_ckpt, "--data", tiny_npz, "--split", "train")
    assert rc == 0
    assert "train split of tiny: 6400 images" in out
    assert "Average train error:" in out and "PSNR" in out


def test_auto_device_honours_test_device_cpu(capsys, monkeypatch, tiny_npz: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("TEST_DEVICE", "cpu")
    rc, out, err = run(capsys, "train", "--model", "simple", "--sweeps", "0.01", "--data", tiny_npz,
                       "--out", tmp_path / "m", "--device", "auto")
    assert rc == 0, err
    assert "device cpu" in out
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_bad_test_device(capsys, monkeypatch, cli_ckpt: Path, tiny_npz: Path) -> None:
    monkeypatch.setenv("TEST_DEVICE", "tpu")
    message = user_error(capsys, "evaluate", "--checkpoint", cli_ckpt, "--data", tiny_npz)
    assert "TEST_DEVICE='tpu'" in message and "TEST_DEVICE=cpu" in message


# ------------------------------------------------------------------ encode, decode, reconstruct


def test_encode_npy_with_labels(capsys, cli_ckpt: Path, tiny_npz: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "codes.npy"
    rc, out, err = run(capsys, "encode", "--checkpoint", cli_ckpt, "--data", tiny_npz, "-o", out_file)
    assert rc == 0, err
    assert f"Wrote 200 codes of 32 numbers to {out_file}" in out
    codes = np.load(out_file, allow_pickle=False)
    labels = np.load(tmp_path / "codes.labels.npy", allow_pickle=False)
    data = load_dataset(tiny_npz)
    np.testing.assert_allclose(codes, encode(load_checkpoint(cli_ckpt).model, data.test.images), atol=1e-6)
    np.testing.assert_array_equal(labels, data.test.labels)


def test_encode_csv(capsys, cli_ckpt: Path, tiny_npz: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "codes.csv"
    rc, _, err = run(capsys, "encode", "--checkpoint", cli_ckpt, "--data", tiny_npz, "--output", out_file)
    assert rc == 0, err
    lines = out_file.read_text().splitlines()
    assert lines[0] == "label," + ",".join(f"c{i}" for i in range(32))
    assert len(lines) == 201
    table = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    data = load_dataset(tiny_npz)
    np.testing.assert_array_equal(table[:, 0], data.test.labels)
    np.testing.assert_allclose(table[:, 1:], encode(load_checkpoint(cli_ckpt).model, data.test.images),
                               rtol=1e-5, atol=1e-6)


def test_encode_an_image_file(capsys, cli_ckpt: Path, mnist, tmp_path: Path) -> None:
    Image.fromarray(mnist.test.images[7]).save(tmp_path / "seven.png")
    rc, _, err = run(capsys, "encode", "--checkpoint", cli_ckpt, tmp_path / "seven.png", "-o", tmp_path / "c.npy")
    assert rc == 0, err
    codes = np.load(tmp_path / "c.npy")
    np.testing.assert_allclose(codes, encode(load_checkpoint(cli_ckpt).model, mnist.test.images[7:8]), atol=1e-6)
    assert not (tmp_path / "c.labels.npy").exists()  # a PNG has no label


def test_encode_unknown_output_format(capsys, cli_ckpt: Path, tiny_npz: Path, tmp_path: Path) -> None:
    message = user_error(capsys, "encode", "--checkpoint", cli_ckpt, "--data", tiny_npz, "-o", tmp_path / "c.txt")
    assert "c.txt" in message and "FILE.npy or FILE.csv" in message


def test_encode_images_of_the_wrong_size(capsys, cli_ckpt: Path, tmp_path: Path) -> None:
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "small.png")
    message = user_error(capsys, "encode", "--checkpoint", cli_ckpt, tmp_path / "small.png", "-o",
                         tmp_path / "c.npy")
    assert "28x28" in message


@pytest.mark.parametrize("fmt", ["npy", "csv"])
def test_decode_codes_to_pngs(capsys, cli_ckpt: Path, tmp_path: Path, fmt: str, mnist) -> None:
    model = load_checkpoint(cli_ckpt).model
    images = mnist.test.images[:6]
    codes_file = tmp_path / f"codes.{fmt}"
    # encode six images through the CLI (an npz of just those, to stay fast)
    np.savez(tmp_path / "six.npz", images=images, labels=mnist.test.labels[:6])
    rc, _, err = run(capsys, "encode", "--checkpoint", cli_ckpt, tmp_path / "six.npz", "-o", codes_file)
    assert rc == 0, err
    rc, out, err = run(capsys, "decode", "--checkpoint", cli_ckpt, codes_file, "-o", tmp_path / "dec")
    assert rc == 0, err
    assert "Wrote 6 PNGs" in out
    names = sorted(p.name for p in (tmp_path / "dec").iterdir())
    assert names == ["grid.png"] + [f"img-{i:05d}.png" for i in range(6)]
    expected = np.round(reconstruct(model, images) * 255)
    for i in range(6):
        pixels = np.asarray(png(tmp_path / "dec" / f"img-{i:05d}.png", (28, 28)), dtype=np.float64)
        assert np.abs(pixels - expected[i]).max() <= 1.0
    png(tmp_path / "dec" / "grid.png")


def test_decode_codes_of_the_wrong_size(capsys, cli_ckpt: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "codes.npy", np.zeros((3, 16), np.float32))
    message = user_error(capsys, "decode", "--checkpoint", cli_ckpt, tmp_path / "codes.npy", "-o", tmp_path / "d")
    assert "code size 32" in message and "(n, 32)" in message


def test_decode_missing_or_unreadable_codes(capsys, cli_ckpt: Path, tmp_path: Path) -> None:
    message = user_error(capsys, "decode", "--checkpoint", cli_ckpt, tmp_path / "none.npy", "-o", tmp_path / "d")
    assert str(tmp_path / "none.npy") in message and "not found" in message
    (tmp_path / "bad.csv").write_text("label,c0\n1,abc\n")
    message = user_error(capsys, "decode", "--checkpoint", cli_ckpt, tmp_path / "bad.csv", "-o", tmp_path / "d")
    assert "bad.csv" in message and "aelab encode" in message
    (tmp_path / "codes.txt").write_text("1,2\n")
    message = user_error(capsys, "decode", "--checkpoint", cli_ckpt, tmp_path / "codes.txt", "-o", tmp_path / "d")
    assert "codes.txt" in message and ".npy or .csv" in message


def test_reconstruct_limit(capsys, cli_ckpt: Path, tiny_npz: Path, tmp_path: Path) -> None:
    rc, out, err = run(capsys, "reconstruct", "--checkpoint", cli_ckpt, "--data", tiny_npz, "--limit", "5",
                       "-o", tmp_path / "rec")
    assert rc == 0, err
    assert "Wrote 5 decoded PNGs" in out
    names = sorted(p.name for p in (tmp_path / "rec").iterdir())
    assert names == ["grid.png"] + [f"img-{i:05d}.png" for i in range(5)]
    for i in range(5):
        png(tmp_path / "rec" / f"img-{i:05d}.png", (28, 28))
    png(tmp_path / "rec" / "grid.png")


# ------------------------------------------------------------------ similarity and t-SNE


def test_similarity_pair_json(capsys, cli_ckpt: Path, tiny_npz: Path) -> None:
    rc, out, err = run(capsys, "similarity", "--checkpoint", cli_ckpt, "--data", tiny_npz, "--pair", "0", "1",
                       "--json")
    assert rc == 0, err
    rows = json.loads(out)
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == {"title", "index_a", "index_b", "cos_original", "cos_decoded", "cos_code"}
    assert (row["index_a"], row["index_b"]) == (0, 1)
    data = load_dataset(tiny_npz)
    model = load_checkpoint(cli_ckpt).model
    assert row["cos_original"] == pytest.approx(cosine_similarity(data.test.images[0], data.test.images[1]))
    codes = encode(model, data.test.images[:2])
    assert row["cos_code"] == pytest.approx(cosine_similarity(codes[0], codes[1]), rel=1e-5)
    for key in ("cos_original", "cos_decoded", "cos_code"):
        assert -1.0 <= row[key] <= 1.0 + 1e-9


def test_similarity_tutorial_pairs_and_picture(capsys, cli_ckpt: Path, tiny_npz: Path, tmp_path: Path) -> None:
    rc, out, err = run(capsys, "similarity", "--checkpoint", cli_ckpt, "--data", tiny_npz, "--json",
                       "-o", tmp_path / "sim.png")
    assert rc == 0, err
    rows = json.loads(out)
    assert [(r["index_a"], r["index_b"]) for r in rows] == [(50, 54), (51, 61)]
    assert [r["title"] for r in rows] == ["two 6s", "a 3 and an 8"]
    png(tmp_path / "sim.png")
    rc, out, _ = run(capsys, "similarity", "--checkpoint", cli_ckpt, "--data", tiny_npz)
    assert rc == 0 and "two 6s (test images 50, 54)" in out and "a 3 and an 8 (test images 51, 61)" in out


def test_similarity_index_out_of_range(capsys, cli_ckpt: Path, tiny_npz: Path) -> None:
    message = user_error(capsys, "similarity", "--checkpoint", cli_ckpt, "--data", tiny_npz, "--pair", "0", "200")
    assert "200" in message and "0..199" in message


def test_tsne(capsys, cli_ckpt: Path, tiny_npz: Path, tmp_path: Path) -> None:
    rc, out, err = run(capsys, "tsne", "--checkpoint", cli_ckpt, "--data", tiny_npz, "--limit", "40",
                       "-o", tmp_path / "tsne.png")
    assert rc == 0, err
    assert str(tmp_path / "tsne.png") in out
    png(tmp_path / "tsne.png")



def test_tsne_of_a_small_set_chooses_its_perplexity_or_takes_one(capsys, cli_ckpt: Path, tiny_npz: Path,
                                                                 tmp_path: Path) -> None:
    rc, out, err = run(capsys, "tsne", "--checkpoint", cli_ckpt, "--data", tiny_npz, "--limit", "30",
                       "-o", tmp_path / "auto.png")
    assert rc == 0, err  # 30 images: below scikit-learn's perplexity of 30, so a lower one is chosen
    png(tmp_path / "auto.png")
    rc, out, err = run(capsys, "tsne", "--checkpoint", cli_ckpt, "--data", tiny_npz, "--limit", "30",
                       "--perplexity", "5", "-o", tmp_path / "five.png")
    assert rc == 0, err
    rc, out, err = run(capsys, "tsne", "--checkpoint", cli_ckpt, "--data", tiny_npz, "--limit", "30",
                       "--perplexity", "40", "-o", tmp_path / "bad.png")
    assert rc == 2 and "try --perplexity 9" in err and not (tmp_path / "bad.png").exists()

# ------------------------------------------------------------------ data


def test_data_info_tiny(capsys, tiny_npz: Path) -> None:
    rc, out, _ = run(capsys, "data", "info", tiny_npz)
    assert rc == 0
    assert "6400 samples" in out and "200 samples" in out and "28 x 28" in out
    rc, out, _ = run(capsys, "data", "info", tiny_npz, "--json")
    d = json.loads(out)
    assert d["splits"]["train"]["count"] == 6400 and d["splits"]["test"]["count"] == 200
    assert d["format"] == "npz" and d["image_shape"] == [28, 28] and d["num_classes"] == 10
    assert d["sha256"] == load_dataset(tiny_npz).sha256


def test_data_info_bundled_mnist(capsys) -> None:
    rc, out, _ = run(capsys, "data", "info")
    assert rc == 0
    assert "60000" in out and "10000" in out


def test_data_convert_npz_to_ctf_and_back(capsys, small_npz: Path, tmp_path: Path) -> None:
    rc, out, err = run(capsys, "data", "convert", small_npz, tmp_path / "ctf", "--to", "ctf")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "ctf").iterdir()) == ["Test-28x28_cntk_text.txt",
                                                                   "Train-28x28_cntk_text.txt"]
    rc, out, err = run(capsys, "data", "convert", tmp_path / "ctf", tmp_path / "back.npz")
    assert rc == 0, err
    assert str(tmp_path / "back.npz") in out
    before, after = load_dataset(small_npz), load_dataset(tmp_path / "back.npz")
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(after, split).images, getattr(before, split).images)
        np.testing.assert_array_equal(getattr(after, split).labels, getattr(before, split).labels)


def test_data_convert_needs_a_format(capsys, small_npz: Path, tmp_path: Path) -> None:
    message = user_error(capsys, "data", "convert", small_npz, tmp_path / "out")
    assert "fmt" in message or "--to" in message


# ------------------------------------------------------------------ user errors


def test_unknown_model(capsys, tiny_npz: Path, tmp_path: Path) -> None:
    message = user_error(capsys, "train", "--model", "resnet", "--data", tiny_npz, "--out", tmp_path / "m")
    assert "'resnet'" in message and "simple, deep" in message
    assert not (tmp_path / "m").exists()


def test_unknown_recipe(capsys, tiny_npz: Path, tmp_path: Path) -> None:
    message = user_error(capsys, "train", "--recipe", "sgd", "--data", tiny_npz, "--out", tmp_path / "m")
    assert "'sgd'" in message and "tutorial, adam" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_only_machine(capsys, tiny_npz: Path, cli_ckpt: Path, tmp_path: Path) -> None:
    message = user_error(capsys, "train", "--device", "cuda", "--sweeps", "0.01", "--data", tiny_npz,
                         "--out", tmp_path / "m")
    assert "CUDA" in message and "--device cpu" in message
    message = user_error(capsys, "evaluate", "--device", "cuda", "--checkpoint", cli_ckpt, "--data", tiny_npz)
    assert "--device cpu" in message


def test_unknown_device(capsys, cli_ckpt: Path, tiny_npz: Path) -> None:
    message = user_error(capsys, "evaluate", "--device", "tpu", "--checkpoint", cli_ckpt, "--data", tiny_npz)
    assert "'tpu'" in message and "auto, cpu, cuda" in message


@pytest.mark.parametrize("args, option", [
    (["train", "--sweeps", "-1"], "--sweeps"),
    (["train", "--sweeps", "0"], "--sweeps"),
    (["train", "--sweeps", "nan"], "--sweeps"),
    (["train", "--sweeps", "many"], "--sweeps"),
    (["train", "--code-size", "0"], "--code-size"),
    (["train", "--minibatch-size", "-3"], "--minibatch-size"),
    (["train", "--seed", "-1"], "--seed"),
    (["tutorial", "--tsne-samples", "-1"], "--tsne-samples"),
    (["reconstruct", "--checkpoint", "c", "--limit", "0", "-o", "x"], "--limit"),
    (["evaluate", "--checkpoint", "c", "--split", "validation"], "--split"),
])
def test_argparse_rejects_bad_numbers(capsys, args: list[str], option: str) -> None:
    rc, out, err = run(capsys, *args)
    assert rc == 2
    assert err.strip().splitlines()[-1].startswith(f"aelab {args[0]}: error: argument {option}")
    assert "Traceback" not in err


def test_too_few_sweeps_for_one_minibatch(capsys, small_npz: Path, tmp_path: Path) -> None:
    message = user_error(capsys, "train", "--model", "simple", "--sweeps", "0.5", "--data", small_npz,
                         "--out", tmp_path / "m")
    assert "no minibatch" in message and "smaller minibatch" in message


def test_missing_checkpoint_folder(capsys, tiny_npz: Path, tmp_path: Path) -> None:
    for command, extra in (("evaluate", []), ("encode", ["-o", tmp_path / "c.npy"]),
                           ("decode", [tmp_path / "c.npy", "-o", tmp_path / "d"]),
                           ("reconstruct", ["-o", tmp_path / "r"]), ("similarity", []),
                           ("tsne", ["-o", tmp_path / "t.png"])):
        message = user_error(capsys, command, "--checkpoint", tmp_path / "nope",
                             *([] if command == "decode" else ["--data", tiny_npz]), *extra)
        assert str(tmp_path / "nope") in message and "not found" in message and "aelab train --out" in message


def test_damaged_checkpoint(capsys, cli_ckpt: Path, tiny_npz: Path, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(cli_ckpt, tmp_path / "broken"))
    (broken / "model.safetensors").write_bytes(b"\0" * 10)
    message = user_error(capsys, "evaluate", "--checkpoint", broken, "--data", tiny_npz)
    assert str(broken / "model.safetensors") in message and "damaged" in message  # no valid header
    # a config.json with an impossible size: one line, not a traceback from inside torch
    info = json.loads((broken / "config.json").read_text())
    info["model"]["code_size"] = -1
    (broken / "config.json").write_text(json.dumps(info))
    message = user_error(capsys, "evaluate", "--checkpoint", broken, "--data", tiny_npz)
    assert str(broken / "config.json") in message and "code size" in message


def test_data_pointing_at_a_missing_folder(capsys, cli_ckpt: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    for command, extra in (("evaluate", ["--checkpoint", cli_ckpt]),
                           ("train", ["--sweeps", "0.01", "--out", tmp_path / "m"])):
        message = user_error(capsys, command, "--data", missing, *extra)
        assert str(missing) in message and "no such file or folder" in message
        assert "MNIST IDX files" in message  # says what to pass instead


def test_data_info_of_a_missing_path(capsys, tmp_path: Path) -> None:
    message = user_error(capsys, "data", "info", tmp_path / "missing")
    assert str(tmp_path / "missing") in message


def test_data_tool_errors_name_the_action(capsys, tmp_path: Path) -> None:
    """`aelab data pack: error: ...`, not `aelab data: error: ...` (user_error checks the prefix)."""
    message = user_error(capsys, "data", "pack", tmp_path / "missing", "-o", tmp_path / "packed")
    assert str(tmp_path / "missing") in message and not (tmp_path / "packed").exists()


def test_unwritable_out_fails_before_training(capsys, monkeypatch, tiny_npz: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a regular file")

    def no_training(*_args, **_kwargs):
        raise AssertionError("an unusable --out must be refused before training starts")

    monkeypatch.setattr("aelab.training.loop.train", no_training)
    message = user_error(capsys, "train", "--sweeps", "0.01", "--data", tiny_npz, "--out", tmp_path / "file" / "m",
                         "--device", "cpu", "--quiet")
    assert str(tmp_path / "file" / "m") in message and "--out" in message
    assert (tmp_path / "file").read_text() == "a regular file"


def test_train_on_data_that_cannot_be_read_leaves_no_out_folder(capsys, tmp_path: Path) -> None:
    message = user_error(capsys, "train", "--sweeps", "0.01", "--data", tmp_path / "missing", "--out", tmp_path / "m",
                         "--device", "cpu", "--quiet")
    assert "no such file or folder" in message
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("command", ["encode", "decode", "reconstruct", "tsne", "similarity", "tutorial"])
def test_unwritable_outputs(capsys, cli_ckpt: Path, tiny_npz: Path, tmp_path: Path, command: str) -> None:
    (tmp_path / "file").write_text("a regular file")
    target = tmp_path / "file" / "sub"
    codes = tmp_path / "codes.npy"
    np.save(codes, np.zeros((2, 32), np.float32))
    args = {"encode": ["--checkpoint", cli_ckpt, "--data", tiny_npz, "-o", target / "c.npy"],
            "decode": ["--checkpoint", cli_ckpt, codes, "-o", target],
            "reconstruct": ["--checkpoint", cli_ckpt, "--data", tiny_npz, "--limit", "2", "-o", target],
            "tsne": ["--checkpoint", cli_ckpt, "--data", tiny_npz, "--limit", "40", "-o", target / "t.png"],
            "similarity": ["--checkpoint", cli_ckpt, "--data", tiny_npz, "--pair", "0", "1", "-o",
                           target / "s.png"],
            "tutorial": ["--data", tiny_npz, "--out", target, "--quiet"]}[command]
    message = user_error(capsys, command, *args)
    assert str(target) in message
    assert (tmp_path / "file").read_text() == "a regular file"


def test_tutorial_model_names_are_checked_before_any_work(capsys, monkeypatch, tiny_npz: Path,
                                                          tmp_path: Path) -> None:
    def no_training(*_args, **_kwargs):
        raise AssertionError("an unknown model must be refused before the first model trains")

    monkeypatch.setattr("aelab.tutorial.run.run_model", no_training)
    message = user_error(capsys, "tutorial", "--models", "simple,resnet", "--data", tiny_npz,
                         "--out", tmp_path / "t", "--quiet")
    assert "'resnet'" in message and "simple, deep" in message
    message = user_error(capsys, "tutorial", "--models", ",", "--out", tmp_path / "t", "--quiet")
    assert "--models" in message


def test_debug_shows_the_traceback_in_process(tiny_npz: Path, tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="unknown model 'resnet'"):
        main(["--debug", "train", "--model", "resnet", "--data", str(tiny_npz), "--out", str(tmp_path / "m")])


def test_errors_are_aelab_errors_only(capsys, tmp_path: Path) -> None:
    """Without --debug, an AelabError becomes one line; the same error with --debug propagates."""
    with pytest.raises(AelabError):
        main(["--debug", "evaluate", "--checkpoint", str(tmp_path / "nope")])
    assert run(capsys, "evaluate", "--checkpoint", tmp_path / "nope")[0] == 2


# ------------------------------------------------------------------ the real executables


def test_real_executable_user_error_and_debug(tmp_path: Path) -> None:
    exe = shutil.which("aelab")
    assert exe, "the aelab console script is not on PATH"
    proc = subprocess.run([exe, "train", "--model", "resnet", "--out", str(tmp_path / "m")], capture_output=True,
                          text=True, env=subprocess_env(), timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 2
    assert proc.stdout == ""
    from aelab.models.networks import MODEL_NAMES
    assert proc.stderr.strip().splitlines() == [
        f"aelab train: error: unknown model 'resnet' (choose one of: {', '.join(MODEL_NAMES)})"]
    proc = subprocess.run([exe, "--debug", "train", "--model", "resnet", "--out", str(tmp_path / "m")],
                          capture_output=True, text=True, env=subprocess_env(), timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode not in (0, 2)
    assert "Traceback (most recent call last)" in proc.stderr and "OptionError" in proc.stderr


def test_python_dash_m_evaluate(cli_ckpt: Path, tiny_npz: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "aelab", "evaluate", "--checkpoint", str(cli_ckpt), "--data",
                           str(tiny_npz), "--device", "auto", "--json"], capture_output=True, text=True,
                          env=subprocess_env(), timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(proc.stdout)
    assert set(scores) >= {"test_error_pct", "test_bce", "test_mse", "test_psnr_db"}
    assert scores["test_error_pct"] == pytest.approx(load_checkpoint(cli_ckpt).info["metrics"]["test_error_pct"])


@pytest.mark.parametrize("argv", [["train", "--model", "simple", "--out", ""], ["encode", "--checkpoint", "mnist-simple",
                                                                               "-o", " "]])
def test_an_empty_output_name_is_refused_before_any_work(argv, tmp_path, capsys, monkeypatch):
    """`--out ""` trained into the current folder, beside whatever the user kept there."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "is empty" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, what", [(["tsne", "--checkpoint", "mnist-simple", "-o", "map.jpg"], "a PNG picture"),
                                        (["sample", "--checkpoint", "mnist-vae", "-o", "s.pdf"], "a PNG picture"),
                                        (["report", "--checkpoint", "mnist-simple", "-o", "r.png"], "an HTML page")])
def test_a_picture_or_page_named_with_another_suffix_is_refused_before_any_work(argv, what, tmp_path, capsys,
                                                                              monkeypatch):
    """`-o map.jpg` got PNG bytes, `report -o r.png` an HTML page, after the whole computation."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"writes {what}" in err and len(err.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []
