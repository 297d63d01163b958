"""Nothing lost: kills, Ctrl-C and a diverging loss keep a resumable, uncorrupted state."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from aelab.training.resume import RESUME_FILE, load_training_state
from aelab.training.loop import TrainConfig, TrainingDiverged, train
from aelab.training.steps import DenseBackprop

TRAIN = ["--model", "deep", "--sweeps", "12", "--seed", "2", "--device", "cpu", "--quiet"]


def aelab(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same arithmetic in every run
    return subprocess.Popen([sys.executable, "-m", "aelab", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def wait_for(path, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "training ended before writing a resume file"
        assert time.monotonic() < deadline, "no resume file appeared"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def uninterrupted(tiny_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    code, _, err = finish(aelab("train", *TRAIN, "--data", str(tiny_npz), "--out", str(out)))
    assert code == 0, err
    return weights(out)


def test_sigkill_at_a_random_moment_then_resume_is_bit_identical(tiny_npz, tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = aelab("train", *TRAIN, "--data", str(tiny_npz), "--out", str(out), "--checkpoint-every", "0.05")
    wait_for(out / RESUME_FILE, proc)
    time.sleep(random.uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    state = load_training_state(out / RESUME_FILE)  # never half-written
    assert state.minibatches_done > 0
    code, _, err = finish(aelab("train", *TRAIN, "--data", str(tiny_npz), "--out", str(out), "--resume"))
    assert code == 0, err
    resumed = weights(out)
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name
    assert not (out / RESUME_FILE).exists()  # done: nothing left to resume


def test_ctrl_c_stops_after_the_minibatch_saves_and_says_how_to_resume(tiny_npz, tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = aelab("train", *TRAIN, "--data", str(tiny_npz), "--out", str(out), "--checkpoint-every", "0.05")
    wait_for(out / RESUME_FILE, proc)
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130
    assert "--resume" in err and "Traceback" not in err
    code, _, err = finish(aelab("train", *TRAIN, "--data", str(tiny_npz), "--out", str(out), "--resume"))
    assert code == 0, err
    for name, tensor in weights(out).items():
        assert torch.equal(tensor, uninterrupted[name]), name



def test_a_rerun_without_resume_refuses_to_discard_the_saved_run(tiny_npz, tmp_path):
    out = tmp_path / "run"
    proc = aelab("train", *TRAIN, "--data", str(tiny_npz), "--out", str(out), "--checkpoint-every", "0.05")
    wait_for(out / RESUME_FILE, proc)
    proc.send_signal(signal.SIGINT)
    assert finish(proc)[0] == 130
    saved = (out / RESUME_FILE).read_bytes()
    code, _, err = finish(aelab("train", *TRAIN, "--data", str(tiny_npz), "--out", str(out)))  # the same command
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "interrupted run" in err and "--resume" in err and "--overwrite" in err
    assert (out / RESUME_FILE).read_bytes() == saved and not (out / "model.safetensors").exists()
    short = [a if a != "12" else "0.5" for a in TRAIN]
    code, _, err = finish(aelab("train", *short, "--data", str(tiny_npz), "--out", str(out), "--overwrite"))
    assert code == 0, err  # --overwrite discards it and starts over
    assert not (out / RESUME_FILE).exists() and (out / "model.safetensors").exists()

def test_resume_refuses_other_settings_and_missing_state(tiny_npz, tmp_path):
    out = tmp_path / "run"
    proc = aelab("train", *TRAIN, "--data", str(tiny_npz), "--out", str(out), "--checkpoint-every", "0.05")
    wait_for(out / RESUME_FILE, proc)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    other = [a if a != "2" else "3" for a in TRAIN]  # another seed
    code, _, err = finish(aelab("train", *other, "--data", str(tiny_npz), "--out", str(out), "--resume"))
    assert code == 2 and "seed" in err and "--resume" in err
    code, _, err = finish(aelab("train", *TRAIN, "--data", str(tiny_npz), "--out", str(tmp_path / "none"),
                                "--resume"))
    assert code == 2 and "nothing to resume" in err


def test_a_diverging_loss_stops_with_a_message_and_keeps_the_last_good_state(tiny_data, tmp_path, monkeypatch):
    real_step = DenseBackprop.__call__
    calls = {"n": 0}

    def poisoned(self, inputs, target):
        calls["n"] += 1
        loss, metric = real_step(self, inputs, target)
        if calls["n"] > 300:
            self.weights[0].grad.fill_(float("nan"))
            loss = loss * float("nan")
        return loss, metric

    monkeypatch.setattr(DenseBackprop, "__call__", poisoned)
    resume_file = tmp_path / RESUME_FILE
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        train(tiny_data, TrainConfig(model="simple", sweeps=5, device="cpu"), log=None,
              resume_file=resume_file, checkpoint_every=1e-9)
    state = load_training_state(resume_file)
    assert 0 < state.minibatches_done <= 300
    assert all(torch.isfinite(t).all() for t in state.model.values())


def test_a_resume_file_that_does_not_fit_the_run_is_refused(tiny_data, tmp_path):
    from aelab.errors import CheckpointError
    from aelab.training.resume import TrainingState, save_training_state
    config = TrainConfig(model="simple", sweeps=1, device="cpu")
    model = train(tiny_data, TrainConfig(model="simple", sweeps=0.05, device="cpu"), log=None).model
    wrong_optimizer = TrainingState(config=config.to_dict(), data_sha256=tiny_data.sha256, minibatches_done=2,
                                    model=model.state_dict(), optimizer_tensors={"variance": torch.zeros(3)},
                                    optimizer_groups=[{"lr": 3e-5}], table={}, window={}, seconds=0.0)
    resume_file = tmp_path / RESUME_FILE
    save_training_state(resume_file, wrong_optimizer)
    with pytest.raises(CheckpointError, match="does not fit"):
        train(tiny_data, config, log=None, resume_file=resume_file, resume=True)


def test_only_a_second_ctrl_c_typed_later_stops_at_once_and_never_during_the_save(monkeypatch):
    """After a first Ctrl-C or SIGTERM asks the loop to stop and save: a SIGTERM (a scheduler's, or torchrun's
    passing a signal on) or a Ctrl-C passed on at once is the same request; a Ctrl-C typed later stops at once,
    unless the save that keeps the run is under way."""
    from aelab.training import loop
    with loop.stop_requests(True) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # the launcher passing the first on
        assert stop["stop"] and stop["signal"] == signal.SIGINT
        stop["since"] -= loop.REPEAT_AFTER
        stop["saving"] = True
        os.kill(os.getpid(), signal.SIGINT)  # the save goes on
        stop["saving"] = False
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    with loop.stop_requests(True) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        stop["since"] -= loop.REPEAT_AFTER
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop["stop"] and stop["signal"] == signal.SIGTERM


VALIDATED = ["--model", "residual", "--hidden", "64", "--loss", "mse", "--recipe", "fit", "--validation", "0.2", "--shift", "1",
             "--sweeps", "6", "--seed", "2", "--device", "cpu", "--quiet"]


def validation_record(folder):
    import json
    return json.loads((folder / "config.json").read_text())["training"]["validation_split"]


def test_a_run_with_early_stopping_resumed_after_sigkill_ends_bit_identical(tiny_npz, tmp_path):
    """The validation curve, the best weights kept so far and the patience count travel in the resume file."""
    whole = tmp_path / "whole"
    code, _, err = finish(aelab("train", *VALIDATED, "--data", str(tiny_npz), "--out", str(whole)))
    assert code == 0, err
    out = tmp_path / "run"
    proc = aelab("train", *VALIDATED, "--data", str(tiny_npz), "--out", str(out), "--checkpoint-every", "0.05")
    wait_for(out / RESUME_FILE, proc)
    time.sleep(random.uniform(0.2, 0.6))
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert load_training_state(out / RESUME_FILE).validation["curve"]  # measured before the kill
    code, _, err = finish(aelab("train", *VALIDATED, "--data", str(tiny_npz), "--out", str(out), "--resume"))
    assert code == 0, err
    for name, tensor in weights(out).items():
        assert torch.equal(tensor, weights(whole)[name]), name
    assert validation_record(out) == validation_record(whole)
