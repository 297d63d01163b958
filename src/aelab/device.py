"""Choosing the device: CUDA when present, the CPU otherwise, overridable."""
from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Iterator

import torch

from .errors import OptionError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda`` (or ``cuda:N``) into a torch.device.

    ``auto`` honours the tutorial's ``TEST_DEVICE=cpu|gpu`` environment
    variable, then picks CUDA when available.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        requested = os.environ.get("TEST_DEVICE", "").strip().lower()
        if requested == "cpu":
            return torch.device("cpu")
        if requested in ("gpu", "cuda"):
            name = "cuda"
        elif requested:
            raise OptionError(f"TEST_DEVICE={requested!r} is not understood", hint="set TEST_DEVICE=cpu or TEST_DEVICE=gpu")
        else:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise OptionError("CUDA was asked for but no CUDA device is available to PyTorch",
                              hint="use --device cpu, or install a CUDA build of PyTorch")
        try:
            device = torch.device(name)
        except RuntimeError as e:
            raise OptionError(f"bad device name {name!r}") from e
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise OptionError(f"no CUDA device {device.index}: {torch.cuda.device_count()} available")
        return device
    raise OptionError(f"unknown device {name!r}", hint="choose one of: auto, cpu, cuda")


def describe_device(device: torch.device) -> str:
    """A human-readable name, e.g. 'cpu (2 threads)' or 'cuda:0 (NVIDIA H100)'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def cpu_model() -> str:
    """The CPU's model name (what ``lscpu`` calls it), for benchmarks to say which machine measured."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@contextlib.contextmanager
def one_cpu_thread() -> Iterator[None]:
    """torch on one CPU thread meanwhile, then the caller's setting again."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
