"""The API the CLI and notebooks share: one function per ``aelab`` command that does the work and
returns what it made; the CLI only parses arguments, calls one of these and prints.

Choices and defaults for options (model kinds, recipes, coders, quantisers, bit depths) come from
here too, so the CLI's ``--help`` and errors never keep their own copies.
"""
from __future__ import annotations

import dataclasses
import signal
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .data import Dataset, ReadOptions, Samples, load_dataset, load_samples
from .data import recorded
from .data.recorded import data_record
from .data.augment import check_shift_fits
from .data.scaling import SCALE_METHODS
from .data import images as image_files
from .data.codes import check_limit, given_codes, read_codes, write_codes
from .errors import DataError, OptionError
from .evaluation import plots
from .evaluation.compare import DEFAULT_MODELS, entries_from, quick_subset, recorded_checkpoint, run_comparison
from .evaluation.compare import write_results
from .evaluation.compare import DEFAULT_RECIPE as COMPARE_RECIPE
from .evaluation.evaluate import evaluate, knn_accuracy
from .evaluation.baseline import pca_scores
from .evaluation.anomaly import score_samples, threshold_for_fpr, write_scores
from .evaluation.generate import check_interpolation, denoise, draw_samples, interpolate, save_image_rows
from .evaluation.similarity import pair_similarity, similarity_rows
from .evaluation.report import report_model
from .fileio import ensure_dir, remove_empty_folder, remove_file, remove_stale_temporaries, write_text
from .locking import folder_lock
from .models import inference
from .models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, Checkpoint, as_checkpoint, load_checkpoint, read_checkpoint_info
from .models.checkpoint import as_dataset, taking_paths
from .models.checkpoint import METRICS_FILE, NEXT_METRICS_FILE, adopt_curve, curve_file, save_checkpoint
from .models import export as exporting
from .models.export import FORMATS as EXPORT_FORMATS
from .models.networks import LOSSES, MODEL_NAMES, check_code_reduces, model_config
from .device import resolve_device
from .training import RECIPES, TrainConfig, TrainResult, auto, train
from .training.config import plain_settings
from .training.out_folder import refuse_to_discard_a_saved_run, refuse_to_replace
from .training.distributed import finish_together, process_count, process_rank  # noqa: F401 - process_count: the CLI asks it
from .codec import CODERS, DEFAULT_BITS, DEFAULT_QUANTISER, DEFAULT_RATE_WEIGHT, MAX_BITS, MIN_BITS, QUANTISERS
from .codec import PREDICTIVE_CODERS, coder_help, compress, decompress, has_cached_table, read_header
from .codec import FIT_BITS as CODEC_FIT_BITS, save_tables, store_training_tables
# what the CLI's commands need beyond the functions here (the CLI imports nothing else)
from . import runconfig
from .data import convert, describe, download_mnist, format_description  # noqa: F401 - `aelab data`
from .device import describe_device
from .evaluation.bench import format_table as benchmark_table, run_benchmark  # noqa: F401 - `aelab bench`
from .evaluation.compare import markdown_table  # noqa: F401 - `aelab compare`
from .models.zoo import list_pretrained  # noqa: F401 - `aelab models`
from .terminal import Terminated
from .training.loop import TrainingInterrupted
from .training.resume import RESUME_FILE

GRID_NAME = "grid.png"   # the picture decode, reconstruct and decompress write next to their PNGs
PNG_PREFIX = "img"       # their PNGs: img-00000.png, img-00001.png, ... as decompress names them
GRID_IMAGES = 50
COMPARE_MODELS = DEFAULT_MODELS
COMPARE_SWEEPS, QUICK_SWEEPS = 10.0, 1.0         # sweeps per model in `aelab compare`, without and with --quick
COMPARE_TSNE_LIMIT, QUICK_TSNE_LIMIT = 1000, 200  # test images in its t-SNE maps

__all__ = ["MODEL_NAMES", "RECIPES", "CODERS", "coder_help", "QUANTISERS", "DEFAULT_QUANTISER", "DEFAULT_BITS", "DEFAULT_RATE_WEIGHT",
           "MIN_BITS", "MAX_BITS", "COMPARE_RECIPE", "COMPARE_MODELS", "COMPARE_SWEEPS", "QUICK_SWEEPS",
           "COMPARE_TSNE_LIMIT", "QUICK_TSNE_LIMIT", "GRID_NAME", "PNG_PREFIX",
           "TrainedModel", "train_model", "train_settings", "check_train_settings", "load_model", "input_images", "input_samples", "read_input", "encode_images", "decode_codes",
           "reconstruct_images", "evaluate_model", "compare_models", "denoise_images", "write_pngs",
           "check_models", "load_dataset", "PREDICTIVE_CODERS", "compress", "decompress",
           "has_cached_table", "read_header", "similarity_pairs", "interpolate_images", "tsne_map",
           "sample_images", "compress_notice", "decompress_notice", "save_tables", "load_data", "pack_data",
           "DATA_OPTIONS",
           "SCALE_METHODS",
           "LOSSES", "data_record", "check_fits",
           "report_model", "anomaly_scores", "export_model", "EXPORT_FORMATS"]

Log = Callable[[str], None] | None


# TrainConfig's fields that `aelab train` leaves to the data when not given (None), and the
# defaults they take when a model is named instead
CHOSEN_FIELDS = ("model", "code_size", "recipe", "sweeps", "validation", "budget", "shift")
NAMED_MODEL_DEFAULTS = {"code_size": 32, "recipe": "tutorial", "sweeps": 5.0, "validation": 0.0, "budget": None,
                        "shift": 0}


def check_train_settings(**settings) -> None:
    """Refuse unusable training settings (:class:`TrainConfig`'s fields; None: not given) before any data
    loads: an unknown model name fails now, not after reading a large folder."""
    given = plain_settings({k: v for k, v in settings.items() if v is not None})
    _train_config({**NAMED_MODEL_DEFAULTS, "model": "residual", **given}).validate()


def train_settings(data: Dataset, **settings) -> auto.Choice:
    """The training settings for ``data``: :class:`TrainConfig`'s fields as given, with those left None chosen.

    Without a ``model``, the settings are chosen for the data (:mod:`aelab.training.auto`: the residual
    model sized for the data's kind and shape, a code size, the ``fit`` recipe, a length from the data's
    size, early stopping on a validation split and a time budget); anything given is kept, and
    ``Choice.reason`` says in one line what was chosen and why. With a ``model``, the others default as
    they always have (code size 32, the tutorial's recipe, 5 sweeps, no validation split, no budget,
    no shifts) and the reason is empty.
    """
    given = plain_settings({k: v for k, v in settings.items() if v is not None})
    if given.get("model") is None:
        base = _train_config({k: v for k, v in given.items() if k not in CHOSEN_FIELDS})
        choice = auto.choose(data, base, code_size=given.get("code_size"), sweeps=given.get("sweeps"),
                             budget=given.get("budget"), shift=given.get("shift"))
        kept = {k: given[k] for k in ("recipe", "validation", "minibatch_size", "hidden", "channels", "conv_depth",
                                      "res_blocks", "norm", "activation", "loss") if k in given}
        config, reason = replace(choice.config, **kept), choice.reason
    else:
        config, reason = _train_config({**NAMED_MODEL_DEFAULTS, **given}), ""
    config.validate()
    check_shift_fits(config.shift, data.kind == "images")
    check_code_reduces(config.model, config.code_size, data.input_dim, images=data.kind == "images")
    return auto.Choice(config, reason)


def _train_config(settings: dict) -> TrainConfig:
    unknown = sorted(set(settings) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise OptionError(f"unknown training setting(s) {', '.join(unknown)}")
    return TrainConfig(**settings)


@dataclass
class TrainedModel:
    """What :func:`train_model` made: the training result, its test scores and the checkpoint folder."""
    result: TrainResult
    scores: dict
    folder: Path


def train_model(data: Dataset, config: TrainConfig, out: str | Path, *, log: Log = None,
                progress_bar: bool = False, on_trained: Callable[[TrainResult], None] | None = None,
                overwrite: bool = True, chosen: str | None = None, **train_options) -> TrainedModel:
    """Train, evaluate on the test split, and save the checkpoint into ``out``; see :func:`_train_and_save`.

    ``out`` is locked meanwhile: a second process writing into it is refused (OutputError). With
    ``overwrite=False``, a finished checkpoint already in ``out`` from other settings or other data is
    refused (OptionError) rather than replaced; the same run's checkpoint, or a run being resumed, is not;
    so is starting over (no ``resume``) where ``resume_file`` holds an interrupted run's state.

    Under ``torchrun`` every process calls this; rank 0 alone locks, evaluates and writes, and the
    others return their TrainedModel with empty ``scores`` once their share of the training is done.
    """
    config.validate()  # before the folder exists: a refused run leaves none
    if not overwrite:  # every rank: they refuse together
        refuse_to_discard_a_saved_run(train_options)
    if process_rank() != 0:  # train() itself keeps such a rank silent and its files unwritten
        result = train(data, config, **train_options)
        finish_together()
        return TrainedModel(result, {}, Path(out))
    folder = ensure_dir(out)
    with folder_lock(folder):
        remove_stale_temporaries(folder, (WEIGHTS_FILE, CONFIG_FILE, METRICS_FILE, NEXT_METRICS_FILE, RESUME_FILE))
        if not overwrite:
            refuse_to_replace(folder, config, data.sha256, train_options)
        trained = _train_and_save(data, config, folder, log=log, progress_bar=progress_bar, on_trained=on_trained,
                                  chosen=chosen, **train_options)
    finish_together()
    return trained


def _train_and_save(data: Dataset, config: TrainConfig, out: str | Path, *, log: Log = None,
                    progress_bar: bool = False, on_trained: Callable[[TrainResult], None] | None = None,
                    chosen: str | None = None, **train_options) -> TrainedModel:
    """Train, evaluate on the test split, and save the checkpoint into ``out``.

    ``on_trained`` runs right after training, before the evaluation (the tutorial starts its
    t-SNE there); ``train_options`` go to :func:`aelab.training.loop.train` (resume_file, ...).
    A resume file outlives the training: it is removed only once the checkpoint is on disk, so an
    interruption during the evaluation or the save loses nothing (resuming then just evaluates and saves).
    The training curve goes to ``out/metrics.csv`` as training goes (beside a checkpoint it replaces, to
    ``metrics.next.csv`` until its own is saved; ``metrics_file=None``: nowhere).
    ``chosen`` (the reason :func:`train_settings` gave for its choice) is kept in the checkpoint.
    """
    say = log or (lambda _msg: None)
    folder = ensure_dir(out)
    resume_file = train_options.get("resume_file")
    curve = train_options.setdefault("metrics_file", curve_file(folder, bool(train_options.get("resume"))))
    result = train(data, config, log=log, progress_bar=progress_bar, keep_resume_file=resume_file is not None,
                   **train_options)
    if on_trained is not None:
        on_trained(result)
    say(_training_score_line(result))
    scores = evaluate(result.model, data.test.images)
    save_checkpoint(folder, result.model, result.model_config,
                    training={**config.to_dict(), "recipe_settings": result.recipe.__dict__,
                              "samples_seen": result.samples_seen, "seconds": result.seconds,
                              "train_error_pct": result.train_error_pct,
                              **({"validation_split": result.validation} if result.validation else {}),
                              **({"chosen": chosen} if chosen else {})},
                    data=data_record(data),
                    metrics={k: v for k, v in scores.items() if k != "n"})
    adopt_curve(curve)  # the new curve replaces the old model's only now, beside the new model
    store_training_tables(Checkpoint(result.model, result.model_config, read_checkpoint_info(folder), folder),
                          data.train.images)  # the codec's tables: the checkpoint alone then compresses
    if resume_file is not None:
        _remove_finished_resume_file(resume_file)
    return TrainedModel(result, scores, folder)


def _training_score_line(result: TrainResult) -> str:
    """The training's average metric: the tutorial's error for BCE models, the squared error otherwise (a
    percentage of it would mean nothing)."""
    if result.model_config.loss != "mse":
        return f"Average training error: {result.train_error_pct:.2f}%"
    units = "" if result.model_config.is_image else " (scaled units)"
    return f"Average training MSE{units}: {result.train_error_pct / 100:.5f}"


def _remove_finished_resume_file(path: str | Path) -> None:
    error = remove_file(path)
    if error is not None:  # the checkpoint is saved: a warning, not a failure
        warnings.warn(f"{path}: the checkpoint is saved, but the finished run's resume file could not be removed "
                      f"({error.strerror or error}); delete it by hand", stacklevel=3)


# load_dataset's options (the fields of ReadOptions), which the CLI exposes on every command with --data
DATA_OPTIONS = tuple(f.name for f in dataclasses.fields(ReadOptions))


def load_data(path: str | Path | None = None, checkpoint: Checkpoint | str | Path | None = None, **options) -> Dataset:
    """The data set at ``path`` (None: the bundled MNIST), read as ``options`` (:data:`DATA_OPTIONS`) say.

    With a ``checkpoint``, options not given are those it was trained with (the same test split,
    size and channels), a table is scaled with its scaler, and data of another shape than the
    model's is refused with an error that names both; so is an option that would move its
    training samples into the test split.
    """
    chosen = ReadOptions.of(**options)
    if checkpoint is None:
        return load_dataset(path, chosen)
    return as_dataset(path, as_checkpoint(checkpoint), chosen)  # a folder or a shipped name serves too


def _record(checkpoint: Checkpoint) -> dict:
    return checkpoint.info.get("data") or {}


def pack_data(path: str | Path | None, out: str | Path, **options) -> Path:
    """Write the data set at ``path`` (read as :func:`load_data` reads it, with ``options``) as a packed data set
    in folder ``out`` (:mod:`aelab.data.packed`): ``--data out`` then reads it from disk with bounded memory. A
    folder of images is streamed through its files, never held whole."""
    from .data.datasets import pack_dataset

    return pack_dataset(path, out, ReadOptions.of(**options))


@taking_paths
def check_fits(checkpoint: Checkpoint, input_shape: tuple[int, ...], name: str) -> None:
    """Refuse samples of ``input_shape`` (channels first, or (d,)) that the model was not trained on."""
    recorded.check_fits(checkpoint.model_config.input_shape, input_shape, name)


def load_model(checkpoint: str | Path, device: str = "auto") -> Checkpoint:
    """A trained model: a checkpoint folder or the name of a shipped model."""
    return load_checkpoint(checkpoint, device=resolve_device(device))


def input_images(source: str | Path | None = None, data: str | Path | None = None, limit: int | None = None,
                 checkpoint: Checkpoint | None = None, **options) -> tuple[np.ndarray, np.ndarray | None]:
    """The samples and labels of :func:`read_input`."""
    return read_input(source, data, limit, checkpoint, **options)[:2]


def input_samples(source: str | Path | None = None, data: str | Path | None = None, limit: int | None = None,
                  checkpoint: Checkpoint | None = None, **options) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """The samples, labels and class names of :func:`read_input`."""
    return read_input(source, data, limit, checkpoint, **options)[:3]


def read_input(source: str | Path | None = None, data: str | Path | None = None, limit: int | None = None,
               checkpoint: Checkpoint | None = None, **options) -> Samples:
    """The first ``limit`` samples of ``source``, else of ``data``'s test split: images, labels, class names
    (the source's own, or None) and each sample's file (a folder's, relative to it; None for samples
    that are not files, and for ``data``).

    With a ``checkpoint``, both are read as the model's training data was (:func:`load_data`; for
    ``source``, :func:`aelab.data.recorded.inputs_as_recorded`: images resized, cropped and of the
    channels it was trained on, a table scaled with the model's scaler, with or without its label
    column), and must fit the model.
    """
    chosen = ReadOptions.of(**options)
    checkpoint = None if checkpoint is None else as_checkpoint(checkpoint)
    if source and checkpoint is not None:
        samples = recorded.inputs_as_recorded(source, _record(checkpoint), checkpoint.model_config.input_shape, chosen)
    elif source:
        samples = load_samples(source, chosen.without(("test_fraction", "seed", "scale")))
    else:
        dataset = load_data(data, checkpoint, **options)
        samples = Samples(dataset.test.images, dataset.test.labels, dataset.class_names, None)
    return samples.first(check_limit(limit))


@taking_paths
def table_output(checkpoint: Checkpoint, rows: np.ndarray, output: str | Path | None) -> np.ndarray:
    """A table model's decoded rows in the data's own units (the scaler undone); written to
    ``output`` (.csv or .npy) when given."""
    scaler = recorded.recorded_scaler(_record(checkpoint))
    values = scaler.inverse_transform(rows) if scaler is not None else rows
    if output is not None:
        write_codes(output, values, columns=checkpoint.info.get("data", {}).get("columns"))
    return values


@taking_paths
def encode_images(checkpoint: Checkpoint, images: np.ndarray, labels: np.ndarray | None = None,
                  output: str | Path | None = None, class_names: list[str] | None = None,
                  names: list[str] | None = None) -> np.ndarray:
    """Codes of ``images``; also written to ``output`` (.npy or .csv) when given, labels by their
    ``class_names``, each row with its sample's file where ``names`` are given (:func:`read_input`'s).
    A table model takes rows in its scaled units, as :func:`read_input` reads them (not the raw table)."""
    codes = inference.encode(checkpoint.model, images)
    if output is not None:
        write_codes(output, codes, labels, class_names=class_names, names=names)
    return codes


@taking_paths
def decode_codes(checkpoint: Checkpoint, codes: np.ndarray | str | Path, output: str | Path | None = None,
                 limit: int | None = None) -> np.ndarray:
    """Images decoded from the first ``limit`` (None: all) ``codes`` (an array or a codes file's path); PNGs
    and grid.png in ``output`` when given."""
    images = inference.decode(checkpoint.model, given_codes(codes, limit))
    if not checkpoint.model_config.is_image:
        return table_output(checkpoint, images, output)
    if output is not None:
        write_pngs(output, images, title="decoded images")
    return images


@taking_paths
def reconstruct_images(checkpoint: Checkpoint, images: np.ndarray, labels: np.ndarray | None = None,
                       output: str | Path | None = None) -> np.ndarray:
    """Encode and decode ``images``; PNGs and a comparison grid.png in ``output`` when given. A table
    model takes rows in its scaled units, as :func:`read_input` reads them, and returns the table's own."""
    decoded = inference.reconstruct(checkpoint.model, images)
    if not checkpoint.model_config.is_image:
        return table_output(checkpoint, decoded, output)
    if output is not None and len(decoded):  # no images: nothing to write, as without an output
        n = min(len(images), 20)
        with image_files.picture_folder(output, PNG_PREFIX) as stage:  # all of them, or stopped, none
            image_files.write_numbered_pngs(stage, decoded, PNG_PREFIX)
            plots.save_reconstruction_grid(stage / GRID_NAME, images[:n], decoded[:n],
                                           labels=None if labels is None else labels[:n])
    return decoded


def write_pngs(folder: str | Path, images: np.ndarray, title: str) -> list[Path]:
    """One PNG per image (``img-NNNNN.png``) and grid.png of the first ones: the layout of every image folder."""
    with image_files.picture_folder(folder, PNG_PREFIX) as stage:  # all of them, or stopped, none
        names = image_files.write_numbered_pngs(stage, images, PNG_PREFIX)
        if len(images):
            plots.save_image_grid(stage / GRID_NAME, images[:GRID_IMAGES], title=title)
    return [Path(folder) / name for name in names]


def check_models(names: tuple[str, ...]) -> None:
    """Fail now on an unknown model name, not after the models before it have trained."""
    if not names:
        raise OptionError("--models names no model", hint="e.g. --models simple,deep")
    for name in names:
        model_config(name)


@taking_paths
def evaluate_model(checkpoint: Checkpoint, data: Dataset, split: str = "test", knn: bool = False,
                   pca: bool = True) -> dict:
    """Test scores of a model on one split; with ``knn``, the 5-NN accuracy on its codes too.

    With ``pca``, ``scores["pca"]`` holds the same scores of a PCA with the model's code size fitted on the
    training split (:mod:`aelab.evaluation.baseline`): ``mse``, ``psnr_db`` for images, ``knn_acc`` with ``knn``.
    """
    part = data.part(split)
    scores = evaluate(checkpoint.model, part.images)
    if knn:
        if data.train.labels is None or part.labels is None:
            raise OptionError("--knn needs labelled training and test images")
        scores["knn_acc"] = knn_accuracy(checkpoint.model, data.train.images, data.train.labels, part.images,
                                         part.labels)
    if pca:
        scores["pca"] = pca_scores(checkpoint.model_config, data.train.images, part.images,
                                   train_labels=data.train.labels, labels=part.labels, knn=knn)
    return {"checkpoint": str(checkpoint.path), "data": data.name, "split": split, **scores}


def compare_models(specs: tuple[str, ...] | None = None, *, data: str | Path | None = None,
                   recipe: str = COMPARE_RECIPE, sweeps: float | None = None, quick: bool = False,
                   pca: bool = True, tsne_limit: int | None = None, seed: int = 0, device: str = "auto",
                   output: str | Path | None = None, log: Log = None, **options) -> dict:
    """Train or load models and measure them all the same way; writes quality.md/.json (and .png of images) to
    ``output``. ``data`` is read with ``options`` as the first checkpoint compared remembers (:func:`load_data`)."""
    entries = entries_from(COMPARE_MODELS if specs is None else specs, recipe=recipe,
                           sweeps=sweeps or (QUICK_SWEEPS if quick else COMPARE_SWEEPS), seed=seed,
                           device=str(resolve_device(device)))
    dataset = load_data(data, recorded_checkpoint(entries), **options)
    if quick:
        dataset = quick_subset(dataset)
    result = run_comparison(dataset, entries, pca=pca, seed=seed,
                            tsne_samples=tsne_limit or (QUICK_TSNE_LIMIT if quick else COMPARE_TSNE_LIMIT), log=log)
    if output is not None:
        result["paths"] = write_results(result, output)
    return result


@taking_paths
def denoise_images(checkpoint: Checkpoint, data: Dataset, noise: str | None = None, *, seed: int = 0,
                   limit: int | None = None, draw: int = 10, output: str | Path | None = None) -> dict:
    """Corrupt test images, denoise them and score both; ``draw`` triplet pictures go to ``output``."""
    noise = noise or checkpoint.info.get("training", {}).get("noise")
    if not noise:
        raise OptionError("this model was not trained as a denoiser, so there is no noise to default to",
                          hint="name one, e.g. --noise gaussian:0.5")
    images = data.test.images[:limit] if limit else data.test.images
    result = denoise(checkpoint.model, images, noise, seed=seed)
    out = None if output is None else ensure_dir(output)  # after denoise's refusals: none leaves a folder
    k = min(draw, result["n"]) if out is not None else 0
    if k:  # clean, noisy and denoised side by side; an earlier run's surplus triplets removed
        rows = {key: result[key][:k] for key in ("clean", "noisy", "denoised")}
        with image_files.picture_folder(out, "triplet") as stage:  # all of them, or stopped, none
            image_files.write_numbered_pngs(stage, np.concatenate(list(rows.values()), axis=2), "triplet")
            save_image_rows(stage / "triplets.png", rows, title=f"{noise}: noisy {result['noisy_psnr_db']:.2f} dB, "
                                                                f"denoised {result['denoised_psnr_db']:.2f} dB")
    return {"checkpoint": str(checkpoint.path), "data": data.name, "noise": result["noise"], "seed": seed,
            "n": result["n"], "noisy_psnr_db": result["noisy_psnr_db"],
            "denoised_psnr_db": result["denoised_psnr_db"], "triplets": k, "output": None if out is None else str(out)}


def _check_test_index(images: np.ndarray, *indices: int) -> None:
    for i in indices:  # an integer (not a bool or 0.0) in range
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(images):
            raise OptionError(f"test image index {i!r} is out of range", hint=f"use an integer 0..{len(images) - 1}")


@taking_paths
def similarity_pairs(checkpoint: Checkpoint, data: Dataset, pair: tuple[int, int] | None = None,
                     output: str | Path | None = None) -> list[dict]:
    """Cosine similarities of two test images, their decodings and their codes, one row per pair.

    Without ``pair``, the tutorial's pairs (two 6s, a 3 and an 8); the figure goes to ``output``.
    """
    images = data.test.images
    if pair is not None:
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise OptionError(f"pair must be two test image indices, got {pair!r}", hint="e.g. pair=(0, 1)")
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


@taking_paths
def interpolate_images(checkpoint: Checkpoint, data: Dataset, a: int, b: int, steps: int = 10,
                       output: str | Path | None = None) -> dict:
    """Test images ``a`` and ``b`` with ``steps`` decodings of the codes between them, as one row in [0, 1].

    Returns ``row`` (images) and ``titles`` (one per image); the row is drawn to ``output`` when given.
    """
    check_interpolation(checkpoint.model, steps, drawing=output is not None)
    images = data.test.images
    _check_test_index(images, a, b)
    walk = interpolate(checkpoint.model, images[a], images[b], steps=steps)
    row = np.concatenate([images[a][None] / 255.0, walk["decoded"], images[b][None] / 255.0])
    titles = [f"#{a}", *(f"{t:.2f}" for t in walk["t"]), f"#{b}"]
    if output is not None:
        save_image_rows(output, {"": row}, col_titles=titles)
    return {"row": row, "titles": titles, "t": walk["t"], "codes": walk["codes"]}


@taking_paths
def tsne_map(checkpoint: Checkpoint, data: Dataset, limit: int = 2000, seed: int = 0,
             output: str | Path | None = None, perplexity: float | None = None) -> np.ndarray:
    """2-D t-SNE points of the codes of the first ``limit`` test images; the map, coloured by label, to ``output``.
    ``perplexity`` None: scikit-learn's default, lowered for small sets (:func:`plots.auto_perplexity`)."""
    if data.test.labels is None:
        raise OptionError("the t-SNE map is coloured by label, and this test split has none",
                          hint="map data with labels (class folders, or a table's --label-column)")
    n = data.test.n if check_limit(limit) is None else min(limit, data.test.n)
    perplexity = plots.auto_perplexity(n) if perplexity is None else perplexity
    points = plots.tsne_2d(inference.encode(checkpoint.model, data.test.images[:n]), seed=seed, perplexity=perplexity)
    if output is not None:
        plots.save_tsne_map(output, points, data.test.labels[:n], title=f"t-SNE map of the codes of {n} test images",
                            class_names=data.class_names)
    return points


@taking_paths
def sample_images(checkpoint: Checkpoint, draw: int = 64, seed: int = 0, columns: int = 8,
                  output: str | Path | None = None) -> np.ndarray:
    """``draw`` new images in [0, 1] from a VAE's prior; a grid of ``columns`` per row to ``output``."""
    return draw_samples(checkpoint.model, draw, seed=seed, columns=columns, output=output)


def _predictor_notice(checkpoint: Checkpoint | str | Path, bits: int, quantiser: str, coder: str | None) -> str | None:
    entropy_coder = CODERS.get(coder or "")
    if entropy_coder is None or not entropy_coder.predictive:
        return None
    if has_cached_table(checkpoint, bits, quantiser, coder=entropy_coder):
        return None
    return entropy_coder.learning_notice(bits)


def compress_notice(checkpoint: Checkpoint | str | Path, bits: int = DEFAULT_BITS, quantiser: str = DEFAULT_QUANTISER,
                    coder: str | None = None, table: str = "checkpoint") -> str | None:
    """A line to show before :func:`compress` when it will learn a predictor the checkpoint lacks; else None.

    It loads the model to look: ``compress(..., log=print)`` says the same line as it happens instead.
    """
    if table != "checkpoint":
        return None
    return _predictor_notice(checkpoint, bits, quantiser, coder)


def decompress_notice(path: str | Path, checkpoint: Checkpoint | str | Path) -> str | None:
    """A line to show before :func:`decompress` when it will learn a predictor the checkpoint lacks; else None.

    None too when the file's header cannot be read: :func:`decompress` then says what is wrong. It
    reads the file and loads the model to look: ``decompress(..., log=print)`` says the same line as
    it happens instead.
    """
    try:
        header = read_header(Path(path).read_bytes(), path)
    except Exception:  # noqa: BLE001 - only to decide on a notice; the real error comes from decompress
        return None
    return _predictor_notice(checkpoint, header.bits, header.quantiser, header.coder)


@taking_paths
def anomaly_scores(checkpoint: Checkpoint, images: np.ndarray, labels: np.ndarray | None = None, *,
                   contamination: float | None = None, threshold: float | None = None, fpr: float | None = None,
                   output: str | Path | None = None, names: list[str] | None = None,
                   class_names: list[str] | None = None) -> dict:
    """Each sample's anomaly score: its mean squared reconstruction error in the model's units (pixels
    / 255, or a table's scaled features, which ``images`` must then hold, as :func:`read_input` reads
    them); higher = more anomalous.

    With ``contamination`` F, the top share F is flagged; with ``threshold`` T, scores above T; with
    ``fpr`` F, scores above the threshold that flags at most the share F of the held-out normal data
    (the training run's validation split, whose scores the checkpoint keeps).
    Returns ``scores``, ``labels``, ``threshold``, ``flags`` (None without either) and ``table``
    (index, file, label, score, flag records; file where ``names`` name each sample's file, as
    :func:`read_input` does), which goes to ``output`` (.csv or .npy) when given, labels by their
    ``class_names`` where given.
    """
    if fpr is not None and (contamination, threshold) != (None, None):
        raise OptionError("give one of a contamination, a threshold or a false-positive rate")
    if output is not None and Path(output).suffix not in (".csv", ".npy"):
        raise OptionError(f"cannot tell the format of {output}", hint="name the output FILE.csv or FILE.npy")
    if fpr is not None:
        threshold = threshold_for_fpr(_normal_scores(checkpoint), fpr)
    scored = score_samples(checkpoint.model, images, labels, contamination=contamination, threshold=threshold,
                           names=names)
    if output is not None:
        write_scores(output, scored["table"], class_names)
    return scored


def _normal_scores(checkpoint: Checkpoint) -> np.ndarray:
    scores = checkpoint.info.get("training", {}).get("validation_split", {}).get("scores")
    if not scores:
        raise OptionError("this model keeps no scores of held-out normal data to set a false-positive rate from",
                          hint="train it with a validation split (aelab train --validation 0.1, the default "
                               "without --model), or use --contamination")
    return np.asarray(scores, dtype=np.float64)


@taking_paths
def export_model(checkpoint: Checkpoint, fmt: str, output: str | Path) -> list[Path]:
    """The model's encoder and decoder as ``encoder.onnx``/``decoder.onnx`` (``fmt="onnx"``) or
    torch.export programs ``encoder.pt2``/``decoder.pt2`` (``"pt2"``) in the folder ``output``, with
    ``export.json``; returns the paths. Inputs and outputs: see :mod:`aelab.models.export`."""
    return exporting.export_model(checkpoint.model, fmt, output, scaler=checkpoint.info.get("data", {}).get("scaler"))


# --- the commands' work from their parsed options (the CLI passes ``vars(args)``) --------------------

__all__ += ["data_options", "train_config", "train_from_options", "convert_data", "describe_data",
            "format_description", "download_mnist", "list_pretrained", "run_benchmark", "benchmark_table",
            "markdown_table", "read_codes", "TrainingInterrupted"]


def data_options(options: Mapping[str, Any]) -> dict:
    """The reading options (:data:`DATA_OPTIONS`) among a command's parsed ``options``, for :func:`load_data`.
    There the grey-or-colour choice is ``colour`` (``--grayscale``, ``--rgb``), since ``channels`` is
    ``aelab train``'s convolution stages; the split's seed is the checkpoint's or the default."""
    chosen = {name: options.get(name) for name in DATA_OPTIONS if name not in ("seed", "channels")}
    return {**chosen, "channels": options.get("colour")}


def train_config(options: Mapping[str, Any], data: Dataset) -> auto.Choice:
    """The :class:`TrainConfig` that parsed ``options`` describe for ``data``: each field from the option of
    its name; those missing or None chosen as :func:`train_settings` chooses them."""
    return train_settings(data, **{f.name: options.get(f.name) for f in fields(TrainConfig)})


def train_from_options(options: Mapping[str, Any], *, log: Log = None, progress_bar: bool = False,
                       run_config: str | None = None) -> TrainedModel:
    """``aelab train``: train as the parsed ``options`` say, evaluate, save the checkpoint into ``out``.

    The model and training come from :func:`train_config` (settings not given are chosen for the data,
    and ``log`` gets the one line saying what was chosen); ``data`` and its reading options
    (:func:`data_options`), ``out``, ``checkpoint_every``, ``resume``, ``overwrite`` and
    ``tensorboard`` from the options of those names. The run's state is kept in ``out``'s resume file,
    so an interruption after the training raises :class:`TrainingInterrupted` that names it.
    ``run_config`` (the resolved options as TOML, with the settings chosen for the data) is written
    beside the checkpoint, so that ``--config`` repeats the run. """
    # unknown model names and unusable options fail before data loads
    check_train_settings(**{f.name: options.get(f.name) for f in fields(TrainConfig)})
    data = load_data(options.get("data"), **data_options(options))  # bad data leaves no out folder behind
    choice = train_config(options, data)  # settings that do not fit the data fail before out exists
    made_out = not Path(options["out"]).exists()
    out = ensure_dir(options["out"])  # an unusable out fails now, not after the training
    try:
        return _train_into(out, data, choice, options, log=log, progress_bar=progress_bar, run_config=run_config)
    except BaseException:
        if made_out:  # refused once under way (no CUDA, too few samples for a minibatch): no empty folder left
            remove_empty_folder(out)
        raise


def _train_into(out: Path, data: Dataset, choice: auto.Choice, options: Mapping[str, Any], *, log: Log,
                progress_bar: bool, run_config: str | None) -> TrainedModel:
    config = choice.config
    if log is not None and choice.reason:
        log(choice.reason)
    if run_config is not None and choice.reason:
        run_config = runconfig.with_settings(run_config, config.to_dict())
    if log is not None:
        log(f"Training {config.model} on {data.name} ({data.train.n} {'rows' if data.kind == 'table' else 'images'}), "
            f"device {describe_device(resolve_device(config.device))}")
    resume_file = out / RESUME_FILE
    given = {k: options[k] for k in ("checkpoint_every", "tensorboard") if options.get(k) is not None}
    try:
        trained = train_model(data, config, out, log=log, progress_bar=progress_bar, resume_file=resume_file,
                              resume=bool(options.get("resume")), overwrite=bool(options.get("overwrite")),
                              chosen=choice.reason or None, **given)
    except KeyboardInterrupt as e:  # e.g. during the final evaluation: the resume file keeps the run
        if not resume_file.exists():
            raise
        stopped = TrainingInterrupted(f"stopped before the checkpoint was saved; the run's last saved state is in "
                                      f"{resume_file}", hint="run the same command with --resume to continue")
        stopped.signum = signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT
        raise stopped from None
    if run_config is not None and process_rank() == 0:
        write_text(out / runconfig.RUN_CONFIG_FILE, run_config)
    return trained


def convert_data(source: str | Path | None, dest: str | Path, fmt: str | None = None, **options) -> Path:
    """``aelab data convert``: the data set at ``source`` (None: the bundled MNIST), read as ``options``
    (:data:`DATA_OPTIONS`) say, written to ``dest`` as ``fmt`` (idx, idx.gz, ctf, npz; None: npz, which
    ``dest`` must then end in); a table in its own units unless ``scale`` is given."""
    return convert(source, dest, fmt, **options)


def describe_data(path: str | Path | None = None, **options) -> dict:
    """``aelab data info``: counts, shape, labels and checksums of the data at ``path``, read as the
    given ``options`` (:data:`DATA_OPTIONS`; None or False: not given) say."""
    return describe(path, **options)
