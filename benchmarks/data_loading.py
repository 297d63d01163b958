"""Reading a folder of images: a plain Pillow loop against load_dataset, cold and cached.

Writes the bundled MNIST (60,000 + 10,000 images) as PNG files in class
folders under a temporary folder (timed on its own), then measures, in one
run: a plain loop of ``Image.open`` + ``np.asarray``; ``load_dataset`` on the
folder the first time (decoding with a pool; thread and process pools are
both timed); and again (from the cache). Prints a table of images/s, the CPU
model, and one JSON line last.

    python benchmarks/data_loading.py [--quick]   # --quick: a 5,000-image subset

The full run decodes 70,000 files several times over: minutes on a busy machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from aelab.data import load_dataset
from aelab.device import cpu_model
from aelab.data.folders import decode_all, list_images

REPEATS = 3  # best of three for every read timing; writing the PNGs is timed once




def write_pngs(root: Path, limit: int | None) -> int:
    mnist = load_dataset(None)
    train_n = mnist.train.n if limit is None else limit * mnist.train.n // (mnist.train.n + mnist.test.n)
    counts = {"train": train_n, "test": mnist.test.n if limit is None else limit - train_n}
    count = 0
    for split in ("train", "test"):
        s, n = getattr(mnist, split), counts[split]
        for label in range(mnist.num_classes):
            (root / split / str(label)).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(s.images[i]).save(root / split / str(int(s.labels[i])) / f"{i:05d}.png")
        count += n
    return count


def timed(fn, repeats: int = 1, before=None):
    """The result and the best of ``repeats`` wall times (the machine may be shared)."""
    best = float("inf")
    for _ in range(repeats):
        if before:
            before()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def plain_loop(root: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in list_images(root)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 5,000-image subset")
    args = parser.parse_args()
    limit = 5000 if args.quick else None
    with tempfile.TemporaryDirectory(prefix="aelab-bench-") as tmp:
        root, cache = Path(tmp) / "mnist-png", Path(tmp) / "cache"
        os.environ["AELAB_CACHE"] = str(cache)
        count, write_s = timed(lambda: write_pngs(root, limit))
        plain, plain_s = timed(lambda: plain_loop(root), REPEATS)
        paths = list_images(root)
        _, thread_s = timed(lambda: decode_all(paths, None, None, None, False, executor="thread"), REPEATS)
        _, process_s = timed(lambda: decode_all(paths, None, None, None, False, executor="process"), REPEATS)
        cold, cold_s = timed(lambda: load_dataset(root), REPEATS, before=lambda: shutil.rmtree(cache, True))
        warm, warm_s = timed(lambda: load_dataset(root), REPEATS)
        assert not cold.source["cached"] and warm.source["cached"]
        assert np.array_equal(np.sort(plain.reshape(len(plain), -1).sum(1)),
                              np.sort(np.concatenate([warm.train.images, warm.test.images])
                                      .reshape(count, -1).sum(1)))
    rows = [("write PNGs", write_s), ("plain Image.open loop", plain_s), ("decode, thread pool", thread_s),
            ("decode, process pool", process_s), ("load_dataset cold", cold_s),
            ("load_dataset cached", warm_s)]
    print(f"{count} MNIST images as PNG in class folders; CPU: {cpu_model()}, {os.cpu_count()} cores; "
          f"best of {REPEATS}")
    print(f"{'step':<24} {'seconds':>8} {'images/s':>10} {'vs plain':>9}")
    for name, seconds in rows:
        print(f"{name:<24} {seconds:8.3f} {count / seconds:10.0f} {plain_s / seconds:8.2f}x")
    print(json.dumps({"benchmark": "data_loading", "images": count, "quick": args.quick, "repeats": REPEATS,
                      "cpu": cpu_model(), "cores": os.cpu_count(),
                      "seconds": {name: round(s, 4) for name, s in rows},
                      "images_per_s": {name: round(count / s, 1) for name, s in rows}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
