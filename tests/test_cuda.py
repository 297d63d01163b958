"""The CUDA paths: skipped where PyTorch sees no CUDA device (as in CI).

`benchmarks/gpu_check.sh` runs these, and the benchmark, on a GPU machine.
"""
import pytest
import torch

from aelab.models.checkpoint import load_checkpoint, save_checkpoint
from aelab.device import resolve_device
from aelab.evaluation.evaluate import evaluate
from aelab.models.inference import decode, encode
from aelab.training.loop import TrainConfig, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
@pytest.mark.parametrize("kind", ["simple", "deep"])
@pytest.mark.parametrize("recipe", ["tutorial", "adam"])
def test_training_on_cuda_matches_the_cpu(tiny_data, kind, recipe):
    config = dict(model=kind, sweeps=0.2, seed=4, recipe=recipe)
    cpu = train(tiny_data, TrainConfig(**config, device="cpu"), log=None)
    gpu = train(tiny_data, TrainConfig(**config, device="cuda"), log=None)
    assert gpu.device.startswith("cuda")
    for a, b in zip(cpu.model.parameters(), gpu.model.parameters()):
        assert torch.allclose(a, b.cpu(), atol=1e-4), "CUDA and CPU training drifted apart"
    assert gpu.train_error_pct == pytest.approx(cpu.train_error_pct, abs=0.5)


@cuda
def test_denoising_and_resume_on_cuda(tiny_data, tmp_path):
    config = TrainConfig(model="simple", sweeps=0.2, seed=1, device="cuda", noise="gaussian:0.3")
    result = train(tiny_data, config, log=None, resume_file=tmp_path / "resume.safetensors", checkpoint_every=0)
    assert result.samples_seen > 0


@cuda
def test_inference_and_checkpoints_cross_devices(trained, tmp_path):
    ckpt = load_checkpoint(trained.folder, device=resolve_device("cuda"))
    codes = encode(ckpt.model, trained.data.test.images[:50])
    assert codes.shape == (50, 32)
    cpu_codes = encode(trained.model, trained.data.test.images[:50])
    assert abs(codes - cpu_codes).max() < 1e-4
    assert decode(ckpt.model, codes).shape == (50, 28, 28)
    scores = evaluate(ckpt.model, trained.data.test.images)
    assert scores["test_psnr_db"] == pytest.approx(trained.scores["test_psnr_db"], abs=1e-3)
    save_checkpoint(tmp_path / "from-gpu", ckpt.model, ckpt.model_config)
    assert load_checkpoint(tmp_path / "from-gpu").model.layers[0].weight.device.type == "cpu"


@cuda
def test_auto_picks_cuda_and_test_device_overrides(monkeypatch):
    monkeypatch.delenv("TEST_DEVICE", raising=False)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setenv("TEST_DEVICE", "cpu")
    assert resolve_device("auto").type == "cpu"
    monkeypatch.setenv("TEST_DEVICE", "gpu")
    assert resolve_device("auto").type == "cuda"


@cuda
def test_the_engines_cuda_paths_match_its_cpu_loops():
    """CUDA takes the PyTorch twins of aelab.training.kernels' loops: the gather and the FSAdaGrad step."""
    import numpy as np

    from aelab.training.optim import FlatFSAdaGrad
    from aelab.training.stream import SweepStream

    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (37, 11), dtype=np.uint8))
    cpu, gpu = SweepStream(images, seed=3), SweepStream(images.cuda(), seed=3)
    assert cpu._fused and not gpu._fused
    for _ in range(9):
        assert torch.equal(cpu.next(10), gpu.next(10).cpu())

    g = torch.Generator().manual_seed(0)
    a = torch.randn(5000, generator=g).requires_grad_()
    a.grad = torch.zeros_like(a)
    b = a.detach().cuda().requires_grad_()
    b.grad = torch.zeros_like(b)
    opt_a, opt_b = FlatFSAdaGrad(a), FlatFSAdaGrad(b)
    assert opt_a._arrays is not None and opt_b._arrays is None
    for _ in range(5):
        grad = torch.randn(5000, generator=g)
        grad[::9] = 0
        a.grad.copy_(grad)
        b.grad.copy_(grad)
        opt_a.update(64)
        opt_b.update(64)
    torch.testing.assert_close(a.detach(), b.detach().cpu(), rtol=1e-5, atol=1e-7)


@cuda
@pytest.mark.parametrize("kind", ["conv", "vae", "sparse"])
def test_autograd_models_train_on_cuda_as_on_the_cpu(tiny_data, kind):
    config = dict(model=kind, sweeps=0.05, seed=1, recipe="adam-long")
    cpu = train(tiny_data, TrainConfig(**config, device="cpu"), log=None)
    gpu = train(tiny_data, TrainConfig(**config, device="cuda"), log=None)
    assert gpu.device.startswith("cuda")
    assert gpu.train_loss == pytest.approx(cpu.train_loss, rel=0.02)


@cuda
@pytest.mark.parametrize("kind", ["simple", "deep"])
def test_the_cuda_graph_trains_as_the_eager_step(tiny_data, monkeypatch, kind):
    from aelab.training import cuda_graphs
    config = TrainConfig(model=kind, sweeps=0.3, seed=2, device="cuda")  # 30 steps: warm-up, capture, replays
    monkeypatch.setenv("AELAB_CUDA_GRAPHS", "1")
    graphed = train(tiny_data, config, log=None)
    monkeypatch.setenv("AELAB_CUDA_GRAPHS", "0")
    eager = train(tiny_data, config, log=None)
    assert cuda_graphs.WARMUP_STEPS < graphed.minibatches
    for a, b in zip(graphed.model.parameters(), eager.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert graphed.train_error_pct == pytest.approx(eager.train_error_pct, abs=1e-3)
    assert graphed.train_loss == pytest.approx(eager.train_loss, rel=1e-5)


@cuda
def test_a_graphed_run_resumes_exactly(tiny_data, tmp_path, monkeypatch):
    """Stopped by Ctrl-C after some replays and resumed, the graph gives the uninterrupted run's weights."""
    import os
    import signal

    import aelab.training.loop as engine
    monkeypatch.setenv("AELAB_CUDA_GRAPHS", "1")
    config = TrainConfig(model="simple", sweeps=0.3, seed=3, device="cuda")
    whole = train(tiny_data, config, log=None)
    resume = tmp_path / "resume.safetensors"
    calls = {"n": 0}
    real_due = engine.ProgressTable.due

    def ctrl_c_at_step_ten(self, done):
        calls["n"] += 1
        if calls["n"] == 10:
            os.kill(os.getpid(), signal.SIGINT)
        return real_due(self, done)
    monkeypatch.setattr(engine.ProgressTable, "due", ctrl_c_at_step_ten)
    with pytest.raises(engine.TrainingInterrupted):
        train(tiny_data, config, log=None, resume_file=resume, checkpoint_every=0)
    monkeypatch.setattr(engine.ProgressTable, "due", real_due)
    resumed = train(tiny_data, config, log=None, resume_file=resume, resume=True)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
