"""The dense engine's training step as one CUDA graph.

At minibatch 64 a step of the dense models is some forty small kernels, and
on a GPU launching them from Python takes longer than running them (an H200
trained the deep model more slowly than two CPU cores). Captured once as a
CUDA graph (``torch.cuda.CUDAGraph``), a step is one launch: gather the
minibatch, forward, explicit backward, FSAdaGrad update, add the loss and
metric to the progress windows. Everything a step reads lives in fixed
buffers; per step the host only copies the minibatch's row indices in and
advances its copy of the optimizer's smoothed count.

Only CUDA takes this path, and only with ``AELAB_CUDA_GRAPHS=1``: it is off
by default until ``benchmarks/gpu_check.sh`` has run its CUDA tests
(``tests/test_cuda.py``, which hold it to the eager step's results) on a GPU;
so far only its bookkeeping has run, on the CPU with the graph calls faked
(``tests/test_kernels.py``).
"""
from __future__ import annotations

import os

import torch

from .optim import FlatFSAdaGrad
from .steps import DenseBackprop

WARMUP_STEPS = 3  # eager steps on a side stream before capture, as PyTorch asks


def applies(device: torch.device, step, optimizer, varies_inputs: bool) -> bool:
    """Whether to graph the step: asked for (``AELAB_CUDA_GRAPHS=1``), and CUDA, the dense explicit
    backward pass, FSAdaGrad, and inputs that are the stored rows as they are (``varies_inputs``: input
    noise or image shifts, which the captured graph does not draw)."""
    return (device.type == "cuda" and type(step) is DenseBackprop and isinstance(optimizer, FlatFSAdaGrad)
            and not varies_inputs and os.environ.get("AELAB_CUDA_GRAPHS", "0") == "1")


class GraphedStep:
    """Runs training steps: the first few eagerly, then one captured graph replayed."""

    def __init__(self, images: torch.Tensor, stream, step, optimizer, minibatch: int,
                 loss_window: torch.Tensor, metric_window: torch.Tensor) -> None:
        self.images, self.stream, self.step, self.optimizer = images, stream, step, optimizer
        self.minibatch = minibatch
        self.loss_window, self.metric_window = loss_window, metric_window
        self.rows = torch.empty(minibatch, dtype=torch.long, device=images.device)
        self.optimizer.device_count  # noqa: B018 - made now, from the (possibly resumed) host count
        self.replay = None  # the captured graph's replay, after the warm-up steps
        self.eager_steps = 0

    def _body(self) -> None:
        target = self.images.index_select(0, self.rows).to(torch.float32).mul_(1.0 / 255.0)
        loss, metric = self.step(target, target)
        self.optimizer.device_step(self.minibatch)
        self.loss_window += loss
        self.metric_window += metric

    def _load_rows(self) -> None:
        start = 0
        for part in self.stream.next_rows(self.minibatch):
            self.rows[start:start + len(part)].copy_(part, non_blocking=True)
            start += len(part)

    def _eager(self) -> None:
        side = torch.cuda.Stream(device=self.images.device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._body()
        torch.cuda.current_stream().wait_stream(side)

    def _capture(self):
        """Record one step as a graph (recording runs nothing); returns its replay."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._body()
        self._graph = graph  # keeps its memory pool alive
        return graph.replay

    def run(self) -> None:
        """One training step."""
        self._load_rows()
        if self.replay is not None:
            self.replay()
        elif self.eager_steps < WARMUP_STEPS:
            self._eager()
            self.eager_steps += 1
        else:
            self.replay = self._capture()
            self.replay()
        self.optimizer.advance_count(self.minibatch)
