"""FSAdaGrad against values worked out by hand from CNTK's update rule."""
import copy
import math

import pytest
import torch

from aelab.errors import OptionError
from aelab.training.optim import FSAdaGrad, momentum_per_minibatch

LR = 3e-5
MU = math.exp(-64 / 700)        # momentum per minibatch of 64, time constant 700
NU = math.exp(-64 / 720_000)    # CNTK's default variance time constant


def one_param(values, grad):
    p = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    p.grad = torch.tensor(grad, dtype=torch.float64)
    return p


def test_momentum_as_time_constant():
    assert momentum_per_minibatch(700, 64) == pytest.approx(0.912627, abs=1e-6)
    assert momentum_per_minibatch(0, 64) == 0.0


def test_first_step_by_hand():
    # After one minibatch the smoothed count is (1-nu)*64 and the variance (1-nu)*g^2, so the
    # scale sqrt(count)/sqrt(variance) is 8/|g|, clipped at 10: scaled gradients 8, -8, 5 (clipped), 0.
    p = one_param([1.0, -2.0, 0.5, 3.0], [2.0, -4.0, 0.5, 0.0])
    opt = FSAdaGrad([p], lr=LR)
    opt.step(num_samples=64)
    step = LR * (1 - MU)
    expected = [1.0 - 8 * step, -2.0 + 8 * step, 0.5 - 5 * step, 3.0]
    assert p.detach().tolist() == pytest.approx(expected, rel=1e-12, abs=1e-15)
    state = opt.state[p]
    assert state["momentum"].tolist() == pytest.approx([(1 - MU) * 8, -(1 - MU) * 8, (1 - MU) * 5, 0.0])
    assert opt.param_groups[0]["smoothed_count"] == pytest.approx((1 - NU) * 64)


def test_second_step_by_hand():
    p = one_param([0.0, 0.0], [2.0, 0.5])
    opt = FSAdaGrad([p], lr=LR)
    opt.step(num_samples=64)
    p.grad = torch.tensor([1.0, 1.0], dtype=torch.float64)
    opt.step(num_samples=64)
    count = NU * (1 - NU) * 64 + (1 - NU) * 64
    var = [NU * (1 - NU) * 4 + (1 - NU) * 1, NU * (1 - NU) * 0.25 + (1 - NU) * 1]
    scaled = [min(math.sqrt(count) / math.sqrt(v), 10.0) * 1.0 for v in var]
    m1 = [(1 - MU) * 8, (1 - MU) * 5]
    m2 = [MU * m1[i] + (1 - MU) * scaled[i] for i in range(2)]
    expected = [-LR * (m1[i] + m2[i]) for i in range(2)]
    assert p.detach().tolist() == pytest.approx(expected, rel=1e-10)


def test_smaller_minibatch_changes_both_momenta():
    p = one_param([0.0], [2.0])
    opt = FSAdaGrad([p], lr=LR)
    opt.step(num_samples=10)
    mu10 = math.exp(-10 / 700)
    nu10 = math.exp(-10 / 720_000)
    # scale sqrt(10)/|g| = 1.58 (no clip): scaled gradient sqrt(10)
    assert opt.param_groups[0]["smoothed_count"] == pytest.approx((1 - nu10) * 10)
    assert p.item() == pytest.approx(-LR * (1 - mu10) * math.sqrt(10), rel=1e-9)


def test_without_unit_gain_and_without_momentum():
    p = one_param([0.0], [2.0])
    FSAdaGrad([p], lr=LR, unit_gain=False).step(num_samples=64)
    assert p.item() == pytest.approx(-LR * 8.0, rel=1e-12)
    q = one_param([0.0], [2.0])
    FSAdaGrad([q], lr=LR, momentum_time_constant=0).step(num_samples=64)
    assert q.item() == pytest.approx(-LR * 8.0, rel=1e-12)


def test_flat_and_per_layer_parameters_update_identically():
    torch.manual_seed(0)
    a = [torch.randn(5, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    flat = torch.cat([t.detach().reshape(-1) for t in a]).requires_grad_()
    opt_a, opt_f = FSAdaGrad(a), FSAdaGrad([flat])
    for _ in range(3):
        grads = [torch.randn_like(t) for t in a]
        for t, g in zip(a, grads):
            t.grad = g
        flat.grad = torch.cat([g.reshape(-1) for g in grads])
        opt_a.step()
        opt_f.step()
    assert torch.allclose(torch.cat([t.detach().reshape(-1) for t in a]), flat.detach(), atol=1e-7)


def test_state_dict_round_trip_restores_the_smoothed_count():
    p = one_param([0.0, 1.0], [1.0, -1.0])
    opt = FSAdaGrad([p])
    opt.step()
    q = p.detach().clone().requires_grad_()
    opt2 = FSAdaGrad([q])
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as after a save and load
    for x in (p, q):
        x.grad = torch.tensor([0.3, 0.7], dtype=torch.float64)
    opt.step()
    opt2.step()
    assert torch.equal(p.detach(), q.detach())
    assert opt2.param_groups[0]["smoothed_count"] == opt.param_groups[0]["smoothed_count"]


@pytest.mark.parametrize("kwargs", [{"lr": 0}, {"lr": -1}, {"momentum_time_constant": -1},
                                    {"variance_time_constant": 0}, {"minibatch_size": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(OptionError):
        FSAdaGrad([torch.zeros(1, requires_grad=True)], **kwargs)


def test_update_is_step_without_the_wrapper():
    a = one_param([1.0, -2.0], [2.0, 0.5])
    b = one_param([1.0, -2.0], [2.0, 0.5])
    opt_a, opt_b = FSAdaGrad([a], lr=LR), FSAdaGrad([b], lr=LR)
    for n in (64, 10):
        opt_a.step(num_samples=n)
        opt_b.update(n)
    assert torch.equal(a, b)
    assert opt_a.param_groups[0]["smoothed_count"] == opt_b.param_groups[0]["smoothed_count"]


def test_a_recipes_weight_decay_is_decoupled_from_the_gradient():
    """AdamW's decay: with a zero gradient the weights shrink by lr * weight_decay a step, Adam's own step
    being zero; without weight_decay they stay."""
    from dataclasses import replace as replaced
    from aelab.training.config import RECIPES, make_optimizer
    for decay, factor in ((0.5, 1 - 1e-3 * 0.5), (0.0, 1.0)):
        weights = torch.nn.Parameter(torch.full((4,), 2.0))
        optimizer = make_optimizer([weights], replaced(RECIPES["adam"], weight_decay=decay), 64)
        weights.grad = torch.zeros(4)
        optimizer.step()
        torch.testing.assert_close(weights.detach(), torch.full((4,), 2.0 * factor))
