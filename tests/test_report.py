"""The HTML report: one self-contained page, checked as text and, where Chromium is installed, in a real browser."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from aelab import api
from aelab.cli import main
from aelab.data import Dataset, Split
from aelab.models.checkpoint import load_checkpoint

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _map_payloads(page: str) -> list[dict]:
    return [json.loads(m) for m in re.findall(r'<script type="application/json" class="map-data">(.*?)</script>',
                                              page, re.S)]


def _render(path, tmp_path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium (no network, a fresh profile)."""
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                             "--no-first-run", "--disable-background-networking", "--disable-component-update",
                             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                             "--virtual-time-budget=10000", "--dump-dom", path.as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def trained(tiny_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "model"
    assert main(["train", "--data", str(tiny_npz), "--sweeps", "0.1", "--recipe", "adam", "--quiet",
                 "--out", str(out)]) == 0
    return out


def test_the_report_is_one_offline_page_with_every_part(trained, tiny_npz, tmp_path):
    page_path = tmp_path / "r.html"
    assert main(["report", "--checkpoint", str(trained), "--data", str(tiny_npz), "--limit", "80",
                 "-o", str(page_path)]) == 0
    page = page_path.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched
    assert page.count("data:image/png;base64,") >= 3  # training curve, grid, similarity figure
    assert "Training curve" in page and "decodings" in page and "average test error" in page
    (payload,) = _map_payloads(page)
    assert len(payload["x"]) == len(payload["y"]) == len(payload["thumbs"]) == 80
    assert payload["label"] == api.load_data(tiny_npz).test.labels[:80].tolist()


def test_class_names_cannot_break_out_of_the_page(trained, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (120, 28, 28), dtype=np.uint8)
    labels = np.arange(120) % 2
    hostile = ["</script><script>document.title='owned'</script>", "<b>bold</b>"]
    data = Dataset(name="x", train=Split(images, labels), test=Split(images, labels), sha256="0" * 64,
                   num_classes=2, class_names=hostile)
    page = api.report_model(load_checkpoint(trained), data, limit=60)
    assert "</script><script>document.title" not in page
    (payload,) = _map_payloads(page)
    assert payload["names"] == hostile


def test_a_table_model_gets_a_map_without_pictures(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "t.npy", np.c_[rng.normal(size=(600, 5)), np.arange(600) % 3])
    out = tmp_path / "m"
    assert main(["train", "--data", str(tmp_path / "t.npy"), "--label-column", "5", "--model", "dense",
                 "--code-size", "2", "--recipe", "adam", "--sweeps", "3", "--quiet", "--out", str(out)]) == 0
    assert main(["report", "--checkpoint", str(out), "--data", str(tmp_path / "t.npy"), "--label-column", "5",
                 "-o", str(tmp_path / "t.html")]) == 0
    page = (tmp_path / "t.html").read_text(encoding="utf-8")
    (payload,) = _map_payloads(page)
    assert payload["thumbs"] is None and len(payload["x"]) == 60 and "R²" in page


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", "--checkpoint", str(tmp_path / "nothing"), "-o", str(tmp_path / "r.html")]) == 2
    assert "checkpoint folder not found" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium)")
def test_the_page_renders_in_a_browser_with_no_script_error_and_every_point(trained, tiny_npz, tmp_path):
    page_path = tmp_path / "r.html"
    api.report_model(load_checkpoint(trained), api.load_data(tiny_npz), page_path, limit=70)
    dom = _render(page_path, tmp_path)
    assert 'data-rendered="ok"' in dom, dom[:500]
    assert "data-error" not in dom
    assert 'data-map-points="70"' in dom and 'data-points="70"' in dom
