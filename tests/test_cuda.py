"""The CUDA paths: skipped where PyTorch sees no CUDA device (as in CI).

`benchmarks/gpu_check.sh` runs these, and the benchmark, on a GPU machine.
"""
import pytest
import torch

from aelab.checkpoint import load_checkpoint, save_checkpoint
from aelab.device import resolve_device
from aelab.inference import decode, encode, evaluate
from aelab.train import TrainConfig, train

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
