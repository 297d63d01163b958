"""Data-parallel training with PyTorch's own ``torch.distributed``, as ``torchrun`` starts it.

``torchrun --nproc-per-node N -m aelab train ...`` starts N processes (and
``--nnodes``/``--rdzv-endpoint`` spread them over machines); each finds its
rank in the environment torchrun sets. Every rank walks the same shuffled
stream of global minibatches and computes the gradient of its own contiguous
part of each; one all-reduce of the engine's flat gradient sums the parts, so
every rank takes the same optimiser step from the same gradient that one
process would compute for the whole minibatch. The minibatch size, the
tutorial's per-sample learning rate and FSAdaGrad's time constants therefore
keep their meaning: they are those of the global minibatch. Rank 0 alone
prints, logs and writes files.

Ranks agree every ``STOP_CHECK_EVERY`` minibatches on whether to stop (a
Ctrl-C or SIGTERM on any rank) and whether to save the resume file (rank 0's
clock). A rank that dies makes the others' next collective fail, which
:class:`PeerFailed` reports. torchrun SIGTERMs the survivors at once, which
only asks them to stop; gloo does not always notice a peer that died while
no collective was waiting, so a collective still unanswered ``GIVE_UP_AFTER``
seconds after a stop was asked is taken for a failed peer too.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import re
import signal
import sys
import threading
import time

import torch

from ..errors import EXIT_USER_ERROR, AelabError, OptionError

STOP_CHECK_EVERY = 16  # minibatches between the ranks' agreements on stopping and saving
GIVE_UP_AFTER = 10.0  # seconds a collective may stay unanswered once this rank was asked to stop
WAKE_EVERY = datetime.timedelta(seconds=1)  # how often a waiting collective lets signals be seen


class PeerFailed(AelabError):
    """Another training process stopped or became unreachable in the middle of a collective."""


_peers_lost = False


def _peers_gone(message: str, hint: str) -> PeerFailed:
    """The error to raise on finding the other processes gone, once this process is ready to report it:
    leaving the process group will not wait for them, and torchrun's SIGTERM, which reaches the survivors
    at once, cannot cut the message short."""
    global _peers_lost
    _peers_lost = True
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return PeerFailed(message, hint=hint)


class Ranks:
    """This process's place among the training processes; one process is rank 0 of 1, and every
    collective is then a no-op."""

    def __init__(self, rank: int = 0, world: int = 1, device: torch.device | None = None) -> None:
        self.rank, self.world, self.device = rank, world, device
        self.stop: dict | None = None  # the training loop's stop request (see loop.stop_requests), once it watches

    @property
    def main(self) -> bool:
        """Whether this process prints, logs and writes files."""
        return self.rank == 0

    def part(self, size: int) -> slice:
        """This rank's rows of a global minibatch of ``size``: a contiguous share, the first ranks
        taking one more row when ``size`` does not divide evenly."""
        base, extra = divmod(size, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place."""
        if self.world > 1:
            _collective(torch.distributed.all_reduce, tensor, self.stop)
        return tensor

    def broadcast_(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` replaced, in place, by rank 0's."""
        if self.world > 1:
            _collective(torch.distributed.broadcast, tensor, self.stop, src=0)
        return tensor

    def agree(self, *flags: bool) -> list[bool]:
        """For each flag, whether it is true on any rank (one collective for all of them)."""
        if self.world == 1:
            return list(flags)
        votes = self.sum_(torch.tensor([float(f) for f in flags], device=self.device))
        return [bool(v > 0) for v in votes.tolist()]

    def saved(self) -> None:
        """Every rank waits here until rank 0 has saved the resume file (however long that takes: no rank
        ends, making torchrun end the others, before it). Rank 0 has saved: a peer gone by now changes nothing."""
        if self.world == 1:
            return
        try:
            _collective(torch.distributed.all_reduce, torch.zeros(1, device=self.device), None)
        except PeerFailed:
            if not self.main:
                raise

    def stop_or_save(self, done: int, stop_asked: bool, save_due: bool) -> tuple[bool, bool]:
        """Whether to stop and whether to save after ``done`` minibatches: this process's own answers,
        or with several ranks, every ``STOP_CHECK_EVERY`` minibatches, whether any rank was asked to stop
        and whether rank 0's clock says save (so that all of them stop and save at the same minibatch)."""
        if self.world == 1:
            return stop_asked, save_due
        if done % STOP_CHECK_EVERY:
            return False, False
        stopping, saving = self.agree(stop_asked, save_due and self.main)
        return stopping, saving


def _collective(operation, tensor: torch.Tensor, stop: dict | None, **options) -> None:
    try:
        if torch.distributed.get_backend() != "gloo":
            operation(tensor, **options)  # NCCL: its own watchdog
            return
        work = operation(tensor, async_op=True, **options)
        while not _answered(work):
            if stop is not None and stop["stop"] and time.monotonic() - stop["since"] > GIVE_UP_AFTER:
                raise _peers_gone(f"another training process failed or was stopped (no answer {GIVE_UP_AFTER:g} s "
                                  "after this one was asked to stop)", hint=PEER_HINT)
    except (RuntimeError, OSError) as e:  # gloo and NCCL raise RuntimeError subclasses when a peer is gone
        raise _peers_gone(f"another training process failed or was stopped ({_gist(e)})", hint=PEER_HINT) from None


PEER_HINT = "see that rank's own message above; run again, with --resume if a resume file was saved"


def _answered(work) -> bool:
    """Wait for ``work`` a while: whether it is done (False: still waiting, and Python saw any signal meanwhile)."""
    try:
        work.wait(timeout=WAKE_EVERY)
    except RuntimeError as e:
        if "timed out" in str(e).lower():
            return False
        raise
    return True


def _gist(error: BaseException) -> str:
    """The first sentence of a gloo or NCCL error, without the C++ source location before it."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)
    return text.split(". ")[0][:160]


def ranks_from_environment(device: torch.device) -> Ranks:
    """The ranks torchrun describes in the environment (one process when it does not), with the
    process group started: gloo on the CPU, NCCL on CUDA, each rank on its own local GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(device=device)
    if not torch.distributed.is_available():
        raise OptionError("this PyTorch build has no torch.distributed", hint="run one process, or install a full build")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        except (RuntimeError, ValueError, OSError) as e:
            raise _peers_gone(f"the training processes could not meet ({_gist(e)})",
                              hint="check torchrun's --rdzv-endpoint and that every node was started") from None
        atexit.register(_leave)
    return Ranks(torch.distributed.get_rank(), torch.distributed.get_world_size(), device)


def finish_together() -> None:
    """Under torchrun, wait here until every process has got here: the other ranks wait for rank 0's
    evaluation and checkpoint, so that none leaves the process group while another still works in it
    (gloo could abort a process that left first). One process: nothing to wait for."""
    global _finished
    if process_count() > 1 and torch.distributed.is_initialized():
        device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"  # NCCL sums CUDA tensors only
        _collective(torch.distributed.all_reduce, torch.zeros(1, device=device), None)
        _finished = True


_finished = False  # every rank got to finish_together: the run is done and rank 0 has saved it


def _leave() -> None:
    if _peers_lost:
        # gloo's unanswered work would keep the process from ever finishing its exit: end it here, the error
        # said (a PeerFailed is an AelabError: the CLI's status 2)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(EXIT_USER_ERROR)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if _finished and process_rank() != 0:
        # a helper rank whose share rank 0 has saved ends here, without the interpreter's C++ teardown, which
        # sometimes aborted it ('terminate called without an active exception') and made torchrun report a failure
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


def process_count() -> int:
    """How many training processes torchrun started (1 when not under torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """This process's rank as torchrun set it (0 when not under torchrun): rank 0 alone writes files."""
    return int(os.environ.get("RANK", "0"))
