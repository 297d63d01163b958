"""CNTK's FSAdaGrad learner: a ``torch.optim.Optimizer``, and the training engine's flat variant.

Written from CNTK 2.x's own source (``LearnerFSAdaGrad`` in Learner.cpp and
``CPUMatrix::FSAdagrad``), not from a paper: FSAdaGrad is "Frank Seide's
AdaGrad", an Adam-like rule with CNTK's particular constants.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
from torch.optim import Optimizer

from . import kernels
from ..errors import OptionError


def momentum_per_minibatch(time_constant: float, samples: int) -> float:
    """CNTK's ``momentum_as_time_constant``: the momentum of one minibatch of ``samples``.

    A time constant of 700 samples means an update's weight decays by e after
    700 samples: exp(-samples / 700), 0.9128 for minibatches of 64. A time
    constant of 0 means no momentum.
    """
    if time_constant == 0:
        return 0.0
    return math.exp(-samples / time_constant)


def _check_settings(lr: float, momentum_time_constant: float, variance_time_constant: float,
                    minibatch_size: int) -> None:
    if not lr > 0:
        raise OptionError(f"learning rate must be positive, got {lr!r}")
    if momentum_time_constant < 0 or variance_time_constant <= 0:
        raise OptionError("momentum time constants must be >= 0 (variance: > 0)")
    if minibatch_size < 1:
        raise OptionError(f"minibatch size must be >= 1, got {minibatch_size!r}")


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
        _check_settings(lr, momentum_time_constant, variance_time_constant, minibatch_size)
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
        for p in params:
            state = self.state[p]
            if not state:
                state["variance"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            fsadagrad_step_(p, p.grad, state["variance"], state["momentum"], lr=group["lr"], mu=mu, nu=nu,
                            smoothed_count=group["smoothed_count"], unit_gain=group["unit_gain"],
                            max_scale=group["max_scale"])


def fsadagrad_step_(param: torch.Tensor, grad: torch.Tensor, variance: torch.Tensor, momentum: torch.Tensor, *,
                    lr: float, mu: float, nu: float, smoothed_count: float, unit_gain: bool = True,
                    max_scale: float = 10.0, arrays: tuple[np.ndarray, ...] | None = None) -> None:
    """One FSAdaGrad step on one tensor, in place (the smoothed count already updated).

    Contiguous float32 CPU tensors take one fused pass (``aelab.training.kernels``) on
    their flat numpy views (``arrays``, when the caller made them once, else
    made here); anything else, CUDA included, takes ``fsadagrad_reference_``'s
    PyTorch ops.
    """
    scale = math.sqrt(smoothed_count)  # targetAdagradAvDenom (1.0) * sqrt(count)
    gain = (1.0 - mu) if unit_gain else 1.0
    if arrays is None and param.dtype == torch.float32 and kernels.applies_to(param, grad, variance, momentum):
        arrays = flat_arrays(param, grad, variance, momentum)
    if arrays is not None:
        kernels.fsadagrad_(*arrays, nu=nu, mu=mu, gain_scale=gain * scale, cap=max_scale / scale, lr=lr)
    else:
        with torch.no_grad():
            fsadagrad_reference_(param, grad, variance, momentum, lr=lr, mu=mu, nu=nu, scale=scale, gain=gain,
                                 max_scale=max_scale)


def flat_arrays(*tensors: torch.Tensor) -> tuple[np.ndarray, ...]:
    """Flat numpy views of contiguous CPU tensors (they share memory)."""
    return tuple(kernels.as_numpy(t).reshape(-1) for t in tensors)


def fsadagrad_reference_(param: torch.Tensor, grad: torch.Tensor, variance: torch.Tensor, momentum: torch.Tensor,
                         *, lr: float, mu: float, nu: float, scale: float, gain: float, max_scale: float) -> None:
    """The step as plain PyTorch ops: what CUDA runs, and what the fused CPU loop is tested against."""
    g, v, m = grad, variance, momentum
    v.mul_(nu).addcmul_(g, g, value=1.0 - nu)
    # w = min(scale / sqrt(v), max_scale), as scale * min(rsqrt(v), max_scale / scale):
    # rsqrt is a cheaper pass than sqrt + divide. Where v == 0 the gradient is 0
    # too, so the clipped w leaves it at 0, as CNTK's "if v != 0" does.
    weight = torch.rsqrt(v).clamp_max_(max_scale / scale)
    if mu > 0:
        m.mul_(mu).addcmul_(g, weight, value=gain * scale)
        param.add_(m, alpha=-lr)
    else:
        param.addcmul_(g, weight, value=-lr * scale)


class FlatFSAdaGrad:
    """FSAdaGrad for the training engine's one flat parameter tensor.

    The same steps as ``FSAdaGrad`` and the same ``state_dict`` layout (resume
    files hold either), without ``torch.optim.Optimizer``: its constructor
    imports torch._dynamo, about a second of every ``aelab`` run's start-up.
    """

    def __init__(self, param: torch.Tensor, lr: float = 3e-5, *, momentum_time_constant: float = 700.0,
                 variance_time_constant: float = 720_000.0, unit_gain: bool = True, minibatch_size: int = 64,
                 max_scale: float = 10.0) -> None:
        _check_settings(lr, momentum_time_constant, variance_time_constant, minibatch_size)
        if param.grad is None:
            raise OptionError("FlatFSAdaGrad needs a parameter whose .grad is allocated")
        self.param = param
        self.settings = dict(lr=lr, momentum_time_constant=momentum_time_constant,
                             variance_time_constant=variance_time_constant, unit_gain=unit_gain,
                             minibatch_size=minibatch_size, max_scale=max_scale, smoothed_count=0.0)
        self.variance = torch.zeros_like(param)
        self.momentum = torch.zeros_like(param)
        self._device_count: torch.Tensor | None = None  # for device_step
        # numpy views of the four buffers, made once: at minibatch 64 making them
        # every step costs half as much as the fused loop itself
        fused = param.dtype == torch.float32 and kernels.applies_to(param, param.grad)
        self._arrays = flat_arrays(param, param.grad, self.variance, self.momentum) if fused else None

    def update(self, num_samples: int | None = None) -> None:
        s = self.settings
        n = s["minibatch_size"] if num_samples is None else num_samples
        mu = momentum_per_minibatch(s["momentum_time_constant"], n)
        nu = momentum_per_minibatch(s["variance_time_constant"], n)
        s["smoothed_count"] = nu * s["smoothed_count"] + (1.0 - nu) * n
        fsadagrad_step_(self.param, self.param.grad, self.variance, self.momentum, lr=s["lr"], mu=mu, nu=nu,
                        smoothed_count=s["smoothed_count"], unit_gain=s["unit_gain"], max_scale=s["max_scale"],
                        arrays=self._arrays)

    step = update

    # --- for a CUDA graph (aelab.training.cuda_graphs): the step with no number that changes between steps

    def device_step(self, num_samples: int) -> None:
        """The update with the smoothed count kept on the device (``device_count``), so that the
        same kernels with the same arguments can be replayed every step; pair it with
        ``advance_count``, which keeps the host's copy of the count in step."""
        s = self.settings
        mu = momentum_per_minibatch(s["momentum_time_constant"], num_samples)
        nu = momentum_per_minibatch(s["variance_time_constant"], num_samples)
        gain = (1.0 - mu) if s["unit_gain"] else 1.0
        count = self.device_count
        count.mul_(nu).add_((1.0 - nu) * num_samples)
        scale = count.sqrt().to(self.param.dtype)
        g, v, m, p = self.param.grad, self.variance, self.momentum, self.param
        with torch.no_grad():
            v.mul_(nu).addcmul_(g, g, value=1.0 - nu)
            weight = torch.minimum(torch.rsqrt(v), s["max_scale"] / scale)
            if mu > 0:
                m.mul_(mu).add_(g * weight * (gain * scale))
                p.add_(m, alpha=-s["lr"])
            else:
                p.sub_(g * weight * (scale * s["lr"]))

    @property
    def device_count(self) -> torch.Tensor:
        """The smoothed sample count as a float64 tensor on the parameter's device (made on first use)."""
        if self._device_count is None:
            self._device_count = torch.tensor(self.settings["smoothed_count"], dtype=torch.float64,
                                              device=self.param.device)
        return self._device_count

    def advance_count(self, num_samples: int) -> None:
        """The host's smoothed count, advanced as ``device_step`` advances the device's."""
        s = self.settings
        nu = momentum_per_minibatch(s["variance_time_constant"], num_samples)
        s["smoothed_count"] = nu * s["smoothed_count"] + (1.0 - nu) * num_samples

    def state_dict(self) -> dict:
        return {"state": {0: {"variance": self.variance.clone(), "momentum": self.momentum.clone()}},
                "param_groups": [{**self.settings, "params": [0]}]}

    def load_state_dict(self, state_dict: dict) -> None:
        (group,) = state_dict["param_groups"]
        unknown = set(group) - set(self.settings) - {"params"}
        if unknown:
            raise ValueError(f"unknown optimizer settings {sorted(unknown)}")
        tensors = state_dict["state"].get(0, {})
        with torch.no_grad():
            for name, mine in (("variance", self.variance), ("momentum", self.momentum)):
                if name in tensors:
                    mine.copy_(tensors[name])  # shape mismatches raise RuntimeError
                else:
                    mine.zero_()
        self.settings.update({k: v for k, v in group.items() if k != "params"})
        if self._device_count is not None:
            self._device_count.fill_(self.settings["smoothed_count"])
