"""A command run again into the same output replaces what its earlier run wrote there, as a whole: no
earlier labels beside new codes, no earlier pictures numbered past the new ones, no earlier export in
another format. Also the input faults found beside them: configs that are not UTF-8, arrays in odd
dtypes and layouts, settings given as numpy numbers, data that IDX and CTF files cannot hold."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import aelab
from aelab.errors import DataError, OptionError
from helpers import run_cli


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))


def _flat_folder(folder, images):
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"im{i}.png")
    return folder


def test_codes_written_again_without_labels_leave_no_earlier_labels_beside_them(trained, tiny_npz, tmp_path,
                                                                             capsys):
    codes = tmp_path / "e.npy"
    assert run_cli(capsys, "encode", "--checkpoint", trained.folder, "--data", tiny_npz, "-o", codes)[0] == 0
    assert codes.with_suffix(".labels.npy").exists()
    flat = _flat_folder(tmp_path / "flat", trained.data.test.images[:5])
    assert run_cli(capsys, "encode", "--checkpoint", trained.folder, flat, "-o", codes)[0] == 0
    assert np.load(codes).shape[0] == 5
    assert not codes.with_suffix(".labels.npy").exists() and not codes.with_suffix(".classes.json").exists()


def test_class_names_of_an_earlier_run_do_not_name_new_labels(tmp_path):
    from aelab.data.codes import write_codes
    out = tmp_path / "c.npy"
    write_codes(out, np.zeros((2, 3)), np.array([0, 1]), class_names=["cat", "dog"])
    write_codes(out, np.zeros((4, 3)), np.array([0, 1, 2, 3]))
    assert np.load(out.with_suffix(".labels.npy")).tolist() == [0, 1, 2, 3]
    assert not out.with_suffix(".classes.json").exists()


def test_fewer_pictures_into_the_same_folder_leave_none_of_the_earlier_ones(trained, tiny_npz, tmp_path, capsys):
    out = tmp_path / "rec"
    assert run_cli(capsys, "reconstruct", "--checkpoint", trained.folder, "--data", tiny_npz, "--limit", "12",
                   "-o", out)[0] == 0
    assert run_cli(capsys, "reconstruct", "--checkpoint", trained.folder, "--data", tiny_npz, "--limit", "3",
                   "-o", out)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "img-00000.png", "img-00001.png", "img-00002.png"]


def test_fewer_denoised_triplets_into_the_same_folder_leave_none_of_the_earlier_ones(tiny_npz, tmp_path, capsys):
    out = tmp_path / "dn"
    common = ("denoise", "--checkpoint", "mnist-denoise", "--data", tiny_npz, "--limit", "20", "-o", out)
    assert run_cli(capsys, *common, "--draw", "6")[0] == 0
    assert run_cli(capsys, *common, "--draw", "2")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["triplet-00000.png", "triplet-00001.png", "triplets.png"]
    with Image.open(out / "triplet-00001.png") as triplet:
        assert triplet.size == (3 * 28, 28)  # clean | noisy | denoised, side by side


def test_an_export_in_another_format_leaves_none_of_the_earlier_one(trained, tmp_path):
    pytest.importorskip("onnx")
    from aelab.models.export import export_model
    export_model(trained.model, "pt2", tmp_path / "ex")
    export_model(trained.model, "onnx", tmp_path / "ex")
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == ["decoder.onnx", "encoder.onnx", "export.json"]


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('model = "simple"\n', encoding="utf-16")  # as some Windows editors save it
    rc, _, err = run_cli(capsys, "train", "--config", config)
    assert rc == 2 and "not UTF-8" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_odd_arrays_are_read_or_refused_by_name(trained):
    checkpoint = aelab.load_model(trained.folder)
    images = trained.data.test.images[:4]
    flipped = images[:, ::-1, :]  # a view with a negative stride
    np.testing.assert_array_equal(aelab.encode_images(checkpoint, flipped),
                                  aelab.encode_images(checkpoint, flipped.copy()))
    np.testing.assert_array_equal(aelab.encode_images(checkpoint, images.astype(np.uint16)),
                                  aelab.encode_images(checkpoint, images))
    with pytest.raises(DataError, match="0..255"):
        aelab.encode_images(checkpoint, images.astype(np.uint16) * 257)  # 16-bit levels
    with pytest.raises(DataError, match="codes must be real numbers"):
        aelab.decode_codes(checkpoint, np.ones((2, checkpoint.model_config.code_size), np.complex64))
    with pytest.raises(DataError, match="NaN or infinite"):
        aelab.decode_codes(checkpoint, np.full((2, checkpoint.model_config.code_size), np.nan))


def test_settings_given_as_numpy_numbers_are_plain_python_ones():
    config = aelab.TrainConfig(model="deep", code_size=np.int64(8), sweeps=np.float32(1.5),
                               hidden=np.array([16, 8]), seed=np.uint32(3))
    config.validate()
    assert (config.code_size, config.sweeps, config.hidden, config.seed) == (8, 1.5, (16, 8), 3)
    assert type(config.code_size) is int and type(config.seed) is int
    json.dumps(config.to_dict())  # what a checkpoint stores


def test_a_training_refused_for_its_settings_leaves_no_folder(tiny_data, tmp_path):
    with pytest.raises(OptionError, match="unknown model"):
        aelab.train_model(tiny_data, aelab.TrainConfig(model="bogus"), tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_a_curve_that_reaches_zero_is_drawn_on_a_linear_axis(tmp_path):
    """A constant table is reconstructed exactly: its loss is 0 throughout, which no log axis can hold."""
    from aelab.evaluation.plots import save_training_curve
    path = save_training_curve(tmp_path / "c.png", {"loss": ([10, 20, 40], [0.0, 0.0, 0.0])}, ylabel="MSE",
                               logy=True)
    assert path.stat().st_size > 0


@pytest.mark.parametrize("fmt", ["ctf", "idx", "idx.gz"])
def test_colour_images_are_not_written_as_grey_files(fmt, tmp_path, capsys):
    """A CTF file of 16x16 colour images read back as rows of 768 grey values; RGB IDX files could not be
    read back at all. npz keeps them."""
    rng = np.random.default_rng(0)
    for label in "ab":
        (tmp_path / "rgb" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "rgb" / label / f"{i}.png")
    rc, _, err = run_cli(capsys, "data", "convert", tmp_path / "rgb", tmp_path / "out", "--to", fmt)
    assert rc == 2 and "hold grey images" in err and "colour" in err and ".npz" in err
    assert not (tmp_path / "out").exists()
    assert run_cli(capsys, "data", "convert", tmp_path / "rgb", tmp_path / "x.npz")[0] == 0
    assert aelab.load_data(tmp_path / "x.npz").train.images.shape[1:] == (16, 16, 3)


@pytest.mark.parametrize("edit,message", [
    ({"num_classes": 3, "class_names": ["a", "b"]}, "2 names for num_classes 3"),
    ({"num_classes": 3}, "labels run from 0 to 9, where num_classes is 3"),
    ({"num_classes": "ten"}, "num_classes is 'ten'"),
])
def test_a_packed_index_whose_classes_disagree_is_refused(edit, message, tiny_npz, tmp_path, capsys):
    """The checksums cover the samples and labels, not the class count and names that encode's
    classes.json and the report carry on: an edited index named 10 classes with 2 names."""
    assert run_cli(capsys, "data", "pack", tiny_npz, "-o", tmp_path / "pk")[0] == 0
    index = tmp_path / "pk" / "index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), **edit}))
    rc, _, err = run_cli(capsys, "data", "info", tmp_path / "pk")
    assert rc == 2 and message in err and "pack the data again" in err


def test_a_checkpoint_missing_a_part_says_what_to_do(trained, tmp_path, capsys):
    import shutil
    broken = shutil.copytree(trained.folder, tmp_path / "no-weights")
    (broken / "model.safetensors").unlink()
    rc, _, err = run_cli(capsys, "encode", "--checkpoint", broken, "--data", "mnist", "--limit", "1", "-o",
                         tmp_path / "c.npy")
    assert rc == 2 and "cannot read the weights" in err and "copy the checkpoint folder again" in err
    no_model = shutil.copytree(trained.folder, tmp_path / "no-model")
    info = json.loads((no_model / "config.json").read_text())
    del info["model"]
    (no_model / "config.json").write_text(json.dumps(info))
    rc, _, err = run_cli(capsys, "encode", "--checkpoint", no_model, "--data", "mnist", "--limit", "1", "-o",
                         tmp_path / "c.npy")
    assert rc == 2 and "no 'model' entry" in err and "KeyError" not in err
