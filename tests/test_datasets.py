"""load_dataset / load_images / save_dataset / convert / describe on every supported source."""
from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image
import pytest

from aelab.data import datasets as datasets_module
from aelab.data import (Dataset, Split, convert, describe, format_description, load_dataset,
                        load_images, save_dataset)
from aelab.data.ctf import write_ctf
from aelab.data.idx import write_idx
from aelab.errors import DataError, OptionError, OutputError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset()


@pytest.fixture
def tiny() -> Dataset:
    """8x8 images, 3 classes: nothing may assume 28x28 or 10 classes."""
    rng = np.random.default_rng(1)
    train = Split(rng.integers(0, 256, (12, 8, 8), dtype=np.uint8), np.arange(12) % 3)
    test = Split(rng.integers(0, 256, (6, 8, 8), dtype=np.uint8), np.array([2, 1, 0, 0, 1, 2]))
    return Dataset("tiny", train, test, sha256="", files={}, num_classes=3)


def _same_data(a: Dataset, b: Dataset) -> bool:
    return all(np.array_equal(getattr(a, s).images, getattr(b, s).images)
               and np.array_equal(getattr(a, s).labels, getattr(b, s).labels) for s in ("train", "test"))


def _write_idx_folder(folder, dataset: Dataset, gz: bool = False):
    suffix = ".gz" if gz else ""
    arrays = [dataset.train.images, dataset.train.labels.astype(np.uint8),
              dataset.test.images, dataset.test.labels.astype(np.uint8)]
    for name, array in zip(IDX_NAMES, arrays):
        write_idx(folder / (name + suffix), array)
    return folder


# --- bundled MNIST ------------------------------------------------------------------

def test_bundled_mnist_loads_and_verifies(mnist):
    assert mnist.name == "mnist"
    assert (mnist.train.n, mnist.test.n) == (60000, 10000)
    assert mnist.image_shape == (28, 28) and mnist.input_dim == 784 and mnist.num_classes == 10
    assert mnist.train.images.dtype == np.uint8 and mnist.train.labels.dtype == np.int64
    assert mnist.train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(mnist.train.labels).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.test.labels).tolist() == MNIST_TEST_COUNTS
    # content digests: the README's uncompressed SHA-256 values
    assert mnist.files["train-images-idx3-ubyte.gz"] == \
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    assert mnist.files["t10k-labels-idx1-ubyte.gz"] == \
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
    assert len(mnist.sha256) == 64


def test_tampered_bundled_file_is_detected(tmp_path, monkeypatch):
    copy = tmp_path / "mnist"
    shutil.copytree(datasets_module._bundled_mnist_dir(), copy)
    damaged = copy / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(damaged.read_bytes())
    data[100] ^= 0x01
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(datasets_module, "_bundled_mnist_dir", lambda: copy)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz does not match its checksum") as info:
        load_dataset()
    assert "reinstall" in info.value.hint


def test_missing_bundled_checksums(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets_module, "_bundled_mnist_dir", lambda: tmp_path)
    with pytest.raises(DataError, match="SHA256SUMS") as info:
        load_dataset()
    assert "reinstall" in info.value.hint


# --- the sources load_dataset accepts --------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder(tmp_path, tiny, gz):
    folder = _write_idx_folder(tmp_path / "tiny8", tiny, gz)
    loaded = load_dataset(folder)
    assert loaded.name == "tiny8"
    assert loaded.image_shape == (8, 8) and loaded.input_dim == 64 and loaded.num_classes == 3
    assert _same_data(loaded, tiny)
    assert list(loaded.files) == [n + (".gz" if gz else "") for n in IDX_NAMES]


def test_content_digest_ignores_compression(tmp_path, tiny):
    raw = load_dataset(_write_idx_folder(tmp_path / "raw", tiny))
    packed = load_dataset(_write_idx_folder(tmp_path / "packed", tiny, gz=True))
    assert raw.sha256 == packed.sha256
    assert list(raw.files.values()) == list(packed.files.values())


def test_idx_folder_missing_file(tmp_path, tiny):
    folder = _write_idx_folder(tmp_path / "d", tiny)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing IDX file.*t10k-labels-idx1-ubyte.*found: "
                                        "t10k-images-idx3-ubyte, train-images"):
        load_dataset(folder)


def test_idx_count_mismatch(tmp_path, tiny):
    folder = _write_idx_folder(tmp_path / "d", tiny)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(11, np.uint8))
    with pytest.raises(DataError, match="11 labels for 12 images") as info:
        load_dataset(folder)
    assert info.value.path.endswith("train-labels-idx1-ubyte")


def test_idx_images_of_the_wrong_dtype(tmp_path, tiny):
    folder = _write_idx_folder(tmp_path / "d", tiny)
    write_idx(folder / "t10k-images-idx3-ubyte", tiny.test.images.astype(np.float32))
    with pytest.raises(DataError, match="float32, expected uint8"):
        load_dataset(folder)


def test_train_and_test_sizes_must_match(tmp_path, tiny):
    folder = _write_idx_folder(tmp_path / "d", tiny)
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((6, 8, 7), np.uint8))
    with pytest.raises(DataError, match="train images are 8x8 but test images are 8x7"):
        load_dataset(folder)


def test_ctf_folder(tmp_path, tiny):
    folder = tmp_path / "ctf"
    write_ctf(folder / "Train-8x8_cntk_text.txt", tiny.train.images, tiny.train.labels, 3)
    write_ctf(folder / "Test-8x8_cntk_text.txt", tiny.test.images, tiny.test.labels, 3)
    loaded = load_dataset(folder)
    assert loaded.name == "ctf" and loaded.image_shape == (8, 8) and loaded.num_classes == 3
    assert _same_data(loaded, tiny)


def test_ctf_shape_from_the_file_name_or_a_square(tmp_path):
    images = np.zeros((2, 4, 6), np.uint8)
    labels = np.array([0, 1])
    write_ctf(tmp_path / "Train-4x6_cntk_text.txt", images, labels, 2)
    write_ctf(tmp_path / "Test-4x6_cntk_text.txt", images, labels, 2)
    assert load_dataset(tmp_path).image_shape == (4, 6)
    write_ctf(tmp_path / "a.txt", images, labels, 2)
    write_ctf(tmp_path / "b.txt", images, labels, 2)
    assert load_dataset(f"{tmp_path / 'a.txt'},{tmp_path / 'b.txt'}").image_shape == (1, 24)


def test_ctf_pair(tmp_path, tiny):
    write_ctf(tmp_path / "train.txt", tiny.train.images, tiny.train.labels, 3)
    write_ctf(tmp_path / "test.txt.gz", tiny.test.images, tiny.test.labels, 3)
    loaded = load_dataset(f"{tmp_path / 'train.txt'},{tmp_path / 'test.txt.gz'}")
    assert loaded.name == "train" and _same_data(loaded, tiny) and loaded.num_classes == 3


def test_ctf_pair_with_a_missing_file(tmp_path, tiny):
    write_ctf(tmp_path / "train.txt", tiny.train.images, tiny.train.labels, 3)
    with pytest.raises(DataError, match="CTF file not found") as info:
        load_dataset(f"{tmp_path / 'train.txt'},{tmp_path / 'nope.txt'}")
    assert info.value.path.endswith("nope.txt")


def test_ctf_splits_with_different_classes(tmp_path, tiny):
    write_ctf(tmp_path / "train.txt", tiny.train.images, tiny.train.labels, 3)
    write_ctf(tmp_path / "test.txt", tiny.test.images, tiny.test.labels, 4)
    with pytest.raises(DataError, match="3 classes, test labels over 4"):
        load_dataset(f"{tmp_path / 'train.txt'},{tmp_path / 'test.txt'}")


def test_npz(tmp_path, tiny):
    np.savez(tmp_path / "tiny.npz", x_train=tiny.train.images, y_train=tiny.train.labels.astype(np.uint8),
             x_test=tiny.test.images, y_test=tiny.test.labels.astype(np.uint8))
    loaded = load_dataset(tmp_path / "tiny.npz")
    assert loaded.name == "tiny" and _same_data(loaded, tiny) and loaded.num_classes == 3
    assert list(loaded.files) == ["tiny.npz"]


def test_npz_without_labels(tmp_path, tiny):
    np.savez(tmp_path / "u.npz", x_train=tiny.train.images, x_test=tiny.test.images)
    loaded = load_dataset(tmp_path / "u.npz")
    assert loaded.train.labels is None and loaded.num_classes == 0


def test_npz_problems(tmp_path, tiny):
    np.savez(tmp_path / "a.npz", x_train=tiny.train.images)
    with pytest.raises(DataError, match="missing array.*x_test"):
        load_dataset(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x_train=tiny.train.images, x_test=tiny.test.images,
             y_train=np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="y_train has 5 labels for 12 images"):
        load_dataset(tmp_path / "b.npz")
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(tmp_path / "c.npz")
    for content in (b"not a zip", b""):  # numpy's own message spoke of pickled data
        (tmp_path / "d.npz").write_bytes(content)
        with pytest.raises(DataError, match="not a .npz file: it is not a zip archive"):
            load_dataset(tmp_path / "d.npz")
    with pytest.raises(DataError, match="got 1 file name"):
        load_dataset(f"{tmp_path / 'a.npz'},")


def test_unusable_paths(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no dataset files found; the folder holds: nothing"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "single.idx").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")  # a labels file, no images
    with pytest.raises(DataError, match=r"images have shape \(0,\), expected 3 dimensions"):
        load_dataset(tmp_path / "single.idx")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "one.png")
    with pytest.raises(DataError, match="a single picture is not a train/test dataset"):
        load_dataset(tmp_path / "one.png")


def _one_set_files(folder, images, labels):
    """The same images and labels as one IDX file (with its labels beside it), one CTF file and one .npz."""
    from aelab.data import Dataset, Split, save_dataset
    set_of = Dataset(name="set", train=Split(images, labels), test=Split(images[:1], labels[:1]), sha256="0" * 64,
                     num_classes=int(labels.max()) + 1)
    save_dataset(set_of, folder / "idx", "idx")
    save_dataset(set_of, folder / "ctf", "ctf")
    np.savez(folder / "set.npz", images=images, labels=labels)
    return {"idx": folder / "idx" / "train-images-idx3-ubyte", "ctf": next((folder / "ctf").glob("Train-*")),
            "npz": folder / "set.npz"}


@pytest.mark.parametrize("kind", ["idx", "ctf", "npz"])
def test_one_set_of_images_in_one_file_is_split_as_a_folder_is(tmp_path, mnist, kind):
    """An IDX images file (labels from its sibling), a CTF file or a .npz of images and labels given as --data:
    refused before ("a single file is not a train/test dataset", "missing x_train"); now split with the
    test fraction and seed, stratified, as a folder of images is."""
    images, labels = mnist.test.images[:200], mnist.test.labels[:200]
    path = _one_set_files(tmp_path, images, labels)[kind]
    data = load_dataset(path, test_fraction=0.25, seed=3)
    assert (data.train.n, data.test.n) == (150, 50) and data.num_classes == 10
    assert data.source["split"]["method"] == "fraction" and data.source["split"]["test_fraction"] == 0.25
    # every sample once, with its own label
    rebuilt = np.concatenate([data.train.images, data.test.images]).reshape(200, -1)
    order = np.lexsort(rebuilt.T[::-1])
    original = images.reshape(200, -1)
    np.testing.assert_array_equal(rebuilt[order], original[np.lexsort(original.T[::-1])])
    assert np.bincount(np.concatenate([data.train.labels, data.test.labels])).tolist() == \
        np.bincount(labels).tolist()
    again = load_dataset(path, test_fraction=0.25, seed=3)
    np.testing.assert_array_equal(again.test.images, data.test.images)


# --- saving and converting ----------------------------------------------------------

@pytest.mark.parametrize("fmt", ["idx", "idx.gz", "ctf", "npz"])
def test_save_and_load_back(tmp_path, tiny, fmt):
    dest = tmp_path / ("out.npz" if fmt == "npz" else "out")
    assert save_dataset(tiny, dest, fmt) == dest
    loaded = load_dataset(dest)
    assert _same_data(loaded, tiny) and loaded.num_classes == 3 and loaded.image_shape == (8, 8)
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_save_ctf_uses_the_tutorials_names(tmp_path, tiny):
    save_dataset(tiny, tmp_path / "c", "ctf")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == \
        ["Test-8x8_cntk_text.txt", "Train-8x8_cntk_text.txt"]


def test_convert_round_trips_between_all_formats(tmp_path, tiny):
    source = save_dataset(tiny, tmp_path / "start", "idx")
    chain = [("idx.gz", "a"), ("ctf", "b"), ("npz", "c.npz"), ("idx", "d"), ("ctf", "e"), ("npz", "f.npz")]
    for fmt, name in chain:
        source = convert(source, tmp_path / name, fmt)
        assert _same_data(load_dataset(source), tiny), fmt
    assert convert(tmp_path / "e", tmp_path / "g.npz") == tmp_path / "g.npz"  # fmt inferred
    assert load_dataset(tmp_path / "d").sha256 == load_dataset(tmp_path / "start").sha256


def test_convert_and_save_validate_the_format(tmp_path, tiny):
    with pytest.raises(OptionError, match="cannot tell the output format"):
        convert(tmp_path, tmp_path / "out")
    with pytest.raises(OptionError, match="'png' is not supported"):
        save_dataset(tiny, tmp_path / "out", "png")


def test_idx_needs_labels(tmp_path, tiny):
    unlabeled = Dataset("u", Split(tiny.train.images), Split(tiny.test.images), "", {}, 0)
    with pytest.raises(OptionError, match="no labels"):
        save_dataset(unlabeled, tmp_path / "u", "idx")
    save_dataset(unlabeled, tmp_path / "u.npz", "npz")
    assert load_dataset(tmp_path / "u.npz").test.labels is None


def test_save_idx_refuses_a_folder_with_the_other_variant(tmp_path, tiny):
    save_dataset(tiny, tmp_path / "d", "idx")
    with pytest.raises(OutputError, match="already holds"):
        save_dataset(tiny, tmp_path / "d", "idx.gz")


# --- describe ---------------------------------------------------------------------

def test_describe_a_folder(tmp_path, tiny):
    folder = _write_idx_folder(tmp_path / "tiny", tiny, gz=True)
    d = describe(str(folder))
    assert d["name"] == "tiny" and d["format"] == "idx.gz"
    assert d["splits"]["train"]["count"] == 12 and d["splits"]["test"]["count"] == 6
    assert d["splits"]["train"]["label_counts"] == [4, 4, 4]
    assert d["splits"]["test"]["label_counts"] == [2, 2, 2]
    assert d["image_shape"] == [8, 8] and d["dtype"] == "uint8" and d["num_classes"] == 3
    pixels = tiny.train.images / 255.0
    assert d["pixel_mean"] == pytest.approx(pixels.mean()) and d["pixel_std"] == pytest.approx(pixels.std())
    assert d["sha256"] == load_dataset(folder).sha256 and len(d["files"]) == 4
    text = format_description(d)
    assert "8 x 8 uint8 (64 inputs)" in text and "4 4 4" in text and d["sha256"] in text
    assert len(text.splitlines()) < 20


def test_describe_bundled_matches_the_readme():
    d = describe(None)
    assert d["splits"]["train"]["label_counts"] == MNIST_TRAIN_COUNTS
    assert round(d["pixel_mean"], 4) == 0.1307 and round(d["pixel_std"], 4) == 0.3081


def test_describe_single_files(tmp_path, tiny):
    folder = _write_idx_folder(tmp_path / "d", tiny)
    images = describe(str(folder / "t10k-images-idx3-ubyte"))
    assert images["splits"]["all"]["count"] == 6
    assert images["splits"]["all"]["label_counts"] == [2, 2, 2]  # from the sibling labels file
    assert len(images["files"]) == 2
    labels = describe(str(folder / "train-labels-idx1-ubyte"))
    assert labels["splits"]["all"]["label_counts"] == [4, 4, 4] and labels["image_shape"] is None
    write_ctf(tmp_path / "one.txt", tiny.test.images, None)
    ctf = describe(str(tmp_path / "one.txt"))
    assert ctf["format"] == "ctf" and ctf["image_shape"] == [8, 8] and ctf["num_classes"] == 0
    np.savez(tmp_path / "imgs.npz", images=tiny.test.images)
    assert describe(str(tmp_path / "imgs.npz"))["splits"]["all"]["count"] == 6
    save_dataset(tiny, tmp_path / "full.npz", "npz")
    assert set(describe(str(tmp_path / "full.npz"))["splits"]) == {"train", "test"}
    for d in (images, labels, ctf):
        assert format_description(d)


# --- load_images ---------------------------------------------------------------------

def test_load_images_from_idx_with_sibling_labels(tmp_path, tiny):
    folder = _write_idx_folder(tmp_path / "d", tiny, gz=True)
    images, labels = load_images(folder / "t10k-images-idx3-ubyte.gz")
    assert np.array_equal(images, tiny.test.images) and np.array_equal(labels, tiny.test.labels)
    write_idx(tmp_path / "other.idx", tiny.test.images)
    images, labels = load_images(tmp_path / "other.idx")
    assert labels is None and images.shape == (6, 8, 8)


def test_load_images_from_ctf_and_npz(tmp_path, tiny):
    write_ctf(tmp_path / "x.txt", tiny.test.images, tiny.test.labels, 3)
    images, labels = load_images(tmp_path / "x.txt")
    assert np.array_equal(images, tiny.test.images) and np.array_equal(labels, tiny.test.labels)
    np.savez(tmp_path / "a.npz", images=tiny.test.images, labels=tiny.test.labels)
    images, labels = load_images(tmp_path / "a.npz")
    assert np.array_equal(images, tiny.test.images) and np.array_equal(labels, tiny.test.labels)
    save_dataset(tiny, tmp_path / "b.npz", "npz")
    images, labels = load_images(tmp_path / "b.npz")  # x_test / y_test
    assert np.array_equal(images, tiny.test.images) and np.array_equal(labels, tiny.test.labels)
    np.savez(tmp_path / "c.npz", pixels=tiny.test.images)
    with pytest.raises(DataError, match="no 'images' or 'x_test'"):
        load_images(tmp_path / "c.npz")


def test_load_images_from_png_folder_and_single_png(tmp_path, tiny):
    from PIL import Image
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(tiny.test.images):
        Image.fromarray(image).save(folder / f"img{i:02d}.png")
    Image.fromarray(np.stack([tiny.train.images[0]] * 3, axis=-1)).save(folder / "z-rgb.png")
    (folder / "notes.txt").write_text("ignored")
    images, labels = load_images(folder)  # grey and colour mixed: colour, grey repeated to RGB
    assert labels is None and images.shape == (7, 8, 8, 3) and images.dtype == np.uint8
    assert np.array_equal(images[:6, ..., 1], tiny.test.images)
    assert np.array_equal(images[6, ..., 0], tiny.train.images[0])
    grey, _ = load_images(folder, channels="grayscale")
    assert grey.shape == (7, 8, 8) and np.array_equal(grey[:6], tiny.test.images)
    single, _ = load_images(folder / "img03.png")
    assert single.shape == (1, 8, 8) and np.array_equal(single[0], tiny.test.images[3])


def test_load_images_folder_problems(tmp_path):
    from PIL import Image
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match="differ in size: 8x8 \\(1\\), 8x9 \\(1\\).*b.png"):
        load_images(tmp_path)
    (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="not a readable image"):
        load_images(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_images(tmp_path / "empty")


def test_a_model_trained_on_one_file_is_evaluated_on_its_own_test_split(tmp_path, mnist, capsys):
    from aelab.cli import main
    path = _one_set_files(tmp_path, mnist.test.images[:200], mnist.test.labels[:200])["npz"]
    out = tmp_path / "m"
    assert main(["train", "--data", str(path), "--model", "simple", "--code-size", "4", "--sweeps", "1",
                 "--minibatch-size", "16", "--test-fraction", "0.3", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 60  # the 30% it was not trained on
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(path), "--test-fraction", "0.1"]) == 2
    assert "would put samples the model was trained on into the test split" in capsys.readouterr().err


def test_a_table_is_converted_in_its_own_units_with_its_label_column(tmp_path, capsys):
    """`aelab data convert t.csv t.npz` wrote z-scores fitted on a training split, with the label column as a
    seventh scaled feature, and refused --label-column, which its own error told the user to pass."""
    from aelab.cli import main
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)) * [1, 10, 100]
    y = (x[:, 0] > 0).astype(int)
    np.savetxt(tmp_path / "t.csv", np.c_[x, y], delimiter=",", header="a,b,c,y", comments="", fmt="%.6g")
    assert main(["data", "convert", str(tmp_path / "t.csv"), str(tmp_path / "t.npz"), "--label-column", "y"]) == 0
    saved = np.load(tmp_path / "t.npz")
    rows = np.concatenate([saved["x_train"], saved["x_test"]])
    labels = np.concatenate([saved["y_train"], saved["y_test"]])
    assert rows.shape == (40, 3)
    order, original = np.argsort(rows[:, 0]), np.argsort(x[:, 0])
    np.testing.assert_allclose(rows[order], x[original], rtol=1e-5)  # the table's own values, every row once
    np.testing.assert_array_equal(labels[order], y[original])


@pytest.mark.parametrize("fmt", ["ctf", "idx"])
def test_converting_into_a_folder_that_holds_data_is_refused(tmp_path, tiny, fmt):
    """A second CTF conversion of other-sized images into the same folder left two Train files that no reader
    takes; one of the same names replaced the user's own files."""
    save_dataset(tiny, tmp_path / "conv", fmt)
    before = {p.name: p.read_bytes() for p in (tmp_path / "conv").iterdir()}
    with pytest.raises(OutputError, match="already holds data files"):
        save_dataset(tiny, tmp_path / "conv", fmt)
    assert {p.name: p.read_bytes() for p in (tmp_path / "conv").iterdir()} == before


def test_a_conversion_stopped_between_its_files_leaves_none_of_them(tmp_path, tiny, monkeypatch):
    """Ctrl-C after the Train CTF file left a folder that no reader takes (Train without Test)."""
    from aelab.data import saving
    written = []
    real = saving.write_ctf

    def stopped_after_one(path, *args, **kwargs):
        if written:
            raise KeyboardInterrupt
        written.append(path)
        return real(path, *args, **kwargs)
    monkeypatch.setattr(saving, "write_ctf", stopped_after_one)
    with pytest.raises(KeyboardInterrupt):
        save_dataset(tiny, tmp_path / "conv", "ctf")
    assert written and not (tmp_path / "conv").exists()


def test_a_test_fraction_for_data_with_its_own_split_is_refused(tmp_path, tiny, capsys):
    """`--test-fraction 0.5` on a file with x_train and x_test did nothing (and was saved in run.toml); a model
    trained on data it split still reads such data with the data's own split."""
    from aelab.cli import main
    save_dataset(tiny, tmp_path / "own.npz", "npz")
    with pytest.raises(OptionError, match="'own' has one"):
        load_dataset(tmp_path / "own.npz", test_fraction=0.5)
    images = np.random.default_rng(2).integers(0, 256, (100, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "one.npz", images=images, labels=np.arange(100) % 3)
    assert main(["train", "--data", str(tmp_path / "one.npz"), "--model", "simple", "--code-size", "4", "--sweeps",
                 "1", "--minibatch-size", "16", "--test-fraction", "0.2", "--out", str(tmp_path / "m"), "--quiet"]) == 0, \
        capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "m"), "--data", str(tmp_path / "own.npz")]) == 0
    assert f"{tiny.test.n} images" in capsys.readouterr().out
