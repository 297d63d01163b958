"""The notebooks in notebooks/: each executes top to bottom on the CPU, and the outputs stored in it
are the ones the current code prints (scripts/run_notebooks.py re-executes and stores them)."""
from __future__ import annotations

import ast
import copy
import re

import pytest

from helpers import repo_script

runner = repo_script("scripts", "run_notebooks")
NOTEBOOKS = runner.notebooks()
# the libraries a notebook may import: aelab, what it depends on, and what its extras bring
ALLOWED_IMPORTS = {"aelab", "numpy", "matplotlib", "sklearn", "PIL", "skimage", "onnxruntime",
                   "os", "io", "pathlib", "shutil", "tempfile", "time", "json"}


def _read(path):
    nbformat = pytest.importorskip("nbformat", reason="the test extra: pip install -e '.[test]'")
    return nbformat.read(path, as_version=4)


def _code(nb) -> str:
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")


def test_there_are_the_three_notebooks():
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 3 and names[0] == "01-cntk105-tutorial.ipynb", names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_executed_with_its_outputs(path):
    """A repository page shows the stored outputs: every code cell ran, in order, and the numbers
    the checks compare are there."""
    nb = _read(path)
    counts = [cell.execution_count for cell in nb.cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: run scripts/run_notebooks.py to store outputs"
    assert nb.metadata.kernelspec.name == "python3"
    numbered = runner.tagged_numbers(nb)
    assert numbered and all(numbers for _, numbers in numbered), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_uses_only_the_public_api(path):
    """Imports are aelab and the libraries a user has; every ``aelab.NAME`` is in ``aelab.__all__``."""
    import aelab

    tree = ast.parse(re.sub(r"^[%!].*$", "", _code(_read(path)), flags=re.M))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
            assert node.module != "aelab" or all(a.name in aelab.__all__ for a in node.names), node.module
            assert not (node.module or "").startswith("aelab.") or node.module == "aelab.sklearn", node.module
        else:
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "aelab":
                assert node.attr in aelab.__all__, f"{path.name}: aelab.{node.attr} is not public"
            continue
        assert roots <= ALLOWED_IMPORTS, f"{path.name}: imports {roots - ALLOWED_IMPORTS}"


def test_the_tutorial_notebook_checks_its_errors_against_the_tutorials():
    code = _code(_read(runner.NOTEBOOK_DIR / "01-cntk105-tutorial.ipynb"))
    assert '"simple": 3.12' in code and '"deep": 3.37' in code and "<= 0.5" in code


def test_differences_catch_a_stale_number_and_allow_rounding():
    nb = _read(NOTEBOOKS[0])
    fresh = copy.deepcopy(nb)
    assert runner.differences(nb, fresh) == []
    cell = next(c for c in fresh.cells if "numbers" in c.metadata.get("tags", []) and "test error" in c.source)
    stream = next(o for o in cell.outputs if o.output_type == "stream")
    text = stream.text
    error = re.search(r"Average test error: (\d+\.\d+)%", text).group(1)
    stream.text = text.replace(f"test error: {error}%", f"test error: {float(error) * 1.01:.2f}%")
    assert runner.differences(nb, fresh) == []   # another CPU's rounding
    stream.text = text.replace(f"test error: {error}%", "test error: 4.50%")
    assert any("4.5" in line for line in runner.differences(nb, fresh))
    stream.text = text.replace(f"test error: {error}%", f"test error: {error}% of 10000")
    assert runner.differences(nb, fresh)         # a number more: not the same output


@pytest.mark.slow  # each notebook trains models end to end
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_and_prints_what_is_stored(path, tmp_path):
    """Top to bottom in a fresh kernel, on the CPU, in fast mode; the tutorial's asserts (test errors
    within half a point of CNTK's) run inside; then the tagged cells' numbers against the stored ones."""
    pytest.importorskip("nbclient", reason="the test extra: pip install -e '.[test]'")
    pytest.importorskip("ipykernel", reason="the test extra: pip install -e '.[test]'")
    stored = _read(path)
    fresh = runner.execute(path, workdir=tmp_path)
    assert runner.differences(stored, fresh) == [], \
        f"{path.name}: the stored outputs are not what the code prints now; run scripts/run_notebooks.py {path}"
