"""How long the `aelab` command takes to answer `--help`, and what it imports to do so.

    python benchmarks/startup.py            # 5 runs of each command
    python benchmarks/startup.py --runs 9

Each run is `python -m aelab ARGS` in a fresh process (the `aelab` script adds its launcher's own
start-up). Prints one line per command and, last, one JSON object: {"commands": [{"args",
"median_seconds", "seconds", "heavy_modules"}...]}, where heavy_modules lists the top-level packages
among torch, numba, scikit-learn and matplotlib that the command imported (none is the aim).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

COMMANDS = (["--help"], ["train", "--help"], ["compress", "--help"], ["data", "info", "--help"])
HEAVY = ("torch", "numba", "sklearn", "matplotlib")


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aelab", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def heavy_imports(args: list[str]) -> list[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "aelab", *args], check=True,
                          capture_output=True, text=True)
    names = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()
             if line.startswith("import time:")}
    return sorted(names & set(HEAVY))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (default: 5)")
    options = parser.parse_args()
    rows = []
    for args in COMMANDS:
        seconds = [timed(args) for _ in range(options.runs)]
        row = {"args": args, "median_seconds": statistics.median(seconds), "seconds": seconds,
               "heavy_modules": heavy_imports(args)}
        rows.append(row)
        print(f"aelab {' '.join(args)}: median {row['median_seconds']:.3f} s over {options.runs} runs; "
              f"heavy modules imported: {', '.join(row['heavy_modules']) or 'none'}")
    print(json.dumps({"commands": rows}))


if __name__ == "__main__":
    main()
