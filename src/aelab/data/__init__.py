"""Data formats and datasets: IDX, CNTK text format (CTF), npz, PNG/JPEG, and MNIST.

The bundled MNIST copy lives in ``aelab/data/mnist`` (package data).
"""
from .ctf import iter_ctf, read_ctf, write_ctf
from .datasets import (Dataset, Split, convert, describe, format_description, load_dataset,
                       load_images, save_dataset)
from .download import DEFAULT_MIRRORS, download_mnist
from .idx import read_idx, write_idx

__all__ = [
    "Dataset", "Split", "load_dataset", "load_images", "save_dataset", "convert",
    "describe", "format_description",
    "read_idx", "write_idx",
    "iter_ctf", "read_ctf", "write_ctf",
    "download_mnist", "DEFAULT_MIRRORS",
]
