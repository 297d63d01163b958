import math

import numpy as np
import pytest
import torch

from aelab.evaluation.metrics import cosine_similarity, mse, psnr_db
from aelab.models.losses import cntk_classification_error


def test_classification_error_is_one_minus_target_at_the_brightest_output():
    output = torch.tensor([[0.1, 0.9, 0.3], [0.8, 0.1, 0.2]])
    target = torch.tensor([[0.0, 0.75, 1.0], [0.2, 1.0, 1.0]])
    assert cntk_classification_error(output, target).tolist() == pytest.approx([0.25, 0.8])


def test_classification_error_takes_the_first_of_tied_maxima():
    output = torch.tensor([[0.5, 1.0, 1.0]])
    target = torch.tensor([[0.0, 0.4, 1.0]])
    assert cntk_classification_error(output, target).item() == pytest.approx(0.6)


def test_classification_error_is_not_argmax_agreement():
    # argmax(output)=1, argmax(target)=2 disagree, yet the target at 1 is bright: error 0.1, not 1
    output = torch.tensor([[0.0, 1.0, 0.5]])
    target = torch.tensor([[0.0, 0.9, 1.0]])
    assert cntk_classification_error(output, target).item() == pytest.approx(0.1)


def test_mse_and_psnr():
    a = np.zeros((2, 4))
    b = np.full((2, 4), 0.1)
    assert mse(a, b) == pytest.approx(0.01)
    assert psnr_db(0.01) == pytest.approx(20.0)
    assert psnr_db(0.0) == math.inf


def test_cosine_similarity():
    assert cosine_similarity([1, 0], [0, 2]) == 0.0
    assert cosine_similarity([1, 1], [2, 2]) == pytest.approx(1.0)
    assert cosine_similarity(np.zeros(3), np.ones(3)) == 0.0
    rng = np.random.default_rng(0)
    x, y = rng.random(50), rng.random(50)
    from scipy.spatial.distance import cosine
    assert cosine_similarity(x, y) == pytest.approx(1 - cosine(x, y))  # the tutorial's "distance"
