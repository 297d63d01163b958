"""Image folders at their edges: loose files beside class folders, empty and float images, a class of one."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from aelab.cli import main
from aelab.data import load_dataset
from aelab.data.folders import read_image_folder
from aelab.errors import DataError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))


def _png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (6, 5), dtype=np.uint8)).save(path)


def _classes(root, per_class=(4, 4), names=("a", "b")):
    for c, (name, count) in enumerate(zip(names, per_class)):
        for i in range(count):
            _png(root / name / f"{i}.png", 10 * c + i)
    return root


def _loose(root, count=3):
    for i in range(count):
        _png(root / f"loose{i}.png", 100 + i)
    return root


def _no_warnings(call):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call()


# --- class folders with loose files beside them ---------------------------------------------

def test_only_loose_files_beside_class_folders_warn_once_naming_them(tmp_path):
    folder = _loose(_classes(tmp_path / "mixed"))
    with pytest.warns(UserWarning) as caught:
        found = read_image_folder(folder)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "3 image files (e.g. loose0.png)" in message and "class folders a, b" in message
    assert "without labels" in message and "move the loose files into a class folder" in message
    assert found.labels is None
    # pure class folders, a pure flat folder, train/ and test/ of class folders, and one subfolder beside loose files
    assert _no_warnings(lambda: load_dataset(_classes(tmp_path / "silent" / "pure"))).class_names == ["a", "b"]
    assert _no_warnings(lambda: load_dataset(_loose(tmp_path / "silent" / "flat", count=6))).class_names is None
    _classes(tmp_path / "silent" / "tt" / "train")
    _classes(tmp_path / "silent" / "tt" / "test", per_class=(2, 2))
    assert _no_warnings(lambda: load_dataset(tmp_path / "silent" / "tt")).class_names == ["a", "b"]
    _loose(tmp_path / "silent" / "nested", count=4)
    _png(tmp_path / "silent" / "nested" / "more" / "x.png", 7)  # one subfolder beside loose files: nesting, no classes
    assert _no_warnings(lambda: load_dataset(tmp_path / "silent" / "nested")).class_names is None


def test_cli_data_info_and_train_warn_about_loose_files_once(tmp_path, capsys):
    folder = _loose(_classes(tmp_path / "mixed", per_class=(8, 8)), count=1)
    assert main(["data", "info", str(folder)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1
    assert err.startswith("aelab data info: warning: ") and "the image file loose0.png lies" in err
    status = main(["train", "--data", str(folder), "--sweeps", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 0 and err.count("loose0.png") == 1 and "aelab train: warning: " in err


def test_loose_files_in_train_and_test_subfolders_are_named(tmp_path):
    _loose(_classes(tmp_path / "tt" / "train"))
    _classes(tmp_path / "tt" / "test", per_class=(2, 2))
    with pytest.warns(UserWarning, match=r"train: 3 image files .* class folders a, b") as caught:
        d = load_dataset(tmp_path / "tt")
    assert len(caught) == 1 and d.class_names is None


def test_class_folders_in_train_but_not_in_test_warn(tmp_path):
    _classes(tmp_path / "tt" / "train")
    _loose(tmp_path / "tt" / "test")
    with pytest.warns(UserWarning, match=r"train/ holds class folders but test/ does not"):
        assert load_dataset(tmp_path / "tt").class_names is None


# --- files that are not readable 8-bit images ------------------------------------------------

def test_an_empty_image_file_is_named_as_empty_without_a_python_repr(tmp_path, capsys):
    _classes(tmp_path / "f")
    (tmp_path / "f" / "a" / "empty.png").write_bytes(b"")
    assert main(["data", "info", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip()
    assert "empty.png: is empty (0 bytes)" in err and "object at 0x" not in err and "\n" not in err


def test_a_text_file_named_png_gives_no_python_repr(tmp_path):
    _classes(tmp_path / "f")
    (tmp_path / "f" / "a" / "bad.png").write_text("not an image")
    with pytest.raises(DataError, match="bad.png: not a readable image") as e:
        load_dataset(tmp_path / "f")
    assert "object at 0x" not in str(e.value) and "BytesIO" not in str(e.value)


def test_a_float_tiff_is_refused_as_unsupported_not_corrupt(tmp_path, capsys):
    _classes(tmp_path / "f")
    Image.fromarray(np.linspace(0, 1, 30, dtype=np.float32).reshape(6, 5), "F").save(tmp_path / "f" / "a" / "x.tiff")
    assert main(["data", "info", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "x.tiff: has 32-bit float pixels" in err and "convert it to 8-bit (or 16-bit) integer pixels" in err
    assert "corrupt" not in err
    assert load_dataset(tmp_path / "f", skip_bad=True).source["skipped"] == ["a/x.tiff"]


# --- a class with a single sample ------------------------------------------------------------

def test_only_a_class_of_one_sample_warns_that_the_split_is_not_stratified(tmp_path, capsys):
    folder = _classes(tmp_path / "one", per_class=(10, 10, 1), names=("a", "b", "c"))
    with pytest.warns(UserWarning, match=r"class c has a single sample, so the test split is not stratified") as caught:
        d = load_dataset(folder, test_fraction=0.2)
    assert len(caught) == 1 and not d.source["split"]["stratified"]
    assert main(["data", "info", str(folder)]) == 0
    assert capsys.readouterr().err.count("aelab data info: warning: class c has a single sample") == 1
    few = _classes(tmp_path / "few", per_class=(3, 3, 3), names=("a", "b", "c"))
    d = _no_warnings(lambda: load_dataset(few, test_fraction=0.2))  # not stratified for another reason: 2 test rows
    assert not d.source["split"]["stratified"]


def test_a_file_name_that_is_not_utf8_is_refused_in_one_line_naming_it(tmp_path, capsys):
    """A Latin-1 name from an old archive crashed every command that read the folder (UnicodeEncodeError
    while hashing the names for the cache)."""
    for name in ("a", "b"):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((4, 4), i * 50, np.uint8)).save(tmp_path / "f" / name / f"{i}.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(os.fsencode(tmp_path / "f" / "a") + b"/caf\xe9.png", format="PNG")
    assert main(["data", "info", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'a/caf\\xe9.png' is not valid UTF-8" in err and "rename it" in err
