"""A trained model's encoder and decoder as two files other runtimes load: ONNX or torch.export programs.

The exported encoder takes what ``aelab encode`` reads, laid out channels first:

* image models: uint8 pixels ``(batch, C, H, W)`` (C = 1 grey, 3 colour; aelab keeps colour images
  channels last, ``(n, H, W, 3)``, so transpose them with ``images.transpose(0, 3, 1, 2)``);
* table models: float32 rows ``(batch, d)``, already scaled with the checkpoint's scaler
  (``(x - mean) / scale``, written to ``export.json``).

It returns float32 codes ``(batch, code_size)``. The decoder takes float32 codes and returns
float32 images ``(batch, C, H, W)`` in [0, 1], or a table's rows ``(batch, d)`` in its scaled units.
The batch dimension is dynamic. ``export.json`` beside them names the files, inputs, outputs and a
table's scaler.
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch

from ..errors import OptionError
from ..fileio import ensure_dir, write_text
from .networks import ModelConfig

FORMATS = ("onnx", "pt2")
ONNX_OPSET = 17
EXTRA_HINT = "pip install 'aelab[export]' (onnx and onnxruntime)"


class _Encoder(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x.reshape(x.shape[0], -1).to(torch.float32))


class _Decoder(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.model, self.shape = model, shape

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.decode(codes).reshape(codes.shape[0], *self.shape)


def input_layout(config: ModelConfig) -> tuple[int, ...]:
    """One sample as the exported encoder takes it: ``(C, H, W)`` or ``(d,)``."""
    shape = tuple(config.input_shape)
    return (1, *shape) if len(shape) == 2 else shape


def export_model(model: torch.nn.Module, fmt: str, folder: str | Path, scaler: dict | None = None) -> list[Path]:
    """Write ``model``'s encoder and decoder into ``folder`` as ``encoder.onnx``/``decoder.onnx``
    (``fmt="onnx"``) or ``encoder.pt2``/``decoder.pt2`` (``"pt2"``, torch.export programs), and
    ``export.json``; returns the paths written."""
    if fmt not in FORMATS:
        raise OptionError(f"unknown export format {fmt!r}", hint=f"choose one of: {', '.join(FORMATS)}")
    config: ModelConfig = model.config
    if any(p.device.type != "cpu" for p in model.parameters()):
        model = copy.deepcopy(model).to("cpu")  # the caller's model stays where it is
    model = model.eval()
    layout = input_layout(config)
    is_image = len(config.input_shape) > 1
    example = torch.zeros((2, *layout), dtype=torch.uint8 if is_image else torch.float32)
    codes = torch.zeros((2, config.code_size))
    out = ensure_dir(folder)
    parts = [("encoder", _Encoder(model), example, "inputs", "codes"),
             ("decoder", _Decoder(model, layout), codes, "codes", "outputs")]
    paths = []
    for name, module, x, in_name, out_name in parts:
        path = out / f"{name}.{fmt}"
        (_onnx if fmt == "onnx" else _pt2)(module, x, path, in_name, out_name)
        paths.append(path)
    pixel = "uint8 pixels 0..255" if is_image else "float32, scaled with the scaler below"
    info = {"format": fmt, "encoder": paths[0].name, "decoder": paths[1].name,
            "inputs": {"name": "inputs", "shape": ["batch", *layout], "dtype": "uint8" if is_image else "float32",
                       "meaning": pixel + ("" if not is_image else ", channels first")},
            "codes": {"name": "codes", "shape": ["batch", config.code_size], "dtype": "float32"},
            "outputs": {"name": "outputs", "shape": ["batch", *layout], "dtype": "float32",
                        "meaning": "images in [0, 1], channels first" if is_image
                        else "rows in the scaled units"},
            "model": config.to_dict(), "scaler": scaler}
    paths.append(write_text(out / "export.json", json.dumps(info, indent=2) + "\n"))
    for other in set(FORMATS) - {fmt}:  # an earlier export's other format would pass for part of this one
        for name, *_ in parts:
            (out / f"{name}.{other}").unlink(missing_ok=True)
    return paths


def _onnx(module: torch.nn.Module, x: torch.Tensor, path: Path, in_name: str, out_name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        try:
            torch.onnx.export(module, (x,), str(path), input_names=[in_name], output_names=[out_name],
                              dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}},
                              opset_version=ONNX_OPSET, dynamo=False)
        except ModuleNotFoundError as e:
            raise OptionError(f"ONNX export needs the {e.name} package", hint=EXTRA_HINT) from e


def _pt2(module: torch.nn.Module, x: torch.Tensor, path: Path, in_name: str, out_name: str) -> None:
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(module, (x,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
