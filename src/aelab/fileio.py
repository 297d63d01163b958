"""Writing files so that a reader never sees a half-written one.

Every file aelab writes goes to a temporary file in the destination folder and
is renamed into place once complete (``os.replace`` is atomic on POSIX and
Windows), so a crash or a kill leaves either the old file or the new one.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import glob
import json
import math
import os
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterable, Iterator

from .errors import OutputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; finished files get the
# permissions any other new file would have (0666 less the umask)
FILE_MODE = 0o666 & ~_current_umask()

# temporary files being written now: a helper process ended by SIGTERM removes them on its way out
# (aelab.terminal.exit_on_sigterm), as an exception does in atomic_write
_UNFINISHED: set[str] = set()


def unfinished_temporaries() -> list[str]:
    """The temporary files of this process's writes in progress."""
    return list(_UNFINISHED)


# the option that names the output of the command running now ("-o", "--out"), for the hints of errors
# about it; None (the Python API) leaves the option out
_OUTPUT_OPTION: contextvars.ContextVar[str | None] = contextvars.ContextVar("aelab_output_option", default=None)


@contextlib.contextmanager
def output_option(option: str | None) -> Iterator[None]:
    """While active, hints about an unusable output name ``option`` as the way to choose another."""
    token = _OUTPUT_OPTION.set(option)
    try:
        yield
    finally:
        _OUTPUT_OPTION.reset(token)


def choose_another(what: str) -> str:
    """The hint for an unusable output: ``choose another output folder with -o`` (the option the command has)."""
    option = _OUTPUT_OPTION.get()
    return f"choose another {what} with {option}" if option else f"choose another {what}"


# what to do about an OSError a write raised, by its errno (others: choose another place)
_WRITE_FIXES = {errno.ENOSPC: "free some disk space, or {another}", errno.EDQUOT: "free some of your disk quota, or {another}",
                errno.EROFS: "that file system is read-only: {another}", errno.ENAMETOOLONG: "{another}, with a shorter name",
                errno.EACCES: "check the folder's permissions, or {another}",
                errno.EPERM: "check the permissions (and attributes, such as chattr +i) there, or {another}"}


def cannot_write(error: OSError, path: str | os.PathLike, what: str = "output") -> OutputError:
    """The one-line error for a write to ``path`` that raised ``error``, with what to do about it."""
    fix = _WRITE_FIXES.get(error.errno, "{another}").format(another=choose_another(what))
    return OutputError(f"cannot write: {error.strerror or error}", path=path, hint=fix)


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) if needed; raise OutputError if impossible."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError("is a file, not a folder", path=p, hint=choose_another("output folder"))
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create folder: {e.strerror or e}", path=p,
                          hint=choose_another("output folder")) from e
    if not os.access(p, os.W_OK):
        raise OutputError("folder is not writable", path=p, hint=choose_another("output folder"))
    return p


def refuse_output_over_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Raise OutputError, before anything is written, if ``output`` would replace or mix with one of
    ``inputs``: the same file or folder (after resolving links and relative paths), or a path inside an input
    folder. Inputs that do not exist are left to their readers."""
    target = Path(os.path.realpath(output))
    for given in inputs:
        for source_path in _existing_parts(given):
            relation = _overlap(output, target, source_path)
            if relation is not None:
                raise OutputError(f"the output {relation} {os.fspath(source_path)}", path=output,
                                  hint=f"writing there would replace or mix with your data; "
                                       f"{choose_another('output')}")


def _existing_parts(given: str | os.PathLike) -> list[Path]:
    """The existing paths an input names: itself, or the parts of a comma-separated pair (TRAIN.txt,TEST.txt)."""
    path = Path(given)
    if path.exists():
        return [path]
    return [Path(part) for part in os.fspath(given).split(",") if part and Path(part).exists()]


def _overlap(output: str | os.PathLike, target: Path, source_path: Path) -> str | None:
    """How the output (``target``, resolved) meets the input ``source_path``: as words, or None if apart."""
    source = Path(os.path.realpath(source_path))
    if target == source or (os.path.exists(output) and os.path.samefile(output, source_path)):
        return "is the input folder" if source.is_dir() else "is the input"
    if source in target.parents:
        return "lies inside the input folder"
    return None  # a folder that holds the input gets new files beside it, which neither replace nor mix with it


def _temporary_beside(target: Path) -> tuple[int, str]:
    folder = ensure_dir(target.parent if str(target.parent) else ".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise cannot_write(e, target) from e
    _UNFINISHED.add(tmp)
    return fd, tmp


def _forget(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    _UNFINISHED.discard(tmp)


def _finish(f: IO) -> None:
    f.flush()
    os.fchmod(f.fileno(), FILE_MODE)
    os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it onto ``path``.

    If the body raises, the temporary file is removed and ``path`` is untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError("mode must be 'wb' or 'w'")
    text = {"encoding": "utf-8", "newline": "\n"} if mode == "w" else {}
    if _is_special(path):  # /dev/null, a FIFO, /dev/stdout: written through, never renamed over
        try:
            with open(path, mode, **text) as f:
                yield f
        except OSError as e:
            raise cannot_write(e, path) from e
        return
    target = replaced_file(path)
    fd, tmp = _temporary_beside(target)
    try:
        with os.fdopen(fd, mode, **text) as f:
            yield f
            _finish(f)
        os.replace(tmp, target)
        _UNFINISHED.discard(tmp)
    except BaseException as e:
        _forget(tmp)
        if isinstance(e, OSError):
            raise cannot_write(e, target) from e
        raise


def _is_special(path: str | os.PathLike) -> bool:
    """Whether ``path`` (or what its link points to) exists and is a device, a FIFO or a socket."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def replaced_file(path: str | os.PathLike) -> Path:
    """The file a write to ``path`` replaces: a symbolic link's target (the link stays, pointing to the new
    file, as ``cp`` writes through it), else ``path`` itself."""
    return Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)


def remove_stale_temporaries(folder: str | os.PathLike, names: tuple[str, ...]) -> None:
    """Remove the temporary files that a killed writer (SIGKILL, a power cut) left of ``names`` in ``folder``:
    ``.NAME.*.tmp``, as :func:`atomic_write` makes them. For a writer that holds the folder's lock, so no
    other process is writing them now."""
    for name in names:
        for stale in Path(folder).glob(f".{glob.escape(name)}.*.tmp"):
            remove_file(stale)


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


def remove_file(path: str | os.PathLike) -> OSError | None:
    """Remove ``path`` if it exists; the error if it cannot be removed (e.g. a read-only file system), not raised."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        return e
    return None


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while active: they are recorded, then raised again right after.

    Swapping the Python handlers works whichever thread the signal reaches (blocking it with
    pthread_sigmask would hold it back only in the main thread, and torch has threads of its own).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in caught:
            signal.raise_signal(s)  # now handled as it would have been


def write_files_together(contents: dict[Path, bytes]) -> None:
    """Write several files so that a failure leaves all of the old ones in place.

    Every file is first written completely to a temporary file beside its
    target; only then are they renamed into place, in order. A failure before
    the renames (full disk, unwritable folder) changes nothing; Ctrl-C and
    SIGTERM wait until the renames are done; only a crash (SIGKILL, power)
    between two renames can mix old and new files, which readers must detect
    (checkpoints do, through the weights' checksum in the JSON).
    """
    staged: list[tuple[str, Path]] = []
    try:
        for target, data in contents.items():
            replaced = replaced_file(target)
            fd, tmp = _temporary_beside(replaced)
            staged.append((tmp, replaced))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                _finish(f)
        with _signals_deferred():  # a Ctrl-C or SIGTERM between two renames would mix old and new files
            for tmp, target in staged:
                os.replace(tmp, target)
    except OSError as e:
        raise cannot_write(e, Path(target).parent) from e
    finally:
        for tmp, _ in staged:
            _forget(tmp)


def remove_empty_folder(folder: str | os.PathLike) -> None:
    """Remove ``folder`` if it is empty (a folder a failed command made); anything else stays as it is."""
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def remove_empty_tree(folder: str | os.PathLike) -> None:
    """Remove ``folder`` and the folders in it if they hold no file (what a run that failed before its first
    file made); a folder with a file anywhere in it stays, and so does every file."""
    if not os.path.isdir(folder):
        return
    for root, _dirs, _files in os.walk(folder, topdown=False):
        remove_empty_folder(root)


def strict_json(value, **options) -> str:
    """``value`` as strict JSON text (``json.dumps``'s ``options``): NaN and infinities become null, which
    every JSON reader takes (Python's NaN is not JSON), and numpy's scalars Python's numbers."""
    return json.dumps(_json_plain(value), allow_nan=False, **options)


def _json_plain(value):
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy scalars, found without importing numpy here
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_plain(v) for v in value]
    return value
