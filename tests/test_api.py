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
    "decode": "decode_codes", "reconstruct": "reconstruct_images", "similarity": "similarity_pairs",
    "tsne": "tsne_map", "bench": "run_benchmark", "data": "load_dataset", "compress": "compress",
    "decompress": "decompress", "codec": "save_tables", "denoise": "denoise_images", "sample": "sample_images",
    "interpolate": "interpolate_images",
    "compare": "compare_models", "models": "list_pretrained",
    "report": "report_model", "score": "anomaly_scores", "export": "export_model",
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


def test_codes_csv_columns_are_read_by_their_names(tmp_path) -> None:
    """Columns moved in a spreadsheet (c3 and c4 swapped, header and values) were decoded by position."""
    from aelab.data.codes import read_codes
    from aelab.errors import DataError
    (tmp_path / "moved.csv").write_text("file,c1,c0,c2\na.png,1.5,0.5,2.5\nb.png,4,3,5\n")
    np.testing.assert_array_equal(read_codes(tmp_path / "moved.csv"), [[0.5, 1.5, 2.5], [3, 4, 5]])
    (tmp_path / "own.csv").write_text("x,y\n1,2\n")  # names of one's own: read in their order
    np.testing.assert_array_equal(read_codes(tmp_path / "own.csv"), [[1, 2]])
    for text, message in [("c0,c2\n1,2\n", "not c0 to c1 once each \\(no c1\\)"),
                          ("c0,c1\n1,\n", "line 2, column c1: '' is not a number"),
                          ("c0,c1\n1,2\n3\n", "line 3 has 1 code values, the first line 2")]:
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(DataError, match=message):
            read_codes(tmp_path / "bad.csv")


def test_every_public_callable_has_a_docstring() -> None:
    for name in aelab.__all__:
        value = getattr(aelab, name)
        if callable(value):
            assert (value.__doc__ or "").strip(), name


def test_training_names_come_from_the_training_package() -> None:
    import aelab.training
    for name in ("TrainConfig", "RECIPES", "train"):
        assert aelab._WHERE[name] == "aelab.training"
        assert getattr(aelab, name) is getattr(aelab.training, name)


@pytest.fixture(scope="module")
def simple():
    return aelab.load_model("mnist-simple", device="cpu")


@pytest.fixture(scope="module")
def mnist():
    return aelab.load_dataset()


def test_similarity_pairs_default_to_the_tutorial_pairs(simple, mnist, tmp_path) -> None:
    rows = aelab.similarity_pairs(simple, mnist, output=tmp_path / "sim.png")
    assert [r["title"] for r in rows] == ["two 6s", "a 3 and an 8"]
    assert all(-1 <= r["cos_code"] <= 1 for r in rows)
    assert (tmp_path / "sim.png").stat().st_size > 0


def test_similarity_pairs_of_a_named_pair(simple, mnist) -> None:
    (row,) = aelab.similarity_pairs(simple, mnist, pair=(3, 3))
    assert (row["index_a"], row["index_b"]) == (3, 3)
    assert row["cos_original"] == pytest.approx(1.0) and row["cos_code"] == pytest.approx(1.0)
    with pytest.raises(aelab.AelabError, match="out of range"):
        aelab.similarity_pairs(simple, mnist, pair=(0, mnist.test.n))


def test_interpolate_images_puts_the_originals_at_the_ends(simple, mnist, tmp_path) -> None:
    walk = aelab.interpolate_images(simple, mnist, 0, 1, steps=4, output=tmp_path / "walk.png")
    assert walk["row"].shape == (6, 28, 28)
    np.testing.assert_allclose(walk["row"][0], mnist.test.images[0] / 255.0)
    np.testing.assert_allclose(walk["row"][-1], mnist.test.images[1] / 255.0)
    assert walk["titles"] == ["#0", "0.00", "0.33", "0.67", "1.00", "#1"]
    assert (tmp_path / "walk.png").stat().st_size > 0
    with pytest.raises(aelab.AelabError, match="out of range"):
        aelab.interpolate_images(simple, mnist, 0, mnist.test.n)


def test_tsne_map_takes_the_first_limit_test_images(simple, mnist, tmp_path) -> None:
    points = aelab.tsne_map(simple, mnist, limit=100, output=tmp_path / "map.png")
    assert points.shape == (100, 2)
    assert (tmp_path / "map.png").stat().st_size > 0


def test_sample_images_draws_from_a_vae(tmp_path) -> None:
    vae = aelab.load_model("mnist-vae", device="cpu")
    images = aelab.sample_images(vae, draw=5, seed=1, columns=3, output=tmp_path / "s.png")
    assert images.shape == (5, 28, 28) and 0 <= images.min() and images.max() <= 1
    np.testing.assert_array_equal(images, aelab.sample_images(vae, draw=5, seed=1))
    assert (tmp_path / "s.png").stat().st_size > 0


def test_sample_images_refuses_a_model_without_a_prior(simple) -> None:
    with pytest.raises(aelab.AelabError, match="no prior"):
        aelab.sample_images(simple, draw=2)


@pytest.mark.parametrize("cached, coder, table, expected", [
    (False, "range-ar", "checkpoint", "Learning the range-ar coder's predictor for 6 bits"),
    (False, "range-ctx", "checkpoint", "Learning the range-ctx coder's predictor for 6 bits"),
    (True, "range-ar", "checkpoint", None),
    (False, "range-ar", "embedded", None),
    (False, "range", "checkpoint", None),
])
def test_compress_notice_only_when_a_predictor_will_be_learned(monkeypatch, cached, coder, table, expected) -> None:
    import aelab.api
    monkeypatch.setattr(aelab.api, "has_cached_table", lambda *a, **k: cached)
    notice = aelab.compress_notice("mnist-simple", bits=6, coder=coder, table=table)
    assert notice == expected if expected is None else notice.startswith(expected)


def test_decompress_notice_reads_the_files_header(monkeypatch, tmp_path) -> None:
    import aelab.api
    aez = tmp_path / "x.aez"
    aelab.compress(aelab.load_dataset().test.images[:3], "mnist-codec", aez, 7, coder="range-ar")  # table shipped
    assert aelab.decompress_notice(aez, "mnist-codec") is None
    monkeypatch.setattr(aelab.api, "has_cached_table", lambda *a, **k: False)
    assert aelab.decompress_notice(aez, "mnist-codec").startswith("Learning the range-ar coder's predictor for 7 bits")
    (tmp_path / "junk.aez").write_bytes(b"not an aez file")
    assert aelab.decompress_notice(tmp_path / "junk.aez", "mnist-codec") is None


def test_train_config_takes_each_field_from_the_option_of_its_name() -> None:
    """`aelab train` hands its parsed options to api.train_config as they are: no field copied by hand."""
    from dataclasses import fields
    from aelab import api
    from aelab.cli import build_parser
    from aelab.data import Dataset, Split
    images = np.zeros((10, 28, 28), dtype=np.uint8)
    data = Dataset(name="blank", train=Split(images[:8], None), test=Split(images[8:], None), sha256="0" * 64)
    common = ["--code-size", "7", "--hidden", "24,12", "--sweeps", "0.5", "--recipe", "adam", "--minibatch-size", "16",
              "--seed", "3", "--device", "cpu", "--noise", "gaussian:0.5", "--channels", "8", "--conv-depth", "2",
              "--activation", "silu", "--loss", "mse", "--validation", "0.2", "--budget", "90s"]
    checked = set()
    for own in (["--model", "sparse", "--sparsity", "0.1"], ["--model", "vae", "--beta", "2"]):
        args = build_parser().parse_args(["train", *own, *common])
        config = api.train_config(vars(args), data).config
        given = [f.name for f in fields(api.TrainConfig) if getattr(args, f.name, None) is not None]
        assert all(getattr(config, name) == getattr(args, name) for name in given), given
        checked.update(given)
    assert len(checked) >= 17
    assert api.train_config({"model": "conv"}, data).config.sweeps == 5.0  # no --sweeps, --fast or --slow: the fast mode
