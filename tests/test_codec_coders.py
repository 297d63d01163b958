"""The entropy coder registry (aelab.codec.coders): every coder round-trips symbols, its identity
(header id, cache stem, predictor) comes from its Coder, the registry drives `--coder`'s choices and
help, and `aelab compress` / `decompress` load the model and read the file once.

Tables come from the shipped mnist-codec's packaged codec.safetensors: nothing is learned here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import aelab.api
from aelab.cli import main
from aelab.codec import api as codec
import aelab.models.checkpoint
from aelab.codec import coders, tables
from aelab.codec.format import CODER_IDS, HEADER
from aelab.data import load_dataset
from aelab.errors import DataError, OptionError
from aelab.models.inference import encode

CHECKPOINT = Path(__file__).parents[1] / "src" / "aelab" / "models" / "pretrained" / "mnist-codec"
GOLDEN = Path(__file__).parent / "data" / "golden"
BITS = 6  # the packaged tables hold every coder's at 6 and 7 bits


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "user-cache"))


@pytest.fixture(scope="module")
def symbols() -> np.ndarray:
    """The quantised codes of 50 test images (the plain table's quantiser: every coder's is the same)."""
    ckpt = aelab.models.checkpoint.cpu_checkpoint(CHECKPOINT)
    codes = encode(ckpt.model, load_dataset().test.images[:50])
    return codec.quantise(codes, codec.codec_table(ckpt, BITS, "transform"))


@pytest.mark.parametrize("name", list(coders.CODERS))
def test_every_registered_coder_round_trips_symbols(name, symbols):
    coder = coders.CODERS[name]
    table = codec.codec_table(CHECKPOINT, BITS, "transform", coder=name)
    assert (table.predictor is not None) == coder.predictive
    assert table.predictor is None or table.predictor.has_spread == coder.spread
    for count in (len(symbols), 1, 0):
        payload = coder.encode(symbols[:count], table)
        np.testing.assert_array_equal(coder.decode(payload, count, table), symbols[:count])


@pytest.mark.parametrize("name", list(coders.CODERS))
def test_a_coder_refuses_a_payload_for_another_count(name, symbols):
    coder = coders.CODERS[name]
    table = codec.codec_table(CHECKPOINT, BITS, "transform", coder=name)
    payload = coder.encode(symbols, table)
    with pytest.raises(DataError, match="damaged .aez file"):
        coder.decode(payload, len(symbols) * 1000, table)


def test_the_registry_and_the_header_agree():
    assert list(coders.CODERS) == list(CODER_IDS)
    assert all(c.id == CODER_IDS[name] and c.name == name for name, c in coders.CODERS.items())
    assert len({c.id for c in coders.CODERS.values()}) == len(coders.CODERS)
    assert coders.PREDICTIVE_CODERS == ("range-ar", "range-ctx")
    assert codec.CODERS is coders.CODERS and aelab.api.CODERS is coders.CODERS
    for name in coders.CODERS:  # the golden files' coder byte is the coder's id
        blob = (GOLDEN / f"{name}-checkpoint.aez").read_bytes()
        assert HEADER.unpack_from(blob)[2] == coders.CODERS[name].id
        assert codec.read_header(blob).coder == name


def test_cache_stems_are_the_ones_in_the_format_and_the_shipped_tables():
    """docs/format.md names the stems Q.bB., Q.arB., Q.ctxB.; the shipped file holds every coder's."""
    stems = {name: c.cache_prefix("transform", BITS) for name, c in coders.CODERS.items()}
    assert stems == {"range": "transform.b6.", "zlib": "transform.b6.", "range-ar": "transform.ar6.",
                     "range-ctx": "transform.ctx6."}
    from safetensors import safe_open
    with safe_open(str(CHECKPOINT / codec.CACHE_FILE), framework="numpy") as f:
        keys = set(f.keys())
    for name, coder in coders.CODERS.items():
        assert stems[name] + "freq" in keys
        assert (stems[name] + "predictor.w1" in keys) == coder.predictive
        assert (stems[name] + "predictor.edges" in keys) == coder.spread
        assert codec.has_cached_table(CHECKPOINT, BITS, "transform", coder=name)


def test_tables_are_written_under_the_stems_they_are_read_from():
    """What the cache writer makes of each coder's table is the packaged file's tensors, name for name."""
    from safetensors import safe_open
    with safe_open(str(CHECKPOINT / codec.CACHE_FILE), framework="numpy") as f:
        packaged = {k: f.get_tensor(k) for k in f.keys()}
    for name, coder in coders.CODERS.items():
        written = tables._table_tensors(codec.codec_table(CHECKPOINT, BITS, "transform", coder=name), coder)
        stem = coder.cache_prefix("transform", BITS)
        assert set(written) == {k for k in packaged if k.startswith(stem)} | {"transform.mean", "transform.matrix"}
        for key, value in written.items():
            np.testing.assert_array_equal(value, packaged[key])


def test_coder_for_maps_the_table_flags_and_names():
    assert coders.coder_for() is coders.CODERS["range"]
    assert coders.coder_for(predictive=True) is coders.CODERS["range-ar"]
    assert coders.coder_for(spread=True) is coders.CODERS["range-ctx"]
    assert coders.coder_for(predictive=True, spread=True) is coders.CODERS["range-ctx"]
    assert coders.coder_for("zlib") is coders.CODERS["zlib"]
    assert coders.coder_for(coders.CODERS["range-ar"]) is coders.CODERS["range-ar"]
    with pytest.raises(OptionError, match="unknown coder 'ans'"):
        coders.coder_for("ans")


def test_learning_notice_comes_from_the_coder():
    assert coders.CODERS["range"].learning_notice(7) is None and coders.CODERS["zlib"].learning_notice(7) is None
    assert coders.CODERS["range-ar"].learning_notice(7).startswith(
        "Learning the range-ar coder's predictor for 7 bits")
    assert "about 70 seconds" in coders.CODERS["range-ctx"].learning_notice(5)


def _compress_help(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_the_coder_option_shows_the_registry(capsys):
    """--help lists every registered coder with its description, in the registry's order, and no other
    (the parser's light copy, aelab.cli_choices, must follow the registry)."""
    shown = _compress_help(capsys)
    assert f"--coder {{{','.join(coders.CODERS)}}}" in shown
    for coder in coders.CODERS.values():
        assert f"{coder.name}: {' '.join(coder.description.split())}" in shown


def _count_calls(monkeypatch, module, name: str, counter: list) -> None:
    original = getattr(module, name)

    def counted(*args, **kwargs):
        counter.append(name)
        return original(*args, **kwargs)
    monkeypatch.setattr(module, name, counted)


@pytest.mark.parametrize("name", ["range-ar", "range"])
def test_cli_decompress_reads_the_file_and_loads_the_model_once(name, tmp_path, monkeypatch, capsys):
    loads, headers = [], []
    _count_calls(monkeypatch, aelab.models.checkpoint, "load_checkpoint", loads)
    for module in (codec, aelab.api):
        _count_calls(monkeypatch, module, "read_header", headers)
    out = tmp_path / "o.npz"
    assert main(["decompress", str(GOLDEN / f"{name}-checkpoint.aez"), "--checkpoint", str(CHECKPOINT),
                 "-o", str(out)]) == 0
    assert (len(loads), len(headers)) == (1, 1)
    assert np.load(out)["images"].shape == (20, 28, 28)
    assert "Learning" not in capsys.readouterr().err  # the shipped tables are cached


def test_cli_compress_loads_the_model_once(tmp_path, monkeypatch):
    loads = []
    _count_calls(monkeypatch, aelab.models.checkpoint, "load_checkpoint", loads)
    images = tmp_path / "x.npz"
    np.savez(images, images=load_dataset().test.images[:20])
    out = tmp_path / "x.aez"
    assert main(["compress", str(images), "--checkpoint", str(CHECKPOINT), "-o", str(out), "--coder", "range-ctx"]) == 0
    assert len(loads) == 1
    assert out.read_bytes() == (GOLDEN / "range-ctx-checkpoint.aez").read_bytes()


def test_decompress_logs_the_notice_only_when_it_learns(tmp_path, monkeypatch):
    """The notice comes from the checkpoint's tables at the moment they would learn, through ``log``."""
    lines: list[str] = []
    codec.decompress(GOLDEN / "range-ar-checkpoint.aez", CHECKPOINT, tmp_path / "a.npz", log=lines.append)
    assert lines == []

    real = tables._table_from_tensors  # as if the checkpoint stored no range-ar table
    monkeypatch.setattr(tables, "_table_from_tensors", lambda t, q, b, c: None if c.predictive else real(t, q, b, c))
    monkeypatch.setattr(tables, "_training_codes", lambda *a, **k: np.zeros((2, 32)))

    def refuse(*args, **kwargs):
        raise RuntimeError("stop before learning")
    monkeypatch.setattr(tables, "fit_predictive_table", refuse)
    with pytest.raises(RuntimeError, match="stop before learning"):
        codec.decompress(GOLDEN / "range-ar-checkpoint.aez", CHECKPOINT, tmp_path / "b.npz", log=lines.append)
    assert lines[-1] == coders.CODERS["range-ar"].learning_notice(BITS)
