"""Resume files: everything needed to continue an interrupted training run.

One safetensors file (written atomically, so a kill leaves the previous one
intact) holds the weights, the optimizer's tensors and the running sums of
the progress table; its metadata holds, as JSON, the run's configuration, the
data checksum and the position in the data order. Nothing else is random:
sweep ``s`` is shuffled by a generator seeded from (seed, s), so the position
alone says which samples come next, and a resumed run on the CPU ends with
the same weights, bit for bit, as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors

from ..errors import CheckpointError
from ..fileio import write_bytes

RESUME_FILE = "resume.safetensors"
FORMAT = "aelab-resume"
FORMAT_VERSION = 2   # 2: the metadata carries a SHA-256 of the tensors and the run's metadata
CHECKSUM_KEY = "aelab_sha256"


@dataclass
class TrainingState:
    """A snapshot of a run after ``minibatches_done`` minibatches."""

    config: dict            # TrainConfig.to_dict()
    data_sha256: str
    minibatches_done: int
    model: dict[str, torch.Tensor]
    optimizer_tensors: dict[str, torch.Tensor]   # the flat parameter's optimizer state
    optimizer_groups: list[dict]                 # hyper-parameters and FSAdaGrad's smoothed count
    table: dict                                  # ProgressTable.state_dict()
    window: dict[str, torch.Tensor]              # loss and metric sums since the last table row
    seconds: float
    validation: dict | None = None               # EarlyStopping.state_dict(): its curve and best loss
    best: torch.Tensor | None = None             # the flat parameter at the best validation loss


def save_training_state(path: str | os.PathLike, state: TrainingState) -> Path:
    tensors = {f"model/{k}": v.detach().cpu().contiguous().clone() for k, v in state.model.items()}
    tensors.update({f"optimizer/{k}": v.detach().cpu().contiguous().clone() for k, v in state.optimizer_tensors.items()})
    tensors.update({f"window/{k}": v.detach().cpu().reshape(1).clone() for k, v in state.window.items()})
    if state.best is not None:
        tensors["best/flat"] = state.best.detach().cpu().contiguous().clone()
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": state.config,
            "data_sha256": state.data_sha256, "minibatches_done": state.minibatches_done,
            "optimizer_groups": state.optimizer_groups, "table": state.table, "seconds": state.seconds}
    if state.validation is not None:
        meta["validation"] = state.validation
    # json floats round-trip exactly (repr), which bit-identical resuming needs
    text = json.dumps(meta)
    return write_bytes(path, save_safetensors(tensors, metadata={"aelab": text,
                                                                  CHECKSUM_KEY: _checksum(text, tensors)}))


def _checksum(meta_text: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the metadata text and of every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256(meta_text.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode("utf-8"))
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_training_state(path: str | os.PathLike) -> TrainingState:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("nothing to resume: no resume file", path=path,
                              hint="resume needs the --out folder of an interrupted `aelab train`")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            text = metadata.get("aelab", "null")
            meta = json.loads(text)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"the resume file is damaged ({e})", path=path,
                              hint="delete it to start the run over") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError("not an aelab resume file", path=path)
    if not isinstance(meta.get("format_version"), int) or meta["format_version"] > FORMAT_VERSION:
        raise CheckpointError("resume file from a newer aelab", path=path, hint="upgrade aelab")
    if metadata.get(CHECKSUM_KEY) is None:
        raise CheckpointError("the resume file has no checksum (written by an older aelab), so it cannot be trusted",
                              path=path, hint="delete it to start the run over")
    try:
        intact = _checksum(text, tensors) == metadata[CHECKSUM_KEY]
    except (RuntimeError, TypeError, ValueError) as e:  # a dtype numpy cannot view as bytes
        raise CheckpointError(f"the resume file is damaged ({e})", path=path,
                              hint="delete it to start the run over") from e
    if not intact:
        raise CheckpointError("the resume file is damaged: its checksum does not match its contents", path=path,
                              hint="delete it to start the run over")

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        return TrainingState(config=meta["config"], data_sha256=meta["data_sha256"],
                             minibatches_done=int(meta["minibatches_done"]), model=part("model/"),
                             optimizer_tensors=part("optimizer/"), optimizer_groups=meta["optimizer_groups"],
                             table=meta["table"], window={k: v.reshape(()) for k, v in part("window/").items()},
                             seconds=float(meta["seconds"]), validation=meta.get("validation"),
                             best=tensors.get("best/flat"))
    except (KeyError, TypeError, ValueError, OverflowError) as e:  # OverflowError: int(inf)
        raise CheckpointError(f"the resume file is incomplete ({e})", path=path,
                              hint="delete it to start the run over") from e
