"""Faults found by probing a finished build (issue #20): each test fails on the code before its fix.

Hostile config.json values, damaged or hostile weights and resume files, closed or full standard output,
SIGTERM, concurrent writers and an output folder that turns read-only. The end-to-end and fault-injection
tests are marked slow.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aelab.errors import CheckpointError
from aelab.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint


def run_aelab(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.run([sys.executable, "-m", "aelab", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, **kwargs)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def ckpt(trained, tmp_path: Path) -> Path:
    """A copy of the session's trained checkpoint, free to damage."""
    return Path(shutil.copytree(trained.folder, tmp_path / "ckpt"))


def _set_model_field(folder: Path, field: str, value) -> None:
    info = json.loads((folder / CONFIG_FILE).read_text())
    info["model"][field] = value
    (folder / CONFIG_FILE).write_text(json.dumps(info))


# --- fault 9: sizes and types in config.json

@pytest.mark.parametrize("value", [2**63, 2**64 + 5, 2**40])
def test_a_huge_code_size_is_one_line_without_torch_frames(ckpt: Path, value: int) -> None:
    _set_model_field(ckpt, "code_size", value)
    line = one_line_error(run_aelab("evaluate", "--checkpoint", str(ckpt), "--json"))
    assert "no valid model description" in line and "frame" not in line.lower()


@pytest.mark.parametrize("field, value", [("code_size", "32"), ("code_size", 32.9), ("code_size", True),
                                          ("input_shape", ["28", 28]), ("input_shape", [28.0, 28]),
                                          ("hidden", [32.5]), ("kind", 7)])
def test_strings_floats_and_bools_are_refused_not_coerced(ckpt: Path, field: str, value) -> None:
    _set_model_field(ckpt, field, value)
    with pytest.raises(CheckpointError, match="no valid model description"):
        load_checkpoint(ckpt)


# --- fault 1: the resume file outlives the training until the checkpoint is on disk

def _tiny_config():
    from aelab.training.loop import TrainConfig
    return TrainConfig(model="simple", sweeps=0.05, seed=3, device="cpu")


def test_an_interruption_during_the_final_evaluation_loses_nothing(tiny_data, tmp_path: Path, monkeypatch) -> None:
    import aelab.api as api
    from aelab.training.resume import RESUME_FILE, load_training_state
    out, resume_file = tmp_path / "run", tmp_path / "run" / RESUME_FILE
    real_evaluate = api.evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(api, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        api.train_model(tiny_data, _tiny_config(), out, resume_file=resume_file, checkpoint_every=0)
    assert not (out / WEIGHTS_FILE).exists()
    saved = load_training_state(resume_file)  # the finished state, kept
    assert saved.minibatches_done == int(0.05 * tiny_data.train.n) // 64

    monkeypatch.setattr(api, "evaluate", real_evaluate)
    resumed = api.train_model(tiny_data, _tiny_config(), out, resume_file=resume_file, checkpoint_every=0,
                              resume=True)
    assert not resume_file.exists()  # removed once the checkpoint was saved
    fresh = api.train_model(tiny_data, _tiny_config(), tmp_path / "fresh")
    import torch
    for (name, a), b in zip(load_checkpoint(out).model.state_dict().items(),
                            load_checkpoint(fresh.folder).model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.scores == fresh.scores


# --- fault 7: the output file system turns read-only at the end of a run

def test_a_resume_file_that_cannot_be_removed_is_a_warning_not_a_traceback(tiny_data, tmp_path: Path,
                                                                            monkeypatch) -> None:
    import errno
    import aelab.api as api
    import aelab.fileio as fileio
    from aelab.training.resume import RESUME_FILE
    real_unlink = os.unlink

    def read_only(path, *args, **kwargs):
        if Path(path).name == RESUME_FILE:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_unlink(path, *args, **kwargs)
    monkeypatch.setattr(os, "unlink", read_only)
    monkeypatch.setattr(fileio.os, "unlink", read_only)
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="Read-only file system"):
        trained = api.train_model(tiny_data, _tiny_config(), out, resume_file=out / RESUME_FILE, checkpoint_every=0)
    assert load_checkpoint(trained.folder).info["metrics"] == {k: v for k, v in trained.scores.items() if k != "n"}
    # and train() alone, which removes the file itself
    from aelab.training.loop import train
    with pytest.warns(UserWarning, match="Read-only file system"):
        train(tiny_data, _tiny_config(), log=None, progress_bar=False, resume_file=tmp_path / RESUME_FILE,
              checkpoint_every=0.000001)
