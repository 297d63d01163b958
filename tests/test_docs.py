"""Fast checks of the user docs: length, links, set-up commands, no commit hashes, the Python example runs."""
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_readme_length():
    assert len(README.read_text()) <= 12000


def test_relative_links_exist():
    for md in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(md.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (md.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{md.name}: {target}"


def test_setup_commands():
    text = README.read_text()
    assert "pip install torch==2.13.0 -e . && aelab tutorial" in text
    ci = (ROOT / ".ci" / "run").read_text()
    m = re.search(r"pip install -q (torch\S+ -e '\.\[test\]') && python3 -m pytest(.*)", ci)
    assert m
    assert f"pip install {m.group(1)} && python -m pytest{m.group(2)}\n" in text


def test_no_commit_hashes():
    for line in README.read_text().splitlines():
        assert not re.search(r"\b[0-9a-f]{7,40}\b", line), line


def test_readme_python_api_block_runs(tmp_path, monkeypatch):
    """The README's Python example, with a tiny training run and without the full tutorial."""
    block = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    assert "sweeps=5" in block and "run_tutorial(" in block
    tiny = block.replace("sweeps=5", "sweeps=0.02")
    tiny = "\n".join(line for line in tiny.splitlines() if "run_tutorial(" not in line)
    monkeypatch.chdir(tmp_path)
    _photos(tmp_path / "photos")
    exec(compile(tiny, "README.md", "exec"), {})
    assert (tmp_path / "my-model" / "model.safetensors").is_file() and (tmp_path / "digits.aez").is_file()


def _photos(root: Path) -> None:
    """A few colour pictures of two sizes in class folders, as the README's example reads."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(12):
        folder = root / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        size = (48, 40) if i % 3 else (70, 90)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")


def test_the_api_reference_builds_in_strict_mode(tmp_path, monkeypatch):
    """`mkdocs build --strict`: every page, and every docstring mkdocstrings renders, without a warning."""
    import shutil
    import subprocess

    pytest.importorskip("mkdocstrings", reason="the docs extra: pip install 'aelab[docs]'")
    monkeypatch.setenv("NO_MKDOCS_2_WARNING", "1")
    mkdocs = shutil.which("mkdocs") or pytest.skip("no mkdocs command")
    result = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH":
                            str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "api" / "index.html").is_file()
    tutorial = tmp_path / "site" / "notebooks" / "01-cntk105-tutorial" / "index.html"  # rendered as stored
    assert "Average test error" in tutorial.read_text(encoding="utf-8")
