"""Learning-rate schedules that live inside the optimizer, so resuming needs nothing extra.

The learning rate of step k is a function of k alone, and k is the optimizer's
own step count (Adam's ``state["step"]``), which resume files already save:
a resumed run follows the same schedule as an uninterrupted one.
"""
from __future__ import annotations

import math

import torch

from ..errors import OptionError

SCHEDULES = ("constant", "cosine")


def scheduled_lr(base_lr: float, step: int, total_steps: int, schedule: str = "constant",
                 warmup_steps: int = 0, final_fraction: float = 0.0) -> float:
    """The learning rate of step ``step`` (0-based) of ``total_steps``.

    ``cosine``: a linear warm-up from ``base_lr / warmup_steps`` to ``base_lr``
    over the first ``warmup_steps`` steps, then half a cosine down to
    ``final_fraction * base_lr`` at the last step. ``constant``: ``base_lr``.
    """
    if schedule == "constant":
        return base_lr
    if schedule != "cosine":
        raise OptionError(f"unknown learning-rate schedule {schedule!r}", hint=f"choose one of: {', '.join(SCHEDULES)}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps - 1, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    floor = final_fraction * base_lr
    return floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ScheduledAdam(torch.optim.Adam):
    """``torch.optim.Adam`` whose learning rate follows :func:`scheduled_lr`.

    The schedule's settings are kept in the parameter groups (so they travel
    with ``state_dict``); each ``step`` first sets the group's ``lr`` from the
    step count in the optimizer state, then takes Adam's step.
    """

    def __init__(self, params, lr: float, total_steps: int, schedule: str = "cosine",
                 warmup_steps: int = 0, final_fraction: float = 0.0, **kwargs) -> None:
        if schedule not in SCHEDULES:
            raise OptionError(f"unknown learning-rate schedule {schedule!r}",
                              hint=f"choose one of: {', '.join(SCHEDULES)}")
        if total_steps < 1:
            raise OptionError(f"a schedule needs at least one step, got {total_steps}")
        super().__init__(params, lr=lr, **kwargs)
        for group in self.param_groups:
            group.update(base_lr=lr, total_steps=int(total_steps), schedule=schedule,
                         warmup_steps=int(warmup_steps), final_fraction=float(final_fraction))
            group["lr"] = self._lr(group)

    def _lr(self, group: dict) -> float:
        state = self.state.get(group["params"][0], {})
        step = int(state["step"]) if "step" in state else 0
        return scheduled_lr(group["base_lr"], step, group["total_steps"], group["schedule"],
                            group["warmup_steps"], group["final_fraction"])

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            group["lr"] = self._lr(group)
        return super().step(closure)
