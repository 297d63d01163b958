"""Writing files so that a reader never sees a half-written one.

Every file aelab writes goes to a temporary file in the destination folder and
is renamed into place once complete (``os.replace`` is atomic on POSIX and
Windows), so a crash or a kill leaves either the old file or the new one.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from .errors import OutputError


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) if needed; raise OutputError if impossible."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create folder: {e.strerror or e}", path=p,
                          hint="choose another output folder with --out") from e
    if not os.access(p, os.W_OK):
        raise OutputError("folder is not writable", path=p,
                          hint="choose another output folder with --out")
    return p


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it onto ``path``.

    If the body raises, the temporary file is removed and ``path`` is untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError("mode must be 'wb' or 'w'")
    target = Path(path)
    folder = ensure_dir(target.parent if str(target.parent) else ".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise OutputError(f"cannot write: {e.strerror or e}", path=target) from e
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": "\n"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write: {e.strerror or e}", path=target) from e
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)
