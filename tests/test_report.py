"""The HTML report: one self-contained page, checked as text and, where Chromium is installed, in a real browser."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from aelab import api
from aelab.cli import main
from aelab.data import Dataset, Split
from aelab.evaluation import report
from aelab.models.checkpoint import load_checkpoint
from aelab.tutorial.run import run_tutorial

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


# --- hostile text: class folders, CSV labels, data and run names that are markup ------------------------------

IMG_ATTACK = "<img src=x onerror=alert(1)>"
SCRIPT_ATTACK = "</script><script>alert(1)</script>"
COMMENT_ATTACK = "<!--<script>"  # inside a <script> element, this would swallow the rest of the page


class _Elements(HTMLParser):
    """Every start tag of a page, as (tag, attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def hostile_pages(tmp_path_factory) -> list:
    """report.html pages made by `aelab report` and by the tutorial from data whose names are markup."""
    root = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    photos = root / IMG_ATTACK  # the data's name is the folder's
    for name in (IMG_ATTACK, COMMENT_ATTACK, "plain"):
        (photos / name).mkdir(parents=True)
        for i in range(30):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(photos / name / f"{i}.png")
    table = root / f"{IMG_ATTACK}.csv"
    labels = [SCRIPT_ATTACK, COMMENT_ATTACK, IMG_ATTACK]
    table.write_text("a,b,c,d,label\n" + "".join(f"{','.join(f'{v:.3f}' for v in rng.normal(size=4))},"
                                                 f"\"{labels[i % 3]}\"\n" for i in range(200)), encoding="utf-8")
    pages = []
    for data, extra in ((photos, []), (table, ["--label-column", "label", "--model", "dense", "--code-size", "2"])):
        out = root / f"run {len(pages)} {IMG_ATTACK}"
        assert main(["train", "--data", str(data), *extra, "--test-fraction", "0.5", "--sweeps", "2",
                     "--recipe", "adam", "--quiet", "--out", str(out)]) == 0
        pages.append(root / f"report-{len(pages)}.html")
        assert main(["report", "--checkpoint", str(out), "--data", str(data), *extra[:2], "-o", str(pages[-1])]) == 0
    images = rng.integers(0, 256, (200, 28, 28), dtype=np.uint8)
    named = Dataset(name=IMG_ATTACK, train=Split(images[:120], np.arange(120) % 3),
                    test=Split(images[120:], np.arange(80) % 3), sha256="0" * 64, num_classes=3,
                    class_names=[IMG_ATTACK, SCRIPT_ATTACK, COMMENT_ATTACK])
    tutorial = root / "tutorial"
    run_tutorial(tutorial, data=named, sweeps=1, tsne_samples=40, models=("simple",), device="cpu", log=None,
                 progress_bar=False, helper="none")
    pages.append(tutorial / "report.html")
    return pages


def test_no_hostile_name_reaches_a_page_as_markup(hostile_pages):
    for path in hostile_pages:
        page = path.read_text(encoding="utf-8")
        for attack in (IMG_ATTACK, SCRIPT_ATTACK, COMMENT_ATTACK):
            assert attack not in page, (path.name, attack)  # every inserted text escaped
        assert "innerHTML" not in page and "outerHTML" not in page  # the page's script never parses text as markup
        parser = _Elements()
        parser.feed(page)
        handlers = [(tag, a) for tag, attrs in parser.elements for a in attrs if a.lower().startswith("on")]
        assert handlers == [], path.name
        scripts = [attrs for tag, attrs in parser.elements if tag == "script"]
        assert len(scripts) == 3 and scripts[1] == {"type": "application/json", "class": "map-data"}, scripts
        (payload,) = _map_payloads(page)  # the names come back exactly, as data
        assert {IMG_ATTACK, COMMENT_ATTACK} <= set(payload["names"]), payload["names"]
    tutorial_md = (hostile_pages[-1].parent / "report.md").read_text(encoding="utf-8")
    assert IMG_ATTACK not in tutorial_md and "&lt;img src=x onerror=alert(1)&gt;" in tutorial_md


# In the browser: alert, confirm and prompt are recorded rather than shown, then every point of every map
# is hovered (a mouse sweep over the whole canvas, as a user's would), and what happened is left on <body>.
_RECORD_DIALOGS = """<script>window.__dialogs = [];
["alert", "confirm", "prompt", "print"].forEach(function (f) {
  window[f] = function (m) { window.__dialogs.push(f + ":" + m); };
});</script>"""
_HOVER_EVERY_POINT = """<script>setTimeout(function () {
  var tips = [];
  document.querySelectorAll(".map").forEach(function (box) {
    var canvas = box.querySelector("canvas"), tip = box.querySelector(".tip"), r = canvas.getBoundingClientRect();
    for (var y = 0; y < r.height; y += 3) for (var x = 0; x < r.width; x += 3) {
      canvas.dispatchEvent(new MouseEvent("mousemove", {clientX: r.left + x, clientY: r.top + y, bubbles: true}));
      if (tip.style.display === "block" && tips.indexOf(tip.textContent) < 0) tips.push(tip.textContent);
    }
  });
  setTimeout(function () {  // time for an injected image to fail to load and run its onerror
    var b = document.body, extra = [];
    document.querySelectorAll("*").forEach(function (e) {
      for (var i = 0; i < e.attributes.length; i++) if (/^on/i.test(e.attributes[i].name)) extra.push(e.tagName);
      if (e.parentElement && e.parentElement.closest(".tip, .legend") && !(e.tagName === "IMG" && e.src.indexOf("data:image/png;base64,") === 0)
          && e.tagName !== "B" && e.tagName !== "SPAN") extra.push(e.tagName);
    });
    b.dataset.tips = JSON.stringify(tips);
    b.dataset.dialogs = JSON.stringify(window.__dialogs);
    b.dataset.injected = JSON.stringify(extra);
    b.dataset.scripts = String(document.scripts.length);
    b.dataset.hovered = "done";
  }, 1000);
}, 100);</script>"""


def _body_attributes(dom: str) -> dict:
    parser = _Elements()
    parser.feed(dom)
    return next(attrs for tag, attrs in parser.elements if tag == "body")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium)")
def test_hovering_every_point_in_a_browser_runs_nothing_from_the_data(hostile_pages, tmp_path):
    for k, path in enumerate(hostile_pages):
        page = path.read_text(encoding="utf-8")
        probed = tmp_path / f"probed-{k}.html"
        probed.write_text(page.replace("<head>", "<head>" + _RECORD_DIALOGS, 1)
                          .replace("</body>", _HOVER_EVERY_POINT + "</body>", 1), encoding="utf-8")
        body = _body_attributes(_render(probed, tmp_path))
        assert body.get("data-rendered") == "ok" and body.get("data-hovered") == "done", (path.name, body.keys())
        assert json.loads(body["data-dialogs"]) == [], path.name
        assert json.loads(body["data-injected"]) == [], path.name
        assert body["data-scripts"] == "5", path.name  # the page's three and this test's two
        tips = json.loads(body["data-tips"])
        shown = {name for name in (IMG_ATTACK, SCRIPT_ATTACK, COMMENT_ATTACK) if any(name in t for t in tips)}
        assert len(tips) > 20 and IMG_ATTACK in shown and COMMENT_ATTACK in shown, (path.name, tips[:5])


def test_the_reports_grid_names_the_classes(trained, monkeypatch):
    from aelab.evaluation import plots
    drawn = []
    real = plots.save_reconstruction_grid
    monkeypatch.setattr(plots, "save_reconstruction_grid",
                        lambda *a, **k: drawn.append([plots.label_text(v, k.get("class_names")) for v in k["labels"]])
                        or real(*a, **k))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 28, 28), dtype=np.uint8)
    labels = np.arange(60) % 2
    data = Dataset(name="x", train=Split(images, labels), test=Split(images, labels), sha256="0" * 64,
                   num_classes=2, class_names=["cat", "dog"])
    api.report_model(load_checkpoint(trained), data, limit=0)
    assert drawn == [["cat", "dog"] * 5]


def test_a_validation_run_shows_both_losses_and_where_its_weights_were_kept(tmp_path, monkeypatch):
    import csv
    from aelab.evaluation import plots
    rng = np.random.default_rng(0)
    table = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 12))
    np.save(tmp_path / "t.npy", table)
    out = tmp_path / "m"
    assert main(["train", "--data", str(tmp_path / "t.npy"), "--model", "dense", "--code-size", "3",
                 "--recipe", "adam", "--sweeps", "4", "--validation", "0.2", "--quiet", "--out", str(out)]) == 0
    with open(out / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    validation = [r for r in rows if r["val_loss"]]
    best_step = load_checkpoint(out).info["training"]["validation_split"]["best_step"]
    drawn = []
    real = plots.save_training_curve
    monkeypatch.setattr(plots, "save_training_curve", lambda *a, **k: drawn.append((a[1], k)) or real(*a, **k))
    page = api.report_model(load_checkpoint(out), api.load_data(tmp_path / "t.npy"), limit=0)
    ((curves, options),) = drawn
    assert list(curves) == ["training MSE per value", "validation MSE per value"]
    assert list(curves["validation MSE per value"][1]) == [float(r["val_loss"]) for r in validation]
    assert list(curves["training MSE per value"][1]) == [float(r["metric"]) for r in rows if r["loss"]]
    assert options["ylabel"] == "loss per value"
    kept_at = next(int(r["samples_seen"]) for r in validation if int(r["step"]) == best_step)
    assert options["mark"] == ((kept_at, "weights kept (best validation loss)") if kept_at else None)
    assert "validation" in page and (f"measured at step {best_step}" in page if best_step else "before the first step" in page)


def test_an_overwrite_stopped_part_way_keeps_the_old_model_with_its_own_curve(tmp_path, monkeypatch):
    """A run replacing a checkpoint writes its curve aside (metrics.next.csv) until its own checkpoint is
    saved: stopped before that, the folder holds the old model and the old curve, untouched; resumed, it
    ends with the new model and the new curve."""
    import hashlib
    rng = np.random.default_rng(0)
    np.save(tmp_path / "t.npy", rng.normal(size=(300, 6)) @ rng.normal(size=(6, 10)))
    out = tmp_path / "m"
    common = ["train", "--data", str(tmp_path / "t.npy"), "--model", "dense", "--code-size", "3", "--quiet",
              "--out", str(out)]
    assert main([*common, "--sweeps", "2"]) == 0
    digests = lambda: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}  # noqa: E731
    before = digests()
    (tmp_path / "old-metrics.csv").write_bytes((out / "metrics.csv").read_bytes())

    def stop(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(api, "evaluate", stop)  # after the training, before the new checkpoint is saved
    assert main([*common, "--sweeps", "3", "--overwrite"]) == 130
    after = digests()
    assert {name: after[name] for name in before} == before  # the old model, its curve, its run.toml
    assert set(after) - set(before) == {"metrics.next.csv", "resume.safetensors"}
    monkeypatch.undo()
    assert main([*common, "--sweeps", "3", "--overwrite", "--resume"]) == 0
    assert not (out / "metrics.next.csv").exists() and not (out / "resume.safetensors").exists()
    model = load_checkpoint(out)
    drawn = report._metrics_curve(model)
    assert drawn is not None and max(drawn[0]) == model.info["training"]["samples_seen"]  # the new run's curve
    assert (out / "metrics.csv").read_bytes() != (tmp_path / "old-metrics.csv").read_bytes()
