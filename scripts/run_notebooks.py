"""Execute the notebooks in notebooks/ top to bottom and store their outputs, or check the stored ones.

    python scripts/run_notebooks.py                 # re-execute every notebook, write it back with outputs
    python scripts/run_notebooks.py --check         # re-execute, compare with the stored outputs, write nothing
    python scripts/run_notebooks.py notebooks/01-cntk105-tutorial.ipynb

The notebooks run on the CPU (``TEST_DEVICE=cpu``), in a temporary folder (the checkpoints they
write go there), with this repository's ``src`` first on the kernel's ``PYTHONPATH``.

How the stored outputs are kept true: each code cell tagged ``numbers`` prints numbers that
depend on the code (test errors, image statistics, similarities, sizes, scores). ``--check``, and
tests/test_notebooks.py, re-execute the notebook and compare those cells' numbers with the stored
ones, allowing ``RTOL`` relative (plus ``ATOL``) for the float rounding that differs between CPUs;
a stored output made by other code, or a cell whose printed numbers changed, fails.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
TAG = "numbers"          # the cells whose printed numbers are checked against the stored ones
RTOL, ATOL = 0.05, 0.01  # what another CPU's float rounding moves a printed number by, with room
CELL_TIMEOUT_S = 300   # a cell that runs longer has hung, or the notebook is not in fast mode
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def notebooks(paths: list[str] | None = None) -> list[Path]:
    """The notebooks named, or all of notebooks/*.ipynb in order."""
    return [Path(p).resolve() for p in paths] if paths else sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def execute(path: Path, workdir: Path | None = None, timeout: int = CELL_TIMEOUT_S):
    """The notebook at ``path`` executed top to bottom in ``workdir`` (a temporary folder if None);
    returns the executed notebook (nbformat), not written anywhere. A failing cell raises
    nbclient's CellExecutionError, which names the cell and shows its traceback."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "TEST_DEVICE": "cpu", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="aelab-notebook-") as tmp:
        where = Path(workdir) if workdir is not None else Path(tmp)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(where)}})
        client.execute(env=env)
    return nb


def printed_text(cell) -> str:
    """What a code cell printed: its streams and the plain text of its results (not its pictures)."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif output.get("output_type") in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def tagged_numbers(nb) -> list[tuple[str, list[float]]]:
    """(the cell's first line, the numbers it printed) for each cell tagged ``numbers``, in order."""
    rows = []
    for cell in nb.cells:
        if cell.cell_type == "code" and TAG in cell.get("metadata", {}).get("tags", []):
            first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
            rows.append((first_line, [float(x) for x in NUMBER.findall(printed_text(cell))]))
    return rows


def differences(stored, fresh, rtol: float = RTOL, atol: float = ATOL) -> list[str]:
    """Where the fresh run's tagged numbers disagree with the stored ones, one line each; [] if they agree."""
    old, new = tagged_numbers(stored), tagged_numbers(fresh)
    if len(old) != len(new):
        return [f"{len(old)} cells tagged {TAG!r} stored, {len(new)} executed"]
    problems = []
    for (line, a), (_, b) in zip(old, new):
        if not a:
            problems.append(f"cell '{line}': stored output prints no numbers (not executed?)")
        elif len(a) != len(b):
            problems.append(f"cell '{line}': prints {len(b)} numbers, the stored output {len(a)}")
        else:
            bad = [(x, y) for x, y in zip(a, b) if abs(x - y) > atol + rtol * max(abs(x), abs(y))]
            if bad:
                problems.append(f"cell '{line}': stored/now " + ", ".join(f"{x:g}/{y:g}" for x, y in bad[:5]))
    return problems


def store(path: Path, nb) -> None:
    """Write the executed notebook back with its outputs, as Jupyter writes it."""
    import nbformat

    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="notebooks to run (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true",
                        help="compare the fresh outputs with the stored ones instead of writing them")
    args = parser.parse_args(argv)
    import nbformat

    failed = False
    for path in notebooks(args.paths):
        started = time.perf_counter()
        fresh = execute(path)
        took = time.perf_counter() - started
        if args.check:
            problems = differences(nbformat.read(path, as_version=4), fresh)
            failed |= bool(problems)
            print(f"{path.name}: {took:.1f} s, " + ("stored outputs agree" if not problems else "differs:"))
            for line in problems:
                print("  " + line)
        else:
            store(path, fresh)
            print(f"{path.name}: {took:.1f} s, outputs stored")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
