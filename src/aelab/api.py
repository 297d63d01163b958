"""The API the CLI and notebooks share: one function per ``aelab`` command that does the work and
returns what it made; the CLI only parses arguments, calls one of these and prints.

Choices and defaults for options (model kinds, recipes, coders, quantisers, bit depths) come from
here too, so the CLI's ``--help`` and errors never keep their own copies.
"""
from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .data import Dataset, Scaler, load_dataset, load_images
from .data.scaling import SCALE_METHODS
from .data.sources import options_for, reading_options
from .data.tables import TABLE_SUFFIXES, read_table
from .data import images as image_files
from .data.codes import read_codes, write_codes
from .errors import CheckpointError, DataError, OptionError
from .evaluation import plots
from .evaluation.compare import DEFAULT_MODELS, entries_from, quick_subset, run_comparison, write_results
from .evaluation.compare import DEFAULT_RECIPE as COMPARE_RECIPE
from .evaluation.evaluate import evaluate, knn_accuracy
from .evaluation.anomaly import flags_for, sample_errors, score_table, threshold_for, write_scores
from .evaluation.generate import denoise, interpolate, sample, save_grid, save_image_rows
from .evaluation.similarity import pair_similarity, similarity_rows
from .evaluation.report import MAP_LIMIT, model_section, report_page
from .fileio import ensure_dir, remove_file, write_text
from .locking import folder_lock
from .models import inference
from .models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, Checkpoint, load_checkpoint, read_checkpoint_info
from .models.checkpoint import save_checkpoint
from .models import export as exporting
from .models.export import FORMATS as EXPORT_FORMATS
from .models.networks import LOSSES, MODEL_NAMES, model_config
from .device import resolve_device
from .training import RECIPES, TrainConfig, TrainResult, train
from .training.distributed import process_count, process_rank  # noqa: F401 - process_count: the CLI asks it
from .codec import CODERS, DEFAULT_BITS, DEFAULT_QUANTISER, DEFAULT_RATE_WEIGHT, MAX_BITS, MIN_BITS, QUANTISERS
from .codec import PREDICTIVE_CODERS, coder_help, compress, decompress, has_cached_table, read_header
from .codec import FIT_BITS as CODEC_FIT_BITS, save_tables, store_training_tables

METRICS_FILE = "metrics.csv"  # train_model's training curve, beside the checkpoint
GRID_NAME = "grid.png"   # the picture decode, reconstruct and decompress write next to their PNGs
PNG_PREFIX = "img"       # their PNGs: img-00000.png, img-00001.png, ... as decompress names them
GRID_IMAGES = 50
COMPARE_MODELS = DEFAULT_MODELS
COMPARE_SWEEPS, QUICK_SWEEPS = 10.0, 1.0         # sweeps per model in `aelab compare`, without and with --quick
COMPARE_TSNE_LIMIT, QUICK_TSNE_LIMIT = 1000, 200  # test images in its t-SNE maps

__all__ = ["MODEL_NAMES", "RECIPES", "CODERS", "coder_help", "QUANTISERS", "DEFAULT_QUANTISER", "DEFAULT_BITS", "DEFAULT_RATE_WEIGHT",
           "MIN_BITS", "MAX_BITS", "COMPARE_RECIPE", "COMPARE_MODELS", "COMPARE_SWEEPS", "QUICK_SWEEPS",
           "COMPARE_TSNE_LIMIT", "QUICK_TSNE_LIMIT", "GRID_NAME", "PNG_PREFIX",
           "TrainedModel", "train_model", "load_model", "input_images", "encode_images", "decode_codes",
           "reconstruct_images", "evaluate_model", "compare_models", "denoise_images", "write_pngs",
           "check_models", "load_dataset", "PREDICTIVE_CODERS", "compress", "decompress",
           "has_cached_table", "read_header", "similarity_pairs", "interpolate_images", "tsne_map",
           "sample_images", "compress_notice", "decompress_notice", "save_tables", "load_data", "pack_data", "DATA_OPTIONS",
           "SCALE_METHODS",
           "LOSSES", "data_record", "check_fits",
           "report_model", "anomaly_scores", "export_model", "EXPORT_FORMATS"]

Log = Callable[[str], None] | None


@dataclass
class TrainedModel:
    """What :func:`train_model` made: the training result, its test scores and the checkpoint folder."""
    result: TrainResult
    scores: dict
    folder: Path


def train_model(data: Dataset, config: TrainConfig, out: str | Path, *, log: Log = None,
                progress_bar: bool = False, on_trained: Callable[[TrainResult], None] | None = None,
                overwrite: bool = True, **train_options) -> TrainedModel:
    """Train, evaluate on the test split, and save the checkpoint into ``out``; see :func:`_train_and_save`.

    ``out`` is locked meanwhile: a second process writing into it is refused (OutputError). With
    ``overwrite=False``, a finished checkpoint already in ``out`` from other settings or other data is
    refused (OptionError) rather than replaced; the same run's checkpoint, or a run being resumed, is not.

    Under ``torchrun`` every process calls this; rank 0 alone locks, evaluates and writes, and the
    others return their TrainedModel with empty ``scores`` once their share of the training is done.
    """
    if process_rank() != 0:  # train() itself keeps such a rank silent and its files unwritten
        return TrainedModel(train(data, config, **train_options), {}, Path(out))
    folder = ensure_dir(out)
    with folder_lock(folder):
        if not overwrite:
            _refuse_another_model(folder, config, data, train_options)
        return _train_and_save(data, config, folder, log=log, progress_bar=progress_bar, on_trained=on_trained,
                               **train_options)


def _refuse_another_model(folder: Path, config: TrainConfig, data: Dataset, train_options: dict) -> None:
    resume_file = train_options.get("resume_file")
    if train_options.get("resume") and resume_file is not None and Path(resume_file).exists():
        return  # the run being resumed owns the folder
    if not (folder / CONFIG_FILE).exists() and not (folder / WEIGHTS_FILE).exists():
        return
    try:
        info = read_checkpoint_info(folder)
        saved, ours = info.get("training", {}), config.to_dict()
        different = [k for k in ours if k != "device" and saved.get(k) != ours[k]]
        if info.get("data", {}).get("sha256") != data.sha256:
            different.append("data")
    except CheckpointError:
        different = ["an unreadable checkpoint"]
    if different:
        raise OptionError(f"the folder already holds another trained model (it differs in {', '.join(different)})",
                          path=folder, hint="pass --overwrite to replace it, or choose another --out")


def _train_and_save(data: Dataset, config: TrainConfig, out: str | Path, *, log: Log = None,
                    progress_bar: bool = False, on_trained: Callable[[TrainResult], None] | None = None,
                    **train_options) -> TrainedModel:
    """Train, evaluate on the test split, and save the checkpoint into ``out``.

    ``on_trained`` runs right after training, before the evaluation (the tutorial starts its
    t-SNE there); ``train_options`` go to :func:`aelab.training.loop.train` (resume_file, ...).
    A resume file outlives the training: it is removed only once the checkpoint is on disk, so an
    interruption during the evaluation or the save loses nothing (resuming then just evaluates and saves).
    The training curve goes to ``out/metrics.csv`` as training goes (``metrics_file=None``: not).
    """
    say = log or (lambda _msg: None)
    folder = ensure_dir(out)
    resume_file = train_options.get("resume_file")
    train_options.setdefault("metrics_file", folder / METRICS_FILE)
    result = train(data, config, log=log, progress_bar=progress_bar, keep_resume_file=resume_file is not None,
                   **train_options)
    if on_trained is not None:
        on_trained(result)
    say(f"Average training error: {result.train_error_pct:.2f}%")
    scores = evaluate(result.model, data.test.images)
    save_checkpoint(folder, result.model, result.model_config,
                    training={**config.to_dict(), "recipe_settings": result.recipe.__dict__,
                              "samples_seen": result.samples_seen, "seconds": result.seconds,
                              "train_error_pct": result.train_error_pct},
                    data=data_record(data),
                    metrics={k: v for k, v in scores.items() if k != "n"})
    store_training_tables(Checkpoint(result.model, result.model_config, read_checkpoint_info(folder), folder),
                          data.train.images)  # the codec's tables: the checkpoint alone then compresses
    if resume_file is not None:
        _remove_finished_resume_file(resume_file)
    return TrainedModel(result, scores, folder)


def _remove_finished_resume_file(path: str | Path) -> None:
    error = remove_file(path)
    if error is not None:  # the checkpoint is saved: a warning, not a failure
        warnings.warn(f"{path}: the checkpoint is saved, but the finished run's resume file could not be removed "
                      f"({error.strerror or error}); delete it by hand", stacklevel=3)


# load_dataset's options that the CLI exposes on every command with --data
DATA_OPTIONS = ("test_fraction", "seed", "label_column", "channels", "resize", "crop", "skip_bad", "scale")


def data_record(data: Dataset) -> dict:
    """What a checkpoint keeps about its training data: which data, what one sample looks like, how
    it was read (so other commands read it the same way) and a table's scaler."""
    record = {"name": data.name, "sha256": data.sha256}
    if data.source:  # the sources beyond MNIST's fixed files
        record.update(kind=data.kind, input_shape=list(data.input_shape), channels=data.channels,
                      class_names=data.class_names, options=reading_options(data.source))
        if data.source.get("scaler"):
            record["scaler"] = data.source["scaler"]
        if data.source.get("columns"):
            record["columns"] = data.source["columns"]
    return record


def saved_scaler(checkpoint: Checkpoint) -> Scaler | None:
    """The scaler a table model was trained with (None for images)."""
    recorded = checkpoint.info.get("data", {}).get("scaler")
    return Scaler.from_dict(recorded) if recorded else None


def load_data(path: str | Path | None = None, checkpoint: Checkpoint | None = None, **options) -> Dataset:
    """The data set at ``path`` (None: the bundled MNIST), read as ``options`` (:data:`DATA_OPTIONS`) say.

    With a ``checkpoint``, options not given are those it was trained with (the same test split,
    size and channels), a table is scaled with its scaler, and data of another shape than the
    model's is refused with an error that names both.
    """
    chosen = _given_data_options(options)
    scaler = None
    if checkpoint is not None:
        chosen = {**_recorded_options(checkpoint, path), **chosen}
        scaler = saved_scaler(checkpoint)
    data = load_dataset(path, scaler=scaler, **chosen)
    if checkpoint is not None:
        check_fits(checkpoint, data.input_shape, data.name)
    return data


def pack_data(path: str | Path | None, out: str | Path, **options) -> Path:
    """Write the data set at ``path`` (read as :func:`load_data` reads it, with ``options``) as a packed data set
    in folder ``out`` (:mod:`aelab.data.packed`): ``--data out`` then reads it from disk with bounded memory. A
    folder of images is streamed through its files, never held whole."""
    from .data.datasets import pack_dataset

    return pack_dataset(path, out, **_given_data_options(options))


def _given_data_options(options: dict) -> dict:
    """``options`` less those not given (None, False); unknown names are refused."""
    unknown = sorted(set(options) - set(DATA_OPTIONS))
    if unknown:
        raise OptionError(f"unknown data option(s) {', '.join(unknown)}", hint=f"use {', '.join(DATA_OPTIONS)}")
    return {k: v for k, v in options.items() if v is not None and v is not False}


def _recorded_options(checkpoint: Checkpoint, path: str | Path | None) -> dict:
    return options_for(path, checkpoint.info.get("data", {}).get("options") or {})


def check_fits(checkpoint: Checkpoint, input_shape: tuple[int, ...], name: str) -> None:
    """Refuse samples of ``input_shape`` (channels first, or (d,)) that the model was not trained on."""
    mine = tuple(checkpoint.model_config.input_shape)
    theirs = tuple(input_shape[1:]) if len(input_shape) == 3 and input_shape[0] == 1 else tuple(input_shape)
    if mine != theirs:
        raise DataError(f"{name!r} holds {_describe_shape(theirs)}, but the model was trained on "
                        f"{_describe_shape(mine)}", hint=_fit_hint(mine, theirs))


def _describe_shape(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return f"table rows of {shape[0]} columns"
    if len(shape) == 2:
        return f"{shape[0]}x{shape[1]} grey images"
    return f"{shape[1]}x{shape[2]} colour images ({shape[0]} channels)"


def _fit_hint(mine: tuple[int, ...], theirs: tuple[int, ...]) -> str:
    if len(mine) == 1 or len(theirs) == 1:
        return "pass data of the kind the model was trained on"
    steps = []
    if mine[-2:] != theirs[-2:]:
        steps.append(f"--resize {mine[-2]}x{mine[-1]}")
    if len(mine) != len(theirs):
        steps.append("--grayscale" if len(mine) == 2 else "--rgb")
    return "read it with " + " ".join(steps)


def report_model(checkpoint: Checkpoint, data: Dataset, output: str | Path | None = None, *,
                 limit: int = MAP_LIMIT, seed: int = 0) -> str:
    """A self-contained HTML report of a model (scores, training curve from its ``metrics.csv``, images and
    decodings, similarities, an interactive map of the codes); written to ``output`` when given."""
    section = model_section(checkpoint.path.name, checkpoint.model, data, curve=_metrics_curve(checkpoint.path),
                            limit=limit, seed=seed)
    page = report_page(f"aelab report: {checkpoint.path.name}", [section],
                       f"{checkpoint.model_config.kind} model, code size {checkpoint.model_config.code_size}; "
                       f"test split of {data.name}")
    if output is not None:
        write_text(output, page)
    return page


def _metrics_curve(folder: Path) -> tuple[list[int], list[float]] | None:
    try:
        with open(folder / METRICS_FILE, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [int(r["samples_seen"]) for r in rows], [float(r["loss"]) for r in rows]
    except (OSError, KeyError, ValueError, TypeError):
        return None  # no curve (a shipped model, or an unreadable file): the report goes without it


def load_model(checkpoint: str | Path, device: str = "auto") -> Checkpoint:
    """A trained model: a checkpoint folder or the name of a shipped model."""
    return load_checkpoint(checkpoint, device=resolve_device(device))


def input_images(source: str | Path | None = None, data: str | Path | None = None,
                 limit: int | None = None, checkpoint: Checkpoint | None = None,
                 **options) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples (and labels) from ``source`` (a file or folder), else the test split of ``data``.

    With a ``checkpoint``, ``data`` is read as :func:`load_data` reads it, and a table ``source``
    (.npy, .csv, .tsv, .parquet) is scaled with the model's scaler; both must fit the model.
    """
    if source and checkpoint is not None and Path(source).suffix.lower() in TABLE_SUFFIXES:
        images, labels = _table_rows(source, checkpoint, options.get("label_column"))
    elif source:
        images, labels = load_images(source)
    else:
        test = load_data(data, checkpoint, **options).test if checkpoint else load_dataset(data, **options).test
        images, labels = test.images, test.labels
    if limit:
        images, labels = images[:limit], None if labels is None else labels[:limit]
    return images, labels


def _table_rows(path: str | Path, checkpoint: Checkpoint, label_column) -> tuple[np.ndarray, np.ndarray | None]:
    scaler = saved_scaler(checkpoint)
    if scaler is None:
        raise DataError("this model was trained on images, not a table", path=path,
                        hint="pass images of the kind it was trained on")
    label_column = label_column if label_column is not None else \
        checkpoint.info.get("data", {}).get("options", {}).get("label_column")
    table = read_table(Path(path), label_column)
    check_fits(checkpoint, (table.rows.shape[1],), Path(path).name)
    return scaler.transform(table.rows), table.labels


def table_output(checkpoint: Checkpoint, rows: np.ndarray, output: str | Path | None) -> np.ndarray:
    """A table model's decoded rows in the data's own units (the scaler undone); written to
    ``output`` (.csv or .npy) when given."""
    scaler = saved_scaler(checkpoint)
    values = scaler.inverse_transform(rows) if scaler is not None else rows
    if output is not None:
        write_codes(output, values, columns=checkpoint.info.get("data", {}).get("columns"))
    return values


def encode_images(checkpoint: Checkpoint, images: np.ndarray, labels: np.ndarray | None = None,
                  output: str | Path | None = None) -> np.ndarray:
    """Codes of ``images``; also written to ``output`` (.npy or .csv) when given."""
    codes = inference.encode(checkpoint.model, images)
    if output is not None:
        write_codes(output, codes, labels)
    return codes


def decode_codes(checkpoint: Checkpoint, codes: np.ndarray | str | Path, output: str | Path | None = None,
                 limit: int | None = None) -> np.ndarray:
    """Images decoded from ``codes`` (an array or a codes file); PNGs and grid.png in ``output`` when given."""
    if not isinstance(codes, np.ndarray):
        codes = read_codes(codes)
    if limit:
        codes = codes[:limit]
    images = inference.decode(checkpoint.model, codes)
    if not checkpoint.model_config.is_image:
        return table_output(checkpoint, images, output)
    if output is not None:
        write_pngs(output, images, title="decoded images")
    return images


def reconstruct_images(checkpoint: Checkpoint, images: np.ndarray, labels: np.ndarray | None = None,
                       output: str | Path | None = None) -> np.ndarray:
    """Encode and decode ``images``; PNGs and a comparison grid.png in ``output`` when given."""
    decoded = inference.reconstruct(checkpoint.model, images)
    if not checkpoint.model_config.is_image:
        return table_output(checkpoint, decoded, output)
    if output is not None:
        image_files.save_pngs(output, decoded, prefix=PNG_PREFIX)
        n = min(len(images), 20)
        if n:
            plots.save_reconstruction_grid(Path(output) / GRID_NAME, images[:n], decoded[:n],
                                           labels=None if labels is None else labels[:n])
    return decoded


def write_pngs(folder: str | Path, images: np.ndarray, title: str) -> list[Path]:
    """One PNG per image (``img-NNNNN.png``) and grid.png of the first ones: the layout of every image folder."""
    paths = image_files.save_pngs(folder, images, prefix=PNG_PREFIX)
    if len(images):
        plots.save_image_grid(Path(folder) / GRID_NAME, images[:GRID_IMAGES], title=title)
    return paths


def check_models(names: tuple[str, ...]) -> None:
    """Fail now on an unknown model name, not after the models before it have trained."""
    if not names:
        raise OptionError("--models names no model", hint="e.g. --models simple,deep")
    for name in names:
        model_config(name)


def evaluate_model(checkpoint: Checkpoint, data: Dataset, split: str = "test", knn: bool = False) -> dict:
    """Test scores of a model on one split; with ``knn``, the 5-NN accuracy on its codes too."""
    part = data.test if split == "test" else data.train
    scores = evaluate(checkpoint.model, part.images)
    if knn:
        if data.train.labels is None or part.labels is None:
            raise OptionError("--knn needs labelled training and test images")
        scores["knn_acc"] = knn_accuracy(checkpoint.model, data.train.images, data.train.labels, part.images,
                                         part.labels)
    return {"checkpoint": str(checkpoint.path), "data": data.name, "split": split, **scores}


def compare_models(specs: tuple[str, ...] | None = None, *, data: str | Path | None = None,
                   recipe: str = COMPARE_RECIPE, sweeps: float | None = None, quick: bool = False,
                   pca: bool = True, tsne_limit: int | None = None, seed: int = 0, device: str = "auto",
                   output: str | Path | None = None, log: Log = None) -> dict:
    """Train or load models and measure them all the same way; writes quality.md/.json/.png to ``output``."""
    entries = entries_from(COMPARE_MODELS if specs is None else specs, recipe=recipe,
                           sweeps=sweeps or (QUICK_SWEEPS if quick else COMPARE_SWEEPS), seed=seed,
                           device=str(resolve_device(device)))
    dataset = load_dataset(data)
    if quick:
        dataset = quick_subset(dataset)
    result = run_comparison(dataset, entries, pca=pca, seed=seed,
                            tsne_samples=tsne_limit or (QUICK_TSNE_LIMIT if quick else COMPARE_TSNE_LIMIT), log=log)
    if output is not None:
        result["paths"] = write_results(result, output)
    return result


def denoise_images(checkpoint: Checkpoint, data: Dataset, noise: str | None = None, *, seed: int = 0,
                   limit: int | None = None, draw: int = 10, output: str | Path | None = None) -> dict:
    """Corrupt test images, denoise them and score both; ``draw`` triplet pictures go to ``output``."""
    noise = noise or checkpoint.info.get("training", {}).get("noise")
    if not noise:
        raise OptionError("this model was not trained as a denoiser, so there is no noise to default to",
                          hint="name one, e.g. --noise gaussian:0.5")
    out = None if output is None else ensure_dir(output)
    images = data.test.images[:limit] if limit else data.test.images
    result = denoise(checkpoint.model, images, noise, seed=seed)
    k = min(draw, result["n"]) if out is not None else 0
    for i in range(k):
        image_files.save_png(out / f"triplet-{i:05d}.png",
                             np.concatenate([result["clean"][i], result["noisy"][i], result["denoised"][i]], axis=1))
    if k:
        save_image_rows(out / "triplets.png", {"clean": result["clean"][:k], "noisy": result["noisy"][:k],
                                               "denoised": result["denoised"][:k]},
                        title=f"{noise}: noisy {result['noisy_psnr_db']:.2f} dB, "
                              f"denoised {result['denoised_psnr_db']:.2f} dB")
    return {"checkpoint": str(checkpoint.path), "data": data.name, "noise": result["noise"], "seed": seed,
            "n": result["n"], "noisy_psnr_db": result["noisy_psnr_db"],
            "denoised_psnr_db": result["denoised_psnr_db"], "triplets": k, "output": None if out is None else str(out)}


def _check_test_index(images: np.ndarray, *indices: int) -> None:
    for i in indices:
        if not 0 <= i < len(images):
            raise OptionError(f"test image index {i} is out of range", hint=f"use 0..{len(images) - 1}")


def similarity_pairs(checkpoint: Checkpoint, data: Dataset, pair: tuple[int, int] | None = None,
                     output: str | Path | None = None) -> list[dict]:
    """Cosine similarities of two test images, their decodings and their codes, one row per pair.

    Without ``pair``, the tutorial's pairs (two 6s, a 3 and an 8); the figure goes to ``output``.
    """
    images = data.test.images
    if pair is not None:
        a, b = pair
        _check_test_index(images, a, b)
        rows = [pair_similarity(checkpoint.model, images, f"test images {a} and {b}", a, b)]
    else:
        rows = similarity_rows(checkpoint.model, images, data.test.labels)
        if not rows:
            raise OptionError("the tutorial's pairs need labelled test images with 6s, 3s and 8s",
                              hint="name two test images with --pair A B")
    if output is not None:
        plots.save_similarity_figure(output, rows)
    return rows


def interpolate_images(checkpoint: Checkpoint, data: Dataset, a: int, b: int, steps: int = 10,
                       output: str | Path | None = None) -> dict:
    """Test images ``a`` and ``b`` with ``steps`` decodings of the codes between them, as one row in [0, 1].

    Returns ``row`` (images) and ``titles`` (one per image); the row is drawn to ``output`` when given.
    """
    images = data.test.images
    _check_test_index(images, a, b)
    walk = interpolate(checkpoint.model, images[a], images[b], steps=steps)
    row = np.concatenate([images[a][None] / 255.0, walk["decoded"], images[b][None] / 255.0])
    titles = [f"#{a}", *(f"{t:.2f}" for t in walk["t"]), f"#{b}"]
    if output is not None:
        save_image_rows(output, {"": row}, col_titles=titles)
    return {"row": row, "titles": titles, "t": walk["t"], "codes": walk["codes"]}


def tsne_map(checkpoint: Checkpoint, data: Dataset, limit: int = 2000, seed: int = 0,
             output: str | Path | None = None) -> np.ndarray:
    """2-D t-SNE points of the codes of the first ``limit`` test images; the map, coloured by label, to ``output``."""
    if data.test.labels is None:
        raise OptionError("the t-SNE map is coloured by label, and this test split has none")
    n = min(limit, data.test.n)
    points = plots.tsne_2d(inference.encode(checkpoint.model, data.test.images[:n]), seed=seed)
    if output is not None:
        plots.save_tsne_map(output, points, data.test.labels[:n], title=f"t-SNE map of the codes of {n} test images")
    return points


def sample_images(checkpoint: Checkpoint, draw: int = 64, seed: int = 0, columns: int = 8,
                  output: str | Path | None = None) -> np.ndarray:
    """``draw`` new images in [0, 1] from a VAE's prior; a grid of ``columns`` per row to ``output``."""
    images = sample(checkpoint.model, draw, seed=seed)
    if output is not None:
        save_grid(output, images, ncols=min(columns, draw))
    return images


def _predictor_notice(checkpoint: Checkpoint | str | Path, bits: int, quantiser: str, coder: str | None) -> str | None:
    entropy_coder = CODERS.get(coder or "")
    if entropy_coder is None or not entropy_coder.predictive:
        return None
    if has_cached_table(checkpoint, bits, quantiser, coder=entropy_coder):
        return None
    return entropy_coder.learning_notice(bits)


def compress_notice(checkpoint: Checkpoint | str | Path, bits: int = DEFAULT_BITS, quantiser: str = DEFAULT_QUANTISER,
                    coder: str | None = None, table: str = "checkpoint") -> str | None:
    """A line to show before :func:`compress` when it will learn a predictor the checkpoint does not store; else None.

    It loads the model to look: ``compress(..., log=print)`` says the same line as it happens instead.
    """
    if table != "checkpoint":
        return None
    return _predictor_notice(checkpoint, bits, quantiser, coder)


def decompress_notice(path: str | Path, checkpoint: Checkpoint | str | Path) -> str | None:
    """A line to show before :func:`decompress` when it will learn a predictor the checkpoint does not store; else None.

    None too when the file's header cannot be read: :func:`decompress` then says what is wrong. It
    reads the file and loads the model to look: ``decompress(..., log=print)`` says the same line as
    it happens instead.
    """
    try:
        header = read_header(Path(path).read_bytes(), path)
    except Exception:  # noqa: BLE001 - only to decide on a notice; the real error comes from decompress
        return None
    return _predictor_notice(checkpoint, header.bits, header.quantiser, header.coder)


def anomaly_scores(checkpoint: Checkpoint, images: np.ndarray, labels: np.ndarray | None = None, *,
                   contamination: float | None = None, threshold: float | None = None,
                   output: str | Path | None = None) -> dict:
    """Each sample's anomaly score: its mean squared reconstruction error in the model's units (pixels
    / 255, or a table's scaled features); higher = more anomalous.

    With ``contamination`` F, the top share F is flagged; with ``threshold`` T, scores above T.
    Returns ``scores``, ``labels``, ``threshold``, ``flags`` (None without either) and ``table``
    (index, label, score, flag records), which goes to ``output`` (.csv or .npy) when given.
    """
    if contamination is not None and threshold is not None:
        raise OptionError("give a contamination or a threshold, not both")
    if threshold is not None and not np.isfinite(threshold):
        raise OptionError(f"the threshold must be a finite number, got {threshold!r}")
    if output is not None and Path(output).suffix not in (".csv", ".npy"):
        raise OptionError(f"cannot tell the format of {output}", hint="name the output FILE.csv or FILE.npy")
    if not len(images):
        raise DataError("no samples to score")
    scores = sample_errors(checkpoint.model, images)
    cut = threshold_for(scores, contamination) if contamination is not None else threshold
    flags = None if cut is None else flags_for(scores, cut)
    table = score_table(scores, labels, flags)
    if output is not None:
        write_scores(output, table)
    return {"scores": scores, "labels": labels, "threshold": cut, "flags": flags, "table": table,
            "flagged": None if flags is None else int(flags.sum())}


def export_model(checkpoint: Checkpoint, fmt: str, output: str | Path) -> list[Path]:
    """The model's encoder and decoder as ``encoder.onnx``/``decoder.onnx`` (``fmt="onnx"``) or
    torch.export programs ``encoder.pt2``/``decoder.pt2`` (``"pt2"``) in the folder ``output``, with
    ``export.json``; returns the paths. Inputs and outputs: see :mod:`aelab.models.export`."""
    return exporting.export_model(checkpoint.model, fmt, output, scaler=checkpoint.info.get("data", {}).get("scaler"))
