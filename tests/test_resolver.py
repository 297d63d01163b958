"""One resolver decides what a path is; data is read the way a checkpoint recorded its training data.

The checkpoints here hold untrained models: what is tested is how data reaches them, not what they learned.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aelab import api
from aelab.cli import main
from aelab.data import ReadOptions, describe, format_description, load_dataset, load_images, resolve
from aelab.data.recorded import data_record
from aelab.errors import DataError, OptionError
from aelab.models.checkpoint import load_checkpoint, save_checkpoint
from aelab.models.networks import build_model, model_config


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))


def _photos(root, size=(12, 10), per_class=10, colour=True):
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (*size, 3) if colour else size
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / name / f"{i:02d}.png")
    return root


def _checkpoint_for(data, folder):
    """An untrained model for ``data``, saved with ``data``'s record, as `aelab train` saves it."""
    config = model_config("simple", input_shape=data.input_shape, code_size=2)
    save_checkpoint(folder, build_model(config, seed=0), config, data=data_record(data))
    return load_checkpoint(folder)


def _table(path, rows=40, label=True):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, (rows, 3))
    lines = ["a,b,c" + (",kind" if label else "")]
    lines += [",".join(f"{v:.5f}" for v in row) + ("," + "xy"[i % 2] if label else "") for i, row in enumerate(x)]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the resolver -----------------------------------------------------------------------------

def test_every_kind_of_source_is_named_once(tmp_path):
    from aelab.data import convert, save_dataset
    from aelab.data.images import save_png

    assert resolve(None).kind == "bundled" and resolve("mnist").kind == "bundled"
    assert resolve(_photos(tmp_path / "photos")).kind == "image folder"
    assert resolve(_table(tmp_path / "t.csv")).kind == "table"
    convert(None, tmp_path / "idx", "idx")
    assert resolve(tmp_path / "idx").kind == "idx folder"
    assert resolve(tmp_path / "idx" / "t10k-images-idx3-ubyte").kind == "idx file"
    data = load_dataset(None)
    save_dataset(data, tmp_path / "ctf", "ctf")
    assert resolve(tmp_path / "ctf").kind == "ctf folder"
    train, test = sorted((tmp_path / "ctf").iterdir())[::-1]
    assert resolve(f"{train},{test}").kind == "ctf pair" and resolve(train).kind == "ctf file"
    save_png(tmp_path / "one.png", data.test.images[0])
    (tmp_path / "renamed").write_bytes((tmp_path / "one.png").read_bytes())  # no suffix: told by its content
    assert resolve(tmp_path / "one.png").kind == resolve(tmp_path / "renamed").kind == "image file"
    np.savez(tmp_path / "s.npz", x_train=data.train.images[:5], x_test=data.test.images[:5])
    np.savez(tmp_path / "i.npz", images=data.test.images[:5])
    np.savez(tmp_path / "a.npz", rows=np.ones((6, 2)))
    layouts = {name: resolve(tmp_path / f"{name}.npz") for name in ("s", "i", "a")}
    assert {name: (s.kind, s.npz_layout, s.is_single) for name, s in layouts.items()} == {
        "s": ("npz", "splits", False), "i": ("npz", "images", True), "a": ("npz", "array", False)}
    packed = api.pack_data(tmp_path / "t.csv", tmp_path / "packed", label_column="kind")
    assert resolve(packed).kind == "packed"
    with pytest.raises(DataError, match="no such file"):
        resolve(tmp_path / "nothing")


def test_the_one_npz_rule_reads_an_images_npz_alike_everywhere(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 4, 5), dtype=np.uint8)
    np.savez(tmp_path / "i.npz", images=images, labels=np.arange(6) % 2)
    got, labels = load_images(tmp_path / "i.npz")
    assert np.array_equal(got, images) and labels.tolist() == [0, 1] * 3
    d = describe(tmp_path / "i.npz")
    assert d["splits"]["all"]["count"] == 6 and d["format"] == "npz"


def test_read_options_are_validated_once_and_none_means_not_given():
    options = ReadOptions(resize="6x5", crop=False, channels="rgb")
    assert options.resize == (6, 5) and options.crop is None
    assert options.given() == {"channels": "rgb", "resize": (6, 5)}
    assert ReadOptions(seed=3).over(options).given() == {"seed": 3, "channels": "rgb", "resize": (6, 5)}
    assert ReadOptions.from_record(options.to_record()) == options
    with pytest.raises(OptionError, match="unknown data option"):
        ReadOptions.of(colour="rgb")
    with pytest.raises(OptionError, match="channels"):
        ReadOptions(channels="cmyk")


def test_a_label_column_given_by_index_zero_is_recorded_and_read_again(tmp_path):
    path = tmp_path / "t.npy"
    rows = np.random.default_rng(2).normal(size=(30, 4))
    rows[:, 0] = np.arange(30) % 3
    np.save(path, rows)
    data = load_dataset(path, label_column=0)
    assert data_record(data)["options"]["label_column"] == 0
    ckpt = _checkpoint_for(data, tmp_path / "m")
    assert api.load_data(path, ckpt).input_shape == (3,)
    assert api.describe_data(path, label_column=0, crop=False)["num_classes"] == 3


# --- packing shares the folder reader's planning -------------------------------------------------

def test_packing_an_image_folder_uses_the_folder_readers_plan(tmp_path, monkeypatch):
    from aelab.data import folders
    photos = _photos(tmp_path / "photos")
    planned = []
    plan_folder = folders.plan_folder
    monkeypatch.setattr("aelab.data.sources.plan_folder", lambda folder: planned.append(folder) or plan_folder(folder))
    api.pack_data(photos, tmp_path / "p", test_fraction=0.3)
    assert planned == [photos]


# --- issue 27 faults ------------------------------------------------------------------------------

def test_a_packed_table_takes_the_label_column_it_was_packed_with_and_refuses_another(tmp_path, capsys):
    api.pack_data(_table(tmp_path / "t.csv"), tmp_path / "p", label_column="kind")
    assert load_dataset(tmp_path / "p", label_column="kind").num_classes == 2
    with pytest.raises(OptionError, match="read as it was packed.*--label-column"):
        load_dataset(tmp_path / "p", label_column="a")
    with pytest.raises(OptionError, match="tables only"):
        load_dataset(_photos(tmp_path / "photos"), label_column="kind")


def test_options_that_move_training_samples_into_the_test_split_are_refused(tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    data = load_dataset(photos, test_fraction=0.2)
    ckpt = _checkpoint_for(data, tmp_path / "m")
    assert api.load_data(photos, ckpt).test.n == data.test.n  # the recorded split
    assert api.load_data(photos, ckpt, test_fraction=0.2).test.n == data.test.n  # the same split, named
    for options, named in ((dict(test_fraction=0.5), "--test-fraction 0.5"), (dict(seed=7), "seed=7")):
        with pytest.raises(OptionError, match=f"^{named} would put samples the model was trained on into the test"):
            api.load_data(photos, ckpt, **options)
    for command in ("evaluate", "tsne"):
        extra = ["-o", str(tmp_path / "map.png")] if command == "tsne" else []
        assert main([command, "--checkpoint", str(tmp_path / "m"), "--data", str(photos),
                     "--test-fraction", "0.5", *extra]) == 2
        err = capsys.readouterr().err
        assert "--test-fraction 0.5" in err and len(err.strip().splitlines()) == 1
    # packed since with another split: refused too
    api.pack_data(photos, tmp_path / "p", test_fraction=0.5)
    with pytest.raises(OptionError, match="trained on into the test split"):
        api.load_data(tmp_path / "p", ckpt)
    assert main(["evaluate", "--checkpoint", str(tmp_path / "m"), "--data", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err  # names the packed split, and only options `aelab data pack` has
    assert "test fraction 0.5" in err and "--test-fraction 0.2" in err and "--seed" not in err
    # other data of the same shape: any split is a fair test
    other = _photos(tmp_path / "other", per_class=6)
    assert api.load_data(other, ckpt, test_fraction=0.5).test.n == 6


def test_a_packed_set_refuses_split_and_skip_options_it_cannot_apply(tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    out = api.pack_data(photos, tmp_path / "p", test_fraction=0.25)
    assert load_dataset(out, test_fraction=0.25).test.n == 5  # what it was packed with
    for options, flag in ((dict(test_fraction=0.5), "--test-fraction"), (dict(seed=3), "seed="),
                          (dict(skip_bad=True), "--skip-bad")):
        with pytest.raises(OptionError, match=f"{flag} \\(packed with"):
            load_dataset(out, **options)
    assert main(["data", "info", str(out), "--skip-bad"]) == 2
    assert "--skip-bad (packed with none) cannot change" in capsys.readouterr().err


def test_a_table_model_with_a_label_column_scores_and_encodes_rows_without_it(tmp_path, capsys):
    data = load_dataset(_table(tmp_path / "t.csv"), label_column="kind")
    ckpt = _checkpoint_for(data, tmp_path / "m")
    _table(tmp_path / "new.csv", rows=7, label=False)
    rows, labels = api.input_images(tmp_path / "new.csv", checkpoint=ckpt)
    assert rows.shape == (7, 3) and labels is None
    with_labels, labels = api.input_images(tmp_path / "t.csv", checkpoint=ckpt)
    assert with_labels.shape == (40, 3) and labels is not None
    assert np.allclose(rows, with_labels[:7], atol=1e-6)  # the same rows, scaled alike
    np.save(tmp_path / "new.npy", np.loadtxt(tmp_path / "new.csv", delimiter=",", skiprows=1))
    assert main(["score", "--checkpoint", str(tmp_path / "m"), str(tmp_path / "new.csv"),
                 "-o", str(tmp_path / "s.csv")]) == 0
    assert main(["encode", "--checkpoint", str(tmp_path / "m"), str(tmp_path / "new.npy"),
                 "-o", str(tmp_path / "c.csv")]) == 0
    assert len((tmp_path / "c.csv").read_text().splitlines()) == 8


def test_encode_names_the_labels_by_the_classes_of_the_data_it_read(tmp_path, capsys):
    import csv
    import json

    from aelab.data.codes import read_codes, write_codes
    photos = _photos(tmp_path / "photos", size=(8, 8))  # cats, dogs
    data = load_dataset(photos)
    _checkpoint_for(data, tmp_path / "m")
    assert main(["encode", "--checkpoint", str(tmp_path / "m"), "--data", str(photos),
                 "-o", str(tmp_path / "test.csv")]) == 0
    rows = list(csv.reader((tmp_path / "test.csv").read_text().splitlines()))
    assert [r[0] for r in rows[1:]] == [data.class_names[i] for i in data.test.labels]
    # an INPUT folder numbers its labels by its own classes, which are not the training data's
    rng = np.random.default_rng(0)
    for name in ("birds", "sea, lions", "zebras"):
        (tmp_path / "new" / name).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "new" / name / "0.png")
    for out in ("new.csv", "new.npy"):
        assert main(["encode", "--checkpoint", str(tmp_path / "m"), str(tmp_path / "new"),
                     "-o", str(tmp_path / out)]) == 0
    rows = list(csv.reader((tmp_path / "new.csv").read_text().splitlines()))
    assert rows[0][:2] == ["file", "label"]  # image files are named, then labelled
    assert [r[:2] for r in rows[1:]] == [["birds/0.png", "birds"], ["sea, lions/0.png", "sea, lions"],
                                         ["zebras/0.png", "zebras"]]
    assert np.load(tmp_path / "new.labels.npy").tolist() == [0, 1, 2]
    assert json.loads((tmp_path / "new.classes.json").read_text()) == ["birds", "sea, lions", "zebras"]
    assert np.allclose(read_codes(tmp_path / "new.csv"), np.load(tmp_path / "new.npy"), atol=1e-5)
    # labels without names: no names are left from the run before to name them wrongly
    write_codes(tmp_path / "new.npy", np.zeros((2, 2)), np.array([0, 1]))
    assert not (tmp_path / "new.classes.json").exists()


def test_the_positional_input_is_read_the_way_the_model_was_trained(tmp_path, capsys):
    photos = _photos(tmp_path / "photos", size=(16, 20))
    data = load_dataset(photos, resize="8x8", channels="grayscale")
    ckpt = _checkpoint_for(data, tmp_path / "m")
    new = _photos(tmp_path / "new", size=(30, 24), per_class=2)
    images, _ = api.input_images(new, checkpoint=ckpt)
    assert images.shape == (4, 8, 8)  # resized and grey, as in training
    one, _ = api.input_images(new / "cats" / "00.png", checkpoint=ckpt)
    assert one.shape == (1, 8, 8)
    assert main(["encode", "--checkpoint", str(tmp_path / "m"), str(new), "--resize", "8x8",
                 "-o", str(tmp_path / "c.npy")]) == 0
    assert np.load(tmp_path / "c.npy").shape == (4, 2)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, size in enumerate([(30, 24), (18, 18)]):
        Image.fromarray(np.zeros(size, np.uint8)).save(mixed / f"{i}.png")
    assert main(["encode", "--checkpoint", str(tmp_path / "m"), str(mixed), "-o", str(tmp_path / "d.npy")]) == 0


def test_compress_reads_its_input_the_way_the_model_was_trained(tmp_path):
    from aelab import codec
    photos = _photos(tmp_path / "photos", size=(16, 20), colour=False)
    data = load_dataset(photos, resize="8x8")
    ckpt = _checkpoint_for(data, tmp_path / "m")
    result = codec.compress(_photos(tmp_path / "new", size=(30, 24), per_class=2, colour=False), ckpt,
                            tmp_path / "x.aez", table="embedded")
    assert result["count"] == 4


def test_crop_refuses_an_image_far_below_the_others_naming_it(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(folder / f"{i}.png")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(folder / "tiny.png")
    with pytest.raises(DataError, match=r"tiny\.png.*1x1, far below.*64x64"):
        load_dataset(folder, crop=True)
    with pytest.raises(DataError, match=r"tiny\.png"):
        api.pack_data(folder, tmp_path / "p", crop=True)
    assert load_dataset(folder, crop=True, resize="32x32").image_shape == (32, 32)


def test_crop_without_resize_on_one_picture_is_refused_or_crops_to_the_models_size(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, size in enumerate([(12, 10), (14, 12), (13, 11), (12, 12)]):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(OptionError, match="--crop without --resize"):
        load_images(tmp_path / "big.png", crop=True)
    assert load_images(tmp_path / "big.png", crop=True, resize="8x8")[0].shape == (1, 8, 8, 3)
    data = load_dataset(folder, crop=True)  # every picture cropped to the smallest, 12x10
    ckpt = _checkpoint_for(data, tmp_path / "m")
    assert api.input_images(tmp_path / "big.png", checkpoint=ckpt)[0].shape == (1, 12, 10, 3)


def test_packing_an_image_folder_refuses_scale_before_decoding_it(tmp_path):
    folder = _photos(tmp_path / "photos", per_class=2)
    (folder / "cats" / "broken.png").write_bytes(b"not a picture")  # decoding it would fail first
    with pytest.raises(OptionError, match="--scale standard applies to tables only"):
        api.pack_data(folder, tmp_path / "p", scale="standard")
    assert not (tmp_path / "p").exists()


def test_a_scale_that_would_change_nothing_is_refused_not_ignored(tmp_path):
    """A table model reads tables with its own scaler, and images are never scaled: `evaluate --scale none`
    gave the same MSE as without it, and `data info images.npz --scale minmax` said nothing."""
    table = _table(tmp_path / "t.csv")
    data = load_dataset(table, label_column="kind")
    ckpt = _checkpoint_for(data, tmp_path / "m")
    for other in ("none", "minmax"):
        with pytest.raises(OptionError, match=f"--scale {other}: the model reads tables with the scaler fitted "
                                              "on its training rows \\(standard\\)"):
            api.load_data(table, ckpt, scale=other)
        with pytest.raises(OptionError, match=f"--scale {other}"):
            api.read_input(table, checkpoint=ckpt, scale=other)
    assert api.load_data(table, ckpt, scale="standard").test.n == data.test.n  # the same as its own: no change
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "set.npz", images=rng.integers(0, 256, (30, 6, 6), dtype=np.uint8))
    for call in (lambda: describe(tmp_path / "set.npz", scale="minmax"),
                 lambda: load_dataset(tmp_path / "set.npz", scale="standard")):
        with pytest.raises(OptionError, match="applies to tables only"):
            call()
    image_model = _checkpoint_for(load_dataset(tmp_path / "set.npz"), tmp_path / "im")
    with pytest.raises(OptionError, match="the model takes images, which are not scaled"):
        api.load_data(tmp_path / "set.npz", image_model, scale="minmax")


@pytest.mark.filterwarnings("ignore:.*single sample")  # a few rows a class, on purpose
def test_whole_number_float_labels_are_not_hundreds_of_classes_and_numbers_sort_as_numbers(tmp_path):
    rng = np.random.default_rng(0)
    target = rng.choice(np.arange(5, 347, 7), 60).astype(np.float64)  # a price, say
    np.save(tmp_path / "r.npy", np.c_[rng.normal(size=(60, 2)), target])
    d = describe(tmp_path / "r.npy", label_column=-1)
    train, test = (np.asarray(d["splits"][s]["label_counts"]) for s in ("train", "test"))
    assert d["num_classes"] == len(set(target)) < 60 and (train + test).min() > 0  # no empty classes
    text = format_description(d)
    assert (train + test).sum() == 60 and "classes  347" not in text and "numeric target" in text
    (tmp_path / "n.csv").write_text("a,label\n" + "".join(f"{i}.5,{v}\n" for i, v in
                                                          enumerate([5, -1, 1000000, 5, -1, 1000000])))
    data = load_dataset(tmp_path / "n.csv", label_column="label", test_fraction=0.5)
    assert data.class_names == ["-1", "5", "1000000"]
    (tmp_path / "c.csv").write_text("a,label\n" + "".join(f"{i}.5,{i % 3}\n" for i in range(9)))
    classes = load_dataset(tmp_path / "c.csv", label_column="label", test_fraction=0.34)
    assert classes.class_names is None and classes.num_classes == 3  # class numbers 0, 1, 2 stay


def test_hints_name_options_as_the_user_types_them(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError) as e:
        load_dataset(folder)
    assert "--skip-bad" in str(e.value) and "skip_bad" not in str(e.value)
    (tmp_path / "t.csv").write_text("a,kind\n1,x\n2,y\n3,x\n")
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "t.csv")
    assert "--label-column" in str(e.value) and "label_column" not in str(e.value)


def test_pack_refuses_to_create_missing_parent_folders(tmp_path, capsys):
    photos = _photos(tmp_path / "photos", per_class=3)
    assert main(["data", "pack", str(photos), "-o", str(tmp_path / "nope" / "deeper" / "x")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "nope").exists()
