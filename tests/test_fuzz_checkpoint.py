"""Fuzzing the checkpoint and resume loaders: every damaged file loads correctly or raises CheckpointError.

``--fuzz-examples`` sets the count (default 300; e.g. 20000 for a thorough run).
"""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aelab.models.checkpoint import load_checkpoint
from aelab.errors import CheckpointError
from aelab.training.resume import load_training_state
from aelab.training.loop import TrainConfig

from test_fuzz_readers import _mutate, mutation


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True)
                           | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _paths(d, prefix=()):
    yield prefix
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _paths(v, prefix + (i,))


def _replace(d, path, value):
    if not path:
        return value
    d[path[0]] = _replace(d[path[0]], path[1:], value)
    return d


def _try_load(folder):
    try:
        ckpt = load_checkpoint(folder)
    except CheckpointError:
        return None
    # whatever loads must be a usable model
    out = ckpt.model(torch.zeros(1, ckpt.model_config.input_dim))
    assert out.shape == (1, ckpt.model_config.input_dim) and torch.isfinite(out).all()
    return ckpt


def test_fuzz_checkpoint_json(trained, tmp_path, fuzz_examples):
    original = json.loads((trained.folder / "config.json").read_text())
    paths = [p for p in _paths(original) if p]

    @_settings(fuzz_examples)
    @given(which=st.integers(0, len(paths) - 1), value=json_values, drop_checksum=st.booleans())
    def check(which, value, drop_checksum):
        folder = tmp_path / "ck"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(trained.folder, folder)
        info = _replace(json.loads(json.dumps(original)), paths[which], value)
        if drop_checksum and isinstance(info, dict):
            info.pop("weights_sha256", None)
        (folder / "config.json").write_text(json.dumps(info))
        _try_load(folder)
    check()


def test_fuzz_checkpoint_bytes(trained, tmp_path, fuzz_examples):
    weights = (trained.folder / "model.safetensors").read_bytes()
    config = (trained.folder / "config.json").read_bytes()
    unchecked = json.loads(config)
    unchecked.pop("weights_sha256")

    @_settings(fuzz_examples)
    @given(ops=st.lists(mutation, min_size=1, max_size=4), target=st.sampled_from(["weights", "config"]),
           drop_checksum=st.booleans())
    def check(ops, target, drop_checksum):
        folder = tmp_path / "ck"
        folder.mkdir(exist_ok=True)
        cfg = json.dumps(unchecked).encode() if drop_checksum else config
        (folder / "model.safetensors").write_bytes(_mutate(weights, ops) if target == "weights" else weights)
        (folder / "config.json").write_bytes(_mutate(cfg, ops) if target == "config" else cfg)
        _try_load(folder)
    check()


@pytest.fixture(scope="module")
def resume_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "resume.safetensors"
    from aelab.training.resume import TrainingState, save_training_state
    state = TrainingState(config=TrainConfig().to_dict(), data_sha256="0" * 64, minibatches_done=3,
                          model={"w": torch.ones(4, 3)}, optimizer_tensors={"variance": torch.zeros(12)},
                          optimizer_groups=[{"lr": 3e-5, "smoothed_count": 1.5}], table={"rows": []},
                          window={"loss": torch.tensor(1.0, dtype=torch.float64),
                                  "metric": torch.tensor(0.5, dtype=torch.float64)}, seconds=1.0)
    save_training_state(path, state)
    return path.read_bytes()


def test_fuzz_resume_file(resume_bytes, tmp_path, fuzz_examples):
    @_settings(fuzz_examples)
    @given(ops=st.lists(mutation, min_size=1, max_size=4))
    def check(ops):
        path = tmp_path / "resume.safetensors"
        path.write_bytes(_mutate(resume_bytes, ops))
        try:
            load_training_state(path)
        except CheckpointError:
            pass
    check()
