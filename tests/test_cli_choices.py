"""The parser is built from light modules: `aelab --help` imports no torch, and the choices it shows are
the ones their owners use."""
from __future__ import annotations

import subprocess
import sys

import pytest

from aelab import cli_choices

HEAVY = ("torch", "numba", "sklearn", "matplotlib", "scipy", "aelab.api")


def _imported_after(code: str) -> list[str]:
    """The HEAVY modules loaded by ``code``, run in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_building_the_parser_imports_no_torch():
    assert _imported_after("import aelab.cli as c; c.build_parser()") == []


def test_help_imports_no_torch():
    """`aelab --help` and every `aelab COMMAND --help` (and `aelab data ACTION --help`)."""
    code = """
from aelab.cli import build_parser, main
commands = build_parser()._subparsers._group_actions[0].choices
helps = [["--help"]] + [[c, "--help"] for c in commands]
helps += [["data", a, "--help"] for a in ("info", "convert", "pack", "download")]
for words in helps:
    try:
        main(words)
    except SystemExit as e:
        assert e.code == 0, words
"""
    quiet = f"import contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()):\n    exec({code!r})"
    assert _imported_after(quiet) == []


def test_the_aelab_command_help_imports_no_torch():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "aelab", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "usage: aelab" in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert not {m for m in imported if m.split(".")[0] in ("torch", "numba", "sklearn", "matplotlib")}


def _owner(name: str):
    from aelab import api
    from aelab.data import pictures
    from aelab.evaluation import compare
    from aelab.models import layers
    from aelab.training.config import RECIPES
    return {
        "MODEL_NAMES": api.MODEL_NAMES, "LOSSES": api.LOSSES, "EXPORT_FORMATS": api.EXPORT_FORMATS,
        "NORMS": layers.NORMS,
        "SCALE_METHODS": api.SCALE_METHODS, "RECIPE_NAMES": tuple(RECIPES),
        "IMAGE_FORMATS": pictures.IMAGE_FORMATS,
        "DEFAULT_RECIPE": api.TrainConfig().recipe,
        "DEFAULT_RECIPE_LR": RECIPES[api.TrainConfig().recipe].lr,
        "DEFAULT_RECIPE_MINIBATCH": RECIPES[api.TrainConfig().recipe].minibatch_size,
        "CODERS": {n: c.description for n, c in api.CODERS.items()}, "PREDICTIVE_CODERS": api.PREDICTIVE_CODERS,
        "CODEC_FIT_BITS": tuple(api.CODEC_FIT_BITS),
        "COMPARE_MODELS": compare.DEFAULT_MODELS, "COMPARE_RECIPE": compare.DEFAULT_RECIPE,
        "COMPARE_SWEEPS": api.COMPARE_SWEEPS, "QUICK_SWEEPS": api.QUICK_SWEEPS,
        "COMPARE_TSNE_LIMIT": api.COMPARE_TSNE_LIMIT, "QUICK_TSNE_LIMIT": api.QUICK_TSNE_LIMIT,
    }[name]


@pytest.mark.parametrize("name", ["MODEL_NAMES", "LOSSES", "NORMS", "EXPORT_FORMATS", "SCALE_METHODS", "IMAGE_FORMATS",
                                  "RECIPE_NAMES",
                                  "DEFAULT_RECIPE", "DEFAULT_RECIPE_LR", "DEFAULT_RECIPE_MINIBATCH", "CODERS",
                                  "PREDICTIVE_CODERS", "CODEC_FIT_BITS",
                                  "COMPARE_MODELS", "COMPARE_RECIPE", "COMPARE_SWEEPS", "QUICK_SWEEPS",
                                  "COMPARE_TSNE_LIMIT", "QUICK_TSNE_LIMIT"])
def test_each_choice_is_its_owners(name):
    """cli_choices repeats values whose owners import torch: each must equal its owner's (in order)."""
    assert getattr(cli_choices, name) == _owner(name)


def test_the_coder_help_is_the_codecs():
    from aelab import api
    assert cli_choices.coder_help() == api.coder_help()
