"""Settings that cannot work are refused with one line (exit 2), before or without leaving a folder behind:
seeds beyond what the random generators take, a test split that leaves nothing to train on, a residual
code as long as the inputs, and refusals found once training has begun."""
from __future__ import annotations

import numpy as np
import pytest

from aelab.cli import main
from aelab.data import load_dataset
from aelab.errors import OptionError
from aelab.runconfig import MAX_SEED
from aelab.training import TrainConfig


@pytest.fixture()
def table(tmp_path):
    path = tmp_path / "rows.csv"
    rows = np.random.default_rng(0).normal(size=(200, 6))
    np.savetxt(path, rows, delimiter=",", header="a,b,c,d,e,f", comments="")
    return path


def refused(capsys, argv: list[str]) -> str:
    """The one-line error of a command that must exit 2."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize("seed", [str(MAX_SEED + 1), "99999999999999999999"])
def test_a_seed_beyond_two_to_the_32_is_refused_on_the_command_line_and_in_a_config(tmp_path, capsys, table, seed):
    out = tmp_path / "out"
    line = refused(capsys, ["train", "--data", str(table), "--out", str(out), "--seed", seed])
    assert "--seed" in line and str(MAX_SEED) in line and not out.exists()
    config = tmp_path / "run.toml"
    config.write_text(f"seed = {seed}\n")
    line = refused(capsys, ["train", "--data", str(table), "--out", str(out), "--config", str(config)])
    assert "--seed" in line and "fix the value in the file" in line and not out.exists()


def test_the_largest_seed_trains(tmp_path, table):
    assert main(["train", "--data", str(table), "--out", str(tmp_path / "out"), "--model", "deep", "--hidden", "8",
                 "--code-size", "2", "--sweeps", "1", "--seed", str(MAX_SEED), "--quiet"]) == 0


def test_python_callers_get_the_same_seed_limit(table):
    with pytest.raises(OptionError, match="2\\*\\*32"):
        TrainConfig(seed=MAX_SEED + 1).validate()
    with pytest.raises(OptionError, match="seed"):
        load_dataset(table, test_fraction=0.2, seed=2**40)


def test_a_test_fraction_that_leaves_no_training_samples_is_refused(tmp_path, capsys, table):
    out = tmp_path / "out"
    line = refused(capsys, ["train", "--data", str(table), "--out", str(out), "--test-fraction", "0.999"])
    assert "leaves no training samples" in line and "--test-fraction" in line and not out.exists()
    assert "no training" in refused(capsys, ["data", "info", str(table), "--test-fraction", "0.998"])
    assert load_dataset(table, test_fraction=0.995).train.n == 1  # one row left: a split, however lopsided


@pytest.mark.parametrize("code", ["6", "10"])
def test_a_residual_code_as_long_as_the_columns_is_refused(tmp_path, capsys, table, code):
    out = tmp_path / "out"
    line = refused(capsys, ["train", "--data", str(table), "--out", str(out), "--code-size", code])
    assert f"a code of {code} numbers" in line and "below 6" in line and not out.exists()


def test_a_one_column_table_is_refused_rather_than_copied(tmp_path, capsys):
    path = tmp_path / "one.csv"
    np.savetxt(path, np.arange(50.0)[:, None], delimiter=",")
    out = tmp_path / "out"
    assert "one column" in refused(capsys, ["train", "--data", str(path), "--out", str(out)])
    assert not out.exists()


def test_a_refusal_once_training_began_leaves_no_empty_folder_and_keeps_a_folder_the_user_had(tmp_path, capsys,
                                                                                              table):
    out = tmp_path / "out"
    # 160 training rows make no minibatch of 256 in one sweep: found by the training loop itself
    argv = ["train", "--data", str(table), "--out", str(out), "--model", "deep", "--hidden", "8", "--code-size",
            "2", "--sweeps", "1", "--minibatch-size", "256"]
    assert "no minibatch" in refused(capsys, argv)
    assert not out.exists()
    out.mkdir()
    refused(capsys, argv)
    assert out.is_dir()  # the user's (empty) folder stays


def test_json_output_is_strict_json_where_a_figure_is_undefined(tmp_path, capsys):
    """A constant table has no variance, so R² is undefined: null, not Python's NaN, which JSON readers refuse."""
    import json
    path = tmp_path / "constant.csv"
    np.savetxt(path, np.ones((60, 4)), delimiter=",", header="a,b,c,d", comments="")
    out = tmp_path / "m"
    assert main(["train", "--data", str(path), "--out", str(out), "--model", "deep", "--hidden", "8", "--code-size",
                 "2", "--sweeps", "1", "--minibatch-size", "8", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(path), "--json"]) == 0
    printed = capsys.readouterr().out
    scores = json.loads(printed, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert scores["test_r2"] is None and scores["test_mse"] >= 0


def test_an_unknown_split_is_refused_not_read_as_the_training_split():
    from aelab.data import Dataset, Split
    rows = np.zeros((4, 3), np.float32)
    data = Dataset("t", Split(rows), Split(rows[:2]), sha256="e" * 64)
    assert data.part("train").n == 4 and data.part("test").n == 2
    with pytest.raises(OptionError, match="unknown split 'validation'"):
        data.part("validation")


def test_a_residual_checkpoint_saved_with_a_long_code_still_loads(tmp_path):
    """The refusal is of training such a model; one saved before it existed loads and encodes."""
    from aelab.models.checkpoint import load_checkpoint, save_checkpoint
    from aelab.models.networks import build_model, model_config
    config = model_config("residual", input_shape=(6,), code_size=8, hidden=(8,), loss="mse", input_max=1.0)
    save_checkpoint(tmp_path / "old", build_model(config, seed=0), config)
    assert load_checkpoint(tmp_path / "old").model_config.code_size == 8
