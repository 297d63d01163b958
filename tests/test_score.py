"""`aelab score`: anomaly scores per sample, through the CLI, on tiny images and a tiny table."""
import json

import numpy as np
import pytest

from aelab import api
from aelab.evaluation.anomaly import sample_errors
from helpers import run_cli


def test_score_images_csv_with_labels_and_contamination(trained, tiny_npz, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    rc, said, _ = run_cli(capsys, "score", "--checkpoint", trained.folder, "--data", tiny_npz, "--contamination", "0.1",
                      "-o", out)
    assert rc == 0 and "200 scores" in said and "20 flagged" in said
    lines = out.read_text().splitlines()
    assert lines[0] == "index,label,score,flag" and len(lines) == 201
    rows = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    assert rows[:, 0].tolist() == list(range(200))
    np.testing.assert_array_equal(rows[:, 1], trained.data.test.labels)
    expected = sample_errors(trained.model, trained.data.test.images)
    np.testing.assert_allclose(rows[:, 2], expected, rtol=1e-6)
    # the mean of the per-sample errors is evaluate's MSE
    assert expected.mean() == pytest.approx(trained.scores["test_mse"], rel=1e-5)
    assert rows[:, 3].sum() == 20 and rows[rows[:, 3] == 1, 2].min() >= rows[rows[:, 3] == 0, 2].max()


def test_score_a_table_to_npy_with_a_threshold(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5)) + 3
    data = tmp_path / "table.npy"
    np.save(data, x)
    model = tmp_path / "m"
    assert run_cli(capsys, "train", "--data", data, "--model", "deep", "--hidden", "8", "--code-size", "2", "--recipe",
                 "adam", "--sweeps", "5", "--minibatch-size", "32", "--out", model, "--device", "cpu")[0] == 0
    odd = np.concatenate([x[:20], x[:5] * 10])
    np.save(tmp_path / "new.npy", odd)
    rc, said, _ = run_cli(capsys, "score", "--checkpoint", model, tmp_path / "new.npy", "--threshold", "2.5",
                      "-o", tmp_path / "s.npy")
    assert rc == 0, said
    table = np.load(tmp_path / "s.npy", allow_pickle=False)
    assert table.dtype.names == ("index", "score", "flag") and len(table) == 25
    assert table["score"][20:].min() > table["score"][:20].max()  # far-off rows score higher
    np.testing.assert_array_equal(table["flag"], (table["score"] > 2.5).astype(int))


@pytest.mark.parametrize("args, message", [
    (["--contamination", "0.7"], "fraction"),
    (["--threshold", "nan"], "expected a number"),
    (["--contamination", "0.1", "--threshold", "1"], "not allowed with"),
])
def test_score_refuses_bad_options(trained, tiny_npz, tmp_path, capsys, args, message):
    rc, _, err = run_cli(capsys, "score", "--checkpoint", trained.folder, "--data", tiny_npz, *args, "-o",
                     tmp_path / "s.csv")
    assert rc == 2 and message in err


def test_score_refuses_a_bad_output_name_and_wrong_data(trained, tiny_npz, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "score", "--checkpoint", trained.folder, "--data", tiny_npz, "-o", tmp_path / "s.txt")
    assert rc == 2 and "FILE.csv or FILE.npy" in err and len(err.strip().splitlines()) == 1
    np.save(tmp_path / "t.npy", np.zeros((4, 3)))
    rc, _, err = run_cli(capsys, "score", "--checkpoint", trained.folder, tmp_path / "t.npy", "-o", tmp_path / "s.csv")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.csv").exists()


def test_api_anomaly_scores_threshold_and_contamination_exclusive(trained):
    ckpt = api.load_model(trained.folder, "cpu")
    with pytest.raises(api.OptionError):
        api.anomaly_scores(ckpt, trained.data.test.images, contamination=0.1, threshold=0.1)


def _digit_folder(folder, images, classes):
    """The ``images`` as PNGs under ``folder/<class>/NN.png``, shared out over ``classes`` in turn."""
    from PIL import Image
    for i, pixels in enumerate(images):
        place = folder / classes[i % len(classes)]
        place.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(place / f"{i:02d}.png")
    return folder


def test_score_of_an_image_folder_names_each_file_and_its_class(trained, tmp_path, capsys):
    images = trained.data.test.images[:12]
    folder = _digit_folder(tmp_path / "digits", images, ["plain", "odd, \"quoted\""])
    out = tmp_path / "s.csv"
    rc, said, _ = run_cli(capsys, "score", "--checkpoint", trained.folder, folder, "-o", out)
    assert rc == 0 and "Wrote 12 scores" in said
    import csv
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["index", "file", "label", "score"]
    by_file = {row["file"]: row for row in rows}
    # a row's file and class are the ones whose pixels it scored, whatever order the folder is read in
    expected = sample_errors(trained.model, images)
    for i in range(12):
        cls = ["plain", "odd, \"quoted\""][i % 2]
        row = by_file[f"{cls}/{i:02d}.png"]
        assert row["label"] == cls and float(row["score"]) == pytest.approx(expected[i], rel=1e-6)

    npy = tmp_path / "s.npy"
    assert run_cli(capsys, "score", "--checkpoint", trained.folder, folder, "--limit", "5", "-o", npy)[0] == 0
    table = np.load(npy, allow_pickle=False)
    assert table.dtype.names == ("index", "file", "label", "score") and len(table) == 5
    classes = json.loads(npy.with_suffix(".classes.json").read_text())
    assert classes == sorted(["plain", "odd, \"quoted\""])
    assert all(f.startswith(classes[label] + "/") for f, label in zip(table["file"], table["label"]))
    assert list(table["file"]) == [row["file"] for row in rows[:5]]

    # one picture: its file name, no labels, and no class names left from the folder's run
    one = folder / "plain" / "00.png"
    assert run_cli(capsys, "score", "--checkpoint", trained.folder, one, "-o", npy)[0] == 0
    table = np.load(npy, allow_pickle=False)
    assert table.dtype.names == ("index", "file", "score") and table["file"].tolist() == ["00.png"]
    assert not npy.with_suffix(".classes.json").exists()


def test_scores_of_arrays_have_no_file_column_and_names_must_match(trained):
    ckpt = api.load_model(trained.folder, "cpu")
    images = trained.data.test.images[:4]
    assert "file" not in api.anomaly_scores(ckpt, images)["table"].dtype.names
    named = api.anomaly_scores(ckpt, images, names=["a", "b", "c", "d"])["table"]
    assert named["file"].tolist() == ["a", "b", "c", "d"]
    with pytest.raises(api.OptionError, match="one file name per sample"):
        api.anomaly_scores(ckpt, images, names=["a"])
    with pytest.raises(api.OptionError, match="class names cannot name"):
        api.anomaly_scores(ckpt, images, labels=[0, 1, 2, 3], class_names=["x", "y"], output="never.csv")


def test_encode_of_an_image_folder_names_each_row_file_and_decode_reads_it_back(trained, tmp_path, capsys):
    """`aelab encode folder -o codes.csv` wrote label and code only: which row was which file was lost."""
    images = trained.data.test.images[:6]
    folder = _digit_folder(tmp_path / "digits", images, ["a, b", "c"])
    out = tmp_path / "codes.csv"
    assert run_cli(capsys, "encode", "--checkpoint", trained.folder, folder, "-o", out)[0] == 0
    import csv
    rows = list(csv.reader(out.open()))
    assert rows[0][:3] == ["file", "label", "c0"]
    expected = api.encode_images(api.load_model(trained.folder, "cpu"), images)
    for row in rows[1:]:
        i = int(row[0].split("/")[1][:2])
        assert row[0] == f"{['a, b', 'c'][i % 2]}/{i:02d}.png" and row[1] == ["a, b", "c"][i % 2]
        np.testing.assert_allclose([float(v) for v in row[2:]], expected[i], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(api.read_codes(out), [[float(v) for v in row[2:]] for row in rows[1:]])

    npy = tmp_path / "codes.npy"
    assert run_cli(capsys, "encode", "--checkpoint", trained.folder, folder, "-o", npy)[0] == 0
    assert json.loads(npy.with_suffix(".files.json").read_text()) == [row[0] for row in rows[1:]]
    # the test split of --data has no file names: none are left from the run before beside its codes
    assert run_cli(capsys, "encode", "--checkpoint", trained.folder, "--data", folder, "-o", npy)[0] == 0
    assert not npy.with_suffix(".files.json").exists()
