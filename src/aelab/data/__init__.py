"""Data: reading and writing data sets, and everything done to data before a model sees it.

Owns what a path is (``resolver``: :func:`resolve` decides a source's kind once, and
:class:`ReadOptions` says how to read it), reading data as a checkpoint recorded its training
data (``recorded``), the file formats (IDX, the CNTK text format CTF, npz, image files and
folders, feature tables), the ``Dataset``, ``Split`` and ``Samples`` types (``dataset_types``;
the array layout is documented there), the seeded test split (``splitting``),
the table ``Scaler`` (``scaling``), image-folder decoding and its cache
(``folders``, ``pictures``, ``folder_cache``), the bundled MNIST (``aelab/data/mnist``,
package data) and its checked download, image arrays and PNG writing
(``images``), input noise for denoising (``noise``) and packed data sets read from disk
with bounded memory (``packed``, ``chunks``). May import only the
core modules: ``aelab.errors``, ``aelab.fileio``, ``aelab.device`` and
``aelab.version``.
"""
from .ctf import iter_ctf, read_ctf, write_ctf
from .dataset_types import Dataset, Samples, Split
from .datasets import load_dataset, load_images, load_named_images, load_samples
from .resolver import ReadOptions, Source, resolve
from .describe import describe, format_description
from .saving import convert, save_dataset
from .packed import PackWriter, load_packed, pack
from .download import DEFAULT_MIRRORS, download_mnist
from .pictures import parse_size
from .scaling import Scaler, default_scaling, suggest_loss
from .idx import read_idx, write_idx

__all__ = [
    "Dataset", "Split", "Samples", "ReadOptions", "Source", "resolve",
    "load_dataset", "load_images", "load_named_images", "load_samples", "save_dataset", "convert", "pack", "load_packed", "PackWriter",
    "describe", "format_description", "parse_size", "Scaler", "default_scaling", "suggest_loss",
    "read_idx", "write_idx",
    "iter_ctf", "read_ctf", "write_ctf",
    "download_mnist", "DEFAULT_MIRRORS",
]
