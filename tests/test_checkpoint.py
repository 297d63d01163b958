"""Tests for aelab.models.checkpoint: safetensors + config.json folders that load safely or not at all."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors

import aelab
from aelab.models.checkpoint import (CONFIG_FILE, FORMAT, FORMAT_VERSION, WEIGHTS_FILE, load_checkpoint,
                              package_versions, read_checkpoint_info, save_checkpoint)
from aelab.errors import CheckpointError, OutputError
from aelab.models.inference import reconstruct
from aelab.models.networks import build_model, model_config


# ------------------------------------------------------------------ helpers


@pytest.fixture
def ckpt(trained, tmp_path: Path) -> Path:
    """A private copy of the shared checkpoint folder, free to damage."""
    return Path(shutil.copytree(trained.folder, tmp_path / "ckpt"))


def _info(folder: Path) -> dict:
    return json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))


def _write_info(folder: Path, info: dict) -> None:
    (folder / CONFIG_FILE).write_text(json.dumps(info), encoding="utf-8")


def _edit_info(folder: Path, edit) -> None:
    info = _info(folder)
    edit(info)
    _write_info(folder, info)


def _drop_checksum(info: dict) -> None:
    del info["weights_sha256"]


def _write_weights(folder: Path, tensors: dict[str, torch.Tensor], fix_checksum: bool = True) -> None:
    """Replace the weights file; with ``fix_checksum`` also update config.json to match it."""
    blob = save_safetensors({k: v.contiguous() for k, v in tensors.items()})
    (folder / WEIGHTS_FILE).write_bytes(blob)
    if fix_checksum:
        _edit_info(folder, lambda i: i.__setitem__("weights_sha256", hashlib.sha256(blob).hexdigest()))


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _refused(folder: Path, *fragments: str) -> str:
    """Load ``folder``, expect CheckpointError, check each fragment is in the message; return it."""
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(folder)
    message = str(exc.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------------ round trip


def test_round_trip_gives_identical_weights_and_outputs(trained) -> None:
    loaded = load_checkpoint(trained.folder)
    saved = trained.model.state_dict()
    got = loaded.model.state_dict()
    assert set(got) == set(saved)
    for name in saved:
        assert got[name].dtype == saved[name].dtype
        assert torch.equal(got[name], saved[name]), name
    assert not loaded.model.training
    assert next(loaded.model.parameters()).device.type == "cpu"
    assert loaded.model_config == trained.result.model_config
    assert loaded.path == Path(trained.folder)
    images = trained.data.test.images[:20]
    np.testing.assert_array_equal(reconstruct(loaded.model, images), reconstruct(trained.model, images))


def test_round_trip_of_a_deep_model_with_another_code_size(tmp_path: Path) -> None:
    config = model_config("deep", input_shape=(8, 6), code_size=5, hidden=(16, 9))
    model = build_model(config, seed=3)
    save_checkpoint(tmp_path / "deep", model, config)
    loaded = load_checkpoint(tmp_path / "deep")
    assert loaded.model_config == config
    for name, t in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], t), name
    x = torch.randint(0, 256, (4, 48)).float()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model.eval()(x))


def test_config_json_describes_model_data_metrics_and_versions(trained) -> None:
    info = _info(trained.folder)
    assert info["format"] == FORMAT == "aelab-checkpoint"
    assert info["format_version"] == FORMAT_VERSION
    assert info["model"] == {"kind": "simple", "input_shape": [28, 28], "code_size": 32, "hidden": []}
    blob = (trained.folder / WEIGHTS_FILE).read_bytes()
    assert info["weights_sha256"] == hashlib.sha256(blob).hexdigest()
    assert info["data"] == {"name": "tiny", "sha256": trained.data.sha256}
    assert len(info["data"]["sha256"]) == 64
    assert set(info["metrics"]) == {"test_error_pct", "test_bce", "test_mse", "test_psnr_db", "test_r2"}
    assert info["metrics"]["test_error_pct"] == pytest.approx(trained.scores["test_error_pct"])
    assert info["training"]["model"] == "simple" and info["training"]["sweeps"] == 0.05
    assert info["versions"] == {"aelab": aelab.__version__, "torch": torch.__version__,
                                "numpy": np.__version__, "python": info["versions"]["python"]}
    assert info["versions"] == package_versions()
    assert isinstance(info["created"], str) and info["created"][:2] == "20"
    assert read_checkpoint_info(trained.folder) == info
    assert load_checkpoint(trained.folder).info == info


def test_save_without_optional_sections_writes_empty_ones(tmp_path: Path) -> None:
    config = model_config("simple", input_shape=(4, 4), code_size=2)
    folder = save_checkpoint(tmp_path / "a" / "b", build_model(config, seed=0), config)
    assert folder == tmp_path / "a" / "b"  # parents created
    info = _info(folder)
    assert info["training"] == {} and info["data"] == {} and info["metrics"] == {}
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]


def test_saving_again_replaces_the_checkpoint(ckpt: Path) -> None:
    config = model_config("simple", code_size=32)
    other = build_model(config, seed=123)
    save_checkpoint(ckpt, other, config, metrics={"test_error_pct": 1.0})
    loaded = load_checkpoint(ckpt)
    for name, t in other.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], t)
    assert loaded.info["metrics"] == {"test_error_pct": 1.0}
    assert _leftovers(ckpt) == []


def test_weights_without_checksum_still_load(ckpt: Path) -> None:
    _edit_info(ckpt, _drop_checksum)
    load_checkpoint(ckpt)


# ------------------------------------------------------------------ refusals


def test_missing_folder(tmp_path: Path) -> None:
    message = _refused(tmp_path / "nope", str(tmp_path / "nope"), "not found", "aelab train --out")
    assert message.startswith(str(tmp_path / "nope"))


def test_a_file_is_not_a_checkpoint_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    _refused(tmp_path / "file", str(tmp_path / "file"))


def test_missing_config_json(ckpt: Path) -> None:
    (ckpt / CONFIG_FILE).unlink()
    _refused(ckpt, str(ckpt), "no config.json", "aelab train --out")


def test_missing_weights(ckpt: Path) -> None:
    (ckpt / WEIGHTS_FILE).unlink()
    _refused(ckpt, str(ckpt / WEIGHTS_FILE), "cannot read the weights")


def test_weights_that_are_a_folder(ckpt: Path) -> None:
    (ckpt / WEIGHTS_FILE).unlink()
    (ckpt / WEIGHTS_FILE).mkdir()
    _refused(ckpt, str(ckpt / WEIGHTS_FILE))


@pytest.mark.parametrize("text", ["{not json", "", '{"format": "aelab-checkpoint",', "\xff\xfe"])
def test_corrupt_json(ckpt: Path, text: str) -> None:
    (ckpt / CONFIG_FILE).write_bytes(text.encode("latin-1"))
    _refused(ckpt, str(ckpt / CONFIG_FILE), "cannot read config.json")


def test_config_json_that_is_a_folder(ckpt: Path) -> None:
    (ckpt / CONFIG_FILE).unlink()
    (ckpt / CONFIG_FILE).mkdir()
    _refused(ckpt, CONFIG_FILE)


@pytest.mark.parametrize("content", [{"foo": 1}, [1, 2, 3], "aelab-checkpoint", None,
                                     {"format": "other-checkpoint", "format_version": 1}])
def test_json_that_is_not_an_aelab_checkpoint(ckpt: Path, content) -> None:
    (ckpt / CONFIG_FILE).write_text(json.dumps(content))
    _refused(ckpt, str(ckpt / CONFIG_FILE), "not an aelab checkpoint")


def test_newer_format_version(ckpt: Path) -> None:
    _edit_info(ckpt, lambda i: i.__setitem__("format_version", FORMAT_VERSION + 1))
    _refused(ckpt, str(ckpt / CONFIG_FILE), f"version {FORMAT_VERSION + 1}", "newer", "upgrade aelab")
    with pytest.raises(CheckpointError):
        read_checkpoint_info(ckpt)


@pytest.mark.parametrize("version", ["missing", None, "1", 1.5, 0, -1, True])
def test_missing_or_invalid_format_version(ckpt: Path, version) -> None:
    def edit(info: dict) -> None:
        if version == "missing":
            del info["format_version"]
        else:
            info["format_version"] = version
    _edit_info(ckpt, edit)
    message = _refused(ckpt, str(ckpt / CONFIG_FILE), "format version")
    # a missing or nonsensical version is not "newer": telling the user to upgrade would mislead
    assert "newer" not in message


def test_weights_from_another_checkpoint(ckpt: Path, tmp_path: Path) -> None:
    config = model_config("simple", code_size=32)
    other = save_checkpoint(tmp_path / "other", build_model(config, seed=99), config)
    shutil.copy(other / WEIGHTS_FILE, ckpt / WEIGHTS_FILE)
    _refused(ckpt, str(ckpt / WEIGHTS_FILE), "checksum", "another checkpoint", "restore both files together")


@pytest.mark.parametrize("damage", ["half", "minus-one", "eight-bytes", "three-bytes", "empty", "garbage",
                                    "huge-header-length", "bad-header-json"])
@pytest.mark.parametrize("checksum", [True, False], ids=["with-checksum", "without-checksum"])
def test_truncated_or_corrupt_weights(ckpt: Path, damage: str, checksum: bool) -> None:
    blob = (ckpt / WEIGHTS_FILE).read_bytes()
    damaged = {"half": blob[: len(blob) // 2], "minus-one": blob[:-1], "eight-bytes": blob[:8],
               "three-bytes": blob[:3], "empty": b"", "garbage": os.urandom(200) + blob[200:],
               "huge-header-length": (2**62).to_bytes(8, "little") + blob[8:],
               "bad-header-json": blob[:8] + b"x" * (len(blob) - 8)}[damage]
    (ckpt / WEIGHTS_FILE).write_bytes(damaged)
    if checksum and damage in ("eight-bytes", "three-bytes", "empty", "garbage", "huge-header-length"):
        _refused(ckpt, str(ckpt / WEIGHTS_FILE), "no valid safetensors header")  # found before reading the rest
    elif checksum:
        _refused(ckpt, str(ckpt / WEIGHTS_FILE), "checksum")
    else:
        _edit_info(ckpt, _drop_checksum)  # now the safetensors parser has to notice
        _refused(ckpt, str(ckpt / WEIGHTS_FILE), "damaged")


def test_pickled_torch_file_is_refused_as_damaged(ckpt: Path, trained) -> None:
    torch.save(trained.model.state_dict(), ckpt / WEIGHTS_FILE)
    _edit_info(ckpt, _drop_checksum)
    _refused(ckpt, str(ckpt / WEIGHTS_FILE), "damaged")


def test_tensor_shape_that_does_not_fit_config(ckpt: Path) -> None:
    def edit(info: dict) -> None:
        info["model"]["code_size"] = 16
        _drop_checksum(info)
    _edit_info(ckpt, edit)
    _refused(ckpt, str(ckpt / WEIGHTS_FILE), "disagree", "layers.0.weight", "(32, 784)", "(16, 784)")


def test_missing_and_unexpected_tensors(ckpt: Path, trained) -> None:
    state = _state(trained.model)
    state["layers.9.weight"] = state.pop("layers.1.bias")
    _write_weights(ckpt, state)
    _refused(ckpt, str(ckpt / WEIGHTS_FILE), "disagree", "layers.1.bias", "layers.9.weight")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights(ckpt: Path, trained, bad: float) -> None:
    state = _state(trained.model)
    state["layers.1.weight"][3, 5] = bad
    _write_weights(ckpt, state)  # with a matching checksum: the NaN check itself must refuse it
    _refused(ckpt, str(ckpt / WEIGHTS_FILE), "layers.1.weight", "non-finite")


def test_integer_weights(ckpt: Path, trained) -> None:
    state = _state(trained.model)
    state["layers.0.bias"] = torch.zeros_like(state["layers.0.bias"], dtype=torch.int32)
    _write_weights(ckpt, state)
    _refused(ckpt, str(ckpt / WEIGHTS_FILE), "layers.0.bias", "non-float")


@pytest.mark.parametrize("model", [
    {"kind": "resnet", "input_shape": [28, 28], "code_size": 32, "hidden": []},
    {"kind": "simple", "input_shape": [28, 28], "code_size": -1, "hidden": []},
    {"kind": "simple", "input_shape": [28, 28], "code_size": 0, "hidden": []},
    {"kind": "simple", "input_shape": [28, 28], "code_size": "many", "hidden": []},
    {"kind": "deep", "input_shape": [28, 28], "code_size": 32, "hidden": [-3, 4]},
    {"kind": "simple", "input_shape": [1, 2, 28, 28], "code_size": 32, "hidden": []},
    {"kind": "simple", "input_shape": [0, 28], "code_size": 32, "hidden": []},
    {"kind": "simple", "input_shape": [28, 28], "code_size": 32, "hidden": [], "loss": "hinge"},
    {"kind": "simple", "input_shape": [28, 28], "code_size": 32, "hidden": [], "input_max": 0},
    {"kind": "simple", "code_size": 32},
    "simple",
    None,
], ids=["unknown-kind", "negative-code", "zero-code", "text-code", "negative-hidden", "4d-shape",
        "empty-shape", "unknown-loss", "zero-input-max", "no-shape", "string", "null"])
def test_invalid_model_description(ckpt: Path, model) -> None:
    def edit(info: dict) -> None:
        info["model"] = model
        _drop_checksum(info)
    _edit_info(ckpt, edit)
    _refused(ckpt, str(ckpt / CONFIG_FILE), "model")


def test_missing_model_description(ckpt: Path) -> None:
    _edit_info(ckpt, lambda i: i.pop("model"))
    _refused(ckpt, str(ckpt / CONFIG_FILE), "no valid model description")


def test_loading_never_unpickles(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_args, **_kwargs):
        raise AssertionError("loading a checkpoint must not unpickle anything")
    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, name, forbidden)
    loaded = load_checkpoint(trained.folder)
    assert torch.equal(loaded.model.state_dict()["layers.0.weight"], trained.model.state_dict()["layers.0.weight"])


# ------------------------------------------------------------------ writing


def test_unwritable_destination_raises_output_error(tmp_path: Path, trained) -> None:
    (tmp_path / "file").write_text("a regular file")
    config = trained.result.model_config
    with pytest.raises(OutputError) as exc:
        save_checkpoint(tmp_path / "file" / "ckpt", trained.model, config)
    assert str(tmp_path / "file" / "ckpt") in str(exc.value)
    assert (tmp_path / "file").read_text() == "a regular file"


def _old_checkpoint_intact(folder: Path, old_state: dict, old_info: dict) -> None:
    loaded = load_checkpoint(folder)
    assert loaded.info == old_info
    for name, t in old_state.items():
        assert torch.equal(loaded.model.state_dict()[name], t), name
    assert _leftovers(folder) == []


def test_unserialisable_metadata_leaves_the_old_checkpoint(ckpt: Path, trained) -> None:
    old_info, old_state = _info(ckpt), _state(trained.model)
    config = model_config("simple", code_size=32)
    with pytest.raises(TypeError):
        save_checkpoint(ckpt, build_model(config, seed=5), config, metrics={"bad": object()})
    _old_checkpoint_intact(ckpt, old_state, old_info)


@pytest.mark.parametrize("fail_at", [1, 2])
def test_failed_write_leaves_the_old_checkpoint(ckpt: Path, trained, monkeypatch: pytest.MonkeyPatch,
                                                fail_at: int) -> None:
    """A write that fails part-way (here: the disk refuses the n-th fsync) must not leave
    new weights beside the old config.json, nor half a file, nor temporary files."""
    old_info, old_state = _info(ckpt), _state(trained.model)
    config = model_config("simple", code_size=32)
    new_model = build_model(config, seed=5)
    real_fsync, calls = os.fsync, []

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == fail_at:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OutputError) as exc:
        save_checkpoint(ckpt, new_model, config)
    assert "No space left on device" in str(exc.value)
    monkeypatch.setattr(os, "fsync", real_fsync)
    _old_checkpoint_intact(ckpt, old_state, old_info)


@pytest.mark.parametrize("field, value", [("code_size", float("inf")), ("input_shape", [float("-inf"), 28]),
                                          ("hidden", [float("nan")]),
                                          ("input_shape", [2**28, 2**28])])  # storage size overflows int64
def test_infinite_or_nan_sizes_in_config_json_are_refused(ckpt: Path, field: str, value) -> None:
    """json writes inf as Infinity, which Python reads back; int(inf) raises OverflowError, not ValueError;
    a size whose tensor's byte count overflows makes torch raise RuntimeError."""
    info = _info(ckpt)
    info["model"][field] = value
    _write_info(ckpt, info)
    _refused(ckpt, str(ckpt / CONFIG_FILE), "no valid model description")


def test_a_config_json_describing_a_huge_model_is_refused_before_allocating_it(ckpt: Path) -> None:
    """Sizes in config.json that the weights do not have are found from shapes alone: building that
    model first (a terabyte here) would exhaust memory, which the fuzz test hit."""
    info = _info(ckpt)
    info["model"]["input_shape"], info["model"]["code_size"] = [1000, 1000], 1_000_000
    _write_info(ckpt, info)
    _refused(ckpt, str(ckpt / WEIGHTS_FILE), "disagree")


def test_an_undefined_metric_is_saved_as_null_so_config_json_stays_json(tmp_path: Path) -> None:
    """The R² of data without variance is NaN, which Python writes as a bare `NaN` that JSON readers refuse."""
    config = model_config("simple", input_shape=(5,), code_size=2)
    save_checkpoint(tmp_path / "m", build_model(config), config, metrics={"r2": float("nan"), "mse": 0.5})
    text = (tmp_path / "m" / CONFIG_FILE).read_text(encoding="utf-8")
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in config.json"))["metrics"] == \
        {"r2": None, "mse": 0.5}
    assert load_checkpoint(tmp_path / "m").info["metrics"]["r2"] is None


@pytest.mark.parametrize("edit, section", [(lambda c: c.update(data="t"), "data"),
                                           (lambda c: c["data"].update(options=["y"]), "data.options"),
                                           (lambda c: c.update(training="x"), "training")])
def test_a_config_json_whose_sections_are_not_objects_is_damaged(trained, tmp_path, edit, section):
    """An edited config.json whose data or training section was not an object gave an AttributeError or
    TypeError in whichever command read it first."""
    folder = tmp_path / "ced"
    shutil.copytree(trained.folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config["data"].setdefault("options", {})
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(aelab.AelabError, match=f"is damaged: {section} must be an object"):
        aelab.load_model(folder, "cpu")
