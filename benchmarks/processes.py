"""Training samples per second on 1 process and on N processes under torchrun, side by side.

    python benchmarks/processes.py              # deep model, minibatch 64 and 1024, 1 and 2 processes
    python benchmarks/processes.py --quick      # fewer sweeps: a check that it runs

Each setting runs `aelab train` on the bundled MNIST (plain, and under `torchrun --standalone
--nproc-per-node N`); the figure is the samples per second of rank 0's training loop, as the
checkpoint records it (data loading and start-up excluded), and the launch's wall time beside
it. Several processes give the same model as one (tests/test_distributed.py); this measures what
they cost or save. Prints a table, then one JSON object last.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aelab.device import cpu_model




def train_once(processes: int, minibatch: int, sweeps: float, model: str, out: Path) -> dict:
    aelab = ["-m", "aelab", "train", "--model", model, "--sweeps", str(sweeps), "--minibatch-size", str(minibatch),
             "--out", str(out), "--quiet", "--checkpoint-every", "0", "--overwrite"]
    launcher = [sys.executable] if processes == 0 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    started = time.perf_counter()
    done = subprocess.run(launcher + aelab, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"training failed ({processes} processes, minibatch {minibatch}):\n{done.stderr[-2000:]}")
    info = json.loads((out / "config.json").read_text())
    training = info["training"]
    return {"launch": "python -m aelab" if processes == 0 else f"torchrun x{processes}",
            "processes": max(processes, 1), "minibatch": minibatch,
            "samples_per_second": training["samples_seen"] / training["seconds"],
            "train_seconds": training["seconds"], "wall_seconds": wall,
            "test_psnr_db": info["metrics"].get("test_psnr_db")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 sweep per setting instead of 3")
    parser.add_argument("--sweeps", type=float, default=None, help="sweeps per setting (overrides --quick)")
    parser.add_argument("--model", default="deep", help="model kind (default: %(default)s)")
    parser.add_argument("--minibatches", default="64,1024", help="global minibatch sizes (default: %(default)s)")
    parser.add_argument("--processes", default="2", help="process counts beside one (default: %(default)s)")
    args = parser.parse_args(argv)
    sweeps = args.sweeps or (1.0 if args.quick else 3.0)
    counts = [0, 1, *[int(n) for n in args.processes.split(",")]]  # 0: without torchrun
    rows = []
    with tempfile.TemporaryDirectory(prefix="aelab-processes-") as tmp:
        for minibatch in [int(m) for m in args.minibatches.split(",")]:
            for n in counts:
                rows.append(train_once(n, minibatch, sweeps, args.model, Path(tmp) / f"run-{n}-{minibatch}"))
    print(f"{args.model} model, MNIST, sweeps per run: {sweeps:g}; CPU: {cpu_model()}, {os.cpu_count()} logical CPUs")
    print(f"{'launch':<18}{'minibatch':>10}{'samples/s':>12}{'ratio':>8}{'train s':>9}{'wall s':>8}{'PSNR dB':>9}")
    for row in rows:
        base = next(r for r in rows if r["minibatch"] == row["minibatch"] and r["launch"] == "python -m aelab")
        row["ratio_to_one_process"] = row["samples_per_second"] / base["samples_per_second"]
        print(f"{row['launch']:<18}{row['minibatch']:>10}{row['samples_per_second']:>12,.0f}"
              f"{row['ratio_to_one_process']:>8.2f}{row['train_seconds']:>9.1f}{row['wall_seconds']:>8.1f}"
              f"{row['test_psnr_db'] or float('nan'):>9.2f}")
    print(json.dumps({"benchmark": "processes", "model": args.model, "sweeps": sweeps, "cpu": cpu_model(),
                      "logical_cpus": os.cpu_count(), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
