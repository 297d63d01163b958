"""Checkpoints: a folder with ``model.safetensors`` and ``config.json``, and the codec's ``codec.safetensors``.

The weights are safetensors (loading them never unpickles anything); the JSON
says how to rebuild the model (kind and sizes), how it was trained, on what
data, what it scored, and with which package versions. It also records the
SHA-256 of the weights file, so weights and JSON that do not belong together
are refused, and likewise of the codec's probability tables (``codec.safetensors``,
fitted by :mod:`aelab.codec` at the end of training), which make the checkpoint
complete: compressing and decompressing with it need nothing else.
The model's fingerprint (:func:`model_fingerprint`) names it in the files the codec writes.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import importlib.resources
import inspect
import json
import os
import platform
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..data import Dataset, ReadOptions
from ..data.recorded import load_as_recorded
from ..device import resolve_device
from ..version import __version__
from ..errors import CheckpointError, OptionError
from ..fileio import ensure_dir, strict_json, write_files_together
from .networks import ModelConfig, build_model, model_config

FORMAT = "aelab-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"  # the training curve of the checkpoint beside it
NEXT_METRICS_FILE = "metrics.next.csv"  # the curve of a run that is to replace the checkpoint beside it
TABLES_FILE = "codec.safetensors"
DAMAGED_HINT = "copy the checkpoint folder again, whole, or train the model again"
MAX_TABLES_BYTES = 1 << 30   # the codec's tables: a few megabytes with every predictor


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode) and everything its JSON says."""

    model: torch.nn.Module
    model_config: ModelConfig
    info: dict
    path: Path


def package_versions() -> dict:
    return {"aelab": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def weights_bytes(model: torch.nn.Module) -> bytes:
    # clone: training keeps parameters as views of one flat buffer, which safetensors refuses to save
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in model.state_dict().items()}
    return save_safetensors(tensors)


def save_checkpoint(folder: str | os.PathLike, model: torch.nn.Module, model_config: ModelConfig, *,
                    training: dict | None = None, data: dict | None = None,
                    metrics: dict | None = None) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/config.json``; returns the folder.

    Both files are first written completely to temporary files beside their
    targets and only then renamed into place, weights first: a save that fails
    (unwritable folder, full disk, metadata JSON cannot hold) leaves the
    previous checkpoint untouched and no temporary file. Only a crash between
    the two renames can pair new weights with the old JSON, and loading
    refuses that pair (the JSON names the weights' checksum).
    """
    folder = ensure_dir(folder)
    blob = weights_bytes(model)
    weights_sha256 = hashlib.sha256(blob).hexdigest()
    tables = _tables_record_of(folder, weights_sha256)
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_config.to_dict(),
        "weights_sha256": weights_sha256,
        "training": training or {},
        "data": data or {},
        "metrics": metrics or {},
        "versions": package_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if tables:
        info["codec"] = tables
    text = strict_json(info, indent=2) + "\n"  # fails here, before any file is touched; NaN metrics become null
    write_files_together({folder / WEIGHTS_FILE: blob, folder / CONFIG_FILE: text.encode("utf-8")})
    if not tables:  # the codec's tables of the model this one replaced (they match its weights, not these)
        (folder / TABLES_FILE).unlink(missing_ok=True)
    return folder


def _tables_record_of(folder: Path, weights_sha256: str) -> dict | None:
    """config.json's record of the folder's codec tables if they belong to these very weights (the same
    model saved again), else None."""
    try:
        info = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    same_weights = isinstance(info, dict) and info.get("weights_sha256") == weights_sha256
    record = info.get("codec") if same_weights else None
    return record if isinstance(record, dict) and (folder / TABLES_FILE).is_file() else None


def curve_file(folder: str | os.PathLike, resume: bool = False) -> Path:
    """Where a run training into ``folder`` writes its curve as it goes: ``metrics.csv``; beside a saved
    checkpoint that the run is to replace (``--overwrite``), ``metrics.next.csv``, so that until the new
    checkpoint is saved the folder keeps the old model with its own curve. A resumed run goes on with
    the file it was writing."""
    folder = Path(folder)
    replacing = (folder / NEXT_METRICS_FILE).exists() if resume else (folder / CONFIG_FILE).exists()
    return folder / (NEXT_METRICS_FILE if replacing else METRICS_FILE)


def adopt_curve(curve: str | os.PathLike | None) -> None:
    """Once the checkpoint beside ``curve`` is saved, its run's curve becomes the folder's ``metrics.csv``."""
    if curve is not None and Path(curve).name == NEXT_METRICS_FILE and Path(curve).exists():
        os.replace(curve, Path(curve).with_name(METRICS_FILE))


def pretrained_root() -> Path:
    """The folder that holds the shipped checkpoints."""
    return Path(str(importlib.resources.files("aelab.models") / "pretrained"))


def pretrained_names() -> list[str]:
    """The names of the shipped models, sorted."""
    root = pretrained_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file() and (p / "model.safetensors").is_file())


def pretrained_path(name: str) -> Path | None:
    """The folder of the shipped model ``name``, or None."""
    if not isinstance(name, str) or not name or any(c in name for c in "/\\") or name in (".", ".."):
        return None
    folder = pretrained_root() / name
    return folder if (folder / "config.json").is_file() else None


def resolve_checkpoint(spec: str | os.PathLike) -> Path:
    """A checkpoint folder from ``spec``: an existing path as is, else a shipped name's folder, else the path."""
    path = Path(spec)
    if path.exists():
        return path
    shipped = pretrained_path(os.fspath(spec))
    return shipped if shipped is not None else path


def _check_is_folder(folder: Path) -> None:
    """Refuse a checkpoint path that is missing, or is a file: a checkpoint is a folder of config.json and
    model.safetensors."""
    if folder.is_dir():
        return
    what = (f"is a file, not a checkpoint folder (one holding {CONFIG_FILE} and {WEIGHTS_FILE})"
            if folder.exists() else "checkpoint folder not found")
    raise CheckpointError(what, path=folder, hint="pass the folder that `aelab train --out` wrote, or a shipped "
                                                  "model's name (`aelab models` lists them)")


def read_checkpoint_info(folder: str | os.PathLike) -> dict:
    """Read and check ``config.json`` alone (``folder`` may name a shipped model, as for load_checkpoint)."""
    folder = resolve_checkpoint(folder)
    _check_is_folder(folder)
    path = folder / CONFIG_FILE
    try:
        info = json.loads(_read_regular_file(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"no {CONFIG_FILE} in the checkpoint folder", path=folder,
                              hint="pass the folder that `aelab train --out` wrote") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {CONFIG_FILE}: {e}", path=path) from e
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError("not an aelab checkpoint", path=path)
    version = info.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"config.json has no valid format version ({version!r})", path=path,
                              hint="pass the folder that `aelab train --out` wrote")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format version {version!r} is newer than this aelab understands "
                              f"({FORMAT_VERSION})", path=path, hint="upgrade aelab")
    for section, value in _sections(info):
        if value is not None and not isinstance(value, dict):
            raise CheckpointError(f"is damaged: {section} must be an object, got {type(value).__name__}", path=path,
                                  hint=DAMAGED_HINT)
    return info


def _sections(info: dict) -> list[tuple[str, object]]:
    """The parts of config.json that readers take as objects (``data``, ``training``, ...), by name."""
    parts = [(name, info.get(name)) for name in ("model", "training", "data", "metrics", "versions")]
    for outer, inner in (("data", "options"), ("data", "scaler"), ("training", "validation_split")):
        if isinstance(info.get(outer), dict):
            parts.append((f"{outer}.{inner}", info[outer].get(inner)))
    return parts


def load_checkpoint(folder: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate a checkpoint folder; the model comes back in eval mode on ``device``.

    ``folder`` may also name a shipped model (``aelab models``); an existing
    folder of that name wins.
    """
    folder = resolve_checkpoint(folder)
    info = read_checkpoint_info(folder)
    try:
        raw = ModelConfig.from_dict(info["model"])
        # model_config validates the sizes (a negative one would crash inside torch)
        mconfig = model_config(raw.kind, input_shape=raw.input_shape, code_size=raw.code_size, hidden=raw.hidden,
                               channels=raw.channels, conv_depth=raw.conv_depth, res_blocks=raw.res_blocks,
                               norm=raw.norm, activation=raw.activation,
                               sparsity=raw.sparsity, beta=raw.beta, linear_step=raw.linear_step, loss=raw.loss,
                               input_max=raw.input_max)
        # shapes only, no memory: a damaged config.json may describe a model of terabytes, which the
        # weights' shapes refuse below before anything is allocated
        with torch.device("meta"):
            skeleton = build_model(mconfig)
    except (KeyError, TypeError, ValueError, OverflowError, RuntimeError) as e:
        # OverflowError: int(inf); RuntimeError: torch refusing sizes whose storage would overflow
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]  # torch appends a C++ frame dump
        if isinstance(e, KeyError):  # its str() is the repr of the missing key
            reason = f"no {e.args[0]!r} entry" if e.args else "an entry is missing"
        raise CheckpointError(f"config.json has no valid model description ({reason})",
                              path=folder / CONFIG_FILE, hint=DAMAGED_HINT) from e
    weights_path = folder / WEIGHTS_FILE
    blob = _read_weights(weights_path, skeleton)
    if info.get("weights_sha256") and hashlib.sha256(blob).hexdigest() != info["weights_sha256"]:
        raise CheckpointError("the weights do not match config.json (checksum differs): damaged, or from "
                              "another checkpoint", path=weights_path, hint="re-train or restore both files together")
    tensors = _parse_weights(blob, weights_path)
    _check_tensors_fit(skeleton, tensors, weights_path)
    model = build_model(mconfig)
    model.load_state_dict(tensors)
    return Checkpoint(model=model.to(device).eval(), model_config=mconfig, info=info, path=folder)


MAX_CONFIG_BYTES = 16 << 20      # a config.json is a few kilobytes
MAX_HEADER_BYTES = 1 << 20       # a safetensors header names each tensor in ~100 bytes
_CHUNK = 1 << 20


def _read_regular_file(path: Path, limit: int, header: int = 0) -> bytes:
    """The bytes of ``path``, refused unless it is a regular file of at most ``limit`` bytes.

    Opened without blocking (a FIFO would wait forever) and checked on the open file (a symlink to
    /dev/zero is a character device), then read in chunks up to the size it had: memory stays bounded by
    ``limit`` however the file changes meanwhile. With ``header``, the little-endian 8-byte length that
    starts a safetensors file must be at most ``header`` and fit the file, checked before the rest is read.
    Raises CheckpointError, or FileNotFoundError if there is no file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CheckpointError(f"cannot read: {e.strerror or e}", path=path) from e
    info = os.fstat(fd)
    size = info.st_size
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, pipe or socket)"
        raise CheckpointError(f"is {what}, not a checkpoint file", path=path)
    with os.fdopen(fd, "rb", buffering=0) as f:
        if size > limit:
            raise CheckpointError(f"the file is {size:,} bytes, more than this checkpoint can hold "
                                  f"({limit:,} at most): damaged, or not this checkpoint's", path=path)
        chunks, read = [], 0
        try:
            if header:
                first = f.read(8)
                length = int.from_bytes(first, "little") if len(first) == 8 else -1
                if not 0 < length <= min(header, size - 8):
                    raise CheckpointError("the weights file is damaged (no valid safetensors header)", path=path)
                chunks, read = [first], len(first)
            while read < size:
                chunk = f.read(min(_CHUNK, size - read))
                if not chunk:
                    break
                chunks.append(chunk)
                read += len(chunk)
        except OSError as e:
            raise CheckpointError(f"cannot read: {e.strerror or e}", path=path) from e
    return b"".join(chunks)


def _read_weights(path: Path, skeleton: torch.nn.Module) -> bytes:
    """The weights file's bytes, refused before reading if its size is more than ``skeleton``'s tensors need."""
    values = sum(t.numel() for t in skeleton.state_dict().values())
    try:  # 8 bytes per value: float64 at most
        return _read_regular_file(path, 8 + MAX_HEADER_BYTES + 8 * values, header=MAX_HEADER_BYTES)
    except FileNotFoundError as e:
        raise CheckpointError(f"cannot read the weights: {e.strerror or e}", path=path, hint=DAMAGED_HINT) from e


def _parse_weights(blob: bytes, path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors(blob)
    except (SafetensorError, ValueError, RuntimeError, OverflowError) as e:
        raise CheckpointError(f"the weights file is damaged ({e})", path=path) from e


def _check_tensors_fit(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if set(expected) != set(found):
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        raise CheckpointError(f"weights and config.json disagree: missing {missing}, unexpected {extra}", path=path)
    for name, shape in expected.items():
        if found[name] != shape:
            raise CheckpointError(f"weights and config.json disagree: {name} has shape {found[name]}, "
                                  f"the model needs {shape}", path=path)
        t = tensors[name]
        if not t.is_floating_point() or not torch.isfinite(t).all():
            raise CheckpointError(f"tensor {name} holds non-finite or non-float values", path=path)


# --- identity, the CPU copy and the codec's tables -------------------------------------------------

def model_fingerprint(ckpt: Checkpoint) -> bytes:
    """16 bytes naming the model (its description and weights): SHA-256 of both, truncated
    (docs/format.md). Copying or renaming the folder keeps it; new weights change it."""
    weights = ckpt.info.get("weights_sha256")
    if not weights:
        try:
            weights = hashlib.sha256((Path(ckpt.path) / WEIGHTS_FILE).read_bytes()).hexdigest()
        except OSError as e:
            raise CheckpointError(f"cannot read the weights: {e.strerror or e}", path=ckpt.path) from e
    # the model description as config.json stores it: later aelab versions that add fields with defaults
    # to ModelConfig do not change the fingerprint of an existing checkpoint
    description = ckpt.info.get("model") or ckpt.model_config.to_dict()
    text = json.dumps({"model": description, "weights_sha256": weights}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(b"aelab-model-fingerprint\0" + text.encode("utf-8")).digest()[:16]


def cpu_checkpoint(checkpoint: Checkpoint | str | os.PathLike) -> Checkpoint:
    """A loaded checkpoint with its model on the CPU: ``checkpoint`` itself when it is one already,
    a CPU copy of a model elsewhere, or the folder (or shipped name) loaded."""
    if not isinstance(checkpoint, Checkpoint):
        return as_checkpoint(checkpoint, device="cpu")
    model = checkpoint.model
    if next(model.parameters()).device.type != "cpu":
        checkpoint = Checkpoint(model=copy.deepcopy(model).cpu().eval(), model_config=checkpoint.model_config,
                                info=checkpoint.info, path=checkpoint.path)
    return checkpoint


def as_checkpoint(checkpoint: Checkpoint | str | os.PathLike, device: str = "auto") -> Checkpoint:
    """``checkpoint`` when it is a loaded one, else the folder (or shipped model's name) loaded on ``device``
    (``auto``: the best there is); anything else is refused, saying what to pass."""
    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise OptionError(f"checkpoint must be a loaded model, a checkpoint folder or a shipped model's name, got "
                          f"{type(checkpoint).__name__}", hint="load one with aelab.load_model(folder)")
    return load_checkpoint(checkpoint, device=resolve_device(device))


Function = TypeVar("Function", bound=Callable)


def taking_paths(function: Function) -> Function:
    """``function``, whose first argument is a loaded :class:`Checkpoint`, taking there a checkpoint folder
    or a shipped model's name too (:func:`as_checkpoint`); where it takes a :class:`Dataset` as ``data``,
    a data path serves there, read as the model's training data was (:func:`as_dataset`)."""
    signature = inspect.signature(function)
    takes_data = "data" in signature.parameters

    @functools.wraps(function)
    def with_checkpoint(checkpoint, *args, **kwargs):
        checkpoint = as_checkpoint(checkpoint)
        if not takes_data:
            return function(checkpoint, *args, **kwargs)
        try:
            bound = signature.bind(checkpoint, *args, **kwargs)
        except TypeError as e:  # the arguments do not fit: Python's own error, as without the decorator
            raise TypeError(f"{function.__name__}(): {e}") from None
        if "data" in bound.arguments:
            bound.arguments["data"] = as_dataset(bound.arguments["data"], checkpoint)
        return function(*bound.args, **bound.kwargs)
    return with_checkpoint  # type: ignore[return-value]


def as_dataset(data: Dataset | str | os.PathLike | None, checkpoint: Checkpoint,
               options: ReadOptions | None = None) -> Dataset:
    """``data`` when it is a loaded data set, else the data at that path (None: the bundled MNIST) read as
    ``checkpoint``'s training data was (its test split, image size and channels, a table's scaler; ``options`` given win), and
    refused where its samples do not fit the model; anything else is refused, saying what to pass."""
    if isinstance(data, Dataset):
        return data
    if data is not None and not isinstance(data, (str, os.PathLike)):
        raise OptionError(f"data must be a data set or the path of one, got {type(data).__name__}",
                          hint="pass a path, or aelab.load_data(path, checkpoint)")
    return load_as_recorded(data, checkpoint.info.get("data") or {}, checkpoint.model_config.input_shape, options)


def read_tables_file(folder: str | os.PathLike) -> tuple[bytes, bool] | None:
    """The bytes of the folder's ``codec.safetensors`` and whether config.json vouches for them (records
    their SHA-256), or None when there is none. config.json is read afresh: tables stored after the
    checkpoint was loaded count. A file that config.json names with another checksum is refused."""
    folder = Path(folder)
    path = folder / TABLES_FILE
    try:
        blob = _read_regular_file(path, MAX_TABLES_BYTES)
    except FileNotFoundError:
        return None
    try:
        record = read_checkpoint_info(folder).get("codec") or {}
    except CheckpointError:
        record = {}
    want = record.get("sha256") if isinstance(record, dict) else None
    if want and hashlib.sha256(blob).hexdigest() != want:
        raise CheckpointError(f"{TABLES_FILE} does not match config.json (checksum differs): damaged, or from "
                              "another checkpoint", path=path,
                              hint="copy the checkpoint folder again, or fit its tables anew with "
                                   "`aelab codec fit --checkpoint DIR --data TRAINING-DATA`")
    return blob, bool(want)


def write_tables_file(folder: str | os.PathLike, blob: bytes, record: dict) -> Path:
    """Store the codec's tables ``blob`` as the folder's ``codec.safetensors`` and ``record`` (with the
    blob's SHA-256 added) as config.json's ``codec`` entry, the two files together (tables first:
    a crash between the renames leaves tables that config.json does not yet vouch for, which the
    codec still checks by their fingerprint). Returns the tables file's path."""
    folder = resolve_checkpoint(folder)
    info = read_checkpoint_info(folder)
    info["codec"] = {**record, "file": TABLES_FILE, "sha256": hashlib.sha256(blob).hexdigest()}
    text = strict_json(info, indent=2) + "\n"
    write_files_together({folder / TABLES_FILE: blob, folder / CONFIG_FILE: text.encode("utf-8")})
    return folder / TABLES_FILE
