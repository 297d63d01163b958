"""Where the process meets its surroundings: a standard output that closes or fills, and SIGTERM.

``guarded_stdout`` keeps a closed pipe (``aelab models | head -1``) or a full disk
(``aelab models > /dev/full``) on standard output from aborting the work: the first
failed write points the descriptor at /dev/null (Python's documented recipe for
SIGPIPE) and everything after it is dropped, so a training whose log reader went
away still saves its model. The caller then reports a full disk, and stays quiet
about a closed pipe, whose reader asked for no more.

``sigterm_interrupts`` makes SIGTERM (the default signal of ``kill``, schedulers and
containers) raise :class:`Terminated`, a KeyboardInterrupt, so that it unwinds as
Ctrl-C does: ``finally`` blocks run, temporary files are removed, helpers are ended.
``exit_on_sigterm`` is for helper processes: it removes the temporary files of their
unfinished writes and exits at once.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
from concurrent.futures import Executor
from typing import Iterator

from .fileio import unfinished_temporaries

SIGTERM_EXIT = 128 + signal.SIGTERM  # the shell's status of a process ended by SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; raised where the main thread was, as Ctrl-C raises KeyboardInterrupt."""

    exit_status = SIGTERM_EXIT


class GuardedStream:
    """A text stream whose first failed write or flush is remembered instead of raised; later output is dropped."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        if self.error is None:
            try:
                return self.stream.write(text)
            except OSError as e:
                self._lost(e)
        return len(text)

    def flush(self) -> None:
        if self.error is None:
            try:
                self.stream.flush()
            except OSError as e:
                self._lost(e)

    def _lost(self, e: OSError) -> None:
        self.error = e
        # what the stream still buffers, and the interpreter's flush at exit, now go to /dev/null
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)

    @property
    def reader_left(self) -> bool:
        """Whether the output was lost because its reader closed the pipe (nothing anyone wanted is lost)."""
        return isinstance(self.error, BrokenPipeError) or getattr(self.error, "errno", None) == errno.EPIPE

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


@contextlib.contextmanager
def guarded_stdout() -> Iterator[GuardedStream]:
    """Replace ``sys.stdout`` by a :class:`GuardedStream` (flushed on the way out) while active."""
    original = sys.stdout
    guarded = GuardedStream(original)
    if original is not None:
        sys.stdout = guarded
    try:
        yield guarded
    finally:
        if original is not None:
            guarded.flush()
            sys.stdout = original


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While active (in the main thread), SIGTERM raises :class:`Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """While active, SIGINT and SIGTERM wait (blocked, then delivered on leaving): for code that calls
    back into Python from C, such as numba's compiler, where the exception a handler raises would be
    swallowed and printed as a traceback instead of stopping the command. A no-op where signals cannot
    be blocked (Windows)."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    stopping = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def interruptions_held() -> Iterator[None]:
    """While active, Ctrl-C (SIGINT) and SIGTERM are held, then delivered on leaving as they would have been:
    for a moment's work that must not stop half-way, such as moving a finished output into place. Unlike
    :func:`signals_deferred` it holds them whichever thread the system hands them to. Only the main thread
    can change signal handlers; elsewhere it holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None:  # None: a handler set outside Python, which cannot be put back
            previous[signum] = signal.signal(signum, lambda number, frame: held.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            signal.raise_signal(held[0])


def stop_pool(pool: Executor, grace_seconds: float) -> None:
    """Drop a pool's queued work without waiting for it. A process pool's workers are ended now (SIGTERM,
    then SIGKILL after ``grace_seconds``); a thread cannot be ended, so a thread pool's current task runs on.

    A process pool's queued futures are not cancelled: once its workers are gone, the pool's manager thread
    fails them itself, and cancelling them too races it (before Python 3.12 the loser printed an
    InvalidStateError traceback from that thread: CPython gh-107219).
    """
    # shutdown() forgets the worker processes, so take them first (CPython keeps them in _processes)
    workers = list((getattr(pool, "_processes", None) or {}).values())
    if not workers:
        pool.shutdown(wait=False, cancel_futures=True)
        return
    for process in workers:
        process.terminate()
    for process in workers:  # SIGTERM waits for the end of a call into C; then the worker is killed
        process.join(timeout=grace_seconds)
        if process.is_alive():
            process.kill()
            process.join()
    # with its workers ended, the manager thread stops at once: wait for it, or its exit races the
    # interpreter's own (CPython 3.11 then prints an OSError from a closed pipe)
    pool.shutdown(wait=True)


def _remove_unfinished_and_exit(signum, frame) -> None:
    for path in unfinished_temporaries():
        with contextlib.suppress(OSError):
            os.unlink(path)
    os._exit(128 + signum)


def exit_on_sigterm() -> None:
    """In a helper process: on SIGTERM remove the temporary files of unfinished writes, then exit at once."""
    signal.signal(signal.SIGTERM, _remove_unfinished_and_exit)
