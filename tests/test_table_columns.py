"""A table model's columns: new rows are matched to them by name where the file and the model's training table
have headers, else by position; numbers beyond float32's range and empty labels are refused by name."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from aelab.cli import main
from aelab.data import load_dataset
from aelab.errors import DataError

COLUMNS = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))


def _rows(n: int = 120) -> np.ndarray:
    """Rows of six columns of different scales, so that a column in the wrong place changes the codes."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6)) * np.array([1, 10, 100, 0.1, 5, 50]) + np.arange(6)


def _write_csv(path, header: list[str] | None, rows: list[list[object]]):
    lines = ([",".join(header)] if header else []) + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _species(n: int) -> list[str]:
    return ["setosa" if i % 2 else "virginica" for i in range(n)]


def _train(data, out, *extra: str) -> None:
    assert main(["train", "--data", str(data), "--out", str(out), "--model", "deep", "--hidden", "8",
                 "--code-size", "2", "--sweeps", "1", "--minibatch-size", "16", "--quiet", *extra]) == 0


@pytest.fixture(scope="module")
def label_model(tmp_path_factory):
    """A model trained on columns a..f with the label column 'species' last, and its training file."""
    folder = tmp_path_factory.mktemp("label_model")
    x = _rows()
    data = _write_csv(folder / "train.csv", COLUMNS + ["species"],
                      [[f"{v:.6g}" for v in row] + [s] for row, s in zip(x, _species(len(x)))])
    _train(data, folder / "m", "--label-column", "species")
    return folder / "m", data, x


def _codes(model, data, tmp_path, name: str = "codes.npy") -> np.ndarray:
    out = tmp_path / name
    assert main(["encode", "--checkpoint", str(model), str(data), "-o", str(out)]) == 0
    return np.load(out)


def _refused(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


# --- columns matched by name -------------------------------------------------------------------------

def test_columns_in_another_order_with_extra_ones_give_the_same_codes(label_model, tmp_path):
    model, data, x = label_model
    assert json.loads((model / "config.json").read_text())["data"]["columns"] == COLUMNS
    order = [5, 2, 0, 4, 1, 3]
    shuffled = _write_csv(tmp_path / "shuffled.csv", ["id", "species"] + [COLUMNS[c] for c in order] + ["note"],
                          [[i, s] + [f"{row[c]:.6g}" for c in order] + ["x"]
                           for i, (row, s) in enumerate(zip(x, _species(len(x))))])
    without_label = _write_csv(tmp_path / "plain.csv", [COLUMNS[c] for c in order],
                               [[f"{row[c]:.6g}" for c in order] for row in x])
    expected = _codes(model, data, tmp_path, "expected.npy")
    assert np.allclose(_codes(model, shuffled, tmp_path), expected, atol=1e-5)
    labels = np.load(tmp_path / "codes.labels.npy")
    assert labels.tolist() == [["setosa", "virginica"].index(s) for s in _species(len(x))]
    assert np.allclose(_codes(model, without_label, tmp_path), expected, atol=1e-5)
    assert not (tmp_path / "codes.labels.npy").exists()  # the rows without labels leave no earlier ones beside


def test_reconstruct_writes_the_models_columns_whatever_the_files_order(label_model, tmp_path):
    model, data, x = label_model
    reversed_file = _write_csv(tmp_path / "reversed.csv", COLUMNS[::-1], [[f"{v:.6g}" for v in row[::-1]] for row in x])
    for name, source in (("r1.csv", data), ("r2.csv", reversed_file)):
        assert main(["reconstruct", "--checkpoint", str(model), str(source), "-o", str(tmp_path / name)]) == 0
    first, second = ((tmp_path / n).read_text().splitlines() for n in ("r1.csv", "r2.csv"))
    assert first[0] == second[0] == ",".join(COLUMNS)
    assert np.allclose(np.loadtxt(first[1:], delimiter=","), np.loadtxt(second[1:], delimiter=","), atol=1e-4)


def test_evaluate_data_reads_the_models_columns_by_name(label_model, tmp_path, capsys):
    model, data, x = label_model
    reordered = _write_csv(tmp_path / "reordered.csv", ["species"] + COLUMNS[::-1],
                           [[s] + [f"{v:.6g}" for v in row[::-1]] for row, s in zip(x, _species(len(x)))])
    scores = []
    for source in (data, reordered):
        capsys.readouterr()
        assert main(["evaluate", "--checkpoint", str(model), "--data", str(source), "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[0]["n"] == scores[1]["n"] and scores[0]["test_mse"] == pytest.approx(scores[1]["test_mse"], rel=1e-4)


def test_a_file_without_the_models_columns_is_refused_naming_them(label_model, tmp_path, capsys):
    model, _, x = label_model
    renamed = _write_csv(tmp_path / "renamed.csv", list("pqrstu"), [[f"{v:.6g}" for v in row] for row in x])
    for command in (["encode", "--checkpoint", str(model), str(renamed), "-o", str(tmp_path / "c.csv")],
                    ["score", "--checkpoint", str(model), str(renamed), "-o", str(tmp_path / "s.csv")],
                    ["evaluate", "--checkpoint", str(model), "--data", str(renamed)]):
        err = _refused(capsys, *command)
        assert "renamed.csv: lacks the model's columns a, b, c, d, e (+1 more); its columns are p, q, r, s, t, u" in err
    two = _write_csv(tmp_path / "two.csv", ["a", "b", "species"], [[1, 2, "setosa"], [3, 4, "virginica"]])
    err = _refused(capsys, "encode", "--checkpoint", str(model), str(two), "-o", str(tmp_path / "c.csv"))
    assert "lacks the model's columns c, d, e, f; its columns are a, b, species" in err
    assert not (tmp_path / "c.csv").exists()


def test_a_repeated_model_column_is_refused(label_model, tmp_path, capsys):
    model, _, x = label_model
    twice = _write_csv(tmp_path / "twice.csv", COLUMNS + ["a"], [[f"{v:.6g}" for v in row] + [0] for row in x])
    err = _refused(capsys, "encode", "--checkpoint", str(model), str(twice), "-o", str(tmp_path / "c.csv"))
    assert "names the column 'a' 2 times" in err


# --- columns matched by position ----------------------------------------------------------------------

def test_a_file_without_a_header_is_matched_by_position(label_model, tmp_path, capsys):
    model, data, x = label_model
    expected = _codes(model, data, tmp_path, "expected.npy")
    bare = _write_csv(tmp_path / "bare.csv", None, [[f"{v:.6g}" for v in row] for row in x])
    np.save(tmp_path / "bare.npy", np.loadtxt(bare, delimiter=","))
    assert np.allclose(_codes(model, bare, tmp_path), expected, atol=1e-5)
    assert np.allclose(_codes(model, tmp_path / "bare.npy", tmp_path), expected, atol=1e-5)
    narrow = _write_csv(tmp_path / "narrow.csv", None, [[1, 2], [3, 4]])
    err = _refused(capsys, "encode", "--checkpoint", str(model), str(narrow), "-o", str(tmp_path / "c.csv"))
    assert "narrow.csv: has 2 columns, but the model was trained on 6 and a label column 'species'" in err
    assert "no column named" not in err


def test_a_model_trained_without_a_header_matches_any_file_by_position(tmp_path):
    x = _rows()
    data = _write_csv(tmp_path / "bare.csv", None, [[f"{v:.6g}" for v in row] for row in x])
    _train(data, tmp_path / "m")
    named = _write_csv(tmp_path / "named.csv", list("pqrstu"), [[f"{v:.6g}" for v in row] for row in x])
    assert np.allclose(_codes(tmp_path / "m", named, tmp_path), _codes(tmp_path / "m", data, tmp_path, "e.npy"),
                       atol=1e-5)


# --- numbers beyond float32, empty labels ---------------------------------------------------------

def test_numbers_beyond_float32_are_named_not_called_missing(tmp_path):
    x = _rows(20)
    x[3, 2] = -2.5e300
    csv_file = _write_csv(tmp_path / "huge.csv", COLUMNS, [[repr(float(v)) for v in row] for row in x])
    np.save(tmp_path / "huge.npy", x * 0 + np.where(np.arange(6) == 4, 1e39, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray "overflow encountered in cast"
        with pytest.raises(DataError) as csv_error:
            load_dataset(csv_file)
        with pytest.raises(DataError) as npy_error:
            load_dataset(tmp_path / "huge.npy")
    assert "row 4, column 3 ('c'): -2.5e+300 is beyond float32's range (about 3.4e38)" in str(csv_error.value)
    assert "row 1, column 5: 1e+39 is beyond float32's range" in str(npy_error.value)
    for error in (csv_error.value, npy_error.value):
        assert "NaN" not in str(error) and "rescale that column" in str(error)
    assert load_dataset(_write_csv(tmp_path / "big.csv", ["a", "b"], [[3e38, -3e38]] * 10)).train.n > 0


def test_an_empty_label_is_refused_naming_its_line(tmp_path, capsys):
    rows = [[i, i * 2, "" if i == 3 else i % 2] for i in range(12)]
    data = _write_csv(tmp_path / "labels.csv", ["a", "b", "y"], rows)
    with pytest.raises(DataError, match=r"line 5, column 3 \('y'\): the label is empty \(fill it or drop the row"):
        load_dataset(data, label_column="y")
    err = _refused(capsys, "data", "info", str(data), "--label-column", "y")
    assert "labels.csv: line 5, column 3 ('y'): the label is empty" in err
    labels = np.arange(12, dtype=float) % 2
    labels[[2, 7]] = np.nan
    np.save(tmp_path / "labels.npy", np.c_[np.ones((12, 2)), labels])
    with pytest.raises(DataError, match=r"row 3, column 3: the label is empty, as in 1 more row"):
        load_dataset(tmp_path / "labels.npy", label_column=2)


def test_a_label_column_given_by_position_that_lands_on_a_feature_is_refused(tmp_path):
    """Trained with --label-column 6 on a..f,y; a file with an extra column first has feature f at
    position 6: taking it as the labels would make every value a class."""
    from aelab.cli import main
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(80, 6))
    labels = rng.integers(0, 2, 80)
    train_csv = tmp_path / "train.csv"
    np.savetxt(train_csv, np.column_stack([rows, labels]), delimiter=",", header="a,b,c,d,e,f,y", comments="",
               fmt="%g")
    shifted = tmp_path / "shifted.csv"
    np.savetxt(shifted, np.column_stack([np.arange(80), rows, labels]), delimiter=",", header="id,a,b,c,d,e,f,y",
               comments="", fmt="%g")
    out = tmp_path / "m"
    assert main(["train", "--data", str(train_csv), "--label-column", "6", "--out", str(out), "--model", "deep",
                 "--hidden", "8", "--code-size", "2", "--sweeps", "1", "--quiet"]) == 0
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(train_csv), "--knn"]) == 0
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(shifted), "--knn"]) == 2
