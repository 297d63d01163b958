"""The choices and defaults that the ``aelab`` parser shows, from modules that import nothing heavy.

Building the parser (``aelab --help`` too) must not import torch, numba, scikit-learn or matplotlib,
and most of the modules that own these values do. So the values those modules own are repeated here,
and tests/test_cli_choices.py checks each one against its owner: a change made there and not here
fails the suite. The codec's bit depths and quantisers come from its light ``format`` module.
"""
from __future__ import annotations

from .codec.format import (  # noqa: F401 - re-exported for the parser
    DEFAULT_BITS, DEFAULT_QUANTISER, DEFAULT_RATE_WEIGHT, MAX_BITS, MIN_BITS, QUANTISERS)

# aelab.models.networks
MODEL_NAMES = ("simple", "deep", "dense", "conv", "sparse", "vae", "residual")
LOSSES = ("bce", "mse")
NORMS = ("none", "group")
# aelab.models.export
EXPORT_FORMATS = ("onnx", "pt2")
# aelab.data.pictures: the formats an image folder's files may have
IMAGE_FORMATS = "PNG, JPEG, WebP, BMP, TIFF, GIF, PGM/PPM"
# aelab.data.scaling
SCALE_METHODS = ("standard", "minmax", "none")
# aelab.training.config: the recipes' names, and the settings of the default one
RECIPE_NAMES = ("tutorial", "adam", "adam-long", "fit")
DEFAULT_RECIPE = "tutorial"
DEFAULT_RECIPE_LR, DEFAULT_RECIPE_MINIBATCH = 3e-5, 64
# aelab.codec.coders: the registry's coders, in its order, with their descriptions
CODERS = {
    "range": "each component's symbols under its histogram",
    "zlib": "the symbols zlib-compressed, for when constriction is not installed",
    "range-ar": "the range coder on what an autoregressive predictor of each component from the earlier ones "
                "leaves (--table checkpoint only; `aelab codec fit --coder range-ar` stores its table in the "
                "checkpoint)",
    "range-ctx": "as range-ar with a wider predictor that also picks a probability table per component (fewest "
                 "bytes, slower; docs/codec.md has the measurements)",
}
PREDICTIVE_CODERS = ("range-ar", "range-ctx")
# aelab.codec.tables: the bit depths training stores, and `aelab codec fit` fits by default
CODEC_FIT_BITS = (2, 3, 4, 5, 6, 7, 8)
# aelab.api and aelab.evaluation.compare: `aelab compare`'s defaults
COMPARE_MODELS = ("simple", "deep", "dense", "conv", "sparse", "vae", "dense@gaussian:0.5")
COMPARE_RECIPE = "adam-long"
COMPARE_SWEEPS, QUICK_SWEEPS = 10.0, 1.0
COMPARE_TSNE_LIMIT, QUICK_TSNE_LIMIT = 1000, 200


def coder_help() -> str:
    """The ``--coder`` option's help, as :func:`aelab.codec.coder_help` writes it."""
    lines = "; ".join(f"{name}: {description}" for name, description in CODERS.items())
    return f"entropy coder (default: range, with constriction; zlib without it); {lines}"
