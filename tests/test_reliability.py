"""Faults found by probing a finished build (issue #20): each test fails on the code before its fix.

Hostile config.json values, damaged or hostile weights and resume files, closed or full standard output,
SIGTERM, concurrent writers and an output folder that turns read-only. The end-to-end and fault-injection
tests are marked slow.
"""
from __future__ import annotations

import json
import os
import re
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


# --- fault 2: resume files carry a checksum; the kept state after a NaN is a good one

@pytest.fixture
def resume_file(tiny_data, tmp_path: Path) -> Path:
    """The resume file of a tiny finished run (kept, as train_model keeps it until the checkpoint is saved)."""
    from aelab.training.loop import TrainConfig, train
    from aelab.training.resume import RESUME_FILE
    path = tmp_path / RESUME_FILE
    train(tiny_data, TrainConfig(model="simple", sweeps=0.05, seed=1, device="cpu"), log=None, progress_bar=False,
          resume_file=path, checkpoint_every=0, keep_resume_file=True)
    return path


def _rewrite_resume(path: Path, edit_meta=None, edit_tensors=None) -> None:
    """Re-save the file with edited contents but its original checksum, as damage or a hand edit would leave it."""
    from safetensors import safe_open
    from safetensors.torch import save
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if edit_meta:
        meta = json.loads(metadata["aelab"])
        edit_meta(meta)
        metadata["aelab"] = json.dumps(meta)
    if edit_tensors:
        edit_tensors(tensors)
    path.write_bytes(save(tensors, metadata=metadata))


def test_a_flipped_byte_in_a_resume_tensor_is_refused(resume_file: Path) -> None:
    from aelab.training.resume import load_training_state
    load_training_state(resume_file)
    blob = bytearray(resume_file.read_bytes())
    blob[-100] ^= 0x01  # inside the last tensor's bytes: still a well-formed safetensors file
    resume_file.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="checksum"):
        load_training_state(resume_file)


@pytest.mark.parametrize("edit", [lambda m: m.update(minibatches_done=m["minibatches_done"] + 1),
                                  lambda m: m["optimizer_groups"][0].update(lr=m["optimizer_groups"][0]["lr"] * 10),
                                  lambda m: m.update(seconds=1.0)])
def test_an_edited_resume_metadata_is_refused(resume_file: Path, edit) -> None:
    from aelab.training.resume import load_training_state
    _rewrite_resume(resume_file, edit_meta=edit)
    with pytest.raises(CheckpointError, match="checksum"):
        load_training_state(resume_file)


def test_a_resume_file_without_a_checksum_is_refused_through_the_cli(resume_file: Path, tiny_npz: Path) -> None:
    from aelab.training.resume import CHECKSUM_KEY
    from safetensors import safe_open
    from safetensors.torch import save
    with safe_open(str(resume_file), framework="pt") as f:
        metadata = {k: v for k, v in f.metadata().items() if k != CHECKSUM_KEY}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    resume_file.write_bytes(save(tensors, metadata=metadata))
    line = one_line_error(run_aelab("train", "--model", "simple", "--sweeps", "0.05", "--seed", "1", "--device",
                                    "cpu", "--quiet", "--data", str(tiny_npz), "--out", str(resume_file.parent),
                                    "--resume"))
    assert "no checksum" in line


def test_a_non_finite_optimizer_state_is_never_saved_as_the_last_good_one(tiny_data, tmp_path, monkeypatch) -> None:
    import torch
    import aelab.training.loop as loop
    from aelab.training.loop import TrainConfig, TrainingDiverged, train
    from aelab.training.resume import RESUME_FILE, load_training_state
    real = loop._optimizer_snapshot
    calls = {"n": 0}

    def snapshot(optimizer):
        calls["n"] += 1
        tensors, groups = real(optimizer)
        if calls["n"] > 3:  # the optimizer's accumulators overflowed while the weights stayed finite
            tensors = {k: torch.full_like(v, float("inf")) for k, v in tensors.items()}
        return tensors, groups
    monkeypatch.setattr(loop, "_optimizer_snapshot", snapshot)
    path = tmp_path / RESUME_FILE
    with pytest.raises(TrainingDiverged, match="last good state is kept"):
        train(tiny_data, TrainConfig(model="simple", sweeps=0.1, device="cpu"), log=None, progress_bar=False,
              resume_file=path, checkpoint_every=1e-9)
    state = load_training_state(path)
    assert state.minibatches_done == 3
    assert all(torch.isfinite(t).all() for t in state.optimizer_tensors.values())


def test_no_state_kept_is_not_claimed(tiny_data, tmp_path, monkeypatch) -> None:
    from aelab.training.steps import DenseBackprop
    from aelab.training.loop import TrainConfig, TrainingDiverged, train
    from aelab.training.resume import RESUME_FILE
    real_step = DenseBackprop.__call__

    def poisoned(self, inputs, target):
        loss, metric = real_step(self, inputs, target)
        return loss * float("nan"), metric
    monkeypatch.setattr(DenseBackprop, "__call__", poisoned)
    with pytest.raises(TrainingDiverged) as exc:
        train(tiny_data, TrainConfig(model="simple", sweeps=0.05, device="cpu"), log=None, progress_bar=False,
              resume_file=tmp_path / RESUME_FILE, checkpoint_every=0)
    assert "kept" not in str(exc.value)


# --- fault 3: weights files are checked before they are read, and read with bounded memory

def _load_in_subprocess(folder: Path) -> subprocess.CompletedProcess:
    """`aelab evaluate` on ``folder``, with a timeout: the old code waited forever on a FIFO."""
    return run_aelab("evaluate", "--checkpoint", str(folder), "--json", timeout=60)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", [WEIGHTS_FILE, CONFIG_FILE])
def test_a_fifo_is_refused_at_once(ckpt: Path, name: str) -> None:
    (ckpt / name).unlink()
    os.mkfifo(ckpt / name)
    line = one_line_error(_load_in_subprocess(ckpt))
    assert "not a regular file" in line and name in line


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("name", [WEIGHTS_FILE, CONFIG_FILE])
def test_a_symlink_to_dev_zero_is_refused_without_reading(ckpt: Path, name: str) -> None:
    (ckpt / name).unlink()
    (ckpt / name).symlink_to("/dev/zero")
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(ckpt)


def test_a_huge_sparse_weights_file_is_refused_from_its_size(ckpt: Path) -> None:
    """40 GB gave a MemoryError traceback; 3 GB reached 3.4 GB of memory before the checksum refused it."""
    path = ckpt / WEIGHTS_FILE
    head = path.read_bytes()
    with open(path, "r+b") as f:  # a valid header, then a hole: no disk space used
        f.truncate(40 << 30)
    assert path.stat().st_size == 40 << 30 and head
    with pytest.raises(CheckpointError, match="more than this checkpoint can hold"):
        load_checkpoint(ckpt)


def test_weights_a_little_too_large_are_refused_before_reading(ckpt: Path) -> None:
    with open(ckpt / WEIGHTS_FILE, "ab") as f:
        f.write(b"\0" * (64 << 20))  # 64 MB more than a simple model's 100 KB of weights can need
    with pytest.raises(CheckpointError, match="more than this checkpoint can hold"):
        load_checkpoint(ckpt)


def test_a_config_json_of_gigabytes_is_refused_from_its_size(ckpt: Path) -> None:
    with open(ckpt / CONFIG_FILE, "r+b") as f:
        f.truncate(2 << 30)
    with pytest.raises(CheckpointError, match="more than this checkpoint can hold"):
        load_checkpoint(ckpt)


# --- fault 4: a closed or full standard output

TINY_TRAIN = ["train", "--model", "simple", "--sweeps", "0.05", "--seed", "0", "--device", "cpu"]


def run_into(stdout, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # unbuffered: each line is written at once, as a long log (or a terminal) makes it be
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.run([sys.executable, "-m", "aelab", *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          env=env, timeout=timeout)


def run_into_closed_pipe(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run with standard output a pipe whose reader has already gone, as after `| head -1` has read its line."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return run_into(write_end, *args, timeout=timeout)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [["models"], ["models", "--json"], ["data", "info"], ["--help"],
                                  ["data", "info", "--json"]])
def test_a_closed_pipe_on_stdout_ends_quietly(args) -> None:
    proc = run_into_closed_pipe(*args)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_a_full_stdout_is_one_line_and_exit_2() -> None:
    with open("/dev/full", "w") as full:
        proc = run_into(full, "models")
    assert one_line_error(proc) == "aelab models: error: cannot write to standard output: No space left on device"


def test_training_whose_log_reader_went_away_still_saves_the_model(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_into_closed_pipe(*TINY_TRAIN, "--data", str(tiny_npz), "--out", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    load_checkpoint(out)
    names = {p.name for p in out.iterdir()}
    assert {CONFIG_FILE, WEIGHTS_FILE} <= names and not names & {"resume.safetensors", ".aelab.lock"}
    assert _temporaries(out) == []


def test_training_with_a_full_stdout_saves_the_model_and_says_output_was_lost(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with open("/dev/full", "w") as full:
        proc = run_into(full, *TINY_TRAIN, "--data", str(tiny_npz), "--out", str(out))
    assert "No space left on device" in one_line_error(proc)
    load_checkpoint(out)


@pytest.mark.slow
def test_the_tutorial_into_a_closed_pipe_writes_everything(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "tutorial"
    proc = run_into_closed_pipe("tutorial", "--data", str(tiny_npz), "--sweeps", "0.05", "--models", "simple",
                                "--tsne-limit", "0", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert (out / "summary.json").exists() and (out / "report.md").exists()
    load_checkpoint(out / "simple" / "checkpoint")


# --- fault 5: SIGTERM is treated like Ctrl-C

def _start(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "TEST_DEVICE": "cpu",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.Popen([sys.executable, "-m", "aelab", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kwargs)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "the command ended before " + path.name + " appeared"
        assert time.monotonic() < deadline, f"no {path.name} appeared"
        time.sleep(0.01)


def _temporaries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tmp"))


SIGTERM_TRAIN = ["train", "--model", "simple", "--sweeps", "3", "--seed", "4", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def uninterrupted_weights(tiny_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = _start(*SIGTERM_TRAIN, "--data", str(tiny_npz), "--out", str(out))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return load_checkpoint(out).model.state_dict()


def test_sigterm_during_training_saves_says_how_to_resume_and_resumes_exactly(tiny_npz, tmp_path,
                                                                               uninterrupted_weights) -> None:
    import random
    import signal
    import time
    import torch
    from aelab.training.resume import RESUME_FILE
    out = tmp_path / "run"
    proc = _start(*SIGTERM_TRAIN, "--data", str(tiny_npz), "--out", str(out), "--checkpoint-every", "1e-9")
    _wait_for(out / RESUME_FILE, proc)  # from now on a save is (almost) always in progress
    time.sleep(random.uniform(0.0, 0.2))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "--resume" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _temporaries(out) == []  # no .resume.safetensors.*.tmp
    proc = _start(*SIGTERM_TRAIN, "--data", str(tiny_npz), "--out", str(out), "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    for name, tensor in load_checkpoint(out).model.state_dict().items():
        assert torch.equal(tensor, uninterrupted_weights[name]), name


def test_sigterm_during_the_final_evaluation_keeps_the_run(tiny_npz, tmp_path, monkeypatch, capsys) -> None:
    import signal
    import aelab.api as api
    from aelab.cli import main
    from aelab.terminal import Terminated
    from aelab.training.resume import RESUME_FILE
    out = tmp_path / "run"
    real_evaluate = api.evaluate

    def terminated(*args, **kwargs):
        raise Terminated()
    monkeypatch.setattr(api, "evaluate", terminated)
    args = ["train", "--model", "simple", "--sweeps", "0.05", "--device", "cpu", "--quiet", "--data", str(tiny_npz),
            "--out", str(out)]
    assert main(args) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "--resume" in err and (out / RESUME_FILE).exists() and not (out / WEIGHTS_FILE).exists()
    monkeypatch.setattr(api, "evaluate", real_evaluate)
    assert main([*args, "--resume"]) == 0
    assert not (out / RESUME_FILE).exists()
    load_checkpoint(out)


@pytest.mark.slow
def test_sigterm_on_the_tutorial_ends_its_helper_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    import signal
    import time
    from tests.test_tutorial import _running_in_group
    out = tmp_path / "out"
    proc = _start("tutorial", "--sweeps", "0.5", "--tsne-limit", "6000", "--out", str(out), "--quiet",
                  start_new_session=True)
    _wait_for(out / "simple" / "checkpoint", proc)  # the first model is done; its t-SNE is on the helper
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)  # to the main process only, as `kill PID` does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "terminated" in err
    for _ in range(60):
        if not _running_in_group(proc.pid):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the tutorial's helper (or its resource tracker) outlived it")
    assert _temporaries(out) == []


# --- fault 6: the tutorial's helper, ended inside an atomic write, leaves no temporary file

def _write_slowly(path: str) -> None:
    import time
    from aelab.fileio import atomic_write
    with atomic_write(path) as f:
        f.write(b"half a picture")
        time.sleep(60)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_helper_ended_inside_an_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    import time
    from aelab.terminal import stop_pool
    from aelab.tutorial.run import HELPER_GRACE_SECONDS, helper_pool
    pool = helper_pool("process")
    pool.submit(_write_slowly, str(tmp_path / "grid.png"))
    deadline = time.monotonic() + 60
    while not _temporaries(tmp_path):
        assert time.monotonic() < deadline, "the helper never started writing"
        time.sleep(0.02)
    stop_pool(pool, HELPER_GRACE_SECONDS)
    time.sleep(0.2)
    assert _temporaries(tmp_path) == [] and not (tmp_path / "grid.png").exists()


# --- fault 8: one writer per output folder; a different finished model is not replaced silently

def test_a_second_writer_is_refused_with_one_line_naming_the_owner(tiny_npz: Path, tmp_path: Path) -> None:
    from aelab.locking import LOCK_FILE, folder_lock
    out = tmp_path / "run"
    out.mkdir()
    with folder_lock(out):  # as a first `aelab train` would hold it
        line = one_line_error(run_aelab(*TINY_TRAIN, "--quiet", "--data", str(tiny_npz), "--out", str(out)))
        assert f"pid {os.getpid()}" in line and "is writing to this folder" in line
        proc = run_aelab("tutorial", "--data", str(tiny_npz), "--sweeps", "0.05", "--models", "simple",
                         "--tsne-limit", "0", "--out", str(out), "--quiet")
        assert "is writing to this folder" in one_line_error(proc)
    assert not (out / WEIGHTS_FILE).exists() and not (out / LOCK_FILE).exists()
    proc = run_aelab(*TINY_TRAIN, "--quiet", "--data", str(tiny_npz), "--out", str(out))  # free again
    assert proc.returncode == 0, proc.stderr
    assert not (out / LOCK_FILE).exists()


def test_two_concurrent_trainings_into_one_folder_one_is_refused(tiny_npz: Path, tmp_path: Path) -> None:
    import signal
    from aelab.training.resume import load_training_state, RESUME_FILE
    out = tmp_path / "run"
    args = ["train", "--model", "deep", "--sweeps", "500", "--device", "cpu", "--quiet", "--data", str(tiny_npz),
            "--out", str(out)]
    first = _start(*args)  # minutes of work: still running when the second one starts
    _wait_for(out / ".aelab.lock", first)
    second = _start(*args, "--seed", "1", "--overwrite")  # --overwrite: refused for the lock alone
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2 and "is writing to this folder" in err and "Traceback" not in err
    assert first.poll() is None
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM, err
    assert load_training_state(out / RESUME_FILE).config["seed"] == 0  # the first run's state, untouched


def test_a_lock_left_by_a_killed_process_is_stale_and_taken_over(tiny_npz: Path, tmp_path: Path) -> None:
    from aelab.locking import LOCK_FILE
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "run"
    out.mkdir()
    import socket
    (out / LOCK_FILE).write_text(f"{dead.stdout.strip()} {socket.gethostname()}\n")
    proc = run_aelab(*TINY_TRAIN, "--quiet", "--data", str(tiny_npz), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    load_checkpoint(out)
    assert not (out / LOCK_FILE).exists()


def test_training_into_a_folder_with_another_finished_model_needs_overwrite(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_aelab(*TINY_TRAIN, "--quiet", "--data", str(tiny_npz), "--out", str(out)).returncode == 0
    before = (out / WEIGHTS_FILE).read_bytes()
    other = [a if a != "0" else "5" for a in TINY_TRAIN]  # another seed
    line = one_line_error(run_aelab(*other, "--quiet", "--data", str(tiny_npz), "--out", str(out)))
    assert "another trained model" in line and "seed" in line and "--overwrite" in line
    assert (out / WEIGHTS_FILE).read_bytes() == before
    # the same run again is no other model; --overwrite replaces one that is
    assert run_aelab(*TINY_TRAIN, "--quiet", "--data", str(tiny_npz), "--out", str(out)).returncode == 0
    proc = run_aelab(*other, "--quiet", "--overwrite", "--data", str(tiny_npz), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(out).info["training"]["seed"] == 5


def test_files_of_a_checkpoints_names_that_aelab_did_not_write_need_overwrite(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "myproject"
    out.mkdir()
    (out / "metrics.csv").write_text("epoch,accuracy\n1,0.5\n")
    (out / "run.toml").write_text("[my settings]\n")
    line = one_line_error(run_aelab(*TINY_TRAIN, "--quiet", "--data", str(tiny_npz), "--out", str(out)))
    assert "metrics.csv, run.toml but no aelab checkpoint" in line and "--overwrite" in line
    assert (out / "metrics.csv").read_text() == "epoch,accuracy\n1,0.5\n"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "run.toml"]
    proc = run_aelab(*TINY_TRAIN, "--quiet", "--overwrite", "--data", str(tiny_npz), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    load_checkpoint(out)


def test_a_link_of_a_checkpoints_name_is_not_written_through_even_when_broken(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.toml").symlink_to(tmp_path / "elsewhere.toml")  # dangling: exists() says no file
    line = one_line_error(run_aelab(*TINY_TRAIN, "--quiet", "--data", str(tiny_npz), "--out", str(out)))
    assert "holds run.toml but no aelab checkpoint" in line
    assert not (tmp_path / "elsewhere.toml").exists() and (out / "run.toml").is_symlink()


def test_a_curve_left_by_a_run_stopped_before_saving_does_not_block_the_next(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_aelab(*TINY_TRAIN, "--quiet", "--data", str(tiny_npz), "--out", str(out)).returncode == 0
    for name in (CONFIG_FILE, WEIGHTS_FILE, "codec.safetensors", "run.toml"):  # as if stopped before the save
        (out / name).unlink()
    proc = run_aelab(*TINY_TRAIN, "--quiet", "--data", str(tiny_npz), "--out", str(out))
    assert proc.returncode == 0, proc.stderr


def test_a_config_json_that_is_no_checkpoint_is_not_replaced_silently(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / CONFIG_FILE).write_text('{"editor.fontSize": 12}\n')
    line = one_line_error(run_aelab(*TINY_TRAIN, "--quiet", "--data", str(tiny_npz), "--out", str(out)))
    assert "checkpoint that cannot be read" in line and "--overwrite" in line
    assert (out / CONFIG_FILE).read_text() == '{"editor.fontSize": 12}\n'


# --- fault injection: SIGKILL or SIGTERM at a random moment of `aelab train` never loses both states

INJECT_B = ["train", "--model", "simple", "--sweeps", "2", "--seed", "7", "--device", "cpu", "--quiet"]
INJECT_A = [a if a != "7" else "8" for a in INJECT_B]


@pytest.fixture(scope="module")
def injection_runs(tiny_npz, tmp_path_factory):
    """The old checkpoint A (folder to copy), and the weights and duration of the new run B, uninterrupted."""
    import time
    old = tmp_path_factory.mktemp("old")
    proc = _start(*INJECT_A, "--data", str(tiny_npz), "--out", str(old))
    assert proc.communicate(timeout=300) and proc.returncode == 0
    new = tmp_path_factory.mktemp("new")
    started = time.monotonic()
    proc = _start(*INJECT_B, "--data", str(tiny_npz), "--out", str(new))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return old, load_checkpoint(new).model.state_dict(), time.monotonic() - started


def _same_weights(a: dict, b: dict) -> bool:
    import torch
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("signame", ["SIGKILL", "SIGTERM"])
def test_a_kill_at_a_random_moment_leaves_the_old_state_or_the_new_one(tiny_npz, tmp_path, injection_runs, seed,
                                                                       signame) -> None:
    import random
    import signal
    import time
    from aelab.training.resume import RESUME_FILE, load_training_state
    old, new_weights, seconds = injection_runs
    out = Path(shutil.copytree(old, tmp_path / "out"))
    old_weights = load_checkpoint(out).model.state_dict()
    proc = _start(*INJECT_B, "--overwrite", "--checkpoint-every", "0.02", "--data", str(tiny_npz), "--out", str(out))
    time.sleep(random.Random(seed).uniform(0.0, seconds * 1.1))
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=120)
    # -SIGTERM: it came before the command set up its handler (starting Python) or after it ended
    assert proc.returncode in (0, -signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGTERM), err
    assert "Traceback" not in err, err
    if signame == "SIGTERM":  # caught: the write under way removes its temporary file
        assert _temporaries(out) == [], "a half-written file was left"
    else:  # nothing outlives SIGKILL, and a write cut short leaves its hidden temporary file: the next run
        assert all(re.fullmatch(r"\.[\w.]+\.\w+\.tmp", t) for t in _temporaries(out))  # removes it, below
    if (out / RESUME_FILE).exists():  # the new run's state: intact, and it finishes the run exactly
        load_training_state(out / RESUME_FILE)
        resumed = _start(*INJECT_B, "--overwrite", "--resume", "--data", str(tiny_npz), "--out", str(out))
        _, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err
        assert _same_weights(load_checkpoint(out).model.state_dict(), new_weights)
    else:  # no run in progress: the old checkpoint or the new one, whole
        weights = load_checkpoint(out).model.state_dict()
        assert _same_weights(weights, old_weights) or _same_weights(weights, new_weights)
        if _temporaries(out):
            rerun = _start(*INJECT_B, "--overwrite", "--data", str(tiny_npz), "--out", str(out))
            _, err = rerun.communicate(timeout=300)
            assert rerun.returncode == 0, err
    assert _temporaries(out) == [], "the next run left a killed run's temporary file"


def test_a_run_removes_the_temporary_files_a_killed_run_left(tiny_npz, tmp_path) -> None:
    """SIGKILL (or a power cut) during a write leaves its hidden ``.NAME.*.tmp``: nothing can remove it then.
    The next run into the folder, holding its lock, removes those of its own files, and no other."""
    out = tmp_path / "run"
    out.mkdir()
    left = [out / ".resume.safetensors.k1l2m3.tmp", out / ".model.safetensors.a1b2c3.tmp", out / ".config.json.x.tmp"]
    mine = [out / ".notes.tmp", out / ".grid.png.q.tmp"]  # not what training writes
    for path in left + mine:
        path.write_bytes(b"half")
    done = run_aelab(*TINY_TRAIN, "--quiet", "--data", str(tiny_npz), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert [p for p in left if p.exists()] == [] and all(p.exists() for p in mine)


def test_a_sigterm_between_the_two_renames_of_a_checkpoint_waits_for_both(trained, tmp_path, monkeypatch) -> None:
    """Without deferring it, SIGTERM's exception after the weights' rename left new weights with the old JSON,
    which loading refuses: the checkpoint was neither old nor new."""
    import signal
    import aelab.fileio as fileio
    from aelab.models.checkpoint import save_checkpoint
    from aelab.models.networks import build_model
    from aelab.terminal import Terminated, sigterm_interrupts
    folder = Path(shutil.copytree(trained.folder, tmp_path / "ckpt"))
    new_model = build_model(trained.result.model_config, seed=123)
    real_replace = os.replace

    def replace_then_sigterm(src, dst):
        real_replace(src, dst)
        if Path(dst).name == WEIGHTS_FILE:
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(fileio.os, "replace", replace_then_sigterm)
    import threading
    busy = threading.Event()  # another thread, as torch has: the signal may be delivered to it
    other = threading.Thread(target=busy.wait, daemon=True)
    other.start()
    with sigterm_interrupts(), pytest.raises(Terminated):
        save_checkpoint(folder, new_model, trained.result.model_config)
        for _ in range(1000):  # the deferred handler runs here at the latest
            pass
    busy.set()
    import torch
    loaded = load_checkpoint(folder).model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in new_model.state_dict().items())


TUTORIAL = ["tutorial", "--sweeps", "0.05", "--models", "simple,deep", "--tsne-limit", "100", "--device", "cpu",
            "--quiet"]


@pytest.fixture(scope="module")
def old_tutorial(tiny_npz, tmp_path_factory):
    """A complete tutorial output (seed 9), and how long a run takes."""
    import time
    out = tmp_path_factory.mktemp("old-tutorial") / "out"
    started = time.monotonic()
    proc = _start(*TUTORIAL, "--seed", "9", "--data", str(tiny_npz), "--out", str(out))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out, time.monotonic() - started


def _all_whole(out: Path) -> None:
    """Every file of a tutorial output reads: the JSON parses, each picture decodes, each checkpoint loads."""
    from PIL import Image
    json.loads((out / "summary.json").read_text())
    assert (out / "report.md").read_text().strip()
    for png in out.rglob("*.png"):
        with Image.open(png) as image:
            image.load()
    for checkpoint in out.glob("*/checkpoint"):
        load_checkpoint(checkpoint)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("signame", ["SIGKILL", "SIGTERM"])
def test_a_kill_at_a_random_moment_of_the_tutorial_leaves_every_file_whole(tiny_npz, tmp_path, old_tutorial, seed,
                                                                           signame) -> None:
    import random
    import signal
    import time
    from tests.test_tutorial import _running_in_group
    old, seconds = old_tutorial
    out = Path(shutil.copytree(old, tmp_path / "out"))
    proc = _start(*TUTORIAL, "--seed", "0", "--data", str(tiny_npz), "--out", str(out), start_new_session=True)
    time.sleep(random.Random(seed).uniform(0.0, seconds * 1.1))
    if signame == "SIGKILL":  # as the out-of-memory killer or a container's end: the whole group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    else:  # as `kill PID`: the main process alone, which must end its helper
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    for _ in range(100):
        if not _running_in_group(proc.pid):
            break
        time.sleep(0.05)
    else:
        pytest.fail("a process of the tutorial outlived it")
    if signame == "SIGTERM":
        assert proc.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), err
        assert _temporaries(out) == []
    _all_whole(out)  # each file old or new, none half-written
    if signame == "SIGKILL" and seed == 0:  # its stale lock does not block the next run
        proc = _start(*TUTORIAL, "--seed", "0", "--data", str(tiny_npz), "--out", str(out))
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        _all_whole(out)


# --- a stop while an image folder is decoded in worker processes

def _handlers() -> tuple:
    import signal
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


def test_folder_decoding_workers_leave_stops_to_the_parent() -> None:
    import concurrent.futures
    import signal
    from aelab.data.folders import leave_stops_to_the_parent
    with concurrent.futures.ProcessPoolExecutor(1, initializer=leave_stops_to_the_parent) as pool:
        assert pool.submit(_handlers).result() == (signal.SIG_IGN, signal.SIG_DFL)


def test_a_stopped_process_pool_fails_its_queued_work_and_prints_nothing(monkeypatch) -> None:
    """Stopping a pool must not cancel the futures its manager thread is failing at the same moment: on
    Python 3.11 the loser of that race printed an InvalidStateError traceback from the manager thread
    under the command's one-line message (CI saw it once, under a SIGTERM to the whole group)."""
    import concurrent.futures
    import concurrent.futures.process
    import threading
    import time
    from aelab.terminal import stop_pool
    unhandled = []
    monkeypatch.setattr(threading, "excepthook", unhandled.append)
    pool = concurrent.futures.ProcessPoolExecutor(1)
    running = pool.submit(time.sleep, 30)
    queued = [pool.submit(abs, -i) for i in range(50)]
    deadline = time.monotonic() + 60
    while not running.running():
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.01)
    started = time.monotonic()
    stop_pool(pool, 2.0)
    assert time.monotonic() - started < 20  # the sleeping worker was ended, not waited for
    assert unhandled == []
    assert all(f.done() and not f.cancelled() for f in [running, *queued])
    assert isinstance(queued[-1].exception(), concurrent.futures.process.BrokenProcessPool)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
        except (OSError, IndexError):
            pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc")
@pytest.mark.parametrize("signame,status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stop_to_the_whole_group_while_decoding_a_folder_is_one_line(tmp_path, monkeypatch, signame,
                                                                       status) -> None:
    """Ctrl-C in a terminal reaches the decoding workers too: the command still ends with its one line
    and exit status, no worker traceback, and nothing written."""
    import signal
    import time
    from PIL import Image
    from aelab.data import load_dataset
    for i, image in enumerate(load_dataset(None).train.images[:6000]):
        folder = tmp_path / "digits" / str(i % 10)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))  # no decoded folder cached from before
    proc = _start("data", "pack", str(tmp_path / "digits"), "-o", str(tmp_path / "packed"), start_new_session=True)
    deadline = time.monotonic() + 120
    while len(_children(proc.pid)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "no decoding workers appeared"
        time.sleep(0.01)
    os.killpg(proc.pid, getattr(signal, signame))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "packed").exists() and not list(tmp_path.glob(".packed*"))


def test_no_check_in_a_function_is_an_assert():
    """``python -O`` removes ``assert``: a check of input written as one is skipped there (an edited packed
    index once read files outside its folder so). Only module-level invariants of constants may assert."""
    import ast
    import aelab
    found = []
    for path in sorted(Path(aelab.__file__).parent.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found += [f"{path.name}:{node.lineno}" for node in ast.walk(function) if isinstance(node, ast.Assert)]
    assert found == []


def test_a_stop_asked_while_signals_are_deferred_comes_when_they_are_no_longer():
    """numba's compiler calls back into Python from C, where an exception is swallowed (with a traceback):
    warm-up defers SIGTERM and SIGINT, which then stop the command right after it."""
    import os
    import signal
    from aelab.terminal import Terminated, sigterm_interrupts, signals_deferred
    reached = []
    with sigterm_interrupts(), pytest.raises(Terminated):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            reached.append("after the signal, still inside")
        reached.append("never: the stop comes on leaving")
    assert reached == ["after the signal, still inside"]
