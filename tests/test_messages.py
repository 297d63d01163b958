"""Error messages that lead somewhere: a forgotten --data names the data the model was trained on, a zero or
negative --budget is called that, a header naming a column twice and a table with decimal commas are refused
as what they are, each as one line (exit 2) whose hint works when followed."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aelab.cli import main
from aelab.data import load_dataset
from aelab.errors import DataError, OptionError
from aelab.runconfig import parse_duration
from helpers import run_cli

TRAIN = ("--model", "deep", "--hidden", "8", "--code-size", "2", "--sweeps", "1", "--minibatch-size", "8", "--quiet")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))


def _picture_folder(folder, size: tuple[int, int], count: int = 24):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, size=size, dtype=np.uint8), "L").save(folder / f"{i:03d}.png")
    return folder


def _table(path, header: str, rows: list[str]):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _number_rows(n: int = 40, width: int = 3, separator: str = ",", decimal: str = ".") -> list[str]:
    values = np.random.default_rng(0).normal(size=(n, width))
    return [separator.join(f"{v:.5f}".replace(".", decimal) for v in row) for row in values]


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory):
    """A model trained on 'shapes', a folder of 16x16 grey pictures, and that folder."""
    root = tmp_path_factory.mktemp("shapes_model")
    folder = _picture_folder(root / "shapes", (16, 16))
    assert main(["train", "--data", str(folder), "--out", str(root / "m"), *TRAIN]) == 0
    return root / "m", folder


# --- 1. a forgotten --data -------------------------------------------------------------------------

def test_a_forgotten_data_names_what_the_model_was_trained_on(shapes_model, capsys):
    model, folder = shapes_model
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", model)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "no --data given: the model was trained on 'shapes' (16x16 grey images)" in err
    assert "with --data PATH" in err and "--resize" not in err
    rc, out, err = run_cli(capsys, "evaluate", "--checkpoint", model, "--data", folder)  # the hint, followed
    assert rc == 0, err
    assert "test split of shapes" in out


def test_a_forgotten_data_names_a_table_model_s_table(tmp_path, capsys):
    table = _table(tmp_path / "measurements.csv", "a,b,c", _number_rows())
    assert run_cli(capsys, "train", "--data", table, "--out", tmp_path / "m", *TRAIN)[0] == 0
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", tmp_path / "m")
    assert rc == 2
    assert "the model was trained on 'measurements' (table rows of 3 columns)" in err
    assert "pass the data 'measurements' with --data PATH" in err
    assert run_cli(capsys, "evaluate", "--checkpoint", tmp_path / "m", "--data", table)[0] == 0


def test_resize_is_suggested_only_where_it_applies(shapes_model, tmp_path, capsys):
    model, _ = shapes_model
    larger = _picture_folder(tmp_path / "larger", (20, 20))
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", model, "--data", larger)
    assert rc == 2 and "read it with --resize 16x16" in err
    assert run_cli(capsys, "evaluate", "--checkpoint", model, "--data", larger, "--resize", "16x16")[0] == 0
    images = np.zeros((30, 20, 20), np.uint8)
    npz = tmp_path / "arrays.npz"
    np.savez(npz, x_train=images[:24], x_test=images[24:])
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", model, "--data", npz)
    assert rc == 2 and "'arrays' holds 20x20 grey images" in err
    assert "read it with" not in err and "--resize 16x16 applies to image files only" in err


# --- 2. a budget of zero or less ---------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--budget=0", "--budget=0s", "--budget=-5s", "--budget=-2m"])
def test_a_budget_of_zero_or_less_must_be_positive(option, tmp_path, capsys):
    table = _table(tmp_path / "t.csv", "a,b,c", _number_rows())
    rc, _, err = run_cli(capsys, "train", "--data", table, "--out", tmp_path / "m", option, *TRAIN)
    assert rc == 2
    assert "the budget must be a positive duration" in err and "cannot read" not in err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("args,written", [(("train", "--budget", "-5s"), "--budget=VALUE"),
                                         (("data", "pack", "folder", "-o", "-x"), "--out=VALUE")])
def test_a_value_that_starts_with_a_dash_is_told_how_to_be_written(args, written, capsys):
    """argparse reads `--budget -5s` as two options and says only "expected one argument"."""
    with pytest.raises(SystemExit) as stop:
        main(list(args))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and "expected one argument" in err and f"is written {written}" in err


@pytest.mark.parametrize("args,prefix", [
    (("score", "--threshold", "nan"), "aelab score: error: argument --threshold"),
    (("sample", "--draw", "0"), "aelab sample: error: argument --draw"),
    (("train", "--bogus"), "aelab train: error: unrecognized arguments: --bogus"),
    (("data", "pack", "x", "-o", "y", "--zzz"), "aelab data pack: error: unrecognized arguments: --zzz"),
])
def test_an_option_error_is_one_line_that_names_the_command_and_its_help(args, prefix, capsys):
    """argparse printed the command's whole usage (up to eight lines) before its error, and named the top
    command (`aelab: error: unrecognized arguments`) for another command's unknown option."""
    with pytest.raises(SystemExit) as stop:
        main(list(args))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(prefix) and len(err.strip().splitlines()) == 1
    assert f"`{prefix.split(':')[0]} --help`" in err


def test_durations_say_what_is_wrong_with_them():
    with pytest.raises(OptionError, match="must be a positive duration, got '0'"):
        parse_duration("0")
    with pytest.raises(OptionError, match="must be a finite duration"):
        parse_duration("inf")
    with pytest.raises(OptionError, match="cannot read the duration 'nan'"):
        parse_duration("nan")
    assert parse_duration("0.5h") == 1800.0


# --- 3. a header that names a column twice ----------------------------------------------------------------

@pytest.mark.parametrize("suffix, separator", [(".csv", ","), (".tsv", "\t")])
def test_a_header_naming_a_column_twice_is_refused(suffix, separator, tmp_path, capsys):
    rows = [separator.join(["1.5", "2", "3", "4", "5", "6"]), separator.join(["0.5", "1", "2", "3", "4", "5"])]
    table = _table(tmp_path / f"twice{suffix}", separator.join(["a", "a", "b", "b", "c", "c"]), rows)
    with pytest.raises(DataError, match="names the column 'a' 2 times") as refused:
        load_dataset(table)
    assert "rename" in refused.value.hint
    rc, _, err = run_cli(capsys, "data", "info", table, "--label-column", "a")
    assert rc == 2 and "names the column 'a' 2 times" in err


# --- 4. decimal commas -------------------------------------------------------------------------------

def test_a_semicolon_table_with_decimal_commas_is_named_as_such(tmp_path, capsys):
    table = _table(tmp_path / "eu.csv", "a;b;c", _number_rows(separator=";", decimal=","))
    rc, _, err = run_cli(capsys, "data", "info", table)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "looks like a ';'-separated table with decimal commas" in err
    assert "convert the decimal commas to points" in err and "is not a number" not in err
    table.write_text(table.read_text().replace(",", "."))  # the hint, followed: ';'-separated with points
    expected = _table(tmp_path / "commas.csv", "a,b,c", _number_rows())
    np.testing.assert_allclose(load_dataset(table).train.images, load_dataset(expected).train.images)


def test_a_tab_separated_table_with_decimal_commas_is_named_as_such(tmp_path):
    table = _table(tmp_path / "eu.tsv", "a\tb\tc", _number_rows(separator="\t", decimal=","))
    with pytest.raises(DataError, match="looks like a tab-separated table with decimal commas"):
        load_dataset(table)
    labelled = [f"{row}\t{'1,2' if i % 2 else '3,4'}" for i, row in enumerate(_number_rows(separator="\t"))]
    table = _table(tmp_path / "labelled.tsv", "a\tb\tc\tgroup", labelled)  # a label with a comma is no number
    assert load_dataset(table, label_column="group").class_names == ["1,2", "3,4"]
