"""Shared pytest options and fixtures.

``--fuzz-examples N`` sets how many Hypothesis examples each fuzz test in
tests/test_fuzz_readers.py tries. The default (300) keeps the suite fast; for
a thorough run use e.g.::

    PYTHONPATH=src python -m pytest tests/test_fuzz_readers.py --fuzz-examples 20000
"""
from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-examples", type=int, default=300,
                     help="Hypothesis examples per fuzz test (default 300; 20000 for a thorough run)")


@pytest.fixture(scope="session")
def fuzz_examples(request: pytest.FixtureRequest) -> int:
    """The number of examples each fuzz test should try (--fuzz-examples)."""
    return request.config.getoption("--fuzz-examples")
