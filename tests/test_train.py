"""The training engine: explicit backprop equals autograd, runs are reproducible, the table is CNTK's."""
import numpy as np
import pytest
import torch

from aelab.errors import OptionError
from aelab.models.networks import build_model, model_config
from aelab.training.progress import ProgressTable
from aelab.training.loop import TrainConfig, train
from aelab.training.stream import SweepStream
from aelab.training.steps import AutogradStep, DenseBackprop, flatten_parameters, summed_bce

from helpers import small_mnist, synthetic


def batch(seed=0, n=64, d=784):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, d), generator=g).float() / 255.0


@pytest.mark.parametrize("kind", ["simple", "deep"])
@pytest.mark.parametrize("scale", [1.0, 1.0 / (64 * 784)])
def test_explicit_backprop_matches_autograd(kind, scale):
    a = build_model(model_config(kind), seed=3).double()
    b = build_model(model_config(kind), seed=3).double()
    flatten_parameters(a)
    flatten_parameters(b)
    target = batch().double()
    inputs = (target + 0.1).clamp(0, 1)  # as a denoising run: inputs differ from the target
    loss_a, metric_a = DenseBackprop(a, scale)(inputs, target)
    loss_b, metric_b = AutogradStep(b, scale)(inputs, target)
    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-9)
    assert metric_a.item() == metric_b.item()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, rtol=1e-9, atol=1e-12), name


def test_summed_bce_equals_the_tutorial_formula():
    z = torch.randn(16, 30, dtype=torch.float64) * 4
    t = torch.rand(16, 30, dtype=torch.float64)
    p = torch.sigmoid(z)
    tutorial = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).sum()
    assert summed_bce(z, t).item() == pytest.approx(tutorial.item(), rel=1e-10)


def test_sweep_stream_visits_every_sample_once_per_sweep_and_straddles_sweeps():
    images = torch.arange(10, dtype=torch.uint8).reshape(10, 1)
    stream = SweepStream(images, seed=5)
    seen = torch.cat([stream.next(4) for _ in range(5)]).flatten() * 255  # 20 samples = 2 sweeps
    first, second = seen[:10].round().long(), seen[10:].round().long()
    assert sorted(first.tolist()) == list(range(10)) and sorted(second.tolist()) == list(range(10))
    assert first.tolist() != second.tolist()  # each sweep shuffled anew
    restarted = SweepStream(images, seed=5, start_sample=8)
    assert torch.equal(restarted.next(4), seen[8:12].reshape(4, 1) / 255)


def test_same_seed_same_weights_other_seed_other_weights():
    data = small_mnist()
    cfg = TrainConfig(model="simple", sweeps=0.5, seed=7, device="cpu")
    w1 = train(data, cfg, log=None).model.layers[0].weight.detach().clone()
    w2 = train(data, cfg, log=None).model.layers[0].weight.detach().clone()
    w3 = train(data, TrainConfig(model="simple", sweeps=0.5, seed=8, device="cpu"), log=None).model.layers[0].weight
    assert torch.equal(w1, w2)
    assert not torch.equal(w1, w3.detach())


@pytest.mark.parametrize("recipe", ["tutorial", "adam"])
def test_explicit_engine_and_autograd_engine_train_alike(recipe):
    data = small_mnist(train=256)
    cfg = TrainConfig(model="deep", sweeps=1, recipe=recipe, seed=1, device="cpu")
    fast = train(data, cfg, log=None)
    plain = train(data, cfg, log=None, use_autograd=True)
    for a, b in zip(fast.model.parameters(), plain.model.parameters()):
        assert torch.allclose(a, b, atol=2e-5), "the engines drifted apart"
    assert fast.train_error_pct == pytest.approx(plain.train_error_pct, abs=0.05)


def test_training_lowers_the_loss_and_reports_cntk_numbers():
    data = small_mnist(train=2048)
    lines = []
    result = train(data, TrainConfig(model="simple", sweeps=2, device="cpu"), log=lines.append, progress_bar=False)
    assert lines[0].split()[:2] == ["average", "since"]
    assert any(line.startswith("Learning rate per sample: 3e-05") for line in lines)
    examples = [row["examples"] for row in result.progress]
    assert examples == [64 * (2 ** k - 1) for k in range(1, len(examples) + 1)]  # after minibatches 1, 3, 7, ...
    assert result.progress[0]["loss"] == pytest.approx(543.5, abs=2)  # the tutorial's first row: 544
    assert result.progress[-1]["loss"] < result.progress[0]["loss"]
    assert 0 < result.train_error_pct < 100
    assert result.samples_seen == (2 * 2048 // 64) * 64


def test_any_image_size_trains():
    data = synthetic(h=8, w=6)
    result = train(data, TrainConfig(model="deep", sweeps=1, minibatch_size=16, device="cpu"), log=None)
    assert result.model.config.input_shape == (8, 6)
    assert result.model.layers[0].in_features == 48


def test_progress_table_averages():
    rows = []
    table = ProgressTable(rows.append)
    for k in range(7):
        table.add(loss_sum=64.0 * (k + 1), metric_sum=6.4, samples=64)
    printed = rows[1:]  # after the header
    assert len(table.rows) == 3 and len(printed) == 3
    assert table.rows[1] == pytest.approx({"examples": 192, "loss": 2.0, "loss_since_last": 2.5, "metric": 0.1,
                                           "metric_since_last": 0.1})
    assert printed[2].split() == ["4", "5.5", "0.1", "0.1", "448"]
    assert table.rows[2]["loss_since_last"] == pytest.approx((4 + 5 + 6 + 7) / 4)


@pytest.mark.parametrize("kwargs", [{"sweeps": 0}, {"sweeps": -1}, {"sweeps": float("nan")}, {"recipe": "sgd"},
                                    {"model": "huge"}, {"code_size": 0}, {"minibatch_size": 0}, {"seed": -1},
                                    {"device": "tpu"}])
def test_bad_options_are_refused(kwargs):
    with pytest.raises(OptionError):
        train(synthetic(), TrainConfig(**{"device": "cpu", **kwargs}), log=None)


def test_too_little_data_for_one_minibatch():
    with pytest.raises(OptionError, match="no minibatch"):
        train(synthetic(n_train=10), TrainConfig(sweeps=1, device="cpu"), log=None)


def test_training_leaves_the_callers_floating_point_mode_alone():
    from aelab.training.loop import denormals_flushed
    assert not denormals_flushed()
    train(synthetic(), TrainConfig(sweeps=1, minibatch_size=16, device="cpu"), log=None)
    assert not denormals_flushed()
    assert np.float32(1e-39) * np.float32(1.0) > 0  # numpy still sees subnormals


def test_small_minibatches_train_on_one_thread_and_restore_the_setting(monkeypatch):
    import aelab.training.steps as engine
    seen = []
    real_step = engine.DenseBackprop.__call__
    monkeypatch.setattr(engine.DenseBackprop, "__call__",
                        lambda self, x, t: (seen.append(torch.get_num_threads()), real_step(self, x, t))[1])
    before = torch.get_num_threads()
    train(synthetic(), TrainConfig(sweeps=1, minibatch_size=16, device="cpu"), log=None)
    assert set(seen) == {1} and torch.get_num_threads() == before
