"""aelab: autoencoders for images and feature tables.

Everything the ``aelab`` command line does, for notebooks (names load on first use, so
``import aelab`` stays light):

- data: ``load_dataset``, ``load_data`` (as ``--data`` reads it), ``Dataset``, ``load_images``, ``save_dataset``, ``convert``, ``describe``,
  ``download_mnist``, ``read_codes``, ``write_codes``
- train: ``TrainConfig``, ``RECIPES``, ``MODEL_NAMES``, ``train``, ``train_model`` (train, evaluate, save),
  ``train_from_options`` (the same from ``aelab train``'s options), ``train_settings`` (the settings
  ``aelab train --data`` chooses)
- models: ``load_model``, ``list_pretrained``, ``TrainedModel``
- evaluate: ``evaluate_model``, ``evaluate``, ``knn_accuracy``
- codes and images: ``input_images``, ``input_samples``, ``read_input``, ``encode_images``, ``decode_codes``, ``reconstruct_images``,
  ``similarity_pairs``, ``tsne_map``
- codec: ``compress``, ``decompress``, ``save_tables`` (``aelab codec fit``), ``compress_notice``,
  ``decompress_notice``, ``CODERS``, ``QUANTISERS``, ``DEFAULT_BITS``
- report: ``report_model``
- anomaly scores: ``anomaly_scores``; export (ONNX, torch.export): ``export_model``
- compare: ``compare_models``
- generate: ``denoise_images``, ``sample_images``, ``interpolate_images``, and on a bare model
  ``denoise``, ``sample``, ``interpolate``
- tutorial: ``run_tutorial``
- benchmark: ``run_benchmark``
- scikit-learn: ``AutoencoderTransformer`` (``aelab.sklearn``)
- errors: ``AelabError``, the base of every error aelab raises for bad input or options
"""
from __future__ import annotations

import importlib

from .version import __version__

_WHERE = {
    "load_dataset": "aelab.data", "load_data": "aelab.api", "load_images": "aelab.data", "save_dataset": "aelab.data",
    "convert": "aelab.data", "describe": "aelab.data", "download_mnist": "aelab.data",
    "Dataset": "aelab.data", "read_codes": "aelab.data.codes", "write_codes": "aelab.data.codes",
    "TrainConfig": "aelab.training", "RECIPES": "aelab.training", "train": "aelab.training",
    "MODEL_NAMES": "aelab.api", "train_model": "aelab.api", "train_settings": "aelab.api",
    "train_from_options": "aelab.api", "TrainedModel": "aelab.api",
    "load_model": "aelab.api", "list_pretrained": "aelab.models.zoo",
    "evaluate": "aelab.evaluation.evaluate", "knn_accuracy": "aelab.evaluation.evaluate",
    "input_images": "aelab.api", "input_samples": "aelab.api", "read_input": "aelab.api", "encode_images": "aelab.api", "decode_codes": "aelab.api",
    "reconstruct_images": "aelab.api",
    "compress": "aelab.api", "decompress": "aelab.api",
    "CODERS": "aelab.api", "QUANTISERS": "aelab.api", "DEFAULT_BITS": "aelab.api",
    "compress_notice": "aelab.api", "decompress_notice": "aelab.api", "save_tables": "aelab.api",
    "compare_models": "aelab.api", "evaluate_model": "aelab.api", "denoise_images": "aelab.api",
    "similarity_pairs": "aelab.api", "tsne_map": "aelab.api",
    "sample_images": "aelab.api", "interpolate_images": "aelab.api",
    "denoise": "aelab.evaluation.generate", "sample": "aelab.evaluation.generate",
    "interpolate": "aelab.evaluation.generate",
    "run_tutorial": "aelab.tutorial.run", "run_benchmark": "aelab.evaluation.bench",
    "AelabError": "aelab.errors",
    "AutoencoderTransformer": "aelab.sklearn", "anomaly_scores": "aelab.api",
    "export_model": "aelab.api", "report_model": "aelab.api",
}

__all__ = ["__version__", *_WHERE]


def __getattr__(name: str):
    """PEP 562: import the module that holds ``name`` only when it is first asked for."""
    if name not in _WHERE:
        raise AttributeError(f"module 'aelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
