"""Data larger than memory: training streamed from a packed data set against training in memory.

Makes packed data sets on disk (``aelab.data.packed.PackWriter``, a chunk at a time: nothing holds a
whole set) of MNIST training digits with random shifts of up to 3 pixels, the real MNIST test split as
their test split. Then, each in its own process (so that its peak resident memory, VmHWM, is its own):

* **streamed**: one sweep over the largest set, read from disk by ``--data DIR``'s block-shuffled
  stream; the data file is first dropped from the page cache (``posix_fadvise``), so the reads hit
  the disk or whatever caches lie below the OS;
* **in memory**: the same number of samples from an in-memory slice of the same images (an eighth of
  them, eight sweeps), as any other ``--data`` trains;
* **time against size**: one streamed sweep over sets of 1, 4 and 16 times MNIST's 60,000 (and, without
  ``--quick``, 64 times): the cost should grow linearly.

Prints a table and, last, one JSON line: streamed and in-memory samples/s, their ratio, the streamed
run's peak RSS, the largest set's bytes, and the size series.

    python benchmarks/scale.py [--quick] [--work DIR]   # --quick: a 48x set (2.3 GB); else 64x (3 GB)

Both take minutes; disk space: about twice the largest set (under --work, default a temporary folder).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aelab.device import cpu_model

MNIST_TRAIN = 60_000
SHIFT = 3          # pixels, each way
CHUNK = 60_000     # images generated and written at a time
MODEL, SEED = "deep", 0
MB = 1 << 20       # RSS and sizes in MiB, as /proc reports them




def shifted(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by a random (dy, dx) in [-SHIFT, SHIFT]^2, the border filled with 0."""
    n, h, w = images.shape
    padded = np.zeros((n, h + 2 * SHIFT, w + 2 * SHIFT), np.uint8)
    padded[:, SHIFT:SHIFT + h, SHIFT:SHIFT + w] = images
    dy, dx = rng.integers(-SHIFT, SHIFT + 1, size=(2, n))
    out = np.empty_like(images)
    for a in range(-SHIFT, SHIFT + 1):
        for b in range(-SHIFT, SHIFT + 1):
            rows = np.flatnonzero((dy == a) & (dx == b))
            out[rows] = padded[rows, SHIFT + a:SHIFT + a + h, SHIFT + b:SHIFT + b + w]
    return out


def make_set(out: Path, factor: int, seed: int) -> tuple[int, float]:
    """A packed set of ``factor`` x 60,000 shifted MNIST digits; returns its bytes and the seconds taken."""
    from aelab.data import load_dataset
    from aelab.data.packed import PackWriter

    mnist = load_dataset(None)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    with PackWriter(out, mnist.train.images.shape[1:], np.uint8, labels=True) as writer:
        left = factor * MNIST_TRAIN
        while left:
            take = min(CHUNK, left)
            pick = rng.integers(0, mnist.train.n, size=take)
            writer.add("train", shifted(mnist.train.images[pick], rng), mnist.train.labels[pick])
            left -= take
        writer.add("test", mnist.test.images, mnist.test.labels)
        writer.close({"name": f"shifted-mnist-{factor}x", "num_classes": 10, "class_names": None})
    seconds = time.perf_counter() - started
    return sum(p.stat().st_size for p in out.iterdir()), seconds


def child(mode: str, folder: str, sweeps: float) -> None:
    """One measured run, in this process; prints a JSON line."""
    from aelab.data import Dataset, Split, load_dataset
    from aelab.training import TrainConfig, train

    started = time.perf_counter()
    data = load_dataset(folder)  # checks every shard's SHA-256, reading a few MB at a time
    load_seconds = time.perf_counter() - started
    if mode == "memory":  # an in-memory slice: 1/sweeps of the images, for `sweeps` sweeps
        n = int(data.train.n / sweeps)
        data = Dataset(name="slice", train=Split(np.array(data.train.images[:n]), np.array(data.train.labels[:n])),
                       test=Split(np.array(data.test.images), np.array(data.test.labels)), sha256="0" * 64)
    else:
        fd = os.open(data.train.images.filename, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # read it from below the page cache
        os.close(fd)
    result = train(data, TrainConfig(model=MODEL, sweeps=sweeps, seed=SEED, device="cpu"), log=None,
                   progress_bar=False)
    status = Path("/proc/self/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    print(json.dumps({"mode": mode, "samples": result.samples_seen, "seconds": result.seconds,
                      "samples_per_second": result.samples_seen / result.seconds, "peak_rss_mb": hwm / 1024,
                      "load_seconds": load_seconds, "train_images": data.train.n,
                      "train_error_pct": result.train_error_pct}))


def measure(mode: str, folder: Path, sweeps: float) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", mode, str(folder), str(sweeps)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"the {mode} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 48x MNIST set and sizes 1, 4, 16x (a few minutes)")
    parser.add_argument("--work", default=None, metavar="DIR", help="where the packed sets go (default: a temporary "
                                                                     "folder, removed at the end)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], float(args.child[2]))
        return 0
    import torch

    largest = 48 if args.quick else 64
    sizes = [1, 4, 16] + ([] if args.quick else [64])
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="aelab-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        load_before = os.getloadavg()[0]
        print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}; model {MODEL}, tutorial "
              f"recipe (minibatch 64), seed {SEED}; load average {load_before:.1f}", flush=True)
        big = work / f"{largest}x"
        dataset_bytes, pack_seconds = make_set(big, largest, seed=1)
        print(f"packed {largest} x 60,000 shifted digits: {dataset_bytes / 1e9:.2f} GB in {pack_seconds:.1f} s "
              f"({dataset_bytes / 1e6 / pack_seconds:.0f} MB/s)", flush=True)
        streamed = measure("streamed", big, 1.0)
        memory = measure("memory", big, 8.0)
        ratio = streamed["samples_per_second"] / memory["samples_per_second"]
        print(f"\n{'run':<34} {'images held':>12} {'samples':>10} {'seconds':>8} {'samples/s':>10} "
              f"{'peak RSS MB':>11}")
        for name, r, held in (("streamed from disk (1 sweep)", streamed, "0 (blocks)"),
                              ("in memory (1/8 slice, 8 sweeps)", memory, f"{memory['train_images']:,}")):
            print(f"{name:<34} {held:>12} {r['samples']:>10,} {r['seconds']:8.1f} {r['samples_per_second']:10,.0f} "
                  f"{r['peak_rss_mb']:11.0f}")
        print(f"ratio streamed / in memory: {ratio:.2f}; streamed peak RSS {streamed['peak_rss_mb']:.0f} MB = "
              f"1/{dataset_bytes / MB / streamed['peak_rss_mb']:.1f} of the {dataset_bytes / MB:.0f} MB set "
              f"(checking its shards at load: {streamed['load_seconds']:.1f} s)")

        series = []
        for factor in sizes:
            folder = big if factor == largest else work / f"{factor}x"
            if factor != largest:
                make_set(folder, factor, seed=factor)
            r = streamed if factor == largest else measure("streamed", folder, 1.0)
            series.append({"factor": factor, "images": factor * MNIST_TRAIN, "seconds": r["seconds"],
                           "us_per_sample": 1e6 * r["seconds"] / r["samples"], "peak_rss_mb": r["peak_rss_mb"]})
            if factor != largest:
                shutil.rmtree(folder)
        if largest not in sizes:
            series.append({"factor": largest, "images": largest * MNIST_TRAIN, "seconds": streamed["seconds"],
                           "us_per_sample": 1e6 * streamed["seconds"] / streamed["samples"],
                           "peak_rss_mb": streamed["peak_rss_mb"]})
        print(f"\n{'size':<6} {'images':>10} {'seconds/sweep':>14} {'us/sample':>10} {'peak RSS MB':>11}")
        for s in series:
            print(f"{s['factor']:>4}x  {s['images']:>10,} {s['seconds']:14.1f} {s['us_per_sample']:10.2f} "
                  f"{s['peak_rss_mb']:11.0f}")
        print(f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (other processes on "
              "the same cores slow every run; the ratio compares runs made minutes apart)")
        print(json.dumps({"benchmark": "scale", "quick": args.quick, "cpu": cpu_model(), "cores": os.cpu_count(),
                          "load_average": [load_before, os.getloadavg()[0]],
                          "model": MODEL, "minibatch": 64,
                          "streamed_samples_per_second": streamed["samples_per_second"],
                          "in_memory_samples_per_second": memory["samples_per_second"], "ratio": ratio,
                          "peak_rss_mb": streamed["peak_rss_mb"], "in_memory_peak_rss_mb": memory["peak_rss_mb"],
                          "dataset_bytes": dataset_bytes, "dataset_over_peak_rss": dataset_bytes / MB /
                          streamed["peak_rss_mb"], "pack_seconds": pack_seconds,
                          "load_seconds": streamed["load_seconds"], "sizes": series}))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    from aelab.errors import run_script
    sys.exit(run_script(main, "scale.py"))
