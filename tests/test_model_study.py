"""benchmarks/model_study.py: its pieces measure what the study claims they do."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import benchmark_script


@pytest.fixture(scope="module")
def study():
    return benchmark_script("model_study")


@pytest.fixture(scope="module")
def shipped():
    from aelab.models.checkpoint import load_checkpoint
    from aelab.models.checkpoint import pretrained_path
    return load_checkpoint(pretrained_path("mnist-conv")).model.float().eval()


@pytest.fixture(scope="module")
def images():
    from aelab.data import load_dataset
    data = load_dataset(None)
    return data.train.images[:1500].reshape(1500, -1), data.test.images[:300].reshape(300, -1)


def test_the_widened_model_starts_from_the_shipped_models_images(study, shipped, images):
    from aelab.models.inference import encode, reconstruct
    wide = study.widened(shipped, 64)
    test = images[1][:64]
    assert encode(wide, test).shape == (64, 64)
    assert np.abs(encode(wide, test)[:, 32:]).max() > 0  # the new code numbers carry something to learn from
    np.testing.assert_allclose(reconstruct(wide, test), reconstruct(shipped, test), atol=1e-5)


def test_the_table_at_the_7_bit_step_is_the_codecs_own_7_bit_table(study, shipped, images):
    """The study's grid steps through the quantiser the codec uses: at the step ``--bits 7`` implies it
    must give the very table (same digest) that ``aelab compress --bits 7`` learns."""
    from aelab.codec import api as codec
    from aelab.models.inference import encode
    codes = encode(shipped, images[0])
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(32, 32)))[0]  # any transform will do
    table = codec.fit_table(codes, 7, "transform", transform=(codes.mean(axis=0), rotation))
    again = study.table_at_step(codes, (table.mean, table.matrix), float(table.step.max()))
    assert again.digest == table.digest
    finer = study.table_at_step(codes, (table.mean, table.matrix), float(table.step.max()) / 2)
    assert finer.bits == 8 and finer.levels.max() > table.levels.max()


def test_bytes_are_interpolated_between_the_grid_points_around_a_psnr(study):
    points = [{"psnr_db": 20.0, "bytes_per_image": 10.0}, {"psnr_db": 22.0, "bytes_per_image": 40.0}]
    assert study.bytes_at_psnr(points, 21.0) == pytest.approx(20.0)  # log bytes linear in PSNR
    assert study.bytes_at_psnr(points, 23.0) is None


def test_the_rate_term_lowers_the_bits_it_measures(study, shipped, images):
    """The same steps with a heavy weight on bits end with fewer bits in the codes' density than with a light one."""
    from aelab.codec import api as codec
    from aelab.models.inference import encode
    codes = encode(shipped, images[0])
    table = codec.fit_table(codes, 7, "transform", transform=(codes.mean(axis=0), np.eye(32)))
    delta = float(table.step.max())
    bits = {}
    for lam in (1e-4, 1.0):
        model = type(shipped)(shipped.config).float()
        model.load_state_dict(shipped.state_dict())
        log = study.fine_tune(model, images[0][:512], 2, lr=1e-3, batch=64, say=lambda *_: None,
                              rate=study.RateTerm(table.mean, table.matrix, delta, lam))
        bits[lam] = log["train_bits"]
    assert bits[1.0] < bits[1e-4] - 5


def test_a_quick_run_writes_its_table_plot_and_json(study, tmp_path, capsys):
    assert study.main(["--sweeps", "0.02", "--train-images", "1000", "--test-images", "200", "--grid", "1",
                       "--out", str(tmp_path)]) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["model"] for r in final["rows"]] == ["shipped", "mse", "quantised", "rate", "code64"]
    assert final["rows"][0]["saving"] == pytest.approx(0.0, abs=1e-12)
    assert {p.name for p in tmp_path.iterdir()} == {"study.md", "study.json", "study.png"}
    assert "| rate |" in (tmp_path / "study.md").read_text()


@pytest.mark.parametrize("script, args, says", [
    ("model_study", ["--checkpoint", "mnist-deep"], "fine-tunes a conv model"),
    ("rate_distortion", ["--checkpoint", "no-such-model", "--quick"], "checkpoint folder not found"),
])
def test_the_scripts_report_bad_input_in_one_line_not_a_traceback(script, args, says, tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{script}.py"
    out = ["--out", str(tmp_path)]  # should the check ever fail, the run must not touch the committed results
    done = subprocess.run([sys.executable, str(path), *args, *out], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"{script}.py: error: ")
    assert says in done.stderr and "Traceback" not in done.stderr
