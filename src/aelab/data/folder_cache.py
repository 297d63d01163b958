"""A cache of decoded image folders: one memory-mappable ``.npy`` and a JSON record per folder.

The key hashes the sorted files' relative names, sizes and mtimes and the
decode options, so any change to the folder or the options misses. A hit is
checked (record, shape, dtype, the ``.npy``'s SHA-256) before it is used; a
stale or damaged entry is rebuilt, never trusted. Entries live in
``$AELAB_CACHE`` or ``~/.cache/aelab/folders/`` and are written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..fileio import atomic_write, ensure_dir
from ..errors import OutputError

__all__ = ["cache_dir", "cache_key", "load_cached", "save_cached"]

# Raised whenever decoding changes what a file gives, so entries decoded the old way miss:
# 2: EXIF orientations applied, 32-bit integer pixels refused; 3: multi-page files counted as converted;
# 4: palette pictures of greys read as grey.
VERSION = 4


def cache_dir() -> Path:
    root = os.environ.get("AELAB_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "aelab" / "folders"


def cache_key(folder: Path, names: list[str], options: dict) -> str | None:
    """The entry's name, or None when a file cannot be listed (then nothing is cached)."""
    h = hashlib.sha256(json.dumps({"version": VERSION, "options": options}, sort_keys=True).encode())
    try:
        for name in names:
            st = os.stat(os.path.join(folder, name))
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    except OSError:
        return None
    return h.hexdigest()


def _files(key: str) -> tuple[Path, Path]:
    return cache_dir() / f"{key}.npy", cache_dir() / f"{key}.json"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def load_cached(key: str) -> tuple[np.ndarray, dict] | None:
    """The cached images (memory-mapped, read-only) and record, or None if absent or not sound."""
    array_path, record_path = _files(key)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("key") != key or _file_digest(array_path) != record.get("npy_sha256"):
            return None
        images = np.load(array_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, json.JSONDecodeError, AttributeError):
        return None
    if images.dtype != np.uint8 or list(images.shape) != record["meta"].get("shape"):
        return None
    return images, record["meta"]


def save_cached(key: str, images: np.ndarray, meta: dict) -> None:
    """Write an entry; a cache that cannot be written is skipped, since it only saves time."""
    array_path, record_path = _files(key)
    try:
        ensure_dir(cache_dir())
        with atomic_write(array_path, "wb") as f:
            np.save(f, images, allow_pickle=False)
        record = {"key": key, "npy_sha256": _file_digest(array_path), "meta": meta}
        with atomic_write(record_path, "w") as f:
            json.dump(record, f)
    except (OSError, OutputError):
        return
