"""The fused CPU loops (aelab.training.kernels) give what their plain PyTorch twins give."""
import copy
import math

import numpy as np
import pytest
import torch

from aelab.training import kernels
from aelab.training.optim import FlatFSAdaGrad, FSAdaGrad, fsadagrad_reference_
from aelab.training.loop import TrainConfig, train
from aelab.training.stream import SweepStream

from helpers import small_mnist

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


def plain_pytorch(monkeypatch):
    """Make every caller take the PyTorch path, as CUDA does."""
    monkeypatch.setattr(kernels, "applies_to", lambda *tensors: False)


@pytest.mark.parametrize("mu", [math.exp(-64 / 700), 0.0])
@pytest.mark.parametrize("unit_gain", [True, False])
def test_fused_fsadagrad_step_equals_the_pytorch_ops(mu, unit_gain):
    gain = 1.0 - mu if unit_gain else 1.0
    g = torch.Generator().manual_seed(1)
    n = 10_001  # not a multiple of any vector width
    p = torch.randn(n, generator=g)
    v, m = torch.zeros(n), torch.zeros(n)
    p2, v2, m2 = p.clone(), v.clone(), m.clone()
    nu = math.exp(-64 / 720_000)
    count = 0.0
    for step in range(6):
        grad = torch.randn(n, generator=g) * 10.0 ** -(step % 3)
        grad[::7] = 0.0  # zero gradients, where the variance can stay 0: the clip, not NaN
        count = nu * count + (1 - nu) * 64
        scale = math.sqrt(count)
        kernels.fsadagrad_(p.numpy(), grad.numpy(), v.numpy(), m.numpy(), nu=nu, mu=mu, gain_scale=gain * scale,
                           cap=10.0 / scale, lr=3e-5)
        fsadagrad_reference_(p2, grad, v2, m2, lr=3e-5, mu=mu, nu=nu, scale=scale, gain=gain, max_scale=10.0)
    assert torch.isfinite(p).all()
    torch.testing.assert_close(v, v2, rtol=1e-6, atol=0)
    if mu > 0:  # without momentum the PyTorch ops leave m unused
        torch.testing.assert_close(m, m2, rtol=1e-5, atol=1e-6)  # where terms cancel: float32 rounding
    torch.testing.assert_close(p, p2, rtol=1e-6, atol=1e-7)


def test_flat_fsadagrad_steps_as_the_optimizer_and_shares_its_state_dict():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(3000, generator=g).requires_grad_()
    b = a.detach().clone().requires_grad_()
    b.grad = torch.zeros_like(b)
    reference, flat = FSAdaGrad([a], lr=1e-3), FlatFSAdaGrad(b, lr=1e-3)
    for n in (64, 64, 10, 64):
        grad = torch.randn(3000, generator=g)
        a.grad = grad.clone()
        b.grad.copy_(grad)
        reference.step(num_samples=n)
        flat.update(n)
    torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-9)
    assert flat.state_dict()["param_groups"][0]["smoothed_count"] == pytest.approx(
        reference.param_groups[0]["smoothed_count"], rel=1e-12)

    # a resume file written by either loads into the other
    c = b.detach().clone().requires_grad_()
    c.grad = torch.zeros_like(c)
    other = FlatFSAdaGrad(c, lr=1e-3)
    other.load_state_dict(copy.deepcopy(reference.state_dict()))
    grad = torch.randn(3000, generator=g)
    b.grad.copy_(grad)
    c.grad.copy_(grad)
    flat.update(64)
    other.update(64)
    torch.testing.assert_close(b.detach(), c.detach(), rtol=1e-6, atol=1e-9)
    FSAdaGrad([a], lr=1e-3).load_state_dict(flat.state_dict())


def test_flat_fsadagrad_refuses_bad_settings_and_a_missing_gradient():
    from aelab.errors import OptionError
    with pytest.raises(OptionError):
        FlatFSAdaGrad(torch.zeros(3, requires_grad=True))  # no .grad to update from
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.zeros(3)
    with pytest.raises(OptionError):
        FlatFSAdaGrad(p, lr=0)


def test_fused_gather_gives_the_pytorch_minibatches(monkeypatch):
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (37, 11), dtype=np.uint8))
    fused = SweepStream(images, seed=3)
    fused_batches = [fused.next(10) for _ in range(9)]  # 90 samples: straddles two sweep boundaries
    plain_pytorch(monkeypatch)
    plain = SweepStream(images, seed=3)
    assert not plain._fused and fused._fused
    for a in fused_batches:
        assert torch.equal(a, plain.next(10))


def test_the_gather_writes_into_a_given_buffer_and_refuses_one_that_does_not_fit():
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (37, 11), dtype=np.uint8))
    reference, stream = SweepStream(images, seed=3), SweepStream(images, seed=3)
    buffer = torch.empty(10, 11)
    for _ in range(9):  # across two sweep boundaries
        assert stream.next(10, out=buffer) is buffer
        assert torch.equal(buffer, reference.next(10))
    for bad in (torch.empty(9, 11), torch.empty(10, 12), torch.empty(10, 11, dtype=torch.float64),
                torch.empty(11, 10).t()):
        with pytest.raises(ValueError, match="out must be"):
            stream.next(10, out=bad)


@pytest.mark.parametrize("kind", ["simple", "deep"])
def test_training_with_and_without_the_fused_loops_agrees(monkeypatch, kind):
    data = small_mnist()
    config = TrainConfig(model=kind, sweeps=0.5, seed=2, device="cpu")
    fused = train(data, config, log=None)
    plain_pytorch(monkeypatch)
    plain = train(data, config, log=None)
    for a, b in zip(fused.model.parameters(), plain.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert fused.train_error_pct == pytest.approx(plain.train_error_pct, abs=1e-3)
    assert fused.train_loss == pytest.approx(plain.train_loss, rel=1e-5)



def test_fused_classification_error_is_cntks_first_maximum_rule():
    from aelab.models.losses import cntk_classification_error
    g = torch.Generator().manual_seed(4)
    output = torch.sigmoid(torch.randn(40, 787, generator=g) * 4)  # 787: not a multiple of any vector width
    target = torch.rand(40, 787, generator=g)
    output[1] = 1.0                                  # all tied: the first column wins
    output[2, 700], output[2, 30] = 2.0, 2.0         # a tie far apart: the first wins
    output[3, 786] = 3.0                             # the maximum in the last column
    output[4, 16], output[4, 32] = 5.0, 5.0          # a tie a vector width apart
    output[5] = -output[5]                           # negative numbers
    output[6] = 0.0
    output[6, 3] = -0.0                              # -0 ties with 0: the first column wins
    output[7, 100] = float("nan")                    # NaN is the maximum, as in PyTorch's max
    output[8] = -1.0
    output[8, 300] = float("inf")
    expected = cntk_classification_error(output, target).double()
    for row in range(12):
        one = kernels.classification_error_sum(output[row:row + 1].numpy(), target[row:row + 1].numpy())
        assert one == pytest.approx(expected[row].item(), rel=1e-6), row
    assert kernels.classification_error_sum(output.numpy(), target.numpy()) == pytest.approx(expected.sum().item(),
                                                                                             rel=1e-6)


def ulps(value: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|value - exact| in units of the float32 spacing at ``exact``."""
    return np.abs(value - exact) / np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)


def test_the_loops_exp_and_log_are_within_about_an_ulp():
    x = np.linspace(-87.3, 88.3, 1_000_001, dtype=np.float32)
    assert ulps(kernels.exp(x), np.exp(x.astype(np.float64))).max() < 1.5
    y = np.exp(np.random.default_rng(0).uniform(-87, 88, 1_000_000)).astype(np.float32)
    y = np.concatenate([y, np.float32([1.0, 2.0, 0.5, np.sqrt(0.5), 1e-37, 3e38])])
    assert ulps(kernels.log(y), np.log(y.astype(np.float64))).max() < 2.0


def test_fused_output_layer_against_float64_over_extreme_logits_and_many_rows():
    """Loss, outputs' gradient, bias gradient and metric of aelab.training.kernels.output_layer_ against float64
    formulas, with logits below the floor, saturating ones, and more rows than one product holds."""
    rng = np.random.default_rng(7)
    n = 2 * kernels.PRODUCT_ROWS + 37
    logits = (rng.normal(0, 1, (n, 300)) * rng.choice([1, 10, 100], (n, 300))).astype(np.float32)
    logits[0, :5] = [-1e4, -88.0, 90.0, 1e4, 0.0]
    target = rng.random((n, 300)).astype(np.float32)
    bias = rng.normal(0, 1, 300).astype(np.float32)
    scale = 0.25
    z = np.maximum(logits.astype(np.float64) + bias, -87.0)
    p = 1.0 / (1.0 + np.exp(-z))
    exact_loss = ((1.0 - target) * z + np.logaddexp(0.0, -z)).sum()  # -(t log p + (1 - t) log(1 - p))
    exact_delta = (p - target) * scale

    work, bias_grad = logits.copy(), np.empty(300, dtype=np.float32)
    loss, error = kernels.output_layer_(work, bias, target, -87.0, scale, bias_grad)
    assert loss == pytest.approx(exact_loss, rel=1e-6)
    np.testing.assert_allclose(work, exact_delta, rtol=0, atol=4e-7 * scale)
    np.testing.assert_allclose(bias_grad, exact_delta.sum(axis=0), rtol=1e-5, atol=1e-5)
    from aelab.models.losses import cntk_classification_error
    p32 = torch.sigmoid(torch.from_numpy(np.maximum(logits + bias, np.float32(-87.0))))
    assert error == pytest.approx(cntk_classification_error(p32, torch.from_numpy(target)).double().sum().item(),
                                  rel=1e-6)  # the same first maxima, ties at 1.0 included


def test_a_nan_logit_makes_the_fused_loss_nan_so_that_training_stops():
    logits, target = np.zeros((3, 20), dtype=np.float32), np.zeros((3, 20), dtype=np.float32)
    logits[1, 5] = np.nan
    bias_grad = np.empty(20, dtype=np.float32)
    loss, _ = kernels.output_layer_(logits, np.zeros(20, dtype=np.float32), target, -87.0, 1.0, bias_grad)
    assert math.isnan(loss) and np.isnan(logits[1, 5]) and np.isnan(bias_grad[5])


def test_fused_hidden_layer_loops_equal_pytorch():
    g = torch.Generator().manual_seed(8)
    h, bias = torch.randn(64, 33, generator=g), torch.randn(33, generator=g)
    fused = h.clone()
    kernels.bias_relu_(fused.numpy(), bias.numpy())
    assert torch.equal(fused, (h + bias).relu())
    delta, bias_grad = torch.randn(64, 33, generator=g), torch.empty(33)
    expected = torch.ops.aten.threshold_backward(delta, fused, 0)
    kernels.relu_backward_(delta.numpy(), fused.numpy(), bias_grad.numpy())
    assert torch.equal(delta, expected)
    torch.testing.assert_close(bias_grad, expected.sum(0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["simple", "deep"])
@pytest.mark.parametrize("scale", [1.0, 1.0 / (64 * 784)])
def test_fused_output_layer_gives_the_pytorch_loss_metric_and_gradients(monkeypatch, kind, scale):
    from aelab.models.networks import build_model, model_config
    from aelab.training.steps import DenseBackprop, flatten_parameters
    g = torch.Generator().manual_seed(5)
    target = torch.randint(0, 256, (64, 784), generator=g).float() / 255.0
    inputs = (target + 0.1).clamp(0, 1)  # as a denoising run: inputs differ from the target
    fused_model, plain_model = build_model(model_config(kind), seed=3), build_model(model_config(kind), seed=3)
    flatten_parameters(fused_model)
    flatten_parameters(plain_model)
    fused_step = DenseBackprop(fused_model, scale)
    plain_pytorch(monkeypatch)
    plain_step = DenseBackprop(plain_model, scale)
    assert fused_step.fused and not plain_step.fused
    loss_f, metric_f = fused_step(inputs, target)
    loss_p, metric_p = plain_step(inputs, target)
    assert loss_f == pytest.approx(loss_p.item(), rel=1e-5)
    assert metric_f == pytest.approx(metric_p.item(), rel=1e-5)
    for (name, a), b in zip(fused_model.named_parameters(), plain_model.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6 * scale), name


@pytest.mark.parametrize("momentum_time_constant", [700.0, 0.0])
def test_the_graph_friendly_step_equals_the_optimizer_step(momentum_time_constant):
    """FlatFSAdaGrad.device_step (the CUDA graph's update, the smoothed count on the device) against update."""
    g = torch.Generator().manual_seed(6)
    a = torch.randn(2000, generator=g).requires_grad_()
    a.grad = torch.zeros_like(a)
    b = a.detach().clone().requires_grad_()
    b.grad = torch.zeros_like(b)
    eager = FlatFSAdaGrad(a, lr=1e-3, momentum_time_constant=momentum_time_constant)
    graphed = FlatFSAdaGrad(b, lr=1e-3, momentum_time_constant=momentum_time_constant)
    graphed._arrays = None  # as on CUDA: the PyTorch ops
    for _ in range(5):
        grad = torch.randn(2000, generator=g)
        grad[::11] = 0
        a.grad.copy_(grad)
        b.grad.copy_(grad)
        eager.update(64)
        graphed.device_step(64)
        graphed.advance_count(64)
    torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-7)
    assert graphed.device_count.item() == pytest.approx(graphed.settings["smoothed_count"], rel=1e-12)
    assert graphed.settings["smoothed_count"] == pytest.approx(eager.settings["smoothed_count"], rel=1e-12)


def test_the_graphed_steps_bookkeeping_with_the_graph_api_faked(monkeypatch):
    """aelab.training.cuda_graphs.GraphedStep on the CPU, its stream and capture calls made plain calls: the
    row indices, warm-up, replays and smoothed count give the eager loop's training (CI has no GPU)."""
    from aelab.training import cuda_graphs
    data = small_mnist()
    config = TrainConfig(model="simple", sweeps=2.0, seed=4, device="cpu")  # 16 steps: 3 eager, 13 replays
    eager = train(data, config, log=None)
    steps = []
    monkeypatch.setattr(cuda_graphs, "applies", lambda *args: True)
    monkeypatch.setattr(cuda_graphs.GraphedStep, "_eager", lambda self: (steps.append("eager"), self._body()))
    monkeypatch.setattr(cuda_graphs.GraphedStep, "_capture", lambda self: (steps.append("capture"), self._body)[1])
    graphed = train(data, config, log=None)
    assert steps == ["eager"] * cuda_graphs.WARMUP_STEPS + ["capture"]
    for a, b in zip(eager.model.parameters(), graphed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert graphed.train_error_pct == pytest.approx(eager.train_error_pct, abs=1e-3)


def test_the_loops_compile_where_no_cache_folder_is_writable():
    """A read-only install with no writable home: numba cannot cache, so the loops compile each run."""
    import subprocess
    import sys
    code = ("import numba.core.caching as c\n"
            "def refuse(self): raise OSError('read-only')\n"
            "for name in dir(c):\n"
            "    cls = getattr(c, name)\n"
            "    if isinstance(cls, type) and issubclass(cls, c._CacheLocator) and 'ensure_cache_path' in vars(cls):\n"
            "        cls.ensure_cache_path = refuse\n"
            "c._CacheLocator.ensure_cache_path = refuse\n"
            "from aelab.training import kernels\n"
            "kernels.warm_up()\n"
            "print('compiled')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "compiled" in proc.stdout, proc.stderr


def _numba_cpu_features_after_importing_aelab(env: dict) -> str:
    import os
    import subprocess
    import sys
    code = "from aelab.training import kernels\nimport numba\nprint(numba.config.CPU_FEATURES)\n"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU_")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**clean, **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_loops_use_512_bit_vectors_on_avx512_and_keep_the_users_own_numba_cpu_setting():
    llvm = pytest.importorskip("llvmlite.binding")
    host = llvm.get_host_cpu_features()
    chosen = _numba_cpu_features_after_importing_aelab({})
    if host.get("avx512f"):
        assert chosen == host.flatten() + ",-prefer-256-bit"
    else:
        assert chosen == "None"
    assert _numba_cpu_features_after_importing_aelab({"NUMBA_CPU_FEATURES": "+sse2"}) == "+sse2"
    assert _numba_cpu_features_after_importing_aelab({"NUMBA_CPU_NAME": "generic"}) == ""  # numba's own choice
