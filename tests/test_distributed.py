"""Data-parallel training under torchrun: several processes train the model one process would.

Every process walks the same global minibatches and computes the gradient of its part; the parts'
gradients are summed, so 2 processes must give the same model as 1 with the same minibatch (up to
float rounding), on one machine and on two "machines" (two torchrun launches on 127.0.0.1).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from aelab.training.distributed import Ranks

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
AELAB = ["-m", "aelab"]


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("size", [7, 64, 100, 1000])
def test_the_ranks_parts_cover_each_row_of_a_minibatch_once(world: int, size: int) -> None:
    rows = np.concatenate([np.arange(size)[Ranks(rank, world).part(size)] for rank in range(world)])
    assert rows.tolist() == list(range(size))
    sizes = [len(range(size)[Ranks(rank, world).part(size)]) for rank in range(world)]
    assert max(sizes) - min(sizes) <= 1


def test_one_process_is_rank_0_of_1_and_its_collectives_change_nothing() -> None:
    import torch
    ranks = Ranks()
    assert ranks.main and ranks.part(64) == slice(0, 64)
    t = torch.arange(4.0)
    assert ranks.sum_(t).tolist() == [0, 1, 2, 3] and ranks.broadcast_(t).tolist() == [0, 1, 2, 3]
    assert ranks.agree(True, False) == [True, False]
    assert ranks.stop_or_save(5, True, False) == (True, False) and ranks.stop_or_save(7, False, True) == (False, True)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """scikit-learn's 8x8 digits as uint8 images, 1,500 to train on."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images * 16).clip(0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    np.savez(path, x_train=x[:1500], y_train=d.target[:1500], x_test=x[1500:], y_test=d.target[1500:])
    return path


@pytest.fixture(scope="module")
def cancer(tmp_path_factory) -> Path:
    """A table beyond [0, 1] (standardised), trained with MSE through autograd."""
    from sklearn.datasets import load_breast_cancer
    x, y = load_breast_cancer(return_X_y=True)
    path = tmp_path_factory.mktemp("cancer") / "cancer.csv"
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", fmt="%.6g",
               header=",".join([f"f{i}" for i in range(x.shape[1])] + ["label"]), comments="")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aelab_train(data: Path, out: Path, *options: str) -> list[str]:
    return [*AELAB, "train", "--data", str(data), "--out", str(out), "--quiet", *options]


def run(command: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def standalone(n: int) -> list[str]:
    return [*TORCHRUN, "--standalone", "--nproc-per-node", str(n)]


def weights(out: Path) -> dict[str, np.ndarray]:
    return load_file(out / "model.safetensors")


def metrics(out: Path) -> dict:
    return json.loads((out / "config.json").read_text())["metrics"]


def assert_same_model(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_allclose(wa[name], wb[name], rtol=0, atol=1e-5, err_msg=name)


def test_two_processes_train_the_model_one_process_trains(digits: Path, tmp_path: Path) -> None:
    options = ["--model", "simple", "--sweeps", "3", "--recipe", "adam", "--noise", "gaussian:0.2", "--seed", "3"]
    one = run([sys.executable, *aelab_train(digits, tmp_path / "one", *options)])
    assert one.returncode == 0, one.stderr
    two = run([*standalone(2), *aelab_train(digits, tmp_path / "two", *options)])
    assert two.returncode == 0, two.stderr
    assert abs(metrics(tmp_path / "one")["test_psnr_db"] - metrics(tmp_path / "two")["test_psnr_db"]) < 0.5
    assert_same_model(tmp_path / "one", tmp_path / "two")
    # rank 0 alone wrote: one metrics.csv, whose rows count the global minibatch's samples
    def steps(out: Path) -> list[list[str]]:
        return [row.split(",")[:2] for row in (out / "metrics.csv").read_text().splitlines()]
    assert steps(tmp_path / "two") == steps(tmp_path / "one")
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one").iterdir())


def test_two_machines_on_one_host_train_the_model_one_process_trains(cancer: Path, tmp_path: Path) -> None:
    options = ["--model", "simple", "--label-column", "label", "--sweeps", "4", "--recipe", "adam", "--minibatch-size", "33"]
    one = run([sys.executable, *aelab_train(cancer, tmp_path / "one", *options)])
    assert one.returncode == 0, one.stderr
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [subprocess.Popen([*TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                               "--rdzv-endpoint", endpoint, "--rdzv-id", "aelab-test",
                               *aelab_train(cancer, tmp_path / "two", *options)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [node.communicate(timeout=180) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert metrics(tmp_path / "one")["test_r2"] == pytest.approx(metrics(tmp_path / "two")["test_r2"], abs=1e-4)
    assert_same_model(tmp_path / "one", tmp_path / "two")


def test_two_processes_stream_a_packed_set_as_one_process_does(digits: Path, tmp_path: Path) -> None:
    packed = tmp_path / "packed"
    assert run([sys.executable, *AELAB, "data", "pack", str(digits), "-o", str(packed)]).returncode == 0
    options = ["--model", "simple", "--sweeps", "2"]  # the tutorial's learner: what is compared is the sharding
    one = run([sys.executable, *aelab_train(packed, tmp_path / "one", *options)])
    assert one.returncode == 0, one.stderr
    two = run([*standalone(2), *aelab_train(packed, tmp_path / "two", *options)])
    assert two.returncode == 0, two.stderr
    assert_same_model(tmp_path / "one", tmp_path / "two")


def test_more_processes_than_a_minibatch_has_samples_is_refused(digits: Path, tmp_path: Path) -> None:
    result = run([*standalone(2), *aelab_train(digits, tmp_path / "out", "--minibatch-size", "1", "--sweeps", "0.01")])
    assert result.returncode != 0
    assert "2 training processes cannot share a minibatch of 1" in result.stderr
    # torchrun prints its own traceback of the failed launch, but none from inside aelab
    assert not [line for line in result.stderr.splitlines() if line.strip().startswith("File") and "aelab" in line]
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_commands_other_than_train_refuse_torchrun(tmp_path: Path) -> None:
    result = run([*standalone(2), *AELAB, "evaluate", "--checkpoint", "mnist-deep"])
    assert result.returncode != 0
    assert "aelab evaluate runs in one process; torchrun starts several for aelab train only" in result.stderr


def wait_for_rows(csv: Path, rows: int, process: subprocess.Popen, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and process.poll() is None:
        if csv.exists() and len(csv.read_text().splitlines()) > rows:
            return
        time.sleep(0.1)
    raise AssertionError(f"training did not reach {rows} progress rows: {process.poll()}")


@pytest.mark.slow
def test_an_interrupted_two_process_run_resumes_to_the_uninterrupted_model(tmp_path: Path) -> None:
    # the default model, without its validation split (measured 40 times, whatever the run's length): each run
    # of the test stays well inside its time limit on 2 cores
    options = ["--sweeps", "0.5", "--validation", "0", "--checkpoint-every", "0"]
    whole = run([*standalone(2), *AELAB, "train", "--out", str(tmp_path / "whole"), "--quiet", *options], 300)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "cut"
    launch = subprocess.Popen([*standalone(2), *AELAB, "train", "--out", str(out), "--quiet", *options],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_rows(out / "metrics.csv", 8, launch)
    launch.send_signal(signal.SIGTERM)  # torchrun passes it to every rank
    _, stderr = launch.communicate(timeout=120)
    assert (out / "resume.safetensors").exists(), stderr
    assert not (out / "model.safetensors").exists()
    resumed = run([*standalone(2), *AELAB, "train", "--out", str(out), "--quiet", "--resume", *options], 300)
    assert resumed.returncode == 0, resumed.stderr
    assert not (out / "resume.safetensors").exists()
    assert_same_model(tmp_path / "whole", out)


@pytest.mark.slow
def test_a_rank_that_dies_stops_the_others_with_a_message_and_no_checkpoint(tmp_path: Path) -> None:
    """torchrun SIGTERMs the survivors within milliseconds of a rank's death, often before they reach their next
    collective: rank 0 must still say what happened. Rank 0 is held (SIGSTOP) while rank 1 is killed and torchrun
    sends its SIGTERM, so the SIGTERM is always there first when rank 0 goes on."""
    out = tmp_path / "out"
    launch = subprocess.Popen([*standalone(2), *AELAB, "train", "--out", str(out), "--quiet", "--sweeps", "20"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_rows(out / "metrics.csv", 6, launch)
    workers = subprocess.run(["pgrep", "-P", str(launch.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    rank = {int(next(v[5:] for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if v.startswith(b"RANK="))):
            int(pid) for pid in workers}
    os.kill(rank[0], signal.SIGSTOP)
    os.kill(rank[1], signal.SIGKILL)
    time.sleep(1.5)  # torchrun notices (it polls every 0.1 s) and SIGTERMs rank 0, which gets it on SIGCONT
    os.kill(rank[0], signal.SIGCONT)
    _, stderr = launch.communicate(timeout=120)  # no hang
    assert launch.returncode != 0
    said = [line for line in stderr.splitlines() if line.startswith("aelab train:")]
    assert len(said) == 1 and "error: another training process failed or was stopped" in said[0], stderr[-3000:]
    assert not (out / "model.safetensors").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


@pytest.mark.slow
def test_sigint_then_sigterm_at_once_still_saves_the_run(tmp_path: Path) -> None:
    """A Ctrl-C and then a scheduler's SIGTERM (torchrun passes each on to every rank): the second signal is the
    same request to stop, and must not cancel the save. Large minibatches put the ranks' next agreement on
    stopping well after the SIGTERM, where the SIGTERM used to end both ranks ("terminated") unsaved."""
    from aelab.training.resume import load_training_state
    out = tmp_path / "out"
    options = ["--minibatch-size", "2048", "--checkpoint-every", "0"]
    launch = subprocess.Popen([*standalone(2), *AELAB, "train", "--out", str(out), "--quiet", "--sweeps", "20",
                               *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_rows(out / "metrics.csv", 3, launch)
    launch.send_signal(signal.SIGINT)
    time.sleep(0.05)  # torchrun forwards the first, starts shutting down, then forwards the second
    launch.send_signal(signal.SIGTERM)
    _, stderr = launch.communicate(timeout=120)
    assert "terminated" not in stderr and "the state is saved" in stderr, stderr[-2000:]
    saved = load_training_state(out / "resume.safetensors")
    assert saved.minibatches_done > 0
    resumed = run([*standalone(2), *AELAB, "train", "--out", str(out), "--quiet", "--resume", *options,
                   "--sweeps", str((saved.minibatches_done + 2) * 2048 / 60000)], 300)
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "model.safetensors").exists() and not (out / "resume.safetensors").exists()


def test_once_a_peer_failed_torchruns_sigterm_cannot_cut_the_message_short() -> None:
    """torchrun SIGTERMs the survivors within milliseconds of a rank's death, while they print why they stop."""
    script = ("import os, signal, sys, time, torch\n"
              "from aelab.terminal import sigterm_interrupts\n"
              "from aelab.training.distributed import PeerFailed, _collective\n"
              "def peer_gone(tensor, **options):\n"
              "    raise RuntimeError('Connection closed by peer')\n"
              "torch.distributed.init_process_group('gloo', store=torch.distributed.HashStore(), rank=0, world_size=1)\n"
              "with sigterm_interrupts():\n"
              "    try:\n"
              "        _collective(peer_gone, torch.zeros(1), None)\n"
              "    except PeerFailed as e:\n"
              "        os.kill(os.getpid(), signal.SIGTERM)\n"
              "        time.sleep(0.2)\n"
              "        print(f'error: {e}', file=sys.stderr)\n"
              "        sys.stderr.flush()\n"
              "        os._exit(2)\n")
    result = run([sys.executable, "-c", script], timeout=60)
    assert result.stderr.strip().startswith("error: another training process failed or was stopped "
                                            "(Connection closed by peer)"), result.stderr


def test_making_a_peer_failed_error_leaves_the_signals_and_the_exit_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only finding the peers gone ignores SIGTERM and ends the process at exit without leaving the group."""
    from aelab.training import distributed
    monkeypatch.setattr(distributed, "_peers_lost", False)
    before = signal.getsignal(signal.SIGTERM)
    try:
        distributed.PeerFailed("another training process failed or was stopped")
        assert signal.getsignal(signal.SIGTERM) == before
        assert distributed._peers_lost is False
    finally:
        signal.signal(signal.SIGTERM, before)
