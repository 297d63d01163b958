"""One writer per output folder: a lock file that names its owner.

``folder_lock(folder)`` holds ``folder/.aelab.lock`` while a command writes into the
folder, and a second writer is refused at once with an error naming the owner's pid.
The lock is an ``flock`` on that file where the system has one, so a process that dies,
even by SIGKILL, releases it with its last breath: a lock file left behind is stale and
is simply taken over. Without ``flock`` (Windows), the file is created exclusively and a
lock whose owner pid no longer runs on this host is stale and removed.
"""
from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path
from typing import Iterator

from .errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".aelab.lock"
_ATTEMPTS = 20


def _owner_text() -> str:
    return f"{os.getpid()} {socket.gethostname()}\n"


def _describe_owner(text: str) -> str:
    parts = text.split()
    if not parts or not parts[0].isdigit():
        return "another aelab process"
    host = f" on {parts[1]}" if len(parts) > 1 and parts[1] != socket.gethostname() else ""
    return f"another aelab process (pid {parts[0]}{host})"


def _busy(folder: Path, owner: str) -> OutputError:
    return OutputError(f"{_describe_owner(owner)} is writing to this folder", path=folder,
                       hint=f"wait for it to finish, or choose another output folder; if no such process runs, "
                            f"delete {LOCK_FILE}")


def _read(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 200, 0).decode("utf-8", "replace")
    return ""


def _pid_runs(text: str) -> bool:
    parts = text.split()
    if not parts or not parts[0].isdigit():
        return False
    if len(parts) > 1 and parts[1] != socket.gethostname():
        return True  # another host's process: cannot tell, so not stale
    return process_runs(int(parts[0]))


def process_runs(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one that exists but is not ours to signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _acquire_flock(path: Path, folder: Path) -> int:
    for _ in range(_ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            raise OutputError(f"cannot create the lock file: {e.strerror or e}", path=path) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            owner = _read(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _busy(folder, owner) from None
            raise OutputError(f"cannot lock the folder: {e.strerror or e}", path=path) from e
        try:  # the owner we waited for may have removed the file meanwhile: lock the file that is there now
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _owner_text().encode("utf-8"), 0)
            return fd
        os.close(fd)
    raise _busy(folder, "")


def _acquire_exclusive(path: Path, folder: Path) -> int:  # pragma: no cover - systems without flock
    for _ in range(_ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            try:
                owner = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                continue
            if _pid_runs(owner):
                raise _busy(folder, owner) from None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # stale: its owner is gone
            continue
        except OSError as e:
            raise OutputError(f"cannot create the lock file: {e.strerror or e}", path=path) from e
        os.write(fd, _owner_text().encode("utf-8"))
        return fd
    raise _busy(folder, "")


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder``'s lock while active (the folder must exist); OutputError if another process holds it."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    fd = (_acquire_flock if fcntl is not None else _acquire_exclusive)(path, folder)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still holding it: the next writer then creates a fresh file
        os.close(fd)
