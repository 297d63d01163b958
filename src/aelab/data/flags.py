"""How messages name the options that read a data source: the command line's flags, and Python's keyword
for the split's seed, which no command takes."""
from __future__ import annotations

from typing import Any

OPTION_FLAGS = {"test_fraction": "--test-fraction", "seed": "seed=", "label_column": "--label-column",
                "channels": "--grayscale/--rgb", "resize": "--resize", "crop": "--crop", "skip_bad": "--skip-bad",
                "scale": "--scale"}


def option_given(name: str, value: Any) -> str:
    """Option ``name`` given ``value``, as the user would have written it: ``--test-fraction 0.2``, ``seed=3``."""
    flag = OPTION_FLAGS[name]
    return f"{flag}{value}" if flag.endswith("=") else f"{flag} {value}"
