"""benchmarks/search_study.py on a few images: its rows say what its docstring says they are."""
from __future__ import annotations

import json

import pytest
from helpers import benchmark_script


@pytest.fixture(scope="module")
def study():
    return benchmark_script("search_study")


def test_the_study_writes_its_rows(study, tmp_path, capsys):
    assert study.main(["--limit", "12", "--steps", "3,6", "--weights", "0.02,0", "--weight-steps", "6", "--out", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["setting"] for r in rows] == ["plain, 6 bits", "plain, 7 bits", "bin centroids, 6 bits",
                                            "search 3, weight 0.02, 6 bits", "search 6, weight 0.02, 6 bits",
                                            "search 6, weight 0, 6 bits"]
    plain, seven, centroids, *searched = rows
    assert seven["range_bytes_per_image"] > plain["range_bytes_per_image"]
    assert centroids["range_bytes_per_image"] == plain["range_bytes_per_image"]  # a decoder-side change only
    assert searched[-1]["psnr_db"] > plain["psnr_db"]  # weight 0: the lowest error wins
    assert all(r["range-ctx_bytes_per_image"] < r["range_bytes_per_image"] for r in rows)  # mnist-codec ships it
    assert json.loads((tmp_path / "study.json").read_text())["rows"] == rows
    assert "| search 6, weight 0, 6 bits |" in (tmp_path / "study.md").read_text()


def test_bad_lists_are_refused(study):
    for bad in (["--steps", "x"], ["--weights", "-1"], ["--limit", "0"]):
        with pytest.raises(SystemExit):
            study.parse_args(bad)
