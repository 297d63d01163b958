"""Packed data sets (`aelab data pack`): exact round trips, refused damage, nothing half-written, and the
block-shuffled training order: every sample once per sweep, seeded, and resumed bit for bit."""
import contextlib
import errno
import re
import signal

import numpy as np
import pytest
import torch

import aelab
from aelab import api
from aelab.cli import main
from aelab.data import load_dataset
from aelab.data.packed import INDEX_FILE, PackWriter, _SplitWriter, load_packed, pack
from aelab.errors import DataError, OptionError, OutputError
from aelab.models.inference import to_model_rows
from aelab.models.networks import model_config
from aelab.training import loop
from aelab.training.loop import TrainConfig, TrainingInterrupted, train
from aelab.training.stream import BlockOrder, minibatch_stream, training_rows
from helpers import run_cli

SMALL = dict(block_bytes=4 * 784, buffer_bytes=3 * 4 * 784, shard_bytes=40 * 784)  # many blocks, windows, shards


def same_data(a, b):
    for split in ("train", "test"):
        x, y = getattr(a, split), getattr(b, split)
        assert x.images.dtype == y.images.dtype and np.array_equal(np.asarray(x.images), np.asarray(y.images))
        assert (x.labels is None) == (y.labels is None)
        assert x.labels is None or np.array_equal(x.labels, y.labels)
    assert a.num_classes == b.num_classes and a.class_names == b.class_names
    assert a.source.get("scaler") == b.source.get("scaler")


@pytest.fixture(scope="module")
def packed_tiny(tiny_data, tmp_path_factory):
    return pack(tiny_data, tmp_path_factory.mktemp("packed") / "tiny", **SMALL)


def test_a_packed_npz_round_trips_exactly_and_is_memory_mapped(tiny_data, packed_tiny):
    data = load_dataset(packed_tiny)
    same_data(tiny_data, data)
    assert isinstance(data.train.images, np.memmap) and data.source["format"] == "packed"
    assert data.source["packed"]["shards"] > 2  # several shards per split, each checked


def test_a_table_round_trips_exactly_with_its_scaler(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = rng.normal(3.0, 2.0, size=(300, 5))
    lines = ["a,b,c,d,e,kind"] + [",".join(f"{v:.6f}" for v in r) + f",{'xy'[i % 2]}" for i, r in enumerate(rows)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    rc, out, err = run_cli(capsys, "data", "pack", tmp_path / "t.csv", "-o", tmp_path / "p", "--label-column", "kind",
                       "--scale", "minmax")
    assert rc == 0, err
    original = load_dataset(tmp_path / "t.csv", label_column="kind", scale="minmax")
    packed = load_dataset(tmp_path / "p")
    same_data(original, packed)
    assert packed.kind == "table" and packed.class_names == ["x", "y"]
    with pytest.raises(OptionError, match="scale"):
        load_dataset(tmp_path / "p", scale="standard")


def test_an_image_folder_round_trips_exactly(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(1)
    for c in ("cats", "dogs"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (10 + i % 3, 9, 3), dtype=np.uint8)).save(
                tmp_path / "photos" / c / f"{i}.png")
    out = api.pack_data(tmp_path / "photos", tmp_path / "p", resize="6x5", test_fraction=0.25)
    original = load_dataset(tmp_path / "photos", resize="6x5", test_fraction=0.25)
    packed = load_dataset(out, resize="6x5")  # the options it was packed with are fine
    same_data(original, packed)
    assert packed.train.images.shape[1:] == (6, 5, 3) and packed.class_names == ["cats", "dogs"]
    with pytest.raises(OptionError, match="resize"):
        load_dataset(out, resize="4x4")


@pytest.mark.parametrize("layout", ["train-test", "flat-mixed", "skip-bad", "crop"])
def test_a_folder_is_packed_a_few_images_at_a_time_exactly_as_it_is_read(tmp_path, monkeypatch, layout):
    from PIL import Image
    from aelab.data import sources
    rng = np.random.default_rng(3)
    root = tmp_path / "pics"
    for i in range(23):
        folder = root / (("train" if i % 4 else "test") + f"/{'ab'[i % 2]}" if layout == "train-test" else "")
        folder.mkdir(parents=True, exist_ok=True)
        size = (7 + (i % 2 if layout == "crop" else 0), 6)
        grey = layout == "flat-mixed" and i % 3 == 0
        pixels = rng.integers(0, 256, size if grey else (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    if layout == "skip-bad":
        (root / "05.png").write_bytes(b"not a picture")
    options = {"skip-bad": dict(skip_bad=True), "crop": dict(crop=True)}.get(layout, {})
    monkeypatch.setattr(sources, "FOLDER_CHUNK", 5)
    monkeypatch.setattr(sources, "read_image_folder", None)  # never the whole folder at once
    out = api.pack_data(root, tmp_path / "p", **options)
    monkeypatch.undo()
    original = load_dataset(root, **options)
    packed = load_dataset(out)
    same_data(original, packed)
    assert packed.source["packed_from"]["source"] == {k: v for k, v in original.source.items() if k != "cached"}
    assert packed.source["packed_from"]["sha256"] == original.sha256


def test_a_truncated_or_altered_shard_is_refused_in_one_line(packed_tiny, tmp_path, capsys):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(packed_tiny, bad)
    with open(bad / "train.npy", "r+b") as f:  # one byte changed, in the third shard
        f.seek(128 + 100 * 784 + 5)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(DataError, match="shard 2 .* is altered"):
        load_packed(bad)
    rc, out, err = run_cli(capsys, "data", "info", bad)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "altered" in err and "pack the data again" in err
    with open(bad / "test.npy", "r+b") as f:
        f.truncate(1000)
    rc, out, err = run_cli(capsys, "evaluate", "--checkpoint", "mnist-deep", "--data", bad)
    assert rc == 2 and "truncated" in err and "Traceback" not in err
    index = (packed_tiny / INDEX_FILE).read_text()
    (bad / INDEX_FILE).write_text(index.replace('"block_rows": 4', '"block_rows": 5'))  # another order, same data
    with pytest.raises(DataError, match="sha256 does not match"):
        load_packed(bad)
    (bad / INDEX_FILE).write_text("{")
    with pytest.raises(DataError, match="index is unreadable"):
        load_packed(bad)



def _edited_copy(packed, folder, edit):
    """A copy of the packed set ``packed`` in ``folder`` whose index ``edit(index)`` changed."""
    import json
    import shutil
    shutil.copytree(packed, folder)
    index = json.loads((folder / INDEX_FILE).read_text())
    edit(index)
    (folder / INDEX_FILE).write_text(json.dumps(index))
    return folder


EDITS = {  # an edit of the index, and the field the error must name
    "a file outside the folder": (lambda ix: ix["splits"]["train"].update(file="../elsewhere/train.npy"),
                                  "splits.train.file"),
    "the parent folder": (lambda ix: ix["splits"]["test"].update(file=".."), "splits.test.file"),
    "labels outside the folder": (lambda ix: ix["splits"]["test"].update(labels="/etc/passwd"), "splits.test.labels"),
    "a missing field": (lambda ix: ix["splits"]["train"].pop("rows"), "splits.train.rows"),
    "a count that is true": (lambda ix: ix.update(block_rows=True), "block_rows"),
    "a zero count": (lambda ix: ix.update(buffer_blocks=0), "buffer_blocks"),
    "rows the shards do not hold": (lambda ix: ix["splits"]["test"].update(rows=7), "splits.test.rows"),
    "a shard out of place": (lambda ix: ix["splits"]["train"]["shards"][1].update(first_row=3),
                             "splits.train.shards[1].first_row"),
    "an odd dtype": (lambda ix: ix.update(dtype="object"), "dtype"),
    "a negative sample size": (lambda ix: ix.update(sample_shape=[28, -28]), "sample_shape"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_an_edited_index_is_refused_in_one_line_naming_the_field(packed_tiny, tmp_path, capsys, edit):
    change, field = EDITS[edit]
    bad = _edited_copy(packed_tiny, tmp_path / "bad", change)
    with pytest.raises(DataError, match=re.escape(field)):
        load_packed(bad)
    rc, out, err = run_cli(capsys, "data", "info", bad)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and field in err and "pack the data again" in err


def test_an_index_pointing_outside_its_folder_is_refused_under_python_O(packed_tiny, tmp_path):
    """The index's checks are code, not ``assert``: ``python -O`` (or PYTHONOPTIMIZE) must not skip them."""
    import os
    import shutil
    import subprocess
    import sys
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(packed_tiny / "train.npy", tmp_path / "elsewhere" / "train.npy")  # the same bytes: only the path is wrong
    bad = _edited_copy(packed_tiny, tmp_path / "bad", EDITS["a file outside the folder"][0])
    result = subprocess.run([sys.executable, "-O", "-m", "aelab", "data", "info", str(bad)], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONOPTIMIZE": "1"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "splits.train.file" in result.stderr

def test_a_full_disk_while_packing_leaves_nothing(tiny_data, tmp_path, monkeypatch):
    calls = []
    add = _SplitWriter.add

    def failing(self, x, labels):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        add(self, x, labels)
    monkeypatch.setattr(_SplitWriter, "add", failing)
    with pytest.raises(OutputError, match="No space left"):
        pack(tiny_data, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither OUT nor its temporary folder


def test_a_signal_while_the_writer_starts_leaves_no_temporary_folder(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM, which aelab turns into the same kind of exception) once the temporary folder
    exists but before PackWriter is whole, where no `with` block is there yet to clean up."""
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(_SplitWriter, "__init__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        PackWriter(tmp_path / "out", (28, 28), np.uint8, labels=True)
    assert list(tmp_path.iterdir()) == []


def test_packing_refuses_an_existing_folder_and_samples_that_do_not_fit(tiny_data, packed_tiny, tmp_path):
    with pytest.raises(OutputError, match="already exists"):
        PackWriter(packed_tiny, (28, 28), np.uint8, labels=True)
    with PackWriter(tmp_path / "p", (28, 28), np.uint8, labels=False) as writer:
        with pytest.raises(OptionError, match="do not fit"):
            writer.add("train", np.zeros((2, 28, 28), np.float32))
        with pytest.raises(OptionError, match="labels"):
            writer.add("train", np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.int64))
        with pytest.raises(OptionError, match="both splits"):
            writer.close({})
    assert list(tmp_path.iterdir()) == []


def sweep_order(order: BlockOrder, sweep: int) -> np.ndarray:
    """The rows of sweep ``sweep`` as BlockOrder defines them, built the obvious way."""
    rows = []
    for w in range(len(order.plan(sweep)[1])):
        blocks, _, count = order.window(sweep, w)
        inside = np.concatenate([np.arange(b * order.block_rows, min((b + 1) * order.block_rows, order.n))
                                 for b in blocks])
        rows.append(inside[order.rows_order(sweep, w, count)])
    return np.concatenate(rows)


def test_each_sweep_visits_every_sample_once_in_a_seeded_order():
    order = BlockOrder(n=1003, block_rows=10, buffer_blocks=7, seed=5)
    sweeps = [sweep_order(order, s) for s in range(3)]
    for rows in sweeps:
        assert np.array_equal(np.sort(rows), np.arange(1003))
    assert not np.array_equal(sweeps[0], sweeps[1])
    assert np.array_equal(sweeps[1], sweep_order(BlockOrder(1003, 10, 7, seed=5), 1))
    assert not np.array_equal(sweeps[1], sweep_order(BlockOrder(1003, 10, 7, seed=6), 1))


def stream_for(data, seed, start=0):
    config = model_config("simple", input_shape=data.input_shape, code_size=8)
    rows = training_rows(config, data, torch.device("cpu"))
    return minibatch_stream(rows, seed, start_sample=start, scale=1.0), config


def test_the_stream_gives_the_block_order_from_disk_and_resumes_anywhere(tiny_data, packed_tiny):
    data = load_dataset(packed_tiny)
    stream, config = stream_for(data, seed=3)
    taken = torch.cat([stream.next(100).clone() for _ in range(140)])  # 14000 samples: 2 sweeps and a bit
    order = BlockOrder(data.train.n, data.source["packed"]["block_rows"], data.source["packed"]["buffer_blocks"], 3)
    expected = np.concatenate([sweep_order(order, s) for s in range(3)])[:14000]
    rows = to_model_rows(config, torch.from_numpy(tiny_data.train.images)).float()
    assert torch.equal(taken, rows[expected])
    later, _ = stream_for(data, seed=3, start=6321)  # mid-window, mid-sweep
    assert torch.equal(torch.cat([later.next(100).clone() for _ in range(20)]), taken[6321:8321])
    plain, _ = stream_for(data, seed=3, start=6321)
    plain._fused = False  # without numba: numpy's gather, the same values
    assert torch.equal(torch.cat([plain.next(100).clone() for _ in range(20)]), taken[6321:8321])


def test_a_slice_of_a_packed_split_trains_from_memory(packed_tiny):
    from aelab.data import Dataset, Split
    data = load_dataset(packed_tiny)
    part = Dataset(name="part", train=Split(data.train.images[100:400]), test=data.test, sha256="0" * 64,
                   source=data.source)
    config = model_config("simple", input_shape=data.input_shape, code_size=8)
    rows = training_rows(config, part, torch.device("cpu"))
    assert isinstance(rows, torch.Tensor) and rows.shape == (300, 784)


def test_colour_images_stream_channels_first(tmp_path):
    from aelab.data import Dataset, Split
    rng = np.random.default_rng(2)
    colour = Dataset(name="c", train=Split(rng.integers(0, 256, (50, 4, 3, 3), dtype=np.uint8)),
                     test=Split(rng.integers(0, 256, (5, 4, 3, 3), dtype=np.uint8)), sha256="0" * 64)
    data = load_packed(pack(colour, tmp_path / "c", block_bytes=100, buffer_bytes=300))
    stream, config = stream_for(data, seed=0)
    got = stream.next(50)
    order = BlockOrder(50, data.source["packed"]["block_rows"], data.source["packed"]["buffer_blocks"], 0)
    rows = to_model_rows(config, torch.from_numpy(colour.train.images)).float()
    assert torch.equal(got, rows[sweep_order(order, 0)])


@contextlib.contextmanager
def stop_after(minibatches):
    class Flag(dict):
        seen = 0

        def __getitem__(self, key):
            if key == "stop":
                self.seen += 1
                return self.seen >= minibatches
            return super().__getitem__(key)
    yield Flag(signal=signal.SIGINT)


def test_training_on_a_packed_set_resumes_bit_identically(packed_tiny, tmp_path, monkeypatch):
    data = load_dataset(packed_tiny)
    config = TrainConfig(model="simple", sweeps=2.3, seed=4, minibatch_size=64, device="cpu")
    whole = train(data, config, log=None, progress_bar=False)
    resume_file = tmp_path / "resume.safetensors"
    with monkeypatch.context() as m:
        m.setattr(loop, "stop_requests", lambda enabled: stop_after(37))  # stops mid-window, mid-sweep
        with pytest.raises(TrainingInterrupted):
            train(data, config, log=None, progress_bar=False, resume_file=resume_file)
    resumed = train(data, config, log=None, progress_bar=False, resume_file=resume_file, resume=True)
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_train_evaluate_encode_and_score_take_a_packed_folder(tiny_npz, tmp_path, capsys):
    packed = tmp_path / "packed"
    rc, out, err = run_cli(capsys, "data", "pack", tiny_npz, "-o", packed)
    assert rc == 0 and "Packed 6400 + 200 images" in out, err
    rc, out, err = run_cli(capsys, "train", "--data", packed, "--model", "simple", "--sweeps", "1", "--device", "cpu",
                       "--quiet", "--out", tmp_path / "m")
    assert rc == 0, err
    rc, out, err = run_cli(capsys, "evaluate", "--checkpoint", tmp_path / "m", "--data", packed, "--json")
    assert rc == 0 and '"n": 200' in out, err
    rc, out, err = run_cli(capsys, "encode", "--checkpoint", tmp_path / "m", "--data", packed, "-o", tmp_path / "c.npy")
    assert rc == 0 and np.load(tmp_path / "c.npy").shape[0] == 200, err
    rc, out, err = run_cli(capsys, "score", "--checkpoint", tmp_path / "m", "--data", packed, "-o", tmp_path / "s.csv")
    assert rc == 0, err


def test_the_scale_benchmark_shifts_digits_and_packs_them_in_chunks(tmp_path, monkeypatch):
    from helpers import benchmark_script
    scale = benchmark_script("scale")
    rng = np.random.default_rng(0)
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 10:18, 10:18] = 200
    moved = scale.shifted(np.repeat(image, 50, axis=0), rng)
    assert (moved.sum(axis=(1, 2)) == image.sum()).all()  # a shift of at most 3 loses nothing here
    assert len({m.tobytes() for m in moved}) > 10
    monkeypatch.setattr(scale, "MNIST_TRAIN", 700)
    monkeypatch.setattr(scale, "CHUNK", 300)
    size, _ = scale.make_set(tmp_path / "s", 2, seed=0)
    data = load_dataset(tmp_path / "s")
    assert data.train.n == 1400 and data.test.n == 10000 and size > 1400 * 784


def test_row_chunks_read_a_mapped_file_as_its_rows(packed_tiny):
    from aelab.data.packed import row_chunks
    from aelab.data.scaling import in_unit_range
    images = load_dataset(packed_tiny).train.images
    chunks = list(row_chunks(images, chunk_bytes=1000 * 784))
    assert len(chunks) == 7 and not any(isinstance(c, np.memmap) for c in chunks)
    assert np.array_equal(np.concatenate(chunks), images)
    assert np.array_equal(np.concatenate(list(row_chunks(images[5:], chunk_bytes=999 * 784))), images[5:])
    assert not in_unit_range(images) and in_unit_range(np.zeros((3, 2), np.float32))


@pytest.mark.slow
def test_aelab_train_on_a_packed_set_killed_at_random_then_resumed_is_bit_identical(tiny_data, tmp_path):
    import random
    import time
    from test_resume import TRAIN, aelab, finish, wait_for, weights
    from aelab.training.resume import RESUME_FILE
    packed = pack(tiny_data, tmp_path / "packed", **SMALL)
    code, _, err = finish(aelab("train", *TRAIN, "--data", str(packed), "--out", str(tmp_path / "whole")))
    assert code == 0, err
    out = tmp_path / "run"
    proc = aelab("train", *TRAIN, "--data", str(packed), "--out", str(out), "--checkpoint-every", "0.05")
    wait_for(out / RESUME_FILE, proc)
    time.sleep(random.uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    code, _, err = finish(aelab("train", *TRAIN, "--data", str(packed), "--out", str(out), "--resume"))
    assert code == 0, err
    whole, resumed = weights(tmp_path / "whole"), weights(out)
    assert all(torch.equal(resumed[name], whole[name]) for name in whole)


def test_a_packed_file_that_shrinks_while_training_is_a_data_error(tiny_data, tmp_path):
    data = load_dataset(pack(tiny_data, tmp_path / "p", **SMALL))
    stream, _ = stream_for(data, seed=0)
    stream.next(10)
    with open(tmp_path / "p" / "train.npy", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(DataError, match="cannot read the packed data set"):
        for _ in range(200):
            stream.next(100)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_packing_leaves_nothing(tmp_path, sig):
    import subprocess
    import sys
    import time
    table = tmp_path / "big.npy"  # a table: no decoding pool, whose forks can swallow a signal
    np.save(table, np.random.default_rng(0).normal(size=(600_000, 100)).astype(np.float32))
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "aelab", "data", "pack", str(table), "-o", str(work / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(work.iterdir()):  # the temporary folder is there: packing has begun
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig and "Traceback" not in err, err
    assert list(work.iterdir()) == []


def test_a_model_trained_on_a_packed_table_reads_its_source_as_the_pack_holds_it(tmp_path, capsys):
    """The checkpoint kept no options of a pack, so its CSV source was read without the label column and with
    another split: 16 of 20 "test" rows had been training rows, and no option was given to refuse."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    np.savetxt(tmp_path / "t.csv", np.c_[x, (x[:, 0] > 0).astype(int)], delimiter=",", header="a,b,c,d,y",
               comments="", fmt="%.6g")
    assert main(["data", "pack", str(tmp_path / "t.csv"), "--label-column", "y", "--test-fraction", "0.25",
                 "-o", str(tmp_path / "pk")]) == 0
    assert main(["train", "--data", str(tmp_path / "pk"), "--model", "simple", "--code-size", "2", "--sweeps", "1",
                 "--minibatch-size", "8", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    model = aelab.load_model(tmp_path / "m", "cpu")
    packed, source = aelab.load_data(tmp_path / "pk"), aelab.load_data(tmp_path / "t.csv", model)
    np.testing.assert_allclose(source.test.images, packed.test.images, atol=1e-6)  # the same test rows, as scaled
    np.testing.assert_array_equal(source.test.labels, packed.test.labels)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "m"), "--data", str(tmp_path / "t.csv"),
                 "--test-fraction", "0.5"]) == 2
    assert "would put samples the model was trained on into the test split" in capsys.readouterr().err


def test_codec_tables_fitted_on_a_packs_source_are_those_of_the_pack(tmp_path, capsys):
    """`codec fit --data SRC` on a model trained on a pack of SRC said SRC was not its training data, and its
    hint said to pass SRC."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(20):
            Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(tmp_path / "img" / name / f"{i}.png")
    assert main(["data", "pack", str(tmp_path / "img"), "--test-fraction", "0.3", "-o", str(tmp_path / "pk")]) == 0
    model = tmp_path / "m"
    assert main(["train", "--data", str(tmp_path / "pk"), "--model", "simple", "--code-size", "4", "--sweeps", "2",
                 "--minibatch-size", "4", "--out", str(model), "--quiet"]) == 0
    tables = {}
    for data in ("img", "pk"):
        assert main(["codec", "fit", "--checkpoint", str(model), "--data", str(tmp_path / data), "--bits", "9"]) == 0
        tables[data] = (model / "codec.safetensors").read_bytes()
    assert tables["img"] == tables["pk"]
