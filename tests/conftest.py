"""Shared pytest options and fixtures.

``--fuzz-examples N`` sets how many Hypothesis examples each fuzz test in
tests/test_fuzz_readers.py tries. The default (300) keeps the suite fast; for
a thorough run use e.g.::

    PYTHONPATH=src python -m pytest tests/test_fuzz_readers.py --fuzz-examples 20000

Tests marked ``slow`` (long end-to-end runs, fault injection) are skipped unless
``--run-slow`` is given (``.ci/run`` gives it) or ``-m slow`` selects them.
"""
from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-examples", type=int, default=300,
                     help="Hypothesis examples per fuzz test (default 300; 20000 for a thorough run)")
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow (long end-to-end and fault-injection runs); "
                          "`-m slow` runs only them")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked slow are skipped unless --run-slow is given or a -m expression names them."""
    if config.getoption("--run-slow") or "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fuzz_examples(request: pytest.FixtureRequest) -> int:
    """The number of examples each fuzz test should try (--fuzz-examples)."""
    return request.config.getoption("--fuzz-examples")


# --- tiny MNIST data and one trained checkpoint, shared by the checkpoint, inference, CLI and
# tutorial tests. Everything here is session-scoped: treat it as read-only (copy a checkpoint
# folder before damaging it).

TINY_TRAIN = 6400   # 0.01 sweeps = one minibatch of 64, so `--sweeps 0.01` trains
TINY_TEST = 200     # includes test image 44 (the tutorial's) and the pairs at 50..99


@pytest.fixture(scope="session")
def mnist():
    """The bundled MNIST (60000 + 10000 images)."""
    from aelab.data import load_dataset
    return load_dataset()


@pytest.fixture(scope="session")
def tiny_npz(mnist, tmp_path_factory):
    """A .npz dataset: the first 6400 MNIST training and first 200 test images, with labels."""
    from aelab.data import Dataset, Split, save_dataset
    tiny = Dataset(name="tiny", train=Split(mnist.train.images[:TINY_TRAIN], mnist.train.labels[:TINY_TRAIN]),
                   test=Split(mnist.test.images[:TINY_TEST], mnist.test.labels[:TINY_TEST]),
                   sha256="0" * 64, num_classes=10)
    return save_dataset(tiny, tmp_path_factory.mktemp("data") / "tiny.npz", "npz")


@pytest.fixture(scope="session")
def tiny_data(tiny_npz):
    """``tiny_npz`` loaded as an aelab Dataset (name 'tiny', a real sha256)."""
    from aelab.data import load_dataset
    return load_dataset(tiny_npz)


@pytest.fixture(scope="session")
def trained(tiny_data, tmp_path_factory):
    """One tiny simple autoencoder trained on ``tiny_data`` (5 minibatches) and saved as a checkpoint.

    Returns a namespace with ``model`` (eval mode, CPU), ``result`` (the TrainResult),
    ``folder`` (the checkpoint folder: do not modify it) and ``data``.
    """
    from types import SimpleNamespace

    from aelab.models.checkpoint import save_checkpoint
    from aelab.evaluation.evaluate import evaluate
    from aelab.training.loop import TrainConfig, train
    config = TrainConfig(model="simple", sweeps=0.05, seed=0, device="cpu")
    result = train(tiny_data, config, log=None, progress_bar=False)
    scores = evaluate(result.model, tiny_data.test.images)
    folder = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "simple", result.model, result.model_config,
                             training={**config.to_dict(), "samples_seen": result.samples_seen},
                             data={"name": tiny_data.name, "sha256": tiny_data.sha256},
                             metrics={k: v for k, v in scores.items() if k != "n"})
    return SimpleNamespace(model=result.model, result=result, folder=folder, data=tiny_data, scores=scores)
