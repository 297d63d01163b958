"""aelab's version: the one in pyproject.toml, as the installed package's metadata states it."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aelab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
