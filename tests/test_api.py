"""The public API: every name resolves, every CLI command has its function there, old flags still work."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import aelab
from aelab.cli import COMMANDS, main

COMMAND_FUNCTIONS = {
    "tutorial": "run_tutorial", "train": "train_model", "evaluate": "evaluate_model", "encode": "encode_images",
    "decode": "decode_codes", "reconstruct": "reconstruct_images", "similarity": "load_model",
    "tsne": "encode_images", "bench": "run_benchmark", "data": "load_dataset", "compress": "compress",
    "decompress": "decompress", "denoise": "denoise_images", "sample": "sample", "interpolate": "interpolate",
    "compare": "compare_models", "models": "list_pretrained",
}


@pytest.mark.parametrize("name", aelab.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(aelab, name) is not None
    assert name in dir(aelab)


def test_each_cli_command_has_its_api_function_in_all() -> None:
    assert set(COMMAND_FUNCTIONS) == set(COMMANDS)
    for command, function in COMMAND_FUNCTIONS.items():
        assert function in aelab.__all__, command


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        aelab.no_such_thing  # noqa: B018


def test_import_aelab_errors_stays_light() -> None:
    code = "import sys, aelab.errors; print('torch' in sys.modules, 'aelab.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("old, new, value", [
    (["tsne", "--samples"], "--limit", "7"),
    (["tutorial", "--tsne-samples"], "--tsne-limit", "7"),
    (["compare", "--tsne-samples"], "--tsne-limit", "7"),
    (["denoise", "--count"], "--draw", "7"),
    (["sample", "-n"], "--draw", "7"),
])
def test_old_spellings_are_hidden_deprecated_aliases(capsys, old, new, value) -> None:
    from aelab.cli import build_parser
    command, flag = old
    parser = build_parser()
    extra = ["--checkpoint", "x", "-o", "y"] if command in ("tsne", "sample", "denoise") else []
    args = parser.parse_args([command, *extra, flag, value])
    assert getattr(args, new.lstrip("-").replace("-", "_")) == int(value)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{flag} is deprecated; use {new}" in err
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    help_text = capsys.readouterr().out
    assert new in help_text and f"{flag} " not in help_text.replace(f"{new} ", "")


def test_new_spellings_print_no_note(capsys) -> None:
    from aelab.cli import build_parser
    args = build_parser().parse_args(["tsne", "--checkpoint", "x", "-o", "y", "--limit", "5"])
    assert args.limit == 5 and capsys.readouterr().err == ""


def test_compare_defaults_to_the_benchmark_recipe() -> None:
    from aelab.cli import build_parser
    from aelab.evaluation.compare import DEFAULT_RECIPE
    assert build_parser().parse_args(["compare"]).recipe == DEFAULT_RECIPE == "adam-long"


def test_encode_and_decode_take_limit(tmp_path) -> None:
    codes = tmp_path / "c.npy"
    assert main(["encode", "--checkpoint", "mnist-simple", "--limit", "4", "-o", str(codes)]) == 0
    assert np.load(codes).shape[0] == 4
    assert main(["decode", "--checkpoint", "mnist-simple", str(codes), "--limit", "3", "-o", str(tmp_path / "d")]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["grid.png"] + [f"img-{i:05d}.png" for i in range(3)]


def test_codes_round_trip_through_csv(tmp_path) -> None:
    from aelab.data.codes import read_codes, write_codes
    codes = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_codes(tmp_path / "c.csv", codes, np.array([1, 2]))
    np.testing.assert_allclose(read_codes(tmp_path / "c.csv"), codes)
