"""benchmarks/rate_distortion.py on a very small subset with the tiny trained checkpoint."""
from __future__ import annotations

import json
import math
import shutil
import sys

import numpy as np
import pytest
from helpers import benchmark_script

HEADLINE_KEYS = {"aelab_bytes_per_image", "aelab_psnr_db", "best_traditional_codec",
                 "best_traditional_bytes_per_image", "ratio"}


@pytest.fixture(scope="module")
def rd():
    return benchmark_script("rate_distortion")


def test_main_writes_the_table_plot_and_headline(rd, trained, tiny_npz, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))
    from aelab.codec import quantiser
    monkeypatch.setattr(quantiser, "CTX_PREDICTOR", {"hidden": 32, "epochs": 2})  # a small range-ctx predictor
    model = shutil.copytree(trained.folder, tmp_path / "model")  # the benchmark stores its tables there
    out = tmp_path / "rd"
    assert rd.main(["--limit", "30", "--checkpoint", str(model), "--train-data", str(tiny_npz), "--bits", "3,6",
                    "--ar-bits", "6", "--ctx-bits", "6", "--jpeg-qualities", "1,60", "--webp-qualities", "0,90", "--avif-qualities", "0,60",
                    "--jxl-qualities", "5,90", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    final = json.loads(lines[-1])
    head = final["headline"]
    assert HEADLINE_KEYS <= set(head)
    assert head["ratio"] == pytest.approx(head["best_traditional_bytes_per_image"] / head["aelab_bytes_per_image"],
                                          rel=1e-3)
    assert head["best_traditional_codec"].split()[0] in ("jpeg", "webp", "avif", "jxl")
    assert "within 0.5 dB" in head["rule"] or "none came within" in head["rule"]
    assert final["n_images"] == 30
    assert set(results_per_model := json.loads((out / "results.json").read_text())["headline_per_model"]) == \
        {"model"}
    assert HEADLINE_KEYS <= set(results_per_model["model"])
    assert final["speed"]["compress_images_per_second"] > 0 and final["speed"]["same_bytes_twice"] is True
    predictive = "range-ar" in head["aelab_setting"] or "range-ctx" in head["aelab_setting"]
    assert ("range" in final["speed"]) == predictive  # the simpler coders' speeds beside
    assert ("range-ar" in final["speed"]) == ("range-ctx" in head["aelab_setting"])
    if "range" in final["speed"]:
        plain = final["speed"]["setting"].replace(" + range-ar", "").replace(" + range-ctx", "")
        assert final["speed"]["range"]["setting"] == plain
    assert final["speed"]["bf16"]["decompress_images_per_second"] > 0 and final["speed"]["bf16"]["same_bytes_twice"]
    for name in ("table.md", "results.json", "rate_distortion.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "rate_distortion.png").read_bytes()[:4] == b"\x89PNG"
    results = json.loads((out / "results.json").read_text())
    kinds = {(r["codec"], r["variant"]) for r in results["rows"] if r["codec"] != "aelab"}
    assert kinds == {(c, v) for c in ("png", "jpeg", "webp", "avif", "jxl") for v in ("per-image", "tiled")}
    trad = [r for r in results["rows"] if r["codec"] in ("jpeg", "webp", "avif", "jxl")]
    best = min((r for r in trad if r["psnr_db"] >= head["aelab_psnr_db"]), key=lambda r: r["bytes_per_image"])
    assert head["best_traditional_bytes_per_image"] == pytest.approx(best["bytes_per_image"], abs=1e-3)
    # one image per file: the .aez files carry a header each, so more bytes than the batch file's share
    single = final["single_image"]
    assert single == results["single_image"] and [r["codec"] for r in single] == \
        ["aelab", "png", "jpeg", "webp", "avif", "jxl"]
    assert single[0]["bytes_per_image"] > head["aelab_bytes_per_image"]
    for r in single[2:]:
        if r["bytes_per_image"] is not None:
            per_image = [t for t in trad if t["codec"] == r["codec"] and t["variant"] == "per-image"]
            assert r["psnr_db"] >= single[0]["psnr_db"] and r["bytes_per_image"] == min(
                t["bytes_per_image"] for t in per_image if t["psnr_db"] >= single[0]["psnr_db"])
            assert r["ratio"] == pytest.approx(r["bytes_per_image"] / single[0]["bytes_per_image"])
    aelab = [r for r in results["rows"] if r["codec"] == "aelab"]
    assert {(r["quantiser"], r["coder"], r["bits"]) for r in aelab} == \
        {(q, "range", b) for q in ("transform", "uniform") for b in (3, 6)} | \
        {("transform", c, 6) for c in ("range-ar", "range-ctx")}
    for r in aelab:
        assert r["bytes_per_image"] > 0 and 0 < r["ssim"] <= 1
        assert (r["self_contained_bytes_per_image"] is None) == (r["coder"] in ("range-ar", "range-ctx"))
    ar, ctx, plain = ([r for r in aelab if (r["coder"], r["bits"]) == (c, 6) and r["quantiser"] == "transform"][0]
                      for c in ("range-ar", "range-ctx", "range"))
    assert ar["psnr_db"] == plain["psnr_db"] == ctx["psnr_db"]  # the same symbols, other bytes
    png = [r for r in results["rows"] if r["codec"] == "png"]
    assert all(r["psnr_db"] is None and r["ssim"] == pytest.approx(1.0) for r in png)  # lossless: inf -> null
    table = (out / "table.md").read_text()
    assert "| aelab |" in table and "| webp | tiled | q=0 |" in table and "| avif | tiled | q=60 |" in table
    assert "| jxl | per-image | q=90 |" in table and "One image per file" in table


def test_tiles_round_trip(rd):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 4, 3), dtype=np.uint8)
    picture, cols = rd.tile(images)
    assert cols == 3 and picture.shape == (3 * 4, 3 * 3)
    assert np.array_equal(picture[:4, 3:6], images[1])
    assert np.array_equal(rd.untile(picture, 7, cols, 4, 3), images)


def test_metrics_follow_their_definitions(rd):
    a = np.zeros((2, 8, 8), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255
    assert rd.psnr_db(b, a) == pytest.approx(10 * math.log10(128))  # MSE = 1/128 on [0, 1]
    assert rd.psnr_db(a, a) == math.inf
    from skimage.metrics import structural_similarity
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(3, 16, 16), dtype=np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-20, 20, size=x.shape), 0, 255).astype(np.uint8)
    each = [structural_similarity(p / 255.0, q / 255.0, data_range=1.0) for p, q in zip(x, y)]
    assert rd.ssim_mean(y, x) == pytest.approx(np.mean(each))


def test_headline_rule(rd):
    trad = [{"codec": "webp", "variant": "tiled", "setting": "q=0", "quality": 0, "bytes_per_image": 30.0,
             "psnr_db": 22.0},
            {"codec": "webp", "variant": "tiled", "setting": "q=5", "quality": 5, "bytes_per_image": 60.0,
             "psnr_db": 27.0},
            {"codec": "jpeg", "variant": "tiled", "setting": "q=1", "quality": 1, "bytes_per_image": 25.0,
             "psnr_db": 18.0},
            {"codec": "png", "variant": "tiled", "setting": "lossless", "quality": None, "bytes_per_image": 5.0,
             "psnr_db": math.inf}]

    def row(bits, size, psnr, loss):
        return {"codec": "aelab", "model": "m", "variant": "m", "setting": f"{bits} bits", "bits": bits,
                "bytes_per_image": size, "psnr_db": psnr, "psnr_loss_db": loss}
    aelab = [row(2, 2.0, 14.0, 6.0), row(5, 9.0, 19.8, 0.7), row(6, 12.0, 20.3, 0.2), row(8, 18.0, 20.5, 0.0)]
    rd.match(aelab, trad)
    assert aelab[0]["matched"] == "jpeg tiled q=1" and aelab[2]["matched"] == "webp tiled q=0"
    assert aelab[0]["ratio"] == pytest.approx(12.5)  # 25 / 2 at 14 dB: in the table, not the headline
    head = rd.headline(aelab, trad)
    assert head["aelab_bytes_per_image"] == 12.0 and head["ratio"] == pytest.approx(2.5)  # 30 / 12, within 0.5 dB
    assert head["traditional_at_lowest_quality"] is True and head["psnr_margin_db"] == pytest.approx(1.7)
    assert rd.best_traditional(trad, 22.5)["setting"] == "q=5"
    assert rd.best_traditional(trad, 28.0) is None  # PNG is lossless, not a candidate


def test_avif_and_jpeg_xl_round_trip_at_their_slowest_settings(rd):
    from aelab.data import load_dataset
    images = np.ascontiguousarray(load_dataset().test.images[:4])
    picture, _ = rd.tile(images)
    for name in ("avif", "jxl"):
        assert rd.missing_codec(name) is None
        low, high = (rd.roundtrip(picture, name, q) for q in (5, 90))
        assert low[1].shape == high[1].shape == picture.shape and low[1].dtype == np.uint8
        assert low[0] < high[0] and rd.psnr_db(low[1], picture) < rd.psnr_db(high[1], picture)
        assert rd.psnr_db(high[1], picture) > 30  # a real decoding, not an empty picture
    assert rd._save_kwargs("AVIF", 30) == {"quality": 30, "speed": 0, "max_threads": 1}
    assert rd.JXL_EFFORT == 10


def test_jpeg_xl_is_left_out_in_one_line_without_imagecodecs(rd, monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # import imagecodecs now fails
    said = []
    images = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8), dtype=np.uint8)
    rows = rd.traditional_rows(images, {"jpeg": (50,), "jxl": (30, 60)}, say=said.append)
    assert {r["codec"] for r in rows} == {"png", "jpeg"}
    left_out = [line for line in said if "left out" in line]
    assert left_out == ["  JPEG XL left out: imagecodecs is not installed (pip install -e '.[bench]')"]


def test_headline_picks_the_best_of_all_traditional_codecs(rd):
    def trad(name, variant, quality, size, psnr):
        return {"codec": name, "variant": variant, "setting": f"q={quality}", "quality": quality,
                "bytes_per_image": size, "psnr_db": psnr}
    rows = [trad("jpeg", "tiled", 10, 80.0, 26.5), trad("webp", "tiled", 3, 57.0, 26.8),
            trad("avif", "tiled", 10, 40.0, 26.7), trad("avif", "per-image", 10, 360.0, 30.0),
            trad("jxl", "tiled", 20, 74.0, 26.6), trad("jxl", "tiled", 1, 30.0, 19.5)]
    aelab = [{"codec": "aelab", "model": "m", "variant": "m", "setting": "7 bits", "bits": 7,
              "bytes_per_image": 14.0, "psnr_db": 26.25, "psnr_loss_db": 0.1},
             {"codec": "aelab", "model": "m", "variant": "m", "setting": "2 bits", "bits": 2,
              "bytes_per_image": 3.0, "psnr_db": 18.0, "psnr_loss_db": 8.0}]
    rd.match(aelab, rows)
    assert aelab[1]["matched"] == "jxl tiled q=1"
    head = rd.headline(aelab, rows)
    assert head["best_traditional_codec"] == "avif tiled q=10"  # not WebP: AVIF is smaller at >= 26.25 dB
    assert head["ratio"] == pytest.approx(40 / 14, rel=1e-3) and head["aelab_setting"] == "aelab m (7 bits)"
    assert rd.best_traditional(rows, 26.25, codecs=("webp",))["setting"] == "q=3"
    assert rd.best_traditional(rows, 29.0, variants=("per-image",))["codec"] == "avif"


def test_quick_learns_no_predictor_unless_asked(rd, trained, tiny_npz, tmp_path, capsys, monkeypatch):
    """--quick stays quick: a range-ar or range-ctx table it would have to learn first (15 and 70
    seconds) is skipped, unless its bit depths are given."""
    assert rd.parse_args(["--quick"]).learn == {"range-ar": False, "range-ctx": False}
    assert rd.parse_args(["--quick", "--ctx-bits", "7"]).learn == {"range-ar": False, "range-ctx": True}
    assert rd.parse_args([]).learn == {"range-ar": True, "range-ctx": True}
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))
    model = shutil.copytree(trained.folder, tmp_path / "model")
    out = tmp_path / "rd"
    assert rd.main(["--quick", "--limit", "20", "--checkpoint", str(model), "--train-data", str(tiny_npz),
                    "--bits", "6", "--quantisers", "transform", "--jpeg-qualities", "1", "--webp-qualities", "0",
                    "--avif-qualities", "none", "--jxl-qualities", "none", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("skipped (--quick learns no") == 2  # range-ar's and range-ctx's 7-bit tables
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["coder"] for r in rows if r["codec"] == "aelab"} == {"range"}


def test_search_settings_are_measured_beside_the_plain_ones(rd, trained, tiny_npz, tmp_path, capsys, monkeypatch):
    """--search adds the encoder's search at --search-bits (range, and range-ctx where its table is
    there); when one wins the headline, its speed is timed beside the same setting without it."""
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "cache"))
    model = shutil.copytree(trained.folder, tmp_path / "model")
    out = tmp_path / "rd"
    assert rd.main(["--quick", "--limit", "20", "--checkpoint", str(model), "--train-data", str(tiny_npz),
                    "--bits", "6", "--quantisers", "transform", "--search", "20", "--search-bits", "6",
                    "--rate-weight", "0", "--jpeg-qualities", "1,90", "--webp-qualities", "0,90",
                    "--avif-qualities", "none", "--jxl-qualities", "none", "--out", str(out)]) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = [r for r in json.loads((out / "results.json").read_text())["rows"] if r["codec"] == "aelab"]
    plain, searched = (next(r for r in rows if r["search"] == s) for s in (0, 20))
    assert {(r["coder"], r["search"]) for r in rows} == {("range", 0), ("range", 20)}  # --quick: no range-ctx table
    assert searched["setting"] == "transform + search 20, 6 bits" and searched["rate_weight"] == 0
    assert searched["psnr_db"] > plain["psnr_db"] and searched["self_contained_bytes_per_image"] is None
    if "search" in final["headline"]["aelab_setting"]:
        assert final["speed"]["setting"] == "transform + search 20, 6 bits" and "bf16" not in final["speed"]
        assert final["speed"]["without search"]["setting"] == "transform, 6 bits"
    with pytest.raises(SystemExit):
        rd.parse_args(["--search", "-1"])
