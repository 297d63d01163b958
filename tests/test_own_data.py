"""Your own data: image folders, feature tables, the test split, channels, sizes, scaling, the cache."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from aelab.data import describe, format_description, load_dataset
from aelab.data.folders import decode_all, list_images
from aelab.data.pictures import parse_size
from aelab.data.scaling import Scaler, default_scaling, suggest_loss
from aelab.errors import DataError, OptionError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))


def _save(path, pixels, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def _grey(seed, h=8, w=6):
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _class_folder(root, classes=("cat", "dog"), per_class=10, suffix=".png"):
    for c, name in enumerate(classes):
        for i in range(per_class):
            _save(root / name / f"{i:03d}{suffix}", _grey(c * 100 + i))
    return root


# --- image folders ----------------------------------------------------------------------

def test_class_folders_give_labels_names_and_a_stratified_split(tmp_path):
    d = load_dataset(_class_folder(tmp_path / "pets"), test_fraction=0.2, seed=3)
    assert d.kind == "images" and d.class_names == ["cat", "dog"] and d.num_classes == 2
    assert d.train.images.shape == (16, 8, 6) and d.test.n == 4
    assert d.input_shape == (1, 8, 6) and d.image_shape == (8, 6) and d.input_dim == 48 and d.channels == 1
    assert np.bincount(d.test.labels).tolist() == [2, 2]
    split = d.source["split"]
    assert split["stratified"] and split["seed"] == 3 and split["test_fraction"] == 0.2
    again = load_dataset(tmp_path / "pets", test_fraction=0.2, seed=3)
    assert again.source["split"]["test_indices_sha256"] == split["test_indices_sha256"]
    assert np.array_equal(again.test.images, d.test.images)
    other = load_dataset(tmp_path / "pets", test_fraction=0.2, seed=4)
    assert other.source["split"]["test_indices_sha256"] != split["test_indices_sha256"]


def test_train_and_test_subfolders_and_a_flat_folder(tmp_path):
    _class_folder(tmp_path / "tt" / "train", per_class=3)
    _class_folder(tmp_path / "tt" / "test", per_class=2)
    d = load_dataset(tmp_path / "tt")
    assert d.train.n == 6 and d.test.n == 4 and d.source["split"] == {"method": "given"}
    assert d.class_names == ["cat", "dog"]
    for i in range(10):
        _save(tmp_path / "flat" / "deep" / f"{i}.bmp" if i % 2 else tmp_path / "flat" / f"{i}.png", _grey(i))
    flat = load_dataset(tmp_path / "flat", test_fraction=0.3)
    assert flat.train.labels is None and flat.class_names is None and flat.train.n + flat.test.n == 10


def test_every_pillow_format_is_read(tmp_path):
    for suffix in (".png", ".bmp", ".tif"):
        _save(tmp_path / "f" / f"a{suffix}", _grey(1))
    Image.fromarray(_grey(1)).save(tmp_path / "f" / "a.webp", lossless=True)  # WebP decodes as RGB
    d = load_dataset(tmp_path / "f", test_fraction=0.25, channels="grayscale")
    assert all(np.array_equal(image, _grey(1)) for image in np.concatenate([d.train.images, d.test.images]))
    assert load_dataset(tmp_path / "f", test_fraction=0.25).channels == 3  # grey and colour make colour


def test_colour_rgba_palette_la_and_16_bit_follow_the_rules(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(_dir(tmp_path / "c") / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full((8, 6), 7, np.uint8)])).save(tmp_path / "c" / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "c" / "pal.png")
    Image.fromarray(_grey(2)).convert("LA").save(tmp_path / "c" / "la.png")
    Image.fromarray((_grey(3).astype(np.uint16) * 257)).save(tmp_path / "c" / "wide.png")
    d = load_dataset(tmp_path / "c", test_fraction=0.2)
    assert d.channels == 3 and d.train.images.shape[1:] == (8, 6, 3) and d.input_shape == (3, 8, 6)
    conv = d.source["conversions"]
    assert conv["alpha dropped"] == 2 and conv["palette converted"] == 1
    assert conv["mixed grey and colour: grey repeated to RGB"] == 2 and conv["16-bit scaled to 8 bits"] == 1
    grey = load_dataset(tmp_path / "c", test_fraction=0.2, channels="grayscale")
    assert grey.channels == 1 and grey.train.images.ndim == 3
    files = list_images(tmp_path / "c")
    wide = decode_all([p for p in files if p.name == "wide.png"], None, None, None, False)[0][0]
    assert np.array_equal(wide, _grey(3))


def _dir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_mixed_sizes_are_named_and_resize_or_crop_fix_them(tmp_path):
    for i in range(3):
        _save(tmp_path / "m" / f"a{i}.png", _grey(i, 8, 6))
    _save(tmp_path / "m" / "b.png", _grey(9, 10, 10))
    with pytest.raises(DataError, match=r"8x6 \(3\), 10x10 \(1\).*--resize HxW.*--crop"):
        load_dataset(tmp_path / "m")
    assert load_dataset(tmp_path / "m", resize="4x4", test_fraction=0.25).image_shape == (4, 4)
    cropped = load_dataset(tmp_path / "m", crop=True, test_fraction=0.25)
    assert cropped.image_shape == (8, 6)
    assert load_dataset(tmp_path / "m", crop=True, resize=(5, 5), test_fraction=0.25).image_shape == (5, 5)
    assert parse_size("32x24") == (32, 24)
    with pytest.raises(OptionError, match="not HxW"):
        parse_size("32")


@pytest.mark.parametrize("given", [(32, 24), [32, 24], (np.int64(32), np.int32(24)), np.array([32, 24])])
def test_a_size_given_from_python_may_be_any_two_integers(given):
    """``load_data(path, resize=(h, w))`` with numpy integers (from an array's shape) was refused as not HxW."""
    assert parse_size(given) == (32, 24) and all(type(v) is int for v in parse_size(given))


@pytest.mark.parametrize("given", [(32.0, 24), (True, True), (32, 24, 3), 32, (0, 24)])
def test_a_size_that_is_not_two_positive_integers_is_refused(given):
    with pytest.raises(OptionError, match="not HxW|must be positive"):
        parse_size(given)


def test_a_size_past_the_largest_side_is_refused_before_any_image_is_resized():
    """--resize 100000x100000 had the system kill the process for memory."""
    assert parse_size("4096x4096") == (4096, 4096)
    for given in ("100000x100000", "4097x8", (8, 4097)):
        with pytest.raises(OptionError, match="larger than 4096 pixels a side"):
            parse_size(given)


def test_parallel_reader_matches_a_plain_loop(tmp_path):
    _class_folder(tmp_path / "p", per_class=40)
    paths = list_images(tmp_path / "p")
    serial = decode_all(paths, None, None, None, False, executor="serial")
    for executor in ("thread", "process"):
        pooled = decode_all(paths, None, None, None, False, executor=executor, workers=2)
        assert all(np.array_equal(a[0], b[0]) and a[2] == b[2] for a, b in zip(serial, pooled))
    plain = np.stack([np.asarray(Image.open(p)) for p in paths])
    assert np.array_equal(np.stack([s[0] for s in serial]), plain)


def test_cache_hit_equals_a_fresh_decode_and_damage_is_rebuilt(tmp_path):
    folder = _class_folder(tmp_path / "k")
    first = load_dataset(folder)
    second = load_dataset(folder)
    assert not first.source["cached"] and second.source["cached"]
    assert np.array_equal(first.train.images, second.train.images) and first.sha256 == second.sha256
    for entry in (tmp_path / "cache").glob("*.npy"):
        entry.write_bytes(entry.read_bytes()[:-10])
    third = load_dataset(folder)
    assert not third.source["cached"] and np.array_equal(third.train.images, first.train.images)
    _save(folder / "cat" / "000.png", _grey(999))  # a changed file misses the cache
    fourth = load_dataset(folder)
    assert not fourth.source["cached"] and fourth.sha256 != first.sha256


# --- bad image input ------------------------------------------------------------------------

def test_corrupt_and_truncated_images_are_named_or_skipped(tmp_path):
    folder = _class_folder(tmp_path / "b", per_class=4)
    good = (folder / "cat" / "000.png").read_bytes()
    (folder / "cat" / "bad.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="bad.png.*not a readable image"):
        load_dataset(folder)
    d = load_dataset(folder, skip_bad=True)
    assert d.source["skipped"] == ["cat/bad.png"] and d.source["skipped_count"] == 1
    assert d.train.n + d.test.n == 8


def test_content_that_is_not_its_extension(tmp_path):
    _save(tmp_path / "x" / "a.png", _grey(1))
    _save(tmp_path / "x" / "b.png", _grey(2), fmt="BMP")
    with pytest.raises(DataError, match="b.png: is named .png but holds BMP"):
        load_dataset(tmp_path / "x")


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    _save(tmp_path / "bomb" / "a.png", _grey(1, 40, 40))
    _save(tmp_path / "bomb" / "b.png", _grey(1, 40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DataError, match="a.png.*decompression-bomb limit"):
        load_dataset(tmp_path / "bomb")


def test_empty_folder_and_a_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*the folder holds: nothing"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.md").write_text("hi")
    with pytest.raises(DataError, match="notes.*readme.md"):
        load_dataset(tmp_path / "notes")


# --- tables ----------------------------------------------------------------------------------

def test_npy_of_any_real_dtype_and_a_label_column(tmp_path):
    x = np.random.default_rng(0).normal(5, 3, (50, 4))
    np.save(tmp_path / "t.npy", x.astype(np.float64))
    d = load_dataset(tmp_path / "t.npy")
    assert d.kind == "table" and d.input_shape == (4,) and d.input_dim == 4 and d.channels is None
    assert d.train.images.dtype == np.float32 and d.source["scaler"]["method"] == "standard"
    assert abs(d.train.images.mean()) < 1e-5 and d.source["loss"] == "mse"
    with pytest.raises(DataError, match="not images"):
        d.image_shape
    labelled = np.c_[x[:, :3], np.arange(50) % 2]
    np.save(tmp_path / "l.npy", labelled.astype(np.int32))
    d = load_dataset(tmp_path / "l.npy", label_column=-1)
    assert d.input_dim == 3 and d.num_classes == 2 and d.source["split"]["stratified"]


@pytest.mark.filterwarnings("ignore:.*single sample")  # a few rows a class, on purpose
def test_csv_with_and_without_header_tsv_and_text_labels(tmp_path):
    (tmp_path / "h.csv").write_text("a,b,kind\n0.1,0.2,x\n0.3,0.4,y\n0.5,0.6,x\n0.7,0.8,y\n")
    d = load_dataset(tmp_path / "h.csv", label_column="kind", test_fraction=0.5)
    assert d.class_names == ["x", "y"] and d.input_dim == 2 and d.source["scaler"]["method"] == "none"
    assert d.source["loss"] == "bce" and d.source["columns"] == ["a", "b"]
    (tmp_path / "n.csv").write_text("1;2;3\n4;5;6\n7;8;9\n")
    assert load_dataset(tmp_path / "n.csv", test_fraction=0.34).input_dim == 3
    (tmp_path / "t.tsv").write_text("1\t2\n3\t4\n5\t6\n")
    assert load_dataset(tmp_path / "t.tsv", label_column=0, test_fraction=0.34).input_dim == 1


def test_npz_colour_images_and_float_tables(tmp_path):
    colour = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", x_train=colour[:8], x_test=colour[8:], y_train=np.arange(8) % 2,
             y_test=np.array([0, 1]))
    d = load_dataset(tmp_path / "c.npz")
    assert d.channels == 3 and d.input_shape == (3, 4, 4) and d.num_classes == 2
    np.savez(tmp_path / "one.npz", features=np.random.default_rng(1).random((20, 2, 3)))
    t = load_dataset(tmp_path / "one.npz")
    assert t.kind == "table" and t.input_shape == (6,) and t.test.n == 2


def test_scaler_round_trips_and_the_rules():
    x = np.random.default_rng(0).normal(3, 2, (100, 3)).astype(np.float32)
    for method in ("standard", "minmax", "none"):
        s = Scaler(method).fit(x)
        assert np.allclose(s.inverse_transform(s.transform(x)), x, atol=1e-4)
        back = Scaler.from_dict(s.to_dict())
        assert np.array_equal(back.transform(x), s.transform(x))
    assert default_scaling(x) == "standard" and suggest_loss(x) == "mse"
    unit = np.clip(x / 10, 0, 1)
    assert default_scaling(unit) == "none" and suggest_loss(unit) == "bce"
    with pytest.raises(OptionError):
        Scaler("log")


@pytest.mark.parametrize("name, content, pattern", [
    ("text.csv", "1,2\n3,abc\n", r"line 2, column 2 \('1'\): 'abc' is not a number"),
    ("ragged.csv", "1,2\n3\n", "line 2 has 1 fields, expected 2"),
    ("header.csv", "a,b\n", "only a header"),
    ("nan.csv", "a,b\n1,2\n3,nan\n", r"row 2, column 2 \('b'\).*NaN or infinity"),
    ("inf.csv", "1,inf\n3,4\n", "row 1, column 2.*NaN or infinity"),
])
def test_bad_csv(tmp_path, name, content, pattern):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=pattern):
        load_dataset(tmp_path / name)



def test_the_hint_for_missing_values_fits_every_command(tmp_path, capsys):
    """The same reader serves train, score, encode, evaluate and data: its hint must not speak of training."""
    from helpers import run_cli
    (tmp_path / "nan.csv").write_text("a,b\n1,2\n3,nan\n")
    rc, out, err = run_cli(capsys, "data", "info", tmp_path / "nan.csv")
    assert rc == 2 and "NaN or infinity" in err and "training" not in err and "fill or drop" in err, err

def test_bad_npy(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    np.save(tmp_path / "obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    np.save(tmp_path / "full.npy", np.ones((10, 10)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "full.npy").read_bytes()[:200])
    for name, pattern in (("empty.npy", "is empty"), ("obj.npy", "object dtype"),
                          ("flat.npy", r"shape \(5,\), expected a table"), ("cut.npy", "not a readable .npy")):
        with pytest.raises(DataError, match=f"{name}.*{pattern}"):
            load_dataset(tmp_path / name)


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"aelab\[parquet\]"):
        load_dataset(tmp_path / "t.parquet")


def test_a_parquet_table_reads_as_its_csv_twin_does(tmp_path):
    pa = pytest.importorskip("pyarrow")  # in the test extra: skipped only outside it
    import pyarrow.parquet as pq
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 3)) * [1, 10, 100]
    kinds = np.array(["cat", "dog"])[rng.integers(0, 2, 40)]
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1].astype(np.float32), "c": np.round(x[:, 2]).astype(np.int64),
                             "kind": kinds}), tmp_path / "t.parquet")
    with open(tmp_path / "t.csv", "w") as f:
        f.write("a,b,c,kind\n")
        for row, kind in zip(x, kinds):
            f.write(f"{float(row[0])!r},{float(np.float32(row[1]))!r},{int(np.round(row[2]))},{kind}\n")
    parquet = load_dataset(tmp_path / "t.parquet", label_column="kind", test_fraction=0.25, scale="none")
    csv_twin = load_dataset(tmp_path / "t.csv", label_column="kind", test_fraction=0.25, scale="none")
    assert parquet.input_shape == (3,) and parquet.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(parquet.train.images, csv_twin.train.images)
    np.testing.assert_array_equal(parquet.test.labels, csv_twin.test.labels)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_dataset(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0], "note": ["x", "y"]}), tmp_path / "text.parquet")
    with pytest.raises(DataError, match="column 'note' holds string"):
        load_dataset(tmp_path / "text.parquet")


def test_options_are_checked(tmp_path):
    with pytest.raises(OptionError, match="test_fraction"):
        load_dataset(_class_folder(tmp_path / "o", per_class=2), test_fraction=1.5)
    with pytest.raises(OptionError, match="channels"):
        load_dataset(tmp_path / "o", channels="cmyk")
    with pytest.raises(OptionError, match="--label-column applies to tables"):
        load_dataset(tmp_path / "o", label_column=0)
    with pytest.raises(OptionError, match="--resize, --crop apply to folders of images only"):
        load_dataset(None, resize="8x8", crop=True)
    assert load_dataset(None).source["split"] == {"method": "given"}


def test_describe_reports_the_new_sources(tmp_path):
    d = describe(_class_folder(tmp_path / "pets"))
    assert d["kind"] == "images" and d["classes"] == ["cat", "dog"] and d["split"]["method"] == "fraction"
    text = format_description(d)
    assert "cat" in text and "split" in text
    np.save(tmp_path / "t.npy", np.random.default_rng(0).random((20, 5)))
    t = describe(tmp_path / "t.npy")
    assert t["kind"] == "table" and t["input_shape"] == [5]
    assert "5 columns" in format_description(t)
