"""The commands that draw pictures, given table data or asked for huge pictures: `aelab compare` on a table
(no quality.png, a PCA baseline that fits the table, the checkpoint's label column), `interpolate`, `sample`
and `denoise` with a table model (refused in one line), and the cap on one picture's images."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from aelab.cli import build_parser
from aelab.cli_options import MAX_PICTURE_IMAGES as CLI_MAX_PICTURE_IMAGES
from aelab.data import Dataset, Split
from aelab.evaluation.compare import entries_from, run_comparison
from aelab.evaluation.generate import MAX_PICTURE_IMAGES
from helpers import run_cli

COLUMNS = 6


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """t.csv: 200 rows of six columns and a label column y; and a tiny table VAE (code size 3) trained on it."""
    folder = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, COLUMNS)) * [1, 10, 100, 1, 1, 1], rng.integers(0, 3, 200)
    with open(folder / "t.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"f{i}" for i in range(COLUMNS)] + ["y"])
        writer.writerows([f"{v:.6g}" for v in row] + [label] for row, label in zip(x, y))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AELAB_CACHE", str(folder / "cache"))
        from aelab.cli import main
        assert main(["train", "--data", str(folder / "t.csv"), "--label-column", "y", "--model", "vae",
                     "--code-size", "3", "--sweeps", "1", "--device", "cpu", "--out", str(folder / "ck"),
                     "--quiet"]) == 0
    return folder


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))


def _one_line_refusal(rc: int, err: str) -> str:
    assert rc == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


# --- 7 and 8: `aelab compare` on a table ---------------------------------------------------------------------

def test_compare_on_a_table_writes_no_picture_and_says_so(table, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc, stdout, err = run_cli(capsys, "compare", "--models", "simple", "--sweeps", "1", "--data", table / "t.csv",
                              "--label-column", "y", "--no-pca", "--tsne-limit", "20", "--device", "cpu", "-o", out)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["quality.json", "quality.md"]
    assert "reconstruction picture" in (out / "quality.md").read_text() and "reconstruction picture" in stdout
    assert "quality.png" not in stdout
    rows = json.loads((out / "quality.json").read_text())["rows"]
    assert "knn_acc" in rows[0] and "test_ssim" not in rows[0]  # the label column was read as labels


def test_compare_reads_data_as_the_checkpoint_remembers_and_fits_pca_to_its_code(table, tmp_path, capsys):
    rc, stdout, err = run_cli(capsys, "compare", "--models", table / "ck", "--data", table / "t.csv",
                              "--tsne-limit", "20", "--device", "cpu", "-o", tmp_path / "cmp", "--json")
    assert rc == 0, err  # before: the label column y read as a seventh feature, refused by the model
    rows = json.loads(stdout)
    assert [r["name"] for r in rows] == ["pca-3", str(table / "ck")]
    assert all(0 <= r["knn_acc"] <= 1 for r in rows)


def test_the_pca_baseline_has_no_more_components_than_a_table_has_columns():
    rng = np.random.default_rng(1)
    data = Dataset(name="six columns", train=Split(rng.normal(size=(128, COLUMNS)).astype(np.float32), None),
                   test=Split(rng.normal(size=(20, COLUMNS)).astype(np.float32), None), sha256="0" * 64)
    result = run_comparison(data, entries_from(["simple"], recipe="adam", sweeps=1), tsne_samples=10, log=None)
    pca = result["rows"][0]
    assert pca["name"] == f"pca-{COLUMNS}" and pca["test_mse"] == pytest.approx(0.0, abs=1e-6)  # every component
    assert result["reconstructions"] == {}


# --- 9: picture commands with a table model ----------------------------------------------------------------

def test_interpolate_refuses_a_table_model_before_reading_the_data(table, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "interpolate", "--checkpoint", table / "ck", "--data", tmp_path / "absent.csv",
                         "0", "1", "--device", "cpu", "-o", tmp_path / "i.png")
    assert "interpolate draws images" in _one_line_refusal(rc, err) and "aelab encode" in err
    assert not (tmp_path / "i.png").exists()


@pytest.mark.parametrize("command", [["sample"], ["denoise", "--noise", "gaussian:0.5"]])
def test_sample_and_denoise_refuse_a_table_model(command, table, tmp_path, capsys):
    rc, _, err = run_cli(capsys, *command, "--checkpoint", table / "ck", "--device", "cpu",
                         *(["--data", table / "t.csv"] if command[0] == "denoise" else []), "-o", tmp_path / "out.png")
    assert f"{command[0]} draws images, and this model was trained on table rows" in _one_line_refusal(rc, err)
    assert not (tmp_path / "out.png").exists()  # denoise's -o is a folder: none is made for a refused run


# --- 25: one picture's images are capped -------------------------------------------------------------------

@pytest.mark.parametrize("command", [["sample", "--draw"], ["interpolate", "0", "1", "--steps"]])
def test_a_picture_of_more_images_than_the_cap_is_refused_at_once(command, tmp_path, capsys):
    *head, option = command
    rc, _, err = run_cli(capsys, *head, "--checkpoint", "mnist-vae", "--device", "cpu", option,
                         MAX_PICTURE_IMAGES + 1, "-o", tmp_path / "big.png")
    assert f"at most {MAX_PICTURE_IMAGES:,} images" in _one_line_refusal(rc, err)
    assert f"{option} {MAX_PICTURE_IMAGES}" in err and not (tmp_path / "big.png").exists()


def test_the_cap_is_stated_in_help_from_the_library_constant():
    assert CLI_MAX_PICTURE_IMAGES == MAX_PICTURE_IMAGES
    commands = build_parser()._subparsers._group_actions[0].choices
    for command, option in (("sample", "--draw"), ("interpolate", "--steps")):
        action = next(a for a in commands[command]._actions if option in a.option_strings)
        assert f"at most {MAX_PICTURE_IMAGES}" in action.help
