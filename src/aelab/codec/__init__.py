"""The learned codec: images to ``.aez`` bytes and back.

Owns the file format, the quantisers, the entropy coders (a registry of ``Coder`` objects) and the predictor
that some of them use, the tables the coders learn (fitted once and stored in the checkpoint), and the
compress/decompress API. May import the core modules, ``aelab.data``,
``aelab.models`` and ``aelab.training``; never evaluation, the tutorial or the CLI.
"""

from importlib import import_module
from typing import Any

# the public API, loaded on first use: the codec's modules import torch, and `import aelab.codec`
# (the CLI's argument parser, for one) must stay light
_PUBLIC = ("compress", "decompress", "encode_bytes", "decode_bytes", "read_header", "codec_table", "save_tables",
           "store_training_tables", "FIT_BITS", "has_cached_table", "default_coder", "CODERS", "PREDICTIVE_CODERS",
           "Coder", "coder_help", "QUANTISERS", "DEFAULT_QUANTISER", "DEFAULT_BITS", "MIN_BITS", "MAX_BITS",
           "DEFAULT_RATE_WEIGHT")

__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(".api", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
