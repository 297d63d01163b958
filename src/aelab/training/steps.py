"""One training step's work: the minibatch's loss, metric and gradients.

``DenseBackprop`` is the dense models' explicit backward pass (fewer, larger
operations than autograd, checked against autograd in the tests);
``AutogradStep`` serves every other model. ``flatten_parameters`` lays every
parameter and gradient in one flat tensor, which the optimizer updates at once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.losses import SAMPLE_METRICS, cntk_classification_error
from ..models.networks import DenseAutoencoder, output_of
from . import kernels


class DenseBackprop:
    """Loss, metric and gradients of a DenseAutoencoder with an explicit backward pass.

    Fewer, larger operations than autograd builds for the same network, so
    small minibatches train several times faster; the gradients equal
    autograd's (tests compare them).
    """

    def __init__(self, model: DenseAutoencoder, grad_scale: float = 1.0) -> None:
        self.weights = [layer.weight for layer in model.layers]
        self.biases = [layer.bias for layer in model.layers]
        # (in, out) views, contiguous after flatten_parameters, made once rather than every step
        self.weights_t = [w.t() for w in self.weights]
        self.grads_t = [w.grad.t() for w in self.weights]
        self.grad_scale = grad_scale
        # on the CPU in float32, fused loops (aelab.training.kernels) replace about four PyTorch calls per
        # layer, fifteen at the output: what most of a small minibatch's time went to
        self.fused = all(p.dtype == torch.float32 and kernels.applies_to(p, p.grad) for p in self.biases)
        if self.fused:
            self._biases_np = [b.detach().numpy() for b in self.biases]
            self._bias_grads_np = [b.grad.numpy() for b in self.biases]
            # the fused loops' loss and metric land here (float64, so exactly), and go out as tensors
            self._loss, self._metric = torch.zeros(2, dtype=torch.float64).unbind()
            self._loss_np, self._metric_np = self._loss.numpy(), self._metric.numpy()
        self._buffer_rows = 0

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs`` (possibly corrupted) and ``target``: images scaled to [0, 1], (n, pixels).

        Returns the summed loss and summed classification error of the
        minibatch as 0-d tensors, and writes the gradients into the
        parameters' ``.grad``.
        """
        if self.fused and all(t.dtype == torch.float32 and kernels.applies_to(t) for t in (inputs, target)):
            return self._fused(inputs, target)
        activations = [inputs]
        h = inputs
        # w.t() is contiguous (see flatten_parameters); mm + add_ beats addmm's bias broadcast
        for w_t, b in zip(self.weights_t[:-1], self.biases[:-1]):
            h = torch.mm(h, w_t).add_(b).relu_()
            activations.append(h)
        logits = torch.mm(h, self.weights_t[-1])
        logits.add_(self.biases[-1]).clamp_min_(LOGIT_FLOOR)
        output = torch.sigmoid(logits)
        loss = summed_bce(logits, target, output)
        metric = cntk_classification_error(output, target).sum()
        delta = output.sub_(target)  # d loss / d logits for sigmoid + summed BCE
        if self.grad_scale != 1.0:
            delta.mul_(self.grad_scale)
        for i in range(len(self.weights) - 1, -1, -1):
            torch.mm(activations[i].t(), delta, out=self.grads_t[i])
            torch.sum(delta, dim=0, out=self.biases[i].grad)
            if i > 0:
                delta = torch.ops.aten.threshold_backward(delta.mm(self.weights[i]), activations[i], 0)
        return loss, metric

    def _fused(self, inputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``__call__``'s work with the matrix products in PyTorch and the rest in aelab.training.kernels."""
        outputs, deltas = self._buffers(inputs.shape[0])
        activations = [inputs]
        h = inputs
        for w_t, b, out in zip(self.weights_t[:-1], self._biases_np[:-1], outputs):
            h = torch.mm(h, w_t, out=out)
            kernels.bias_relu_(h.numpy(), b)
            activations.append(h)
        # the logits, which output_layer_ turns into d loss / d logits
        delta = torch.mm(h, self.weights_t[-1], out=outputs[-1])
        loss, metric = kernels.output_layer_(delta.numpy(), self._biases_np[-1], target.numpy(), LOGIT_FLOOR,
                                             self.grad_scale, self._bias_grads_np[-1])
        for i in range(len(self.weights) - 1, -1, -1):
            torch.mm(activations[i].t(), delta, out=self.grads_t[i])
            if i > 0:
                delta = torch.mm(delta, self.weights[i], out=deltas[i - 1])
                kernels.relu_backward_(delta.numpy(), activations[i].numpy(), self._bias_grads_np[i - 1])
        self._loss_np[()], self._metric_np[()] = loss, metric
        return self._loss, self._metric

    def _buffers(self, rows: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each layer's output and each hidden layer's delta for ``rows`` samples, made once: new
        tensors of a large minibatch cost hundreds of page faults per step."""
        if self._buffer_rows != rows:
            widths = [w.shape[0] for w in self.weights]
            self._outputs = [torch.empty(rows, width, dtype=torch.float32) for width in widths]
            self._deltas = [torch.empty(rows, width, dtype=torch.float32) for width in widths[:-1]]
            self._buffer_rows = rows
        return self._outputs, self._deltas


# sigmoid(-87) ~ 1.6e-38 is still a normal float32, so log(sigmoid(z)) stays finite;
# below it the loss and the gradient change by less than 1e-37
LOGIT_FLOOR = -87.0


def summed_bce(logits: torch.Tensor, target: torch.Tensor, output: torch.Tensor | None = None) -> torch.Tensor:
    """The tutorial's BCE summed over pixels and samples, from the logits z.

    -(t log p + (1 - t) log(1 - p)) with p = sigmoid(z) equals (1 - t) z - log p;
    with p already computed that is three cheap passes instead of softplus's
    many. Logits must be >= LOGIT_FLOOR, so that log p is finite.
    """
    p = torch.sigmoid(logits) if output is None else output
    return logits.sum() - torch.dot(target.reshape(-1), logits.reshape(-1)) - p.log().sum()


class AutogradStep:
    """Loss, metric and gradients of any autoencoder through autograd.

    The loss is the model's (``config.loss``): BCE on the logits, or the
    squared error of the linear outputs, summed over values and samples.
    A model may define ``training_terms(pixels) -> (logits, extra_loss)`` to
    train differently from how it encodes (a VAE samples its code and adds a
    KL term; a sparse autoencoder adds its penalty); ``extra_loss`` is summed
    over the minibatch, like the BCE, and is not part of the reported loss.
    """

    def __init__(self, model: torch.nn.Module, grad_scale: float = 1.0) -> None:
        self.model = model
        self.grad_scale = grad_scale

    def __call__(self, inputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            for p in self.model.parameters():
                p.grad.zero_()
        # models take raw inputs, pixels 0..255 (see aelab.training's docstring on why the round trip stays)
        raw = inputs * self.model.config.input_max
        if hasattr(self.model, "training_terms"):
            logits, extra = self.model.training_terms(raw)
        else:
            logits, extra = self.model.decode_logits(self.model.encode(raw)), None
        loss = SUMMED_LOSSES[self.model.config.loss](logits, target)
        total = loss if extra is None else loss + extra
        (total * self.grad_scale).backward()  # accumulates into the flat gradient's views
        with torch.no_grad():
            loss_name = self.model.config.loss
            metric = SAMPLE_METRICS[loss_name](output_of(logits.detach().clone(), self.model.config), target).sum()
        return loss.detach(), metric


# a model's loss from its last layer's values, summed over the minibatch's values
SUMMED_LOSSES = {
    "bce": lambda logits, target: F.binary_cross_entropy_with_logits(logits, target, reduction="sum"),
    "mse": lambda outputs, target: F.mse_loss(outputs, target, reduction="sum"),
}


def make_step(model: torch.nn.Module, grad_scale: float, use_autograd: bool = False):
    """The explicit backward pass for a plain dense ``bce`` model, autograd for any other."""
    dense_bce = type(model) is DenseAutoencoder and model.config.loss == "bce"  # subclasses may add terms
    if dense_bce and not use_autograd:
        return DenseBackprop(model, grad_scale)
    return AutogradStep(model, grad_scale)


def flatten_parameters(model: torch.nn.Module) -> torch.nn.Parameter:
    """Make every parameter, and its ``.grad``, a view into one flat tensor.

    The optimizer then updates one tensor with a handful of operations instead
    of a handful per layer, which is most of its cost at small minibatches.
    Matrices are stored transposed, (in, out) row-major, and exposed as the
    usual (out, in) views: ``x @ W.t()`` then multiplies by a contiguous
    matrix, which MKL does about twice as fast as through a transposed one at
    minibatch 64. Returns the flat parameter; its ``.grad`` is the flat gradient.
    """
    params = list(model.parameters())
    flat = torch.cat([(p.detach().t() if p.ndim == 2 else p.detach()).reshape(-1) for p in params])
    grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        n = p.numel()
        if p.ndim == 2:
            rows, cols = p.shape
            p.data = flat[offset:offset + n].view(cols, rows).t()
            p.grad = grad[offset:offset + n].view(cols, rows).t()
        else:
            p.data = flat[offset:offset + n].view_as(p)
            p.grad = grad[offset:offset + n].view_as(p)
        offset += n
    flat_param = torch.nn.Parameter(flat)
    flat_param.grad = grad
    return flat_param
