"""Runs you can repeat and watch: `aelab train --config run.toml`, `--print-config`, and metrics.csv."""
from __future__ import annotations

import csv
import json
import sys

import pytest

from aelab.cli import main


def _toml(path, text):
    path.write_text(text)
    return str(path)


def test_config_keys_are_options_and_the_command_line_wins(tmp_path, tiny_npz, capsys):
    config = _toml(tmp_path / "run.toml", f'model = "deep"\ncode_size = 16\nhidden = [24, 12]\nsweeps = 0.02\n'
                                          f'data = "{tiny_npz}"\nquiet = true\nseed = 3\n')
    out = tmp_path / "m"
    assert main(["train", "--config", config, "--code-size", "8", "--out", str(out)]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["model"]["kind"] == "deep" and info["model"]["hidden"] == [24, 12]
    assert info["model"]["code_size"] == 8 and info["training"]["seed"] == 3
    saved = (out / "run.toml").read_text()
    assert 'model = "deep"' in saved and "code_size = 8" in saved and "hidden = [24, 12]" in saved
    # the saved file repeats the run
    capsys.readouterr()
    assert main(["train", "--config", str(out / "run.toml"), "--print-config"]) == 0
    assert capsys.readouterr().out == saved


def test_print_config_resolves_flags_and_trains_nothing(tmp_path, capsys):
    assert main(["train", "--slow", "--rgb", "--hidden", "none", "--out", str(tmp_path / "m"), "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "sweeps = 100.0" in text and "rgb = true" in text and "hidden = []" in text
    assert not (tmp_path / "m").exists()
    config = _toml(tmp_path / "run.toml", text)
    assert main(["train", "--config", config, "--fast", "--print-config"]) == 0  # --fast beats the file's sweeps
    assert "sweeps = 5.0" in capsys.readouterr().out


def test_bad_config_files_are_one_line_errors(tmp_path, capsys):
    cases = {"bogus = 1\n": "unknown option 'bogus'", "code_size = \n": "not a valid TOML file",
             "code_size = -3\n": "code-size", "quiet = 3\n": "quiet is a flag",
             "[train]\ncode_size = 3\n": "tables (train)"}
    for text, message in cases.items():
        config = _toml(tmp_path / "run.toml", text)
        assert main(["train", "--config", config, "--out", str(tmp_path / "m")]) == 2
        err = capsys.readouterr().err
        assert message in err, (text, err)
        assert not (tmp_path / "m").exists()
    assert main(["train", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_metrics_csv_follows_the_progress_table_and_ends_at_the_last_step(tmp_path, tiny_npz):
    out = tmp_path / "m"
    assert main(["train", "--model", "simple", "--data", str(tiny_npz), "--sweeps", "0.2", "--recipe", "adam",
                 "--quiet",
                 "--out", str(out)]) == 0
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "samples_seen", "loss", "metric", "learning_rate", "seconds"]
    steps = [int(r["step"]) for r in rows]
    total = int(0.2 * 6400) // 64
    assert steps[:4] == [1, 3, 7, 15] and steps[-1] == total
    assert [int(r["samples_seen"]) for r in rows] == [64 * s for s in steps]
    assert all(float(r["learning_rate"]) == 1e-3 for r in rows)
    seconds = [float(r["seconds"]) for r in rows]
    assert seconds == sorted(seconds)
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_logs_the_values_of_metrics_csv(tmp_path, tiny_npz):
    out, board = tmp_path / "m", tmp_path / "board"
    assert main(["train", "--model", "simple", "--data", str(tiny_npz), "--sweeps", "0.2", "--recipe", "adam",
                 "--quiet",
                 "--out", str(out), "--tensorboard", str(board)]) == 0
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    scalars = _scalars(board)
    assert sorted(scalars) == ["train/learning_rate", "train/loss", "train/metric", "train/seconds"]
    for name in ("loss", "metric", "learning_rate"):
        logged = scalars[f"train/{name}"]
        assert [step for step, _ in logged] == [int(r["samples_seen"]) for r in rows]
        assert [value for _, value in logged] == [pytest.approx(float(r[name]), rel=1e-5) for r in rows]
    assert f'tensorboard = "{board}"' in (out / "run.toml").read_text()


def test_tensorboard_without_the_package_is_a_one_line_error_naming_the_extra(tmp_path, tiny_npz, capsys,
                                                                             monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    out = tmp_path / "m"
    assert main(["train", "--data", str(tiny_npz), "--sweeps", "0.05", "--quiet", "--out", str(out),
                 "--tensorboard", str(tmp_path / "board")]) == 2
    err = capsys.readouterr().err
    assert "--tensorboard needs the tensorboard package" in err and "aelab[tensorboard]" in err
    assert len(err.strip().splitlines()) == 1
    assert not (out / "model.safetensors").exists()


def _train_parser():
    from aelab.cli import build_parser
    return build_parser().get_default("train_parser")


def _setting(action) -> list[str]:
    """Command-line words that give ``action`` (an option of `aelab train`) a value other than its default."""
    import argparse
    option = next(o for o in action.option_strings if o.startswith("--"))
    if action.nargs == 0:
        return [option]
    if action.choices:
        return [option, next(c for c in action.choices if c != action.default)]
    for text in ("3", "0.5", "8,4"):
        try:
            value = action.type(text) if action.type else text
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            continue
        if value != action.default:
            return [option, 'a "quoted" \\ value' if action.type is None else text]
    raise AssertionError(f"no test value for {option}")


def _train_options():
    """Every option of `aelab train` that a run config keeps, one long name each, from the parser itself."""
    import argparse
    from aelab.runconfig import NOT_KEPT, THIS_RUN_ONLY
    return [a for a in _train_parser()._actions if a.option_strings and a.dest not in NOT_KEPT + THIS_RUN_ONLY
            and a.help != argparse.SUPPRESS]


def test_run_toml_repeats_the_run_not_what_to_do_that_once(tmp_path, capsys):
    """--overwrite, --resume and --quiet were saved, so `--config run.toml --out OTHER` replaced OTHER's model
    without a word. A config of the user's own may still say them."""
    assert main(["train", "--model", "simple", "--overwrite", "--resume", "--quiet", "--out", str(tmp_path / "m"),
                 "--print-config"]) == 0
    saved = capsys.readouterr().out
    assert "model = \"simple\"" in saved and not {"overwrite", "resume", "quiet"} & {
        line.split(" = ")[0] for line in saved.splitlines()}
    config = _toml(tmp_path / "own.toml", "model = \"simple\"\noverwrite = true\n")
    assert main(["train", "--config", config, "--out", str(tmp_path / "m"), "--print-config"]) == 0


def test_run_toml_names_its_data_so_that_the_run_repeats_from_any_folder(tmp_path, tiny_npz, capsys,
                                                                         monkeypatch):
    """`data = "small.npz"` was kept as given: `--config run.toml` from another folder found no data."""
    monkeypatch.chdir(tiny_npz.parent)
    assert main(["train", "--data", tiny_npz.name, "--print-config"]) == 0
    assert f'data = "{tiny_npz}"' in capsys.readouterr().out.splitlines()
    train, test = tmp_path / "Train-2x2_cntk_text.txt", tmp_path / "Test-2x2_cntk_text.txt"
    train.write_text("")
    test.write_text("")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", f"{train.name},{test.name}", "--print-config"]) == 0
    assert f'data = "{train},{test}"' in capsys.readouterr().out.splitlines()
    assert main(["train", "--data", "mnist", "--out", "m", "--print-config"]) == 0  # the bundled set's name
    assert 'data = "mnist"' in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("action", _train_options(), ids=lambda a: a.option_strings[-1])
def test_every_option_of_train_comes_back_from_its_run_toml(action, tmp_path, capsys):
    """What `aelab train` saves as run.toml (and --print-config prints) loads back with --config, to the same
    options: for every option the parser has, so a new one cannot be left out."""
    words = _setting(action)
    assert main(["train", *words, "--out", str(tmp_path / "m"), "--print-config"]) == 0
    saved = capsys.readouterr().out
    keys = {line.split(" = ")[0] for line in saved.splitlines()}
    assert {words[0][2:].replace("-", "_"), action.dest} & keys, saved  # --fast is kept as sweeps = 5.0
    config = _toml(tmp_path / "run.toml", saved)
    assert main(["train", "--config", config, "--print-config"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == saved


def test_a_config_key_names_an_option_not_its_internal_name(tmp_path, capsys):
    """`colour` is where --grayscale and --rgb keep their choice, not an option: refused, not taken as --rgb."""
    config = _toml(tmp_path / "run.toml", "colour = true\n")
    assert main(["train", "--config", config, "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "unknown option 'colour'" in err and "grayscale" in err and "rgb" in err


def test_a_huge_config_file_is_refused_before_it_is_parsed(tmp_path, capsys):
    from aelab.runconfig import MAX_CONFIG_BYTES
    config = tmp_path / "run.toml"
    with open(config, "wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)  # sparse: large on paper, nothing to write
    assert main(["train", "--config", str(config), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "too large for a run config" in err and str(config) in err


def test_a_resumed_run_logs_each_point_of_metrics_csv_once(tmp_path, tiny_npz, monkeypatch):
    """Interrupted during the final evaluation (the resume file holds the finished state), then resumed."""
    from aelab import api
    out = tmp_path / "m"
    data = api.load_data(tiny_npz)
    config = api.TrainConfig(model="simple", sweeps=0.2, recipe="adam", device="cpu")
    real_evaluate = api.evaluate
    with monkeypatch.context() as m:
        m.setattr(api, "evaluate", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            api.train_model(data, config, out, resume_file=out / "resume.safetensors")
    assert api.evaluate is real_evaluate
    api.train_model(data, config, out, resume_file=out / "resume.safetensors", resume=True)
    with open(out / "metrics.csv", newline="") as f:
        seen = [int(r["samples_seen"]) for r in csv.DictReader(f)]
    assert seen == sorted(set(seen)) and seen[-1] == int(0.2 * 6400) // 64 * 64, seen


def test_a_resumed_run_drops_the_lines_logged_after_its_saved_state(tmp_path):
    """A run killed after its last save logged lines past it; resumed from the save, it logs them again."""
    from aelab.training.progress import MetricsLog
    path = tmp_path / "metrics.csv"
    log = MetricsLog(path)
    for step in (1, 3, 7, 15):
        log.add(step, {"examples": 64 * step, "loss_since_last": 1.0, "metric_since_last": 0.5}, 1e-3, step / 10)
    log.close()
    with open(path, "a") as f:
        f.write("31,19")  # a line cut short by the kill
    log = MetricsLog(path, append=True, resumed_at=64 * 7)
    for step in (7, 15, 31):
        log.add(step, {"examples": 64 * step, "loss_since_last": 2.0, "metric_since_last": 0.5}, 1e-3, step / 10)
    log.close()
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 3, 7, 15, 31]
    assert [float(r["loss"]) for r in rows] == [1.0, 1.0, 1.0, 2.0, 2.0]  # 15 is the resumed run's


def test_no_progress_bar_goes_into_a_redirected_log(tmp_path, tiny_npz):
    """`aelab train ... > log 2>&1`: the bar's redraws would be mixed into the progress table."""
    import io
    from aelab.training.progress import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    assert ProgressBar(100, "t", stream=io.StringIO())._bar is None
    with open(tmp_path / "log", "w") as f:
        assert ProgressBar(100, "t", stream=f)._bar is None
    bar = ProgressBar(100, "t", stream=Terminal())
    assert bar._bar is not None
    bar.close()
    import os
    import subprocess
    with open(tmp_path / "log", "w") as log:
        subprocess.run([sys.executable, "-m", "aelab", "train", "--data", str(tiny_npz), "--model", "simple",
                        "--sweeps", "1", "--recipe", "adam", "--out", str(tmp_path / "m")], stdout=log, stderr=subprocess.STDOUT,
                       env={**os.environ, "TQDM_MININTERVAL": "0"}, timeout=300, check=True)
    text = (tmp_path / "log").read_text()
    assert "\r" not in text and "training simple" not in text and "Average test error" in text  # the bar's title


def test_a_resumed_validation_run_keeps_its_lines_and_logs_each_point_once(tmp_path):
    """A run with a validation split has a val_loss column; resuming keeps its lines up to the saved state
    (a file it cannot decode is read, not a traceback) and logs no point twice."""
    from aelab.training.progress import MetricsLog
    path = tmp_path / "metrics.csv"
    log = MetricsLog(path, validation=True)
    for step in (1, 3, 7, 15):
        log.add(step, {"examples": 64 * step, "loss_since_last": 1.0, "metric_since_last": 0.5}, 1e-3, step / 10)
        log.add_validation(step, 64 * step, 0.25, 1e-3, step / 10)
    log.close()
    with open(path, "ab") as f:
        f.write(b"\xff\xfe31,19")  # bytes a kill cut short, not UTF-8
    log = MetricsLog(path, append=True, resumed_at=64 * 7, validation=True)
    for step in (7, 15, 31):
        log.add(step, {"examples": 64 * step, "loss_since_last": 2.0, "metric_since_last": 0.5}, 1e-3, step / 10)
        log.add_validation(step, 64 * step, 0.5, 1e-3, step / 10)
    log.close()
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    train_rows = [r for r in rows if r["loss"]]
    val_rows = [r for r in rows if r["val_loss"]]
    assert [int(r["step"]) for r in train_rows] == [1, 3, 7, 15, 31]
    assert [int(r["step"]) for r in val_rows] == [1, 3, 7, 15, 31]
    assert [float(r["val_loss"]) for r in val_rows] == [0.25, 0.25, 0.25, 0.5, 0.5]
