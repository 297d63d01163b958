"""End-to-end tests of the CNTK 105 tutorial run (aelab.tutorial.run.run_tutorial and `aelab tutorial`)."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aelab.models.checkpoint import load_checkpoint
from aelab.errors import OptionError
from aelab.evaluation.evaluate import evaluate
from aelab.tutorial.run import pick_tutorial_image, run_tutorial

MODEL_KEYS = {"train_error_pct", "test_error_pct", "test_bce", "test_mse", "test_psnr_db", "train_seconds",
              "samples_per_second", "sweeps", "parameters"}
FLOAT_KEYS = MODEL_KEYS - {"sweeps", "parameters"}


def _parameters(hidden: tuple[int, ...], code: int = 32, pixels: int = 784) -> int:
    dims = [pixels, *hidden, code, *reversed(hidden), pixels]
    return sum(i * o + o for i, o in zip(dims[:-1], dims[1:]))


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    """One tutorial run on the tiny data: (output folder, returned summary)."""
    out = tmp_path_factory.mktemp("tutorial") / "out"
    summary = run_tutorial(out, data=tiny_data, sweeps=0.05, tsne_samples=60, device="cpu", log=None,
                           progress_bar=False)
    return out, summary


def _png(path: Path) -> Image.Image:
    assert path.is_file(), path
    with Image.open(path) as im:
        im.verify()
    im = Image.open(path)
    im.load()
    assert im.format == "PNG" and im.width > 50 and im.height > 50
    return im


def test_summary_json_shape(run, tiny_data) -> None:
    out, returned = run
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary == json.loads(json.dumps(returned))  # the file says what the function returned
    assert {"data", "device", "models", "total_seconds"} <= set(summary)
    assert summary["data"] == {"name": "tiny", "train": 6400, "test": 200, "sha256": tiny_data.sha256}
    assert re.fullmatch(r"[0-9a-f]{64}", summary["data"]["sha256"])
    assert isinstance(summary["device"], str) and summary["device"].startswith("cpu")
    assert isinstance(summary["total_seconds"], float) and summary["total_seconds"] > 0
    assert list(summary["models"]) == ["simple", "deep"]
    for name, m in summary["models"].items():
        assert MODEL_KEYS <= set(m), name
        for key in FLOAT_KEYS:
            assert isinstance(m[key], float) and math.isfinite(m[key]), (name, key)
        assert m["sweeps"] == 0.05
        assert isinstance(m["parameters"], int) and not isinstance(m["parameters"], bool)
        assert 0 <= m["train_error_pct"] <= 100 and 0 <= m["test_error_pct"] <= 100
        assert m["test_bce"] > 0 and 0 < m["test_mse"] < 1 and m["test_psnr_db"] > 0
        assert m["train_seconds"] > 0 and m["samples_per_second"] > 0
    assert summary["models"]["simple"]["parameters"] == _parameters(()) == 50992
    assert summary["models"]["deep"]["parameters"] == _parameters((128, 64))


def test_pictures_exist_and_are_valid(run) -> None:
    out, summary = run
    _png(out / "training.png")
    for name, m in summary["models"].items():
        files = m["files"]
        for key in ("pair", "grid", "similarity", "tsne"):
            assert files[key] == f"{name}/{key}.png"
            _png(out / files[key])
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert pngs == sorted(["training.png"] + [f"{n}/{k}.png" for n in ("simple", "deep")
                                              for k in ("pair", "grid", "similarity", "tsne")])
    assert not list(out.rglob("*.tmp"))


def test_checkpoints_load_and_score_as_summarised(run, tiny_data) -> None:
    out, summary = run
    for name, m in summary["models"].items():
        ckpt = load_checkpoint(out / m["files"]["checkpoint"])
        assert ckpt.model_config.kind == name
        assert ckpt.info["data"]["name"] == "tiny" and ckpt.info["data"]["sha256"] == tiny_data.sha256
        assert evaluate(ckpt.model, tiny_data.test.images)["test_error_pct"] == pytest.approx(m["test_error_pct"])
        assert ckpt.info["metrics"]["test_error_pct"] == pytest.approx(m["test_error_pct"])


def test_report_references_every_picture(run) -> None:
    out, summary = run
    report = (out / "report.md").read_text(encoding="utf-8")
    assert report.startswith("# aelab tutorial report")
    assert "](training.png)" in report
    for name, m in summary["models"].items():
        for key in ("pair", "grid", "similarity", "tsne"):
            assert f"]({m['files'][key]})" in report, (name, key)
        assert f"{m['test_error_pct']:.2f}%" in report
        assert f"`{m['files']['checkpoint']}/`" in report
    assert "Mean 24.07" in report


def test_image_44_statistics(run) -> None:
    _, summary = run
    assert pick_tutorial_image() == 44
    for m in summary["models"].values():
        stats = m["image_stats"]
        assert stats["index"] == 44
        assert stats["original"] == {"max": 255.0, "median": 0.0, "mean": pytest.approx(24.0676, abs=1e-4),
                                     "min": 0.0}
        assert f"{stats['original']['mean']:.2f}" == "24.07"  # the tutorial's number
        decoded = stats["decoded"]
        assert 0.0 <= decoded["min"] <= decoded["median"] <= decoded["max"] <= 255.0


def test_similarity_pairs_are_the_tutorials(run, tiny_data) -> None:
    _, summary = run
    labels = tiny_data.test.labels
    assert labels[50] == labels[54] == 6 and labels[51] == 3 and labels[61] == 8
    for m in summary["models"].values():
        pairs = [(s["title"], s["index_a"], s["index_b"]) for s in m["similarities"]]
        assert pairs == [("two 6s", 50, 54), ("a 3 and an 8", 51, 61)]
        for s in m["similarities"]:
            for key in ("cos_original", "cos_decoded", "cos_code"):
                assert -1.0 <= s[key] <= 1.0 + 1e-9
        assert m["code"]["index"] == 50 and len(m["code"]["values"]) == 32


def test_log_lines_and_no_tsne(tiny_data, tmp_path: Path) -> None:
    lines: list[str] = []
    summary = run_tutorial(tmp_path / "out", data=tiny_data, sweeps=0.05, tsne_samples=0, models=("simple",),
                           device="cpu", log=lines.append, progress_bar=False)
    text = "\n".join(lines)
    assert "Original image statistics:\nMax: 255.00, Median: 0.00, Mean: 24.07, Min: 0.00" in text
    assert "Length of the original image is 784 and the encoded image is  32" in text
    assert "Average test error:" in text and "Average training error:" in text
    assert list(summary["models"]) == ["simple"]
    assert summary["models"]["simple"]["files"]["tsne"] is None
    assert not (tmp_path / "out" / "simple" / "tsne.png").exists()
    assert "tsne" not in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    # an earlier tutorial's outputs are replaced by the next run's
    again = run_tutorial(tmp_path / "out", data=tiny_data, sweeps=0.05, tsne_samples=0, models=("simple",),
                         device="cpu", log=None, progress_bar=False)
    assert again["models"]["simple"]["test_error_pct"] == summary["models"]["simple"]["test_error_pct"]


def test_a_tutorial_stopped_part_way_can_be_run_again_into_its_folder(tiny_data, tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C left simple/checkpoint/metrics.csv alone, and the next run refused the folder as another's."""
    import aelab.tutorial.run as tutorial

    class Trained(Exception):
        pass

    def train_model(*args, **kwargs):
        raise Trained
    monkeypatch.setattr(tutorial, "train_model", train_model)
    out = tmp_path / "out"
    (out / "simple" / "checkpoint").mkdir(parents=True)
    (out / "simple" / "checkpoint" / "metrics.csv").write_text("step,samples_seen,loss,metric,learning_rate,seconds\n")
    with pytest.raises(Trained):  # past the check: training began
        run_tutorial(out, data=tiny_data, sweeps=0.05, tsne_samples=0, models=("simple",), log=None,
                     progress_bar=False)


@pytest.mark.parametrize("theirs", ["report.md", "summary.json", "simple"])
def test_files_of_the_tutorials_names_that_it_did_not_write_are_kept(theirs, tiny_data, tmp_path: Path,
                                                                     monkeypatch) -> None:
    import aelab.tutorial.run as tutorial
    monkeypatch.setattr(tutorial, "train_model", lambda *a, **k: pytest.fail("trained before refusing"))
    out = tmp_path / "notes"
    out.mkdir()
    if theirs == "simple":
        (out / theirs).mkdir()
        (out / theirs / "mine.txt").write_text("my results\n")
    else:
        (out / theirs).write_text('{"mine": 1}\n')
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(OptionError, match=f"holds {theirs}, which the tutorial would replace"):
        run_tutorial(out, data=tiny_data, sweeps=0.05, tsne_samples=0, models=("simple",), log=None,
                     progress_bar=False)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_negative_tsne_samples(tiny_data, tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="tsne-samples"):
        run_tutorial(tmp_path / "out", data=tiny_data, sweeps=0.05, tsne_samples=-1, log=None, progress_bar=False)


def test_too_few_tsne_samples_are_refused_before_training(tiny_data, tmp_path: Path, monkeypatch) -> None:
    import aelab.tutorial.run as tutorial
    monkeypatch.setattr(tutorial, "train_model", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(OptionError, match="more than 30"):
        run_tutorial(tmp_path / "out", data=tiny_data, sweeps=0.05, tsne_samples=20, log=None, progress_bar=False)


def test_the_helper_changes_where_side_work_runs_not_what_is_written(run, tiny_data, tmp_path: Path) -> None:
    """The `aelab` command's helper process, and no helper at all, write what the default thread does."""
    thread_out, thread_summary = run
    for helper in ("process", "none"):
        out = tmp_path / helper
        summary = run_tutorial(out, data=tiny_data, sweeps=0.05, tsne_samples=60, device="cpu", log=None,
                               progress_bar=False, helper=helper)
        for name, entry in summary["models"].items():
            theirs = thread_summary["models"][name]
            assert entry["test_error_pct"] == theirs["test_error_pct"]
            assert entry["files"] == theirs["files"]
            for file in entry["files"].values():
                if file and file.endswith(".png"):
                    _png(out / file)
                    assert (thread_out / file).is_file()
        _png(out / "training.png")


def test_unknown_helper_is_refused_before_training(tiny_data, tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="helper"):
        run_tutorial(tmp_path / "out", data=tiny_data, sweeps=0.05, log=None, progress_bar=False, helper="gpu")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_stops_the_command_and_its_helper_at_once(tmp_path: Path) -> None:
    """Ctrl-C in a terminal reaches the whole process group: the helper ignores it and is ended by the
    command, which stops with exit status 130 and one line, no traceback, without waiting for the
    helper's current task (here a t-SNE map of 6,000 codes, some ten seconds of work)."""
    import signal
    import time
    out = tmp_path / "out"
    env = dict(os.environ, MPLBACKEND="Agg", TEST_DEVICE="cpu")
    proc = subprocess.Popen([sys.executable, "-m", "aelab", "tutorial", "--sweeps", "0.5", "--tsne-samples", "6000",
                             "--out", str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 600  # a loaded machine (other jobs beside the suite) is slow to get here
    while not (out / "simple" / "checkpoint").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first model is done; its t-SNE is on the helper
    assert proc.poll() is None and (out / "simple" / "checkpoint").exists(), \
        "the tutorial ended, or never saved its first model, before it could be interrupted"
    time.sleep(0.5)
    interrupted = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    stopped = time.monotonic() - interrupted
    # 130, or death by SIGINT, which a shell reports as 130 too: under `python -m`, a KeyboardInterrupt that
    # escapes code run by eval() (numba's first use imports numpy.f2py, which evals) marks CPython's
    # interpreter, and though the command catches it, the interpreter ends itself with SIGINT on the way out
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err and "interrupted" in err
    assert stopped < 5, f"took {stopped:.1f} s to stop: it waited for the helper"
    for _ in range(40):  # nothing of the group runs on
        if not _running_in_group(proc.pid):
            break
        time.sleep(0.05)
    else:
        pytest.fail("a process of the tutorial is still running 2 s after it stopped")


def _running_in_group(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` that are not zombies (Linux /proc)."""
    running = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                running.append(int(entry.name))
    return running


@pytest.mark.slow
def test_real_fast_mode_tutorial_matches_cntk(tmp_path: Path) -> None:
    """`aelab tutorial` in fast mode (5 sweeps of all of MNIST): the tutorial's average test errors,
    3.12% (simple) and 3.37% (deep), within half a point, or lower."""
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-m", "aelab", "tutorial", "--out", str(tmp_path / "out"),
                           "--tsne-samples", "500", "--quiet"], capture_output=True, text=True, env=env,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["data"]["train"] == 60000 and summary["data"]["test"] == 10000
    simple, deep = summary["models"]["simple"], summary["models"]["deep"]
    assert simple["sweeps"] == deep["sweeps"] == 5
    assert simple["test_error_pct"] <= 3.12 + 0.5, simple["test_error_pct"]
    assert deep["test_error_pct"] <= 3.37 + 0.5, deep["test_error_pct"]
    for m in (simple, deep):
        for key in ("pair", "grid", "similarity", "tsne"):
            _png(tmp_path / "out" / m["files"][key])
    assert np.isfinite([simple["test_psnr_db"], deep["test_psnr_db"]]).all()


def test_work_of_a_helper_that_died_is_done_here() -> None:
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from aelab.tutorial.run import Task
    broken: Future = Future()
    broken.set_exception(BrokenProcessPool("the helper process was killed"))
    calls = []
    task = Task(broken, lambda *a: calls.append(a) or max(a), (3, 7), {})
    assert task.result() == 7 and task.result() == 7
    assert len(calls) == 1  # done here once, however often its result is asked for


def test_the_helper_process_imports_no_torch(tmp_path: Path) -> None:
    """The tutorial's helper is spawned: it imports the main module (the `aelab` command's, light) and what its
    work names (plots), never torch or numba, which would take the second core from the work for seconds."""
    entry = tmp_path / "entry.py"
    entry.write_text(
        "from aelab.cli import main  # noqa: F401 - what aelab/__main__.py imports\n"
        "if __name__ == '__main__':\n"
        "    from aelab.tutorial.run import helper_pool\n"
        "    pool = helper_pool('process')\n"
        "    heavy = \"sorted(m for m in ('torch', 'numba', 'aelab.api') if m in __import__('sys').modules)\"\n"
        "    print(pool.submit(eval, heavy).result())\n"
        "    pool.shutdown()\n")
    done = subprocess.run([sys.executable, str(entry)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_tutorials_figures_name_the_classes(tmp_path: Path, monkeypatch) -> None:
    from aelab.data import Dataset, Split
    from aelab.evaluation import plots
    named = []
    for name in ("save_tsne_map", "save_reconstruction_grid"):
        real = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda *a, _real=real, _name=name, **k:
                            named.append((_name, k.get("class_names"))) or _real(*a, **k))
    images = np.random.default_rng(0).integers(0, 256, (200, 28, 28), dtype=np.uint8)
    data = Dataset(name="pets", train=Split(images[:120], np.arange(120) % 2),
                   test=Split(images[120:], np.arange(80) % 2), sha256="0" * 64, num_classes=2,
                   class_names=["cat", "dog"])
    run_tutorial(tmp_path / "out", data=data, sweeps=1, tsne_samples=40, models=("simple",), device="cpu",
                 log=None, progress_bar=False, helper="none")
    assert {(name, tuple(names or ())) for name, names in named} == \
        {("save_reconstruction_grid", ("cat", "dog")), ("save_tsne_map", ("cat", "dog"))}  # grid.png, report.html


def test_a_tutorial_refused_once_under_way_leaves_no_empty_folders(tmp_path, capsys):
    """Too few samples for the tutorial's minibatch: the error came after out/simple/checkpoint was made."""
    from aelab.cli import main
    np.savez(tmp_path / "s.npz", x_train=np.zeros((30, 8, 8), np.uint8), x_test=np.zeros((10, 8, 8), np.uint8))
    assert main(["tutorial", "--data", str(tmp_path / "s.npz"), "--sweeps", "1", "--tsne-limit", "0", "--models",
                 "simple", "--out", str(tmp_path / "tut"), "--quiet"]) == 2
    assert "make no minibatch" in capsys.readouterr().err and not (tmp_path / "tut").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine\n")
    assert main(["tutorial", "--data", str(tmp_path / "s.npz"), "--sweeps", "1", "--tsne-limit", "0", "--models",
                 "simple", "--out", str(tmp_path / "mine"), "--quiet"]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine\n"  # a folder the user had stays
