"""What a training may replace in the folder it saves into: the checkpoint of the same run, or the state
of a run being resumed; not another model, and not files of a checkpoint's names that aelab did not
write, unless the caller overwrites."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import CheckpointError, OptionError
from ..models.checkpoint import CONFIG_FILE, METRICS_FILE, NEXT_METRICS_FILE, TABLES_FILE, WEIGHTS_FILE
from ..models.checkpoint import read_checkpoint_info
from ..runconfig import RUN_CONFIG_FILE
from .config import TrainConfig
from .progress import METRICS_COLUMNS

DEFAULT_TRAINING = TrainConfig().to_dict()  # what a checkpoint from before a setting existed meant by it
REPLACED_FILES = (CONFIG_FILE, WEIGHTS_FILE, TABLES_FILE, METRICS_FILE, NEXT_METRICS_FILE, RUN_CONFIG_FILE)
OVERWRITE_HINT = "pass --overwrite to replace it, or choose another --out"


def refuse_to_discard_a_saved_run(train_options: dict) -> None:
    """A run that starts over where an interrupted run's state is saved would delete that state."""
    resume_file = train_options.get("resume_file")
    if not train_options.get("resume") and resume_file is not None and Path(resume_file).exists():
        raise OptionError("the folder holds the saved state of an interrupted run, which starting over would "
                          "discard", path=resume_file,
                          hint="pass --resume to continue it, or --overwrite to discard it and start over")


def refuse_to_replace(folder: Path, config: TrainConfig, data_sha256: str, train_options: dict) -> None:
    """Refuse to save into ``folder`` over another trained model (other settings or data), over a
    checkpoint that cannot be read, or over files of the checkpoint's names that no aelab run wrote."""
    resume_file = train_options.get("resume_file")
    if train_options.get("resume") and resume_file is not None and Path(resume_file).exists():
        return  # the run being resumed owns the folder
    if (folder / CONFIG_FILE).exists():
        _refuse_another_model(folder, config, data_sha256)
        return
    refuse_files_of_others(folder, "training", "choose another --out, or pass --overwrite to replace {them}")


def refuse_files_of_others(folder: Path, doing: str = "saving", hint: str = "choose another folder") -> None:
    """Refuse ``folder`` where it holds no checkpoint (no config.json) but files of a checkpoint's names
    that no aelab run wrote (a user's metrics.csv or run.toml), which ``doing`` would replace. ``hint``
    may name the files as ``{them}``."""
    if (folder / CONFIG_FILE).exists():
        return
    foreign = [name for name in REPLACED_FILES  # a link, even a broken one, would have the output written through it
               if os.path.lexists(folder / name) and not _a_curve_of_ours(folder / name)]
    if foreign:
        them = "them" if len(foreign) > 1 else "it"
        raise OptionError(f"the folder holds {', '.join(foreign)} but no aelab checkpoint (no {CONFIG_FILE}), and "
                          f"{doing} would replace {them}", path=folder, hint=hint.format(them=them))


def _refuse_another_model(folder: Path, config: TrainConfig, data_sha256: str) -> None:
    try:
        info = read_checkpoint_info(folder)
    except CheckpointError as e:
        raise OptionError(f"the folder holds a checkpoint that cannot be read ({e.message}), "
                          "which training would replace", path=folder, hint=OVERWRITE_HINT) from None
    saved, ours = info.get("training", {}), config.to_dict()
    different = [k for k in ours if k not in ("device", "budget") and saved.get(k, DEFAULT_TRAINING.get(k)) != ours[k]]
    if info.get("data", {}).get("sha256") != data_sha256:
        different.append("data")
    if different:
        raise OptionError(f"the folder already holds another trained model (it differs in {', '.join(different)})",
                          path=folder, hint=OVERWRITE_HINT)


def _a_curve_of_ours(path: Path) -> bool:
    """Whether ``path`` is a training curve an aelab run wrote (one that stopped before saving, say)."""
    if path.name not in (METRICS_FILE, NEXT_METRICS_FILE) or path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().startswith(",".join(METRICS_COLUMNS))
    except OSError:
        return False
