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
