"""CNTK's FSAdaGrad learner as a ``torch.optim.Optimizer``.

Written from CNTK 2.x's own source (``LearnerFSAdaGrad`` in Learner.cpp and
``CPUMatrix::FSAdagrad``), not from a paper: FSAdaGrad is "Frank Seide's
AdaGrad", an Adam-like rule with CNTK's particular constants.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch.optim import Optimizer

from .errors import OptionError


def momentum_per_minibatch(time_constant: float, samples: int) -> float:
    """CNTK's ``momentum_as_time_constant``: the momentum of one minibatch of ``samples``.

    A time constant of 700 samples means an update's weight decays by e after
    700 samples: exp(-samples / 700), 0.9128 for minibatches of 64. A time
    constant of 0 means no momentum.
    """
    if time_constant == 0:
        return 0.0
    return math.exp(-samples / time_constant)


class FSAdaGrad(Optimizer):
    r"""CNTK's FSAdaGrad, step for step.

    With ``g`` the gradient of the loss *summed* over the minibatch of ``n``
    samples (CNTK's learning rates are per sample), momentum
    ``mu = exp(-n / momentum_time_constant)`` and variance momentum
    ``nu = exp(-n / variance_time_constant)``, one step does::

        s  <- nu * s + (1 - nu) * n                  # smoothed sample count (one per optimizer)
        v  <- nu * v + (1 - nu) * g**2               # per element
        w  <- min(sqrt(s) / sqrt(v), 10)             # where v != 0; else g is used as is
        m  <- mu * m + (1 - mu) * (w * g)            # unit-gain momentum
        p  <- p - lr * m

    ``sqrt(s)`` is CNTK's ``targetAdagradAvDenom (= 1) * sqrt(smoothedCount)``
    that turns the squared-gradient average into a per-sample scale; the clip
    at 10 is CNTK's. With ``unit_gain=False`` the momentum term is ``g`` instead
    of ``(1 - mu) * g``. The tutorial uses lr = 3e-5 per sample, a momentum time
    constant of 700 samples and CNTK's default variance time constant of
    720,000 samples (2 * 3600 * 100).

    ``step(num_samples=n)`` takes the minibatch size, since both momenta
    depend on it; it defaults to ``minibatch_size``.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 3e-5, *,
                 momentum_time_constant: float = 700.0,
                 variance_time_constant: float = 720_000.0,
                 unit_gain: bool = True, minibatch_size: int = 64,
                 max_scale: float = 10.0) -> None:
        if not lr > 0:
            raise OptionError(f"learning rate must be positive, got {lr!r}")
        if momentum_time_constant < 0 or variance_time_constant <= 0:
            raise OptionError("momentum time constants must be >= 0 (variance: > 0)")
        if minibatch_size < 1:
            raise OptionError(f"minibatch size must be >= 1, got {minibatch_size!r}")
        defaults = dict(lr=lr, momentum_time_constant=momentum_time_constant,
                        variance_time_constant=variance_time_constant, unit_gain=unit_gain,
                        minibatch_size=minibatch_size, max_scale=max_scale,
                        smoothed_count=0.0)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None, *, num_samples: int | None = None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            n = group["minibatch_size"] if num_samples is None else num_samples
            self._update_group(group, params, n)
        return loss

    def update(self, num_samples: int | None = None) -> None:
        """``step(num_samples=...)`` without torch.optim's hook and profiling wrapper.

        The wrapper costs about a third of the update itself at minibatch 64;
        the training loop, which registers no hooks, calls this instead.
        """
        with torch.no_grad():
            for group in self.param_groups:
                params = [p for p in group["params"] if p.grad is not None]
                if params:
                    self._update_group(group, params, group["minibatch_size"] if num_samples is None else num_samples)

    def _update_group(self, group: dict, params: list[torch.Tensor], n: int) -> None:
        mu = momentum_per_minibatch(group["momentum_time_constant"], n)
        nu = momentum_per_minibatch(group["variance_time_constant"], n)
        group["smoothed_count"] = nu * group["smoothed_count"] + (1.0 - nu) * n
        scale = math.sqrt(group["smoothed_count"])  # targetAdagradAvDenom (1.0) * sqrt(count)

        gain = (1.0 - mu) if group["unit_gain"] else 1.0
        for p in params:
            state = self.state[p]
            if not state:
                state["variance"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            # one tensor at a time: training hands this optimizer a single flat
            # parameter, for which plain in-place ops beat the foreach variants
            g, v, m = p.grad, state["variance"], state["momentum"]
            v.mul_(nu).addcmul_(g, g, value=1.0 - nu)
            # w = min(scale / sqrt(v), max_scale), as scale * min(rsqrt(v), max_scale / scale):
            # rsqrt is a cheaper pass than sqrt + divide. Where v == 0 the gradient is 0
            # too, so the clipped w leaves it at 0, as CNTK's "if v != 0" does.
            weight = torch.rsqrt(v).clamp_max_(group["max_scale"] / scale)
            if mu > 0:
                m.mul_(mu).addcmul_(g, weight, value=gain * scale)
                p.add_(m, alpha=-group["lr"])
            else:
                p.addcmul_(g, weight, value=-group["lr"] * scale)
