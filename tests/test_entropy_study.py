"""benchmarks/entropy_study.py: its probability models measure what they claim, on synthetic symbols."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import benchmark_script


@pytest.fixture(scope="module")
def study():
    return benchmark_script("entropy_study")


def _symbols(rng, n):
    """Two components: the second is (nearly) a nonlinear function of the first, and uncorrelated with it."""
    a = rng.integers(-8, 9, n)
    b = a * a - 24 + rng.integers(-1, 2, n)
    return np.stack([a, b], axis=1)


def test_the_ar_predictor_finds_what_earlier_components_say_and_histograms_cannot(study):
    rng = np.random.default_rng(0)
    train, test = _symbols(rng, 6000), _symbols(rng, 2000)
    assert abs(np.corrcoef(train.T)[0, 1]) < 0.05  # decorrelated, as the codec's components are
    ar_bits = -study.ar_mean_logp(train, test, hidden=64, epochs=30).mean(axis=0)
    lo = train.min(axis=0)
    histogram_bits = []  # per-component histograms of the same symbols, as the codec codes them now
    for k in range(2):
        counts = np.bincount(train[:, k] - lo[k]).astype(float) + 0.05
        histogram_bits.append(-np.log2(counts[test[:, k] - lo[k]] / counts.sum()).mean())
    assert ar_bits[0] == pytest.approx(histogram_bits[0])  # nothing to look back at
    assert histogram_bits[1] > 4.4 and ar_bits[1] < 2.6  # log2(3) = 1.58 bits is what is left to code
