"""Small datasets for fast tests, and loading the benchmark scripts."""
import importlib.util
import sys
from pathlib import Path

import numpy as np

from aelab.data import Dataset, Split, load_dataset

_MNIST = None


def mnist():
    global _MNIST
    if _MNIST is None:
        _MNIST = load_dataset()
    return _MNIST


def small_mnist(train: int = 512, test: int = 128) -> Dataset:
    full = mnist()
    return Dataset(name="mnist-small", train=Split(full.train.images[:train], full.train.labels[:train]),
                   test=Split(full.test.images[:test], full.test.labels[:test]),
                   sha256=full.sha256, files=full.files, num_classes=10)


def synthetic(h: int = 8, w: int = 6, n_train: int = 200, n_test: int = 40, classes: int = 3, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    def split(n):
        return Split(rng.integers(0, 256, size=(n, h, w), dtype=np.uint8), rng.integers(0, classes, size=n))
    return Dataset(name="synthetic", train=split(n_train), test=split(n_test), sha256="0" * 64, files={},
                   num_classes=classes)


def repo_script(folder: str, name: str):
    """FOLDER/NAME.py of the repository loaded as a module (the scripts are not a package)."""
    path = Path(__file__).resolve().parents[1] / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def benchmark_script(name: str):
    """benchmarks/NAME.py loaded as a module."""
    return repo_script("benchmarks", name)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``aelab ARGS`` in this process: its exit status, standard output and standard error."""
    from aelab.cli import main
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err
