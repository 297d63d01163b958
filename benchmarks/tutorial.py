"""Wall time and peak memory of `aelab tutorial` in fast mode, start-up included, as a user runs it.

    python benchmarks/tutorial.py              # 3 runs on the bundled MNIST
    python benchmarks/tutorial.py --runs 1 --device cpu

Each run is `python -m aelab tutorial --out TMP --quiet` in a fresh process;
memory is the resident set of that process and its helper process together
(sampled every 20 ms from /proc, so Linux only). Prints one line per run and,
last, one JSON object: {"runs": [{"seconds", "peak_rss_mb"}...],
"median_seconds", "peak_rss_mb"} (the largest over the runs).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the parent's pid
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += _children(p)
    return found


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def run_once(extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "aelab", "tutorial", "--out", out, "--quiet", *extra]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd)
        peak, pids, looked = 0, [proc.pid], 0.0
        while proc.poll() is None:
            if time.perf_counter() - looked > 0.5:  # scanning /proc for new processes costs more
                pids, looked = descendants(proc.pid), time.perf_counter()
            peak = max(peak, rss_bytes(pids))
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"aelab tutorial failed with exit code {proc.returncode}")
        summary = json.loads((Path(out) / "summary.json").read_text())
    return {"seconds": seconds, "peak_rss_mb": peak / 2**20,
            "test_error_pct": {k: m["test_error_pct"] for k, m in summary["models"].items()}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="how many runs (default: 3)")
    parser.add_argument("--device", default="cpu", help="passed to aelab tutorial (default: cpu)")
    args = parser.parse_args(argv)
    if not Path("/proc/self/status").exists():
        raise SystemExit("this benchmark reads /proc: Linux only")
    runs = []
    for i in range(args.runs):
        r = run_once(["--device", args.device])
        runs.append(r)
        print(f"run {i + 1}: {r['seconds']:.1f} s wall, peak {r['peak_rss_mb']:.0f} MB (aelab and its helper "
              f"process), test errors {r['test_error_pct']}", flush=True)
    result = {"runs": runs, "median_seconds": statistics.median(r["seconds"] for r in runs),
              "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "cpus": os.cpu_count()}
    print(f"median {result['median_seconds']:.1f} s, peak {result['peak_rss_mb']:.0f} MB")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
