"""Outputs never replace or mix with what the user had: an output that is a command's input or lies inside
its input folder is refused before anything is written; the errors about outputs and
checkpoints name what the user really passed."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aelab.cli import main

from helpers import run_cli


def user_error(capsys, *args) -> str:
    """``aelab ARGS``: expect exit 2 and one line without a traceback; that line."""
    rc, out, err = run_cli(capsys, *args)
    assert rc == 2, (rc, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def snapshot(path: Path) -> dict[str, str]:
    """Every file under ``path`` (or ``path`` itself) by its relative name, with the SHA-256 of its bytes."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {os.fspath(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def train(data: Path, out: Path) -> Path:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["train", "--data", str(data), "--out", str(out), "--model", "deep", "--hidden", "8",
                   "--code-size", "2", "--sweeps", "1", "--minibatch-size", "8", "--device", "cpu", "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("table") / "mine.csv"
    rows = ["a,b,c,d"] + [",".join(f"{v:.4f}" for v in row) for row in rng.normal(size=(40, 4))]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    folder = tmp_path_factory.mktemp("images") / "photos"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, size=(8, 8), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def table_model(table, tmp_path_factory) -> Path:
    return train(table, tmp_path_factory.mktemp("tm") / "model")


@pytest.fixture(scope="module")
def image_model(images, tmp_path_factory) -> Path:
    return train(images, tmp_path_factory.mktemp("im") / "model")


@pytest.fixture
def mine(table, tmp_path) -> Path:
    """A copy of the table the test may lose."""
    copy = tmp_path / "mine.csv"
    copy.write_bytes(table.read_bytes())
    return copy


@pytest.fixture
def photos(images, tmp_path) -> Path:
    """A copy of the image folder the test may lose."""
    copy = tmp_path / "photos"
    copy.mkdir()
    for f in images.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    return copy


@pytest.mark.parametrize("command", ["encode", "reconstruct", "score"])
def test_an_output_file_that_is_the_input_table_is_refused_and_the_table_kept(capsys, table_model, mine,
                                                                             command) -> None:
    before = snapshot(mine)
    message = user_error(capsys, command, "--checkpoint", table_model, mine, "-o", mine)
    assert message.count(str(mine)) == 2 and "choose another" in message and "-o" in message
    assert snapshot(mine) == before


def test_the_same_table_by_another_path_or_a_link_or_through_data_is_refused(capsys, table_model, mine,
                                                                               monkeypatch) -> None:
    before = snapshot(mine)
    link = mine.parent / "link.csv"
    link.symlink_to(mine)
    monkeypatch.chdir(mine.parent)
    for args in ([mine, "-o", "sub/../mine.csv"], [link, "-o", mine], [mine, "-o", link],
                 ["--data", "./mine.csv", "-o", mine]):
        message = user_error(capsys, "encode", "--checkpoint", table_model, *args)
        assert "the output is the input" in message
    assert snapshot(mine) == before
    assert not (mine.parent / "sub").exists()


@pytest.mark.parametrize("where", ["same", "inside"])
def test_an_output_folder_that_is_or_lies_inside_the_input_folder_is_refused(capsys, image_model, photos,
                                                                            where) -> None:
    before = snapshot(photos)
    output = photos if where == "same" else photos / "decoded"
    message = user_error(capsys, "reconstruct", "--checkpoint", image_model, photos, "-o", output)
    assert str(photos) in message and "-o" in message
    assert ("is the input folder" if where == "same" else "lies inside the input folder") in message
    assert snapshot(photos) == before


def test_reconstructing_a_picture_into_the_folder_of_the_users_pictures_is_refused(capsys, image_model,
                                                                                   photos) -> None:
    before = snapshot(photos)
    message = user_error(capsys, "reconstruct", "--checkpoint", image_model, photos / "000.png", "-o", photos)
    assert "not an earlier output" in message
    assert snapshot(photos) == before


def test_an_output_folder_may_hold_the_input_and_aelabs_own_pictures(capsys, image_model, tmp_path) -> None:
    """New files beside the input neither replace nor mix with it: `decode run/codes.npy -o run` works, in a
    run folder holding a t-SNE map and a subfolder of the user's pictures."""
    run = tmp_path / "run"
    (run / "originals").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(run / "originals" / "photo.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(run / "tsne.png")
    np.save(run / "codes.npy", np.zeros((3, 2), np.float32))
    before = snapshot(run / "codes.npy")
    rc, _out, err = run_cli(capsys, "decode", "--checkpoint", image_model, run / "codes.npy", "-o", run)
    assert rc == 0, err
    assert snapshot(run / "codes.npy") == before and (run / "img-00002.png").exists()


def test_data_convert_and_pack_refuse_their_source(capsys, mine, photos) -> None:
    before, pictures = snapshot(mine), snapshot(photos)
    assert "the output is the input" in user_error(capsys, "data", "convert", mine, mine, "--to", "npz")
    assert "DEST" in user_error(capsys, "data", "convert", photos, photos / "x.npz")
    assert "lies inside the input folder" in user_error(capsys, "data", "pack", photos, "-o", photos / "packed")
    assert snapshot(mine) == before and snapshot(photos) == pictures


def test_decode_refuses_a_folder_of_the_users_pictures_but_writes_again_over_its_own(capsys, image_model, photos,
                                                                                     tmp_path) -> None:
    codes = tmp_path / "codes.npy"
    np.save(codes, np.zeros((3, 2), np.float32))
    before = snapshot(photos)
    message = user_error(capsys, "decode", "--checkpoint", image_model, codes, "-o", photos)
    assert str(photos) in message and "not an earlier output" in message and "000.png" in message and "with -o" in message
    assert snapshot(photos) == before
    out = tmp_path / "decoded"
    for _ in range(2):  # the second run replaces the first one's img-*.png and grid.png
        rc, _out, err = run_cli(capsys, "decode", "--checkpoint", image_model, codes, "-o", out)
        assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "img-00000.png", "img-00001.png", "img-00002.png"]


def test_an_output_folder_that_is_a_file_names_the_commands_own_option(capsys, image_model, tmp_path) -> None:
    codes, taken = tmp_path / "codes.npy", tmp_path / "taken"
    np.save(codes, np.zeros((3, 2), np.float32))
    taken.write_text("keep me")
    message = user_error(capsys, "decode", "--checkpoint", image_model, codes, "-o", taken)
    assert "is a file, not a folder" in message and "with -o" in message and "--out" not in message
    assert taken.read_text() == "keep me"


def test_decode_speaks_of_codes_when_they_are_empty_or_overflow_the_decoder(capsys, image_model, tmp_path) -> None:
    empty, huge = tmp_path / "empty.npy", tmp_path / "huge.npy"
    np.save(empty, np.zeros((0, 2), np.float32))
    top = np.finfo(np.float32).max  # finite, but overflows the decoder's layers for some of the four signs
    np.save(huge, np.array([[top, top], [top, -top], [-top, top], [-top, -top]], np.float32))
    message = user_error(capsys, "decode", "--checkpoint", image_model, empty, "-o", tmp_path / "a")
    assert "no codes" in message and "images" not in message
    message = user_error(capsys, "decode", "--checkpoint", image_model, huge, "-o", tmp_path / "b")
    assert "codes as large as 3.4e+38 overflow the decoder" in message and "pixels" not in message
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_file_passed_as_checkpoint_is_called_a_file(capsys, mine, tmp_path) -> None:
    message = user_error(capsys, "encode", "--checkpoint", mine, mine, "-o", tmp_path / "c.csv")
    assert f"{mine}: is a file, not a checkpoint folder" in message and "not found" not in message


def test_train_refuses_an_out_folder_inside_its_data_naming_out(capsys, photos) -> None:
    before = snapshot(photos)
    message = user_error(capsys, "train", "--data", photos, "--out", photos / "model", "--sweeps", "1", "--quiet")
    assert "lies inside the input folder" in message and "with --out" in message
    assert snapshot(photos) == before
