"""The learned codec (aelab.codec.api, `aelab compress` / `aelab decompress`): round trips, the quantiser's
error bound, every refusal, the CLI's output formats and atomic output.

The checkpoint is a copy of the session's tiny trained model (so the codec's cached tables never touch
the shared fixture); its probability tables are learned once from the tiny training data.
"""
from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from aelab.codec import api as codec
from aelab.codec import coders as codec_coders
from aelab.codec import quantiser as codec_quantiser
from aelab.codec import tables as codec_tables
from aelab.models.checkpoint import load_checkpoint, save_checkpoint
from aelab.cli import main
from aelab.data import load_images
from aelab.errors import CheckpointError, DataError, OptionError, OutputError
from aelab.models.inference import encode

BITS_USED = (2, 4, 6)


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    """Tables that cannot go into a checkpoint folder go here, not into ~/.cache."""
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "user-cache"))


@pytest.fixture(scope="module")
def ckpt(trained, tiny_npz, tmp_path_factory) -> Path:
    """A copy of the trained checkpoint with tables for BITS_USED and both quantisers stored."""
    folder = Path(shutil.copytree(trained.folder, tmp_path_factory.mktemp("codec") / "model"))
    codec.save_tables(folder, bits=BITS_USED, data=tiny_npz)
    return folder


@pytest.fixture(scope="module")
def images(trained) -> np.ndarray:
    return trained.data.test.images[:60]


@pytest.fixture(scope="module")
def blob(ckpt, images) -> bytes:
    return codec.encode_bytes(images, ckpt)


def _rewrite(blob: bytes, **fields) -> bytes:
    """``blob`` with header fields replaced and both checksums recomputed (a well-formed file)."""
    names = ["magic", "version", "coder", "table", "bits", "h", "w", "count", "code_size", "quantiser", "reserved",
             "fingerprint", "digest", "table_len", "payload_len", "symbols_crc", "crc"]
    values = dict(zip(names, codec.HEADER.unpack_from(blob)))
    values.update(fields)
    head = codec.HEADER.pack(*(values[n] for n in names))
    body = blob[codec.HEADER.size:]
    crc = zlib.crc32(body, zlib.crc32(head[:-4]))
    return head[:-4] + struct.pack("<I", crc) + body


def _other_model(ckpt: Path, dest: Path) -> Path:
    """The same architecture with slightly different weights: another fingerprint."""
    c = load_checkpoint(ckpt)
    with torch.no_grad():
        next(c.model.parameters()).add_(1e-3)
    return save_checkpoint(dest, c.model, c.model_config, data=c.info["data"], training=c.info["training"])


# --- round trips -------------------------------------------------------------------------------------

@pytest.mark.parametrize("quantiser", ["transform", "uniform"])
@pytest.mark.parametrize("table", ["checkpoint", "embedded"])
@pytest.mark.parametrize("coder", ["range", "zlib"])
def test_round_trip_is_deterministic(ckpt, images, quantiser, table, coder):
    first = codec.encode_bytes(images, ckpt, 6, quantiser=quantiser, table=table, coder=coder)
    assert codec.encode_bytes(images, ckpt, 6, quantiser=quantiser, table=table, coder=coder) == first
    decoded = codec.decode_bytes(first, ckpt)
    assert decoded.shape == images.shape and decoded.dtype == np.uint8
    assert np.array_equal(codec.decode_bytes(first, ckpt), decoded)
    header = codec.read_header(first)
    assert (header.count, header.bits, header.quantiser, header.table, header.coder) == \
        (len(images), 6, quantiser, table, coder)
    assert header.image_shape == (28, 28) and header.code_size == 32
    assert header.fingerprint == codec.fingerprint(ckpt)
    assert header.file_bytes == len(first) == codec.HEADER.size + header.table_bytes + header.payload_bytes
    assert (header.table_bytes > 0) == (table == "embedded")


def test_symbols_survive_exactly(ckpt, images, blob):
    table = codec.codec_table(ckpt, codec.DEFAULT_BITS, codec.DEFAULT_QUANTISER)
    expected = codec.dequantise(codec.quantise(encode(load_checkpoint(ckpt).model, images), table), table)
    assert np.array_equal(codec.decode_codes(blob, ckpt), expected)


def test_more_bits_cost_more_and_decode_closer(ckpt, images):
    from aelab.models.inference import reconstruct
    target = np.rint(reconstruct(load_checkpoint(ckpt).model, images) * 255)
    sizes, errors = [], []
    for bits in BITS_USED:
        blob = codec.encode_bytes(images, ckpt, bits, quantiser="uniform")
        sizes.append(len(blob))
        errors.append(np.abs(codec.decode_bytes(blob, ckpt).astype(float) - target).mean())
    assert sizes == sorted(sizes) and errors == sorted(errors, reverse=True)
    assert errors[-1] < 2.0  # 6 bits: within a couple of grey levels of the unquantised model


def test_accepts_flat_rows_and_float_pixels(ckpt, images, blob):
    assert codec.encode_bytes(images.reshape(len(images), -1), ckpt) == blob
    assert codec.encode_bytes(images.astype(np.float32), ckpt) == blob


def test_no_images(ckpt):
    empty = codec.encode_bytes(np.zeros((0, 28, 28), np.uint8), ckpt)
    assert codec.read_header(empty).count == 0
    assert codec.decode_bytes(empty, ckpt).shape == (0, 28, 28)


def test_loaded_checkpoint_works_like_a_folder(ckpt, images, blob):
    loaded = load_checkpoint(ckpt)
    assert codec.encode_bytes(images, loaded) == blob
    assert np.array_equal(codec.decode_bytes(blob, loaded), codec.decode_bytes(blob, ckpt))


# --- the quantiser -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [2, 5, 8, 16])
def test_uniform_quantiser_error_is_at_most_half_a_step(bits):
    rng = np.random.default_rng(bits)
    codes = np.maximum(rng.normal(1.0, 2.0, size=(400, 5)), 0).astype(np.float32)  # ReLU-like: many zeros
    codes[:, 4] = 3.0  # a constant dimension
    table = codec.fit_table(codes, bits, "uniform")
    symbols = codec.quantise(codes, table)
    assert symbols.min() >= 0 and (symbols < table.levels).all()
    error = np.abs(codec.dequantise(symbols, table) - codes)
    step = (codes.max(axis=0) - codes.min(axis=0)) / (2 ** bits - 1)
    assert (error <= step / 2 + 1e-5 * (1 + np.abs(codes))).all()
    assert (codec.dequantise(symbols, table)[:, 4] == 3.0).all()
    assert (symbols[codes[:, 0] == 0, 0] == 0).all()  # the exact zeros are the zero bucket
    # outside the range: clipped to the end levels
    outside = np.array([[-5.0] * 5, [50.0] * 5], np.float32)
    q = codec.quantise(outside, table)
    assert (q[0] == 0).all() and (q[1, :4] == 2 ** bits - 1).all()


@pytest.fixture(scope="module")
def transform_fit(ckpt, trained):
    """Training codes and the transform learned from them (once: it costs ~0.5 s)."""
    model = load_checkpoint(ckpt).model
    codes = encode(model, trained.data.train.images[:2000])
    table = codec.fit_table(codes, 6, "transform", model=model)
    return codes, (table.mean, table.matrix)


@pytest.mark.parametrize("bits", [2, 6, 12])
def test_transform_quantiser_error_is_at_most_half_a_step_per_component(transform_fit, bits):
    codes, transform = transform_fit
    table = codec.fit_table(codes, bits, "transform", transform=transform)
    assert table.levels.max() <= 2 ** bits
    step = float(table.step.max())
    assert np.allclose(table.step[table.levels > 1], step)
    symbols = codec.quantise(codes, table)
    y = codec.components(codes, table)
    back = codec.components(codec.dequantise(symbols, table), table)
    assert (np.abs(back - y) <= step / 2 + 1e-4 * (1 + np.abs(y))).all()


def test_tables_are_stored_in_the_checkpoint_with_their_checksum(ckpt, tiny_npz, tmp_path):
    import hashlib
    import json
    from safetensors import safe_open
    stored = ckpt / codec.CACHE_FILE
    with safe_open(str(stored), framework="numpy") as f:
        assert f.metadata()["fingerprint"] == codec.fingerprint(ckpt)
        assert {"uniform.b6.freq", "transform.b6.freq", "transform.matrix"} <= set(f.keys())
    record = json.loads((ckpt / "config.json").read_text())["codec"]
    assert record["sha256"] == hashlib.sha256(stored.read_bytes()).hexdigest()
    table = codec.codec_table(ckpt, 6, "uniform")  # no data needed: read from the checkpoint
    bare = Path(shutil.copytree(ckpt, tmp_path / "bare", ignore=shutil.ignore_patterns(codec.CACHE_FILE)))
    assert table.digest == codec.codec_table(bare, 6, "uniform", data=tiny_npz).digest  # learned again: the same
    assert not (bare / codec.CACHE_FILE).exists()  # and not written
    assert table.freq.min() >= 0 and (table.freq[:, :1].sum() > 0)


def test_a_table_is_learned_from_codes_computed_on_one_thread_whatever_the_callers_count(ckpt, tiny_npz, tmp_path,
                                                                                          monkeypatch):
    """A file compressed with a learned table (9 bits: none stored) at OMP_NUM_THREADS=1 was refused by
    decompress at the default thread count: the codes' sums, and with them the table, came out otherwise."""
    import torch
    from aelab.models import inference
    bare = Path(shutil.copytree(ckpt, tmp_path / "bare", ignore=shutil.ignore_patterns(codec.CACHE_FILE)))
    real, seen = inference.encode, []

    def encode(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)
    monkeypatch.setattr(inference, "encode", encode)
    before = torch.get_num_threads()
    digests = set()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            digests.add(codec.codec_table(bare, 9, "uniform", data=tiny_npz).digest)
        finally:
            torch.set_num_threads(before)
    assert seen == [1, 1] and len(digests) == 1


def test_a_tables_file_of_another_model_is_ignored(ckpt, tiny_npz, tmp_path):
    other = _other_model(ckpt, tmp_path / "other")
    shutil.copy(ckpt / codec.CACHE_FILE, other / codec.CACHE_FILE)  # stale: the fingerprint differs
    with pytest.raises(CheckpointError, match="--data"):
        codec.codec_table(other, 6, "uniform")
    before = (other / codec.CACHE_FILE).read_bytes()
    codec.codec_table(other, 6, "uniform", data=tiny_npz)
    assert (other / codec.CACHE_FILE).read_bytes() == before


def test_a_tables_file_that_config_json_does_not_vouch_for_is_refused(ckpt, images, blob, tmp_path):
    folder = Path(shutil.copytree(ckpt, tmp_path / "copy"))
    with open(folder / codec.CACHE_FILE, "ab") as f:
        f.write(b" ")
    with pytest.raises(CheckpointError, match="does not match config.json"):
        codec.decode_bytes(blob, folder)


def test_save_tables_packages_a_model(ckpt, images, blob, tiny_npz, tmp_path, monkeypatch):
    folder = Path(shutil.copytree(ckpt, tmp_path / "package", ignore=shutil.ignore_patterns(codec.CACHE_FILE)))
    path = codec.save_tables(folder, bits=(4, 6), data=tiny_npz)
    assert path == folder / codec.CACHE_FILE
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "empty-cache"))
    assert np.array_equal(codec.decode_bytes(blob, folder), codec.decode_bytes(blob, ckpt))  # no data needed
    with pytest.raises(CheckpointError, match="training data"):
        codec.codec_table(folder, 3)


def test_save_tables_packages_the_range_ar_tables_too(ckpt, images, tiny_npz, tmp_path, monkeypatch):
    folder = Path(shutil.copytree(ckpt, tmp_path / "package", ignore=shutil.ignore_patterns(codec.CACHE_FILE)))
    codec.save_tables(folder, bits=(6,), quantisers=("transform",), data=tiny_npz, predictive=True)
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "empty-cache"))
    assert codec.has_cached_table(folder, 6, "transform", predictive=True)
    assert not codec.has_cached_table(folder, 4, "transform", predictive=True)
    blob = codec.encode_bytes(images, folder, 6, coder="range-ar")  # no training data needed either way
    np.testing.assert_array_equal(codec.decode_bytes(blob, folder), codec.decode_bytes(
        codec.encode_bytes(images, folder, 6), folder))


# --- refusals ----------------------------------------------------------------------------------------------

def test_another_models_file_is_refused(ckpt, images, blob, tmp_path):
    other = _other_model(ckpt, tmp_path / "other")
    with pytest.raises(CheckpointError, match="another model") as e:
        codec.decode_bytes(blob, other)
    assert e.value.hint and "checkpoint" in e.value.hint


def test_a_newer_version_is_refused(ckpt, blob):
    newer = blob[:4] + bytes([codec.VERSION + 1]) + blob[5:]
    with pytest.raises(DataError, match="newer") as e:
        codec.decode_bytes(newer, ckpt)
    assert "upgrade" in e.value.hint


@pytest.mark.parametrize("data", [b"", b"AEZ", b"PK\x03\x04" + b"\0" * 100, b"\x89PNG\r\n\x1a\n" + b"\0" * 100])
def test_bad_magic_is_refused(ckpt, data):
    with pytest.raises(DataError, match="not an aelab .aez file"):
        codec.decode_bytes(data, ckpt)


@pytest.mark.parametrize("cut", [6, 40, -1, -5])
def test_a_truncated_file_is_refused(ckpt, blob, cut):
    with pytest.raises(DataError, match="truncated"):
        codec.decode_bytes(blob[:cut], ckpt)


def test_damage_is_refused(ckpt, blob):
    for position in (codec.HEADER.size + 1, len(blob) - 1, 7, 20):  # payload, header fields, fingerprint
        damaged = bytearray(blob)
        damaged[position] ^= 0x10
        with pytest.raises(DataError, match="checksum"):
            codec.decode_bytes(bytes(damaged), ckpt)
    with pytest.raises(DataError, match="unexpected bytes"):
        codec.decode_bytes(blob + b"\0", ckpt)


def test_a_payload_that_decodes_to_other_symbols_is_refused(ckpt, blob):
    """Well-formed files (checksums recomputed) whose payload no longer gives the recorded symbols."""
    header = codec.read_header(blob)
    with pytest.raises(DataError, match="symbols fail their checksum"):
        codec.decode_bytes(_rewrite(blob, symbols_crc=header.symbols_crc32 ^ 1), ckpt)
    for position in (0, 5, header.payload_bytes // 2):
        body = bytearray(blob[codec.HEADER.size:])
        body[position] ^= 0xFF
        with pytest.raises(DataError, match="does not decode|symbols fail their checksum"):
            codec.decode_bytes(_rewrite(blob[:codec.HEADER.size] + bytes(body)), ckpt)


def test_a_different_probability_table_is_refused(ckpt, images, blob, tmp_path):
    from safetensors.numpy import load_file, save
    from safetensors import safe_open
    from aelab.models.checkpoint import write_tables_file
    folder = Path(shutil.copytree(ckpt, tmp_path / "copy"))
    tensors = load_file(folder / codec.CACHE_FILE)
    with safe_open(str(folder / codec.CACHE_FILE), framework="numpy") as f:
        meta = f.metadata()
    key = f"{codec.DEFAULT_QUANTISER}.b{codec.DEFAULT_BITS}.freq"
    tensors[key] = tensors[key].copy()
    tensors[key][0, 0] += 1
    write_tables_file(folder, save(tensors, metadata=meta), {"format": meta["format"]})
    with pytest.raises(CheckpointError, match="probability table") as e:
        codec.decode_bytes(blob, folder)
    assert codec.CACHE_FILE in e.value.hint


def test_missing_training_data_is_explained(ckpt, images, tmp_path):
    folder = Path(shutil.copytree(ckpt, tmp_path / "bare", ignore=shutil.ignore_patterns(codec.CACHE_FILE)))
    with pytest.raises(CheckpointError, match="training data") as e:
        codec.encode_bytes(images, folder)
    assert "aelab codec fit" in e.value.hint and "--data" in e.value.hint and "embedded" in e.value.hint
    # the embedded table needs no training data
    blob = codec.encode_bytes(images, folder, table="embedded")
    assert codec.decode_bytes(blob, folder).shape == images.shape


def test_other_training_data_is_refused(ckpt, images, tmp_path):
    from helpers import synthetic
    folder = Path(shutil.copytree(ckpt, tmp_path / "bare", ignore=shutil.ignore_patterns(codec.CACHE_FILE)))
    with pytest.raises(DataError, match="not the data this model was trained on"):
        codec.encode_bytes(images, folder, data=synthetic())


@pytest.mark.parametrize("bits", [0, 1, 17, 64, -3, True, 2.5, "6", None])
def test_bits_out_of_range_are_refused(ckpt, images, bits, tmp_path):
    with pytest.raises(OptionError, match="bits"):
        codec.encode_bytes(images, ckpt, bits)
    with pytest.raises(OptionError, match="bits"):
        codec.compress(images, ckpt, tmp_path / "x.aez", bits)
    assert not (tmp_path / "x.aez").exists()


@pytest.mark.parametrize("option", [{"quantiser": "vq"}, {"table": "file"}, {"coder": "ans"}])
def test_unknown_options_are_refused(ckpt, images, option):
    with pytest.raises(OptionError, match="unknown"):
        codec.encode_bytes(images, ckpt, **option)


@pytest.mark.parametrize("shape", [(5, 27, 28), (5, 28 * 27), (5, 2, 28, 28)])
def test_images_of_the_wrong_size_are_refused(ckpt, shape):
    with pytest.raises(DataError, match="do not fit this model"):
        codec.encode_bytes(np.zeros(shape, np.uint8), ckpt)


def test_out_of_range_pixels_are_refused(ckpt):
    with pytest.raises(DataError, match="0..255"):
        codec.encode_bytes(np.full((2, 28, 28), 300.0), ckpt)


def test_a_header_that_does_not_fit_the_model_is_refused(ckpt, blob):
    with pytest.raises(DataError, match="does not fit the model"):
        codec.decode_bytes(_rewrite(blob, code_size=16), ckpt)
    with pytest.raises(DataError, match="unknown coder"):
        codec.decode_bytes(_rewrite(blob, coder=9), ckpt)


# --- files and the CLI ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, fmt", [
    ("out.npz", "npz"), ("OUT.NPZ", "npz"), ("t10k-images-idx3-ubyte", "idx"), ("x.idx3-ubyte", "idx"),
    ("x.idx", "idx"), ("x.idx.gz", "idx.gz"), ("t10k-images-idx3-ubyte.gz", "idx.gz"), ("pngs", "png"),
    ("out/digits", "png")])
def test_output_format_rule(name, fmt):
    assert codec.output_format(name) == fmt


@pytest.mark.parametrize("name", ["x.png", "x.npy", "x.gz", "x.aez", "codes.csv"])
def test_output_names_that_look_like_other_files_are_refused(name):
    with pytest.raises(OptionError, match="cannot tell"):
        codec.output_format(name)


def test_cli_compress_and_decompress_to_every_format(ckpt, tiny_npz, tmp_path, capsys):
    aez = tmp_path / "digits.aez"
    assert main(["compress", str(tiny_npz), "--checkpoint", str(ckpt), "-o", str(aez)]) == 0
    assert "bytes/image" in capsys.readouterr().out
    expected = codec.decode_bytes(aez.read_bytes(), ckpt)
    assert len(expected) == 200  # tiny_npz's x_test
    outputs = {"pngs": tmp_path / "pngs", "idx": tmp_path / "out-images-idx3-ubyte",
               "idx.gz": tmp_path / "out.idx.gz", "npz": tmp_path / "out.npz"}
    for fmt, out in outputs.items():
        assert main(["decompress", str(aez), "--checkpoint", str(ckpt), "-o", str(out)]) == 0
        assert "Decompressed 200 images" in capsys.readouterr().out
        assert np.array_equal(load_images(out)[0], expected), fmt
    assert len(list(outputs["pngs"].glob("img-*.png"))) == 200
    assert (outputs["pngs"] / "img-00000.png").is_file()
    with np.load(outputs["npz"]) as npz:
        assert list(npz.keys()) == ["images"]
    with open(outputs["idx.gz"], "rb") as f:
        assert f.read(2) == b"\x1f\x8b"


def test_cli_options(ckpt, tiny_npz, tmp_path, capsys):
    aez = tmp_path / "d.aez"
    assert main(["compress", str(tiny_npz), "--checkpoint", str(ckpt), "-o", str(aez), "--bits", "4",
                 "--quantiser", "uniform", "--table", "embedded", "--coder", "zlib"]) == 0
    header = codec.read_header(aez.read_bytes())
    assert (header.bits, header.quantiser, header.table, header.coder) == (4, "uniform", "embedded", "zlib")
    capsys.readouterr()
    # a checkpoint folder without stored tables, trained on data that is not bundled: --data
    bare = Path(shutil.copytree(ckpt, tmp_path / "bare", ignore=shutil.ignore_patterns(codec.CACHE_FILE)))
    assert main(["compress", str(tiny_npz), "--checkpoint", str(bare), "-o", str(aez)]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["compress", str(tiny_npz), "--checkpoint", str(bare), "-o", str(aez), "--data", str(tiny_npz),
                 "--quantiser", "uniform"]) == 0


def test_cli_defaults_are_the_apis():
    from aelab.cli import build_parser
    args = build_parser().parse_args(["compress", "in", "--checkpoint", "c", "-o", "x.aez"])
    assert (args.bits, args.quantiser, args.table) == (codec.DEFAULT_BITS, codec.DEFAULT_QUANTISER, "checkpoint")


def test_cli_refusals_exit_2(ckpt, tiny_npz, tmp_path, capsys):
    aez = tmp_path / "d.aez"
    assert main(["compress", str(tiny_npz), "--checkpoint", str(ckpt), "-o", str(aez), "--bits", "17"]) == 2
    assert "bits" in capsys.readouterr().err and not aez.exists()
    assert main(["compress", str(tiny_npz), "--checkpoint", str(ckpt), "-o", str(aez)]) == 0
    capsys.readouterr()
    assert main(["decompress", str(aez), "--checkpoint", str(ckpt), "-o", str(tmp_path / "x.png")]) == 2
    assert "cannot tell" in capsys.readouterr().err
    other = _other_model(ckpt, tmp_path / "other")
    assert main(["decompress", str(aez), "--checkpoint", str(other), "-o", str(tmp_path / "o.npz")]) == 2
    assert "another model" in capsys.readouterr().err and not (tmp_path / "o.npz").exists()
    assert main(["decompress", str(tmp_path / "missing.aez"), "--checkpoint", str(ckpt), "-o",
                 str(tmp_path / "o.npz")]) == 2
    assert "not found" in capsys.readouterr().err


def test_compress_reads_image_files(ckpt, images, tmp_path):
    from aelab.data.images import save_pngs
    folder = tmp_path / "in"
    save_pngs(folder, images[:7])
    result = codec.compress(folder, ckpt, tmp_path / "p.aez")
    assert result["count"] == 7 and result["bytes"] == (tmp_path / "p.aez").stat().st_size
    assert result["bytes_per_image"] == pytest.approx(result["bytes"] / 7)
    assert (tmp_path / "p.aez").read_bytes() == codec.encode_bytes(images[:7], ckpt)


# --- atomic output -----------------------------------------------------------------------------------------

def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_failed_compress_leaves_no_file(ckpt, tmp_path):
    out = tmp_path / "x.aez"
    with pytest.raises(DataError):
        codec.compress(np.zeros((3, 10, 10), np.uint8), ckpt, out)
    assert not out.exists() and _leftovers(tmp_path) == []
    out.write_bytes(b"old")
    with pytest.raises(DataError):
        codec.compress(np.zeros((3, 10, 10), np.uint8), ckpt, out)
    assert out.read_bytes() == b"old"


def test_a_failed_decompress_leaves_no_output(ckpt, blob, tmp_path, monkeypatch):
    aez = tmp_path / "d.aez"
    aez.write_bytes(blob)
    damaged = tmp_path / "bad.aez"
    damaged.write_bytes(blob[:-3])
    for out in ("o.npz", "o-idx3-ubyte", "pngs"):
        with pytest.raises(DataError):
            codec.decompress(damaged, ckpt, tmp_path / out)
        assert not (tmp_path / out).exists()
    # PNG writing that fails half-way: no folder, no temporary folder
    import aelab.data.images
    calls = {"n": 0}
    real = aelab.data.images.save_png

    def flaky(path, image):
        calls["n"] += 1
        if calls["n"] == 10:
            raise OSError(28, "No space left on device")
        return real(path, image)

    monkeypatch.setattr(aelab.data.images, "save_png", flaky)
    with pytest.raises(OutputError, match="No space"):
        codec.decompress(aez, ckpt, tmp_path / "pngs")
    assert not (tmp_path / "pngs").exists() and _leftovers(tmp_path) == []


def test_decompress_into_a_non_empty_folder_is_refused(ckpt, blob, tmp_path):
    aez = tmp_path / "d.aez"
    aez.write_bytes(blob)
    out = tmp_path / "pngs"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(OutputError, match="not an empty folder"):
        codec.decompress(aez, ckpt, out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert codec.decompress(aez, ckpt, empty)["count"] == 60
    assert len(list(empty.iterdir())) == 60


# --- precision ---------------------------------------------------------------------------------------

def test_bf16_files_decode_with_either_precision(ckpt, images, blob):
    fast = codec.encode_bytes(images, ckpt, precision="bf16")
    assert codec.read_header(fast).count == len(images)
    assert fast == codec.encode_bytes(images, ckpt, precision="bf16")  # deterministic too
    exact = codec.decode_bytes(blob, ckpt)
    for file in (fast, blob):
        a = codec.decode_bytes(file, ckpt).astype(np.int16)
        b = codec.decode_bytes(file, ckpt, precision="bf16").astype(np.int16)
        assert np.abs(a - b).max() <= 8  # the codes are exact; the decoder's arithmetic differs
    # the bf16 encoder rounds a code into a neighbouring bin now and then; the images stay as close
    assert np.abs(codec.decode_bytes(fast, ckpt).astype(np.int16) - exact).mean() < 2.0


def test_an_unknown_precision_is_refused(ckpt, images, blob):
    with pytest.raises(OptionError, match="precision"):
        codec.encode_bytes(images, ckpt, precision="fp8")
    with pytest.raises(OptionError, match="precision"):
        codec.decode_bytes(blob, ckpt, precision="half")


def test_cli_takes_the_precision(ckpt, images, tmp_path, capsys):
    from aelab.data import Dataset, Split, save_dataset
    data = save_dataset(Dataset(name="x", train=Split(images, None), test=Split(images, None), sha256="0" * 64),
                        tmp_path / "x.npz", "npz")
    assert main(["compress", str(data), "--checkpoint", str(ckpt), "-o", str(tmp_path / "a.aez"),
                 "--precision", "bf16"]) == 0
    assert main(["decompress", str(tmp_path / "a.aez"), "--checkpoint", str(ckpt), "-o", str(tmp_path / "a.npz"),
                 "--precision", "bf16"]) == 0
    with np.load(tmp_path / "a.npz") as z:
        assert z["images"].shape == images.shape


def test_a_count_the_payload_cannot_hold_is_refused_before_decoding(ckpt, blob, images):
    """A crafted header (valid checksums) claiming 4 billion images: refused at once as damage, not
    after trying to allocate memory for them."""
    assert codec._least_bits_per_image(codec.codec_table(ckpt, codec.DEFAULT_BITS)) > 8
    for count in (2 ** 32 - 1, 10 * len(images)):
        with pytest.raises(DataError, match="cannot be coded in a payload"):
            codec.decode_bytes(_rewrite(blob, count=count), ckpt)


def test_the_count_bound_never_refuses_a_real_file(ckpt, images):
    """Down to a single image, the smallest payload, at every bit depth and with an embedded table of
    near-identical images (whose components are almost certain)."""
    same = np.repeat(images[:1], 40, axis=0)
    same[1:, 0, 0] = 255
    for bits in BITS_USED:
        for quantiser in codec.QUANTISERS:
            for subset in (images[:1], images):
                blob = codec.encode_bytes(subset, ckpt, bits, quantiser=quantiser)
                assert codec.decode_bytes(blob, ckpt).shape == subset.shape
    for bits in (2, 7, 12, 16):
        for table_images in (same, images[:1]):
            blob = codec.encode_bytes(table_images, ckpt, bits, table="embedded")
            assert codec.decode_bytes(blob, ckpt).shape == table_images.shape


# --- the range-ar coder ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ar_blob(ckpt, images, tiny_npz) -> bytes:
    codec.save_tables(ckpt, bits=(6,), quantisers=("transform",), data=tiny_npz, predictive=True)  # stored in it
    return codec.encode_bytes(images, ckpt, 6, coder="range-ar")


def test_range_ar_tables_are_cached_beside_the_plain_ones(ckpt, ar_blob):
    from safetensors import safe_open
    with safe_open(str(Path(ckpt) / codec.CACHE_FILE), framework="numpy") as f:
        keys = set(f.keys())
    assert "transform.ar6.predictor.w1" in keys and "transform.b6.freq" in keys and "transform.b4.freq" in keys
    ar, plain = (codec.codec_table(ckpt, 6, "transform", predictive=p) for p in (True, False))
    assert ar.predictor is not None and plain.predictor is None and ar.digest != plain.digest
    np.testing.assert_array_equal(ar.step, plain.step)  # the same quantiser


def test_range_ar_decodes_in_chunks_of_images_alike(ckpt, images, ar_blob, monkeypatch):
    whole = codec.decode_bytes(ar_blob, ckpt)
    import aelab.codec.predictor
    monkeypatch.setattr(codec_coders, "PREDICTOR_CHUNK", 7)
    monkeypatch.setattr(aelab.codec.predictor, "CHUNK", 11)
    np.testing.assert_array_equal(codec.decode_bytes(ar_blob, ckpt), whole)
    assert codec.encode_bytes(images, ckpt, 6, coder="range-ar") == ar_blob


def test_range_ar_needs_a_code_of_two_numbers_or_more(tmp_path):
    from aelab.models.checkpoint import save_checkpoint
    from aelab.errors import OptionError
    from aelab.models.networks import build_model, model_config
    config = model_config("simple", code_size=1)
    folder = save_checkpoint(tmp_path / "one", build_model(config, seed=0), config)
    with pytest.raises(OptionError, match="only one"):
        codec.encode_bytes(np.zeros((2, 28, 28), np.uint8), folder, 4, coder="range-ar")


@pytest.mark.parametrize("coder", ["range-ar", "range-ctx"])
def test_cli_says_when_it_learns_a_predictor(coder, ckpt, tiny_npz, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(codec_quantiser, "CTX_PREDICTOR", {"hidden": 32, "epochs": 2})  # range-ctx's, small
    folder = Path(shutil.copytree(ckpt, tmp_path / "model", ignore=shutil.ignore_patterns(codec.CACHE_FILE)))
    aez = tmp_path / "d.aez"
    args = ["compress", str(tiny_npz), "--checkpoint", str(folder), "-o", str(aez), "--bits", "5",
            "--coder", coder, "--data", str(tiny_npz)]
    assert main(args) == 0
    out = capsys.readouterr()
    assert f"Learning the {coder} coder's predictor for 5 bits" in out.err and f"{coder} coder" in out.out
    assert main(["codec", "fit", "--checkpoint", str(folder), "--data", str(tiny_npz), "--bits", "5",
                 "--quantiser", "transform", "--coder", coder]) == 0  # stored now: nothing to learn or say
    capsys.readouterr()
    assert main(args[:-2]) == 0
    assert "Learning" not in capsys.readouterr().err
    assert main(["decompress", str(aez), "--checkpoint", str(folder), "-o", str(tmp_path / "o.npz")]) == 0
    assert "Learning" not in capsys.readouterr().err
    other = Path(shutil.copytree(ckpt, tmp_path / "other", ignore=shutil.ignore_patterns(codec.CACHE_FILE)))
    assert main(["decompress", str(aez), "--checkpoint", str(other), "-o", str(tmp_path / "p.npz"),
                 "--data", str(tiny_npz)]) in (0, 2)  # learned again: the same predictor or a clear refusal
    assert f"Learning the {coder} coder's predictor for 5 bits" in capsys.readouterr().err


# --- the range-ctx coder ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ctx_blob(ckpt, images, tiny_npz) -> bytes:
    with pytest.MonkeyPatch.context() as patch:  # a small predictor: the format, not the bytes, is under test
        patch.setattr(codec_quantiser, "CTX_PREDICTOR", {"hidden": 64, "epochs": 10})
        codec.save_tables(ckpt, bits=(6,), quantisers=("transform",), data=tiny_npz, spread=True)  # stored in it
    return codec.encode_bytes(images, ckpt, 6, coder="range-ctx")


@pytest.mark.parametrize("coder", ["range-ar", "range-ctx"])
def test_predictive_coders_decode_to_the_same_images_as_the_range_coder(coder, ckpt, images, request):
    blob = request.getfixturevalue("ar_blob" if coder == "range-ar" else "ctx_blob")
    header = codec.read_header(blob)
    assert header.coder == coder and header.table == "checkpoint"
    plain = codec.encode_bytes(images, ckpt, 6)
    np.testing.assert_array_equal(codec.decode_bytes(blob, ckpt), codec.decode_bytes(plain, ckpt))
    np.testing.assert_array_equal(codec.decode_codes(blob, ckpt), codec.decode_codes(plain, ckpt))
    assert codec.encode_bytes(images, ckpt, 6, coder=coder) == blob  # deterministic
    one = codec.encode_bytes(images[:1], ckpt, 6, coder=coder)
    np.testing.assert_array_equal(codec.decode_bytes(one, ckpt), codec.decode_bytes(plain, ckpt)[:1])


def test_range_ctx_tables_are_cached_beside_the_others(ckpt, ctx_blob, ar_blob):
    from safetensors import safe_open
    with safe_open(str(Path(ckpt) / codec.CACHE_FILE), framework="numpy") as f:
        keys = set(f.keys())
    assert {"transform.ctx6.predictor.w4", "transform.ctx6.predictor.edges", "transform.ctx6.freq"} <= keys
    ctx = codec.codec_table(ckpt, 6, "transform", predictive=True, spread=True)
    ar = codec.codec_table(ckpt, 6, "transform", predictive=True)
    assert ctx.predictor.has_spread and not ar.predictor.has_spread and ctx.digest != ar.digest
    assert ctx.freq.shape == (ctx.code_size * ctx.classes, 64) and ctx.classes == 8
    np.testing.assert_array_equal(ctx.step, ar.step)  # the same quantiser


def test_range_ctx_codes_chunk_by_chunk(ckpt, images, ctx_blob, monkeypatch):
    """The chunk is part of the format (each class's residuals are coded per chunk): a file coded in
    other chunks is another file, which must still decode, with a last chunk shorter than the rest."""
    codes = codec.decode_codes(ctx_blob, ckpt)
    monkeypatch.setattr(codec_coders, "CTX_CHUNK", 7)
    chunked = codec.encode_bytes(images, ckpt, 6, coder="range-ctx")
    assert chunked != ctx_blob
    np.testing.assert_array_equal(codec.decode_codes(chunked, ckpt), codes)
    with pytest.raises(DataError, match="does not decode|symbols fail their checksum"):
        codec.decode_codes(ctx_blob, ckpt)  # read in other chunks than it was written in


@pytest.mark.parametrize("coder", ["range-ar", "range-ctx"])
def test_predictive_coders_need_the_checkpoints_table_and_refuse_damage(coder, ckpt, images, ctx_blob, ar_blob):
    blob = ar_blob if coder == "range-ar" else ctx_blob
    with pytest.raises(OptionError, match=f"{coder} coder needs table 'checkpoint'"):
        codec.encode_bytes(images, ckpt, 6, coder=coder, table="embedded")
    with pytest.raises(DataError, match=f"{coder} coder with an embedded table|does not fit the table mode"):
        codec.decode_bytes(_rewrite(blob, table=codec.TABLES["embedded"]), ckpt)
    body = bytearray(blob[codec.HEADER.size:])
    body[len(body) // 2] ^= 0xFF
    with pytest.raises(DataError, match="does not decode|symbols fail their checksum"):
        codec.decode_bytes(_rewrite(blob[:codec.HEADER.size] + bytes(body)), ckpt)
    other = ctx_blob if coder == "range-ar" else ar_blob  # read with the other coder's table
    with pytest.raises(CheckpointError, match="not the one the file was made with"):
        codec.decode_bytes(_rewrite(other, coder=codec.CODERS[coder].id), ckpt)


def test_save_tables_can_keep_the_tables_a_folder_has(ckpt, images, ctx_blob, ar_blob, tiny_npz, tmp_path,
                                                      monkeypatch):
    """Packaging the range-ctx tables into a folder must not learn its other tables again: files made
    with those would no longer decode."""
    from safetensors.numpy import load_file
    folder = Path(shutil.copytree(ckpt, tmp_path / "model"))
    ar_file = codec.encode_bytes(images, folder, 6, coder="range-ar")
    ctx_file = codec.encode_bytes(images, folder, 6, coder="range-ctx")
    before = load_file(str(folder / codec.CACHE_FILE))
    learned = []
    fit_table, fit_predictive_table = codec.fit_table, codec.fit_predictive_table
    monkeypatch.setattr(codec_tables, "fit_table", lambda codes, bits, *a, **k: learned.append(("plain", bits))
                        or fit_table(codes, bits, *a, **k))
    monkeypatch.setattr(codec_tables, "fit_predictive_table", lambda codes, table, **k: learned.append(
        ("ctx" if k.get("spread") else "ar", table.bits)) or fit_predictive_table(codes, table, **k))
    monkeypatch.setattr(codec_quantiser, "CTX_PREDICTOR", {"hidden": 32, "epochs": 2})
    codec.save_tables(folder, bits=(4, 6), quantisers=("transform",), data=tiny_npz, predictive=(6,),
                      spread=(4, 6), keep=True)
    assert learned == [("ctx", 4)]  # the only table the folder lacked
    after = load_file(str(folder / codec.CACHE_FILE))
    assert all(np.array_equal(after[key], value) for key, value in before.items())
    assert codec.has_cached_table(folder, 4, "transform", spread=True)
    for blob in (ar_file, ctx_file):
        assert codec.decode_bytes(blob, folder).shape == images.shape
    with pytest.raises(OptionError, match="range-ctx tables for bit depths \\[5\\]"):
        codec.save_tables(folder, bits=(4,), data=tiny_npz, spread=(5,))


@pytest.mark.parametrize("name", ["mnist-conv", "mnist-codec"])
def test_the_shipped_conv_models_carry_their_tables(monkeypatch, tmp_path, name):
    """Packaged by scripts/package_codec_tables.py: nothing to learn on the user's machine, and files
    made with the shipped model decode anywhere (a table learned again could differ)."""
    monkeypatch.setenv("AELAB_CACHE", str(tmp_path / "empty-cache"))
    from aelab.models.checkpoint import pretrained_path
    folder = pretrained_path(name)
    assert (folder / codec.CACHE_FILE).is_file()
    for bits in range(2, 9):
        for quantiser in codec.QUANTISERS:
            assert codec.has_cached_table(folder, bits, quantiser)
    for bits in (6, 7):
        assert codec.has_cached_table(folder, bits, "transform", predictive=True)
        assert codec.has_cached_table(folder, bits, "transform", predictive=True, spread=True)
    monkeypatch.setattr(codec_tables, "_training_codes", lambda *a, **k: pytest.fail("learned a table"))
    images = load_images(str(Path(codec.__file__).parents[1] / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"))[0][:50]
    for coder in ("range-ar", "range-ctx"):
        blob = codec.encode_bytes(images, folder, 7, coder=coder)
        assert codec.decode_bytes(blob, folder).shape == (50, 28, 28)
    assert not (tmp_path / "empty-cache").exists()  # nothing written either
