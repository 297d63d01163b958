"""Reader faults found by probing: 32-bit integer images, EXIF orientation, Parquet's threads at exit,
1x1 images, float16 tables and True/False cells."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from aelab.cli import main
from aelab.data import ReadOptions, folder_cache, load_dataset, pictures
from aelab.data.folders import read_image_folder
from aelab.data.tables import read_table
from aelab.errors import DataError, OptionError
from aelab.models.networks import check_code_reduces



def test_gif_and_netpbm_pictures_are_read_and_grey_palettes_stay_grey(tmp_path):
    """GIFs in a folder were left out without a word; a palette of greys (every GIF, some PNGs) is grey."""
    rng = np.random.default_rng(0)
    grey = [rng.integers(0, 256, (6, 5), dtype=np.uint8) for _ in range(8)]
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, pixels in enumerate(grey):
        picture = Image.fromarray(pixels)
        [lambda p: picture.save(p.with_suffix(".gif")), lambda p: picture.save(p.with_suffix(".pgm")),
         lambda p: picture.convert("P").save(p.with_suffix(".png")),
         lambda p: picture.save(p.with_suffix(".bmp"))][i % 4](folder / f"{i}")
    found = read_image_folder(folder)
    assert np.asarray(found.images).shape == (8, 6, 5)  # all eight, grey
    by_name = dict(zip(sorted(p.name for p in folder.iterdir()), np.asarray(found.images)))
    for i, pixels in enumerate(grey):
        name = next(n for n in by_name if n.startswith(f"{i}."))
        if not name.endswith(".gif"):  # a GIF's palette holds at most 256 greys: these are exact too
            np.testing.assert_array_equal(by_name[name], pixels)
    colour = tmp_path / "colour"
    colour.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).convert("P").save(colour / f"{i}.gif")
    assert np.asarray(read_image_folder(colour).images).shape == (4, 6, 5, 3)


def test_pictures_of_formats_aelab_does_not_read_are_named_not_dropped_silently(tmp_path, capsys):
    folder = _grey_classes(tmp_path / "photos")
    (folder / "a" / "IMG_0001.HEIC").write_bytes(b"ftypheic")
    (folder / "b" / "logo.svg").write_text("<svg/>")
    with pytest.warns(UserWarning, match=r"2 picture\(s\) of formats aelab does not read \(a/IMG_0001.HEIC, "
                                         r"b/logo.svg\) are left out \(convert them to PNG"):
        data = load_dataset(folder)
    assert data.train.n + data.test.n == 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["data", "info", str(folder), "--json"]) == 0
    import json
    assert json.loads(capsys.readouterr().out)["not_read"] == ["a/IMG_0001.HEIC", "b/logo.svg"]
    # read as a model's input (a positional folder), the same warning
    from aelab.data.recorded import inputs_as_recorded
    with pytest.warns(UserWarning, match="formats aelab does not read"):
        inputs_as_recorded(folder, {}, (6, 5))
    only = tmp_path / "phone"
    only.mkdir()
    (only / "IMG_0002.HEIC").write_bytes(b"ftypheic")
    line = _one_line_error(capsys, ["data", "info", str(only)])
    assert "holds no images aelab reads, only 1 picture(s) of formats aelab does not read (IMG_0002.HEIC)" in line
    assert "convert them to PNG" in line


def test_a_class_folder_linked_in_from_elsewhere_is_read_and_a_link_back_up_ends_the_walk(tmp_path):
    """A linked class folder was skipped without a word, while linked files were read."""
    source = _grey_classes(tmp_path / "elsewhere")
    folder = tmp_path / "photos"
    (folder / "a").mkdir(parents=True)
    for name in ("0.png", "1.png", "2.png", "3.png"):
        (folder / "a" / name).write_bytes((source / "a" / name).read_bytes())
    (folder / "b").symlink_to(source / "b", target_is_directory=True)
    (folder / "a" / "loop").symlink_to(folder, target_is_directory=True)  # back up the tree
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x.png").write_bytes((source / "a" / "0.png").read_bytes())
    found = read_image_folder(folder)
    assert found.class_names == ["a", "b"] and len(found.images) == 8


def test_an_inputs_files_skipped_as_unreadable_are_named(tmp_path):
    """`aelab encode DIR --skip-bad` dropped broken.png without a word (a data set's count is in data info)."""
    folder = _grey_classes(tmp_path / "photos")
    (folder / "a" / "broken.png").write_bytes(b"not a picture")
    from aelab.data.recorded import inputs_as_recorded
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable file\(s\) \(--skip-bad\): a/broken.png"):
        samples = inputs_as_recorded(folder, {}, (6, 5), ReadOptions(skip_bad=True))
    assert len(samples.images) == 8


UPRIGHT = "turned upright by its EXIF orientation"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))


def _one_line_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _grey_classes(root, size=(6, 5), per_class=4):
    for c, name in enumerate("ab"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.random.default_rng(10 * c + i).integers(0, 256, size, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


# --- 32-bit integer pixels -----------------------------------------------------------------------

def test_an_int32_tiff_is_refused_rather_than_squashed_as_if_16_bit(tmp_path, capsys):
    folder = _grey_classes(tmp_path / "f")
    ramp = np.tile(np.arange(0, 256, 16, dtype=np.int32), (6, 1))[:, :5]  # an ordinary 0..240 ramp, as int32
    Image.fromarray(ramp).save(folder / "a" / "ramp.tif")
    line = _one_line_error(capsys, ["data", "info", str(folder)])
    assert "ramp.tif: has 32-bit integer pixels" in line and "convert it to 8- or 16-bit" in line
    assert load_dataset(folder, skip_bad=True).source["skipped"] == ["a/ramp.tif"]


def test_a_wide_int32_tiff_is_refused_not_clipped(tmp_path, capsys):
    wide = (np.random.default_rng(0).random((16, 16)) * 1e6).astype(np.int32)
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    assert "32-bit integer pixels" in _one_line_error(capsys, ["data", "info", str(tmp_path / "wide.tif")])


@pytest.mark.parametrize("low, high", [(-1, 100), (0, 65536)])
def test_mode_i_pixels_beyond_16_bits_are_refused_where_the_file_gives_no_depth(low, high):
    picture = Image.fromarray(np.array([[low, high]], dtype=np.int32))  # mode I, as from a PGM: no TIFF tags
    assert picture.mode == "I"
    with pytest.raises(DataError, match=rf"x.pgm: has integer pixels from {low} to {high}, beyond 16 bits"):
        pictures._refuse_32_bit_integers(picture, "x.pgm")


@pytest.mark.parametrize("name", ["g.png", "g.tif", "g.pgm", "big-endian.tif"])
def test_16_bit_files_read_as_before_whichever_mode_pillow_opens_them_in(tmp_path, name):
    levels = np.random.default_rng(0).integers(0, 65536, (9, 7)).astype(np.uint16)
    stored = levels.astype(">u2") if name.startswith("big") else levels
    Image.fromarray(stored).save(tmp_path / name)  # a 16-bit PGM opens as mode I
    pixels, rule, _ = pictures.decode(tmp_path / name, None, None, None, None)
    expected = ((levels.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
    np.testing.assert_array_equal(pixels, expected)
    assert rule == "16-bit scaled to 8 bits"


# --- EXIF orientation ----------------------------------------------------------------------------

def _striped(height=16, width=24) -> np.ndarray:
    """Colour pixels with a red band along the top: turned upright for display (orientation 6, 'rotate 90
    clockwise'), the band is on the right."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:4, :, 0] = 255
    return pixels


def _save_rotated(path, pixels: np.ndarray, orientation: int = 6) -> None:
    picture = Image.fromarray(pixels)
    exif = picture.getexif()
    exif[0x0112] = orientation
    picture.save(path, exif=exif)


def _rotated_folder(root, suffix=".jpg", per_class=5):
    for name in "ab":
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _save_rotated(root / name / f"{i}{suffix}", _striped())
    return root


def test_phone_photos_with_an_exif_orientation_are_read_upright_and_the_turn_is_counted(tmp_path):
    read = read_image_folder(_rotated_folder(tmp_path / "photos"), executor="serial")
    assert read.images.shape == (10, 24, 16, 3)
    red = read.images[..., 0].astype(float)
    assert red[:, :, -4:].mean() > 200 and red[:, :, :-4].mean() < 50  # the top band, now on the right
    assert read.conversions == {UPRIGHT: 10}


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_an_exif_orientation_is_applied_once_in_lossless_formats(tmp_path, suffix):
    pixels = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    _save_rotated(tmp_path / f"x{suffix}", pixels)  # Pillow turns a TIFF upright itself, on loading
    read, rule, _ = pictures.decode(tmp_path / f"x{suffix}", None, None, None, None)
    np.testing.assert_array_equal(read, np.rot90(pixels, -1))
    assert rule == UPRIGHT


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_crop_measures_turned_photos_as_they_are_read(tmp_path, suffix):
    """--crop without --resize cuts to the smallest size found, measured before decoding: as stored, a
    turned photo measured 16x24 while it decodes to 24x16, and the crop then refused it as too small."""
    folder = _rotated_folder(tmp_path / "photos", suffix=suffix)
    _save_rotated(folder / "a" / f"smaller{suffix}", _striped(14, 22))  # displayed 22x14
    read = read_image_folder(folder, crop=True, executor="serial")
    assert read.images.shape == (11, 22, 14, 3)


def test_a_folder_cached_before_orientations_were_applied_is_decoded_again(tmp_path, monkeypatch):
    folder = _rotated_folder(tmp_path / "photos")
    with monkeypatch.context() as earlier:  # how the previous version decoded and cached the folder
        earlier.setattr(folder_cache, "VERSION", 1)
        earlier.setattr(pictures, "_upright", lambda picture, orientation: (picture, ""))
        assert read_image_folder(folder, executor="serial").images.shape[1:3] == (16, 24)
    read = read_image_folder(folder, executor="serial")
    assert not read.cached and read.images.shape[1:3] == (24, 16)
    assert read_image_folder(folder, executor="serial").cached


# --- Parquet files and pyarrow's threads -----------------------------------------------------------

_COUNT_THREADS = """
import os, sys
from pathlib import Path
import pyarrow.parquet
from aelab.data.tables import read_table
from aelab.errors import DataError

def threads():
    return len(os.listdir("/proc/self/task"))

before = threads()
for name in sys.argv[1:]:
    try:
        read_table(Path(name))
    except DataError:
        pass
print(before, threads())
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_reading_parquet_starts_no_pyarrow_threads_that_could_abort_the_exit(tmp_path):
    """pyarrow's thread pools, once started, made about one run in three end with 'terminate called without
    an active exception' (exit status 134) where torch was loaded too; a read now starts none."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"a": rng.normal(size=100), "e": pa.array([[1.0, 2.0]] * 100)}), tmp_path / "list.parquet")
    pq.write_table(pa.table({"a": rng.normal(size=100), "b": rng.normal(size=100)}), tmp_path / "ok.parquet")
    result = subprocess.run([sys.executable, "-c", _COUNT_THREADS, "list.parquet", "ok.parquet"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.split()
    assert after == before


def test_a_parquet_data_error_is_still_one_line(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, 2.0], "e": pa.array([[1.0], [2.0]])}), tmp_path / "list.parquet")
    line = _one_line_error(capsys, ["data", "info", str(tmp_path / "list.parquet")])
    assert "column 'e' holds list<element: double>, not numbers" in line
    pq.write_table(pa.table({"a": pa.array([], pa.float64())}), tmp_path / "empty.parquet")
    line = _one_line_error(capsys, ["data", "info", str(tmp_path / "empty.parquet")])
    assert "has no rows" in line and "a table needs at least one row of numbers" in line


# --- 1x1 images ------------------------------------------------------------------------------------

def test_a_folder_of_1x1_images_is_refused_speaking_of_images(tmp_path, capsys):
    folder = _grey_classes(tmp_path / "one", size=(1, 1), per_class=10)
    line = _one_line_error(capsys, ["train", "--data", str(folder), "--budget", "5s", "--out", str(tmp_path / "o")])
    assert "1x1 grey images" in line and "nothing to reduce" in line and "--resize" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("images, said, hint", [(True, "1x1 grey images hold one value each", "use larger images"),
                                                (False, "a table of one column", "two columns or more")])
def test_one_value_per_sample_is_named_as_images_or_a_table(images, said, hint):
    with pytest.raises(OptionError, match=said) as refused:
        check_code_reduces("residual", 1, 1, images=images)
    assert hint in refused.value.hint
    check_code_reduces("deep", 1, 1, images=images)  # only the residual model copies its inputs


# --- float16 tables ------------------------------------------------------------------------------

def test_a_float16_table_reads_without_an_overflow_warning(tmp_path, capsys):
    values = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float16)
    np.save(tmp_path / "f16.npy", values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = read_table(tmp_path / "f16.npy").rows
    np.testing.assert_array_equal(rows, values.astype(np.float32))
    capsys.readouterr()
    assert main(["data", "info", str(tmp_path / "f16.npy")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_float64_beyond_float32_is_still_refused(tmp_path):
    np.save(tmp_path / "big.npy", np.array([[1e39, 1.0], [0.0, 2.0]]))
    with pytest.raises(DataError, match="beyond float32's range"):
        read_table(tmp_path / "big.npy")


# --- True/False cells ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, text", [
    ("bool.csv", "a,b,c\nTrue,1.5,2\nFalse,0.5,3\nTrue,2.5,1\n"),
    ("bool.tsv", "a\tb\tc\ntrue\t1.5\t2\nFALSE\t0.5\t3\nTRUE\t2.5\t1\n"),
])
def test_true_false_cells_read_as_1_and_0_as_bool_npy_columns_do(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    table = read_table(tmp_path / name)
    assert table.columns == ["a", "b", "c"]
    np.testing.assert_array_equal(table.rows, [[1, 1.5, 2], [0, 0.5, 3], [1, 2.5, 1]])
    np.save(tmp_path / "flags.npy", np.array([[True], [False], [True]]))
    np.testing.assert_array_equal(read_table(tmp_path / "flags.npy").rows[:, 0], table.rows[:, 0])


def test_a_table_of_only_true_false_cells_keeps_its_header(tmp_path):
    (tmp_path / "flags.csv").write_text("x,y\nTrue,false\nFALSE,true\n")
    table = read_table(tmp_path / "flags.csv")
    assert table.columns == ["x", "y"]
    np.testing.assert_array_equal(table.rows, [[1, 0], [0, 1]])


def test_true_false_in_parquet_and_csv_read_alike(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [True, False, True], "b": [1.5, 0.5, 2.5]}), tmp_path / "t.parquet")
    (tmp_path / "t.csv").write_text("a,b\nTrue,1.5\nFalse,0.5\nTrue,2.5\n")
    np.testing.assert_array_equal(read_table(tmp_path / "t.parquet").rows, read_table(tmp_path / "t.csv").rows)


@pytest.mark.parametrize("cell", ["yes", "T", "Truth", "cat"])
def test_other_words_in_a_number_column_are_still_refused(tmp_path, capsys, cell):
    (tmp_path / "t.csv").write_text(f"a,b\n{cell},1.5\nTrue,0.5\n")
    line = _one_line_error(capsys, ["data", "info", str(tmp_path / "t.csv")])
    assert f"line 2, column 1 ('a'): {cell!r} is not a number" in line


def test_images_saved_as_npy_are_pointed_to_the_npz_that_reads_them_as_images(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((10, 6, 6, 3), np.uint8))
    line = _one_line_error(capsys, ["data", "info", str(tmp_path / "x.npy")])
    assert "numpy.savez('images.npz', images=x)" in line
    np.savez(tmp_path / "images.npz", images=np.zeros((10, 6, 6, 3), np.uint8))
    assert main(["data", "info", str(tmp_path / "images.npz")]) == 0  # ... which does read them as images
    assert "6 x 6 uint8, 3 channels (RGB)" in capsys.readouterr().out


def test_a_multi_page_tiff_says_only_its_first_page_is_read(tmp_path, capsys):
    """Microscope and scanner stacks lost every page but the first without a word."""
    from PIL import Image
    (tmp_path / "stack").mkdir()
    for k in range(4):
        pages = [Image.fromarray(np.full((6, 6), 40 * j, np.uint8)) for j in range(5)]
        pages[0].save(tmp_path / "stack" / f"s{k}.tif", save_all=True, append_images=pages[1:])
    assert main(["data", "info", str(tmp_path / "stack")]) == 0
    assert "4 image(s): only the first of its pages or frames read" in capsys.readouterr().out
