"""Shipped pretrained models: checkpoints in the package, usable by name.

Each lives in ``aelab/models/pretrained/<name>/`` as an ordinary checkpoint
(``model.safetensors`` + ``config.json``) whose weights are stored as
float16 to keep the package small; loading casts them back to float32, and
every metric in its ``config.json`` was measured on exactly those rounded
weights (``aelab evaluate --checkpoint NAME`` reproduces them).
``scripts/train_pretrained.py`` trains and exports them all.

Wherever aelab takes ``--checkpoint``, a shipped name works too; an existing
folder of that name wins over the shipped model.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch

from ..errors import OptionError
from .checkpoint import pretrained_names, pretrained_path, read_checkpoint_info, save_checkpoint
from .networks import count_parameters

SHIPPED_DTYPE = torch.float16


def describe_pretrained(name: str) -> dict:
    """What ``aelab models`` says about one shipped model: name, kind, sizes, training and test metrics."""
    folder = pretrained_path(name)
    if folder is None:
        raise OptionError(f"no shipped model named {name!r}", hint=f"choose one of: {', '.join(pretrained_names())}")
    info = read_checkpoint_info(folder)
    model = info.get("model", {})
    training = info.get("training", {})
    shipped = info.get("shipped", {})
    entry = {"name": name, "kind": model.get("kind"), "code_size": model.get("code_size"),
             "input_shape": model.get("input_shape"), "description": shipped.get("description", ""),
             "params": shipped.get("params"), "weights_bytes": (folder / "model.safetensors").stat().st_size,
             "recipe": training.get("recipe"), "sweeps": training.get("sweeps"), "noise": training.get("noise"),
             "seed": training.get("seed"), "train_seconds": training.get("seconds"),
             "path": str(folder)}
    entry.update(info.get("metrics", {}))
    return entry


def list_pretrained() -> list[dict]:
    """:func:`describe_pretrained` of every shipped model."""
    return [describe_pretrained(n) for n in pretrained_names()]


def rounded_to_shipped_dtype(model: torch.nn.Module) -> torch.nn.Module:
    """A float32 copy of ``model`` whose parameters went through float16 (what loading a shipped model gives)."""
    twin = copy.deepcopy(model).to("cpu")
    with torch.no_grad():
        for p in twin.parameters():
            p.data = p.data.to(SHIPPED_DTYPE).to(torch.float32).clone()
    return twin


def export_pretrained(folder: str | os.PathLike, model: torch.nn.Module, *, training: dict, data: dict,
                      metrics: dict, description: str) -> Path:
    """Write ``model`` as a shipped checkpoint: float16 parameters (buffers as they are) and ``metrics``.

    ``model`` should already be :func:`rounded_to_shipped_dtype` and ``metrics``
    measured on it, so that the stored figures are what loading gives.
    """
    half = copy.deepcopy(model).to("cpu")
    with torch.no_grad():
        for p in half.parameters():
            p.data = p.data.to(SHIPPED_DTYPE).clone()
    folder = save_checkpoint(folder, half, model.config, training=training, data=data, metrics=metrics)
    # record how the weights are stored and what the model is, next to what save_checkpoint wrote
    path = Path(folder) / "config.json"
    info = json.loads(path.read_text(encoding="utf-8"))
    info["shipped"] = {"description": description, "params": int(count_parameters(model)),
                       "weights_dtype": str(SHIPPED_DTYPE).replace("torch.", "")}
    info.pop("created", None)  # keeps re-exports of the same weights byte-identical
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return Path(folder)
