"""Reading data the way a checkpoint recorded its training data: the same test split, size, channels,
label column and table scaler, for every command that reads data for a trained model (evaluate,
encode, score, compress, the codec's tables).

A checkpoint keeps :func:`data_record` of its training data (``info["data"]``); the functions here take
that record and the model's input shape (``model_config.input_shape``), so that they sit below the
models that hold them.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import DataError, OptionError
from .dataset_types import Dataset, Samples
from .datasets import load_single, load_source
from .flags import option_given
from .resolver import DEFAULT_SEED, SPLIT_OPTIONS, ReadOptions, Source, resolve
from .scaling import Scaler
from .tables import ModelColumns, read_table

__all__ = ["data_record", "recorded_options", "recorded_scaler", "recorded_columns", "load_as_recorded",
           "inputs_as_recorded", "check_fits"]


def data_record(data: Dataset) -> dict[str, Any]:
    """What a checkpoint keeps about its training data: which data, what one sample looks like, how
    it was read (so other commands read it the same way) and a table's scaler."""
    record: dict[str, Any] = {"name": data.name, "sha256": data.sha256}
    if data.source:  # the sources beyond MNIST's fixed files
        record.update(kind=data.kind, input_shape=list(data.input_shape), channels=data.channels,
                      class_names=data.class_names, options=ReadOptions.recorded_in(data.source).to_record())
        if data.source.get("scaler"):
            record["scaler"] = data.source["scaler"]
        if data.source.get("columns"):
            record["columns"] = data.source["columns"]
        packed_from = (data.source.get("packed_from") or {}).get("sha256")
        if packed_from:  # trained on a packed set: the data it was packed from is the training data too
            record["packed_from_sha256"] = packed_from
    return record


def recorded_options(record: dict[str, Any]) -> ReadOptions:
    """The reading options a data record keeps."""
    return ReadOptions.from_record(record.get("options"))


def recorded_scaler(record: dict[str, Any]) -> Scaler | None:
    """The scaler a table model was trained with (None for images)."""
    return Scaler.from_dict(record["scaler"]) if record.get("scaler") else None


def recorded_columns(record: dict[str, Any]) -> ModelColumns | None:
    """The columns a table model reads (their names where its training table had a header); None for images."""
    scaler = recorded_scaler(record)
    if scaler is None or scaler.columns is None:
        return None
    return ModelColumns.recorded(scaler.columns, record.get("columns"))


def load_as_recorded(path: str | os.PathLike | None, record: dict[str, Any], model_shape: tuple[int, ...],
                     options: ReadOptions | None = None) -> Dataset:
    """The data set at ``path`` read as ``record`` says the model's training data was read: ``options``
    given win over the recorded ones, a table's columns are taken as :func:`recorded_columns` says (by name
    where it has a header) and scaled with the recorded scaler, and data of another shape than
    ``model_shape`` is refused. An option that would move training samples into the test
    split of the model's own training data is refused too."""
    options = options or ReadOptions()
    _refuse_another_scale(options, record)
    source = resolve(path)
    recorded = recorded_options(record)
    data = load_source(source, options.over(recorded.applying_to(source)), scaler=recorded_scaler(record),
                       model_columns=recorded_columns(record), given=options)
    _refuse_another_split(data, record, recorded, options)
    if path is None:
        _refuse_the_default_for_other_data(model_shape, data, record)
    check_fits(model_shape, data.input_shape, data.name, image_options_apply=source.reads_images)
    return data


def _refuse_another_scale(options: ReadOptions, record: dict[str, Any]) -> None:
    """A table model reads every table with the scaler fitted on its training rows; another ``--scale``
    would change nothing, so it is refused rather than silently ignored."""
    if options.scale is None:
        return
    scaler = recorded_scaler(record)
    trained = scaler.method if scaler is not None else "none"  # images are not scaled
    if options.scale == trained:
        return
    if scaler is None:
        raise OptionError(f"--scale {options.scale}: the model takes images, which are not scaled",
                          hint="leave --scale out")
    raise OptionError(f"--scale {options.scale}: the model reads tables with the scaler fitted on its training "
                      f"rows ({trained}), which --scale cannot change",
                      hint="leave --scale out, or train a model with that --scale")


def _refuse_the_default_for_other_data(model_shape: tuple[int, ...], data: Dataset, record: dict[str, Any]) -> None:
    """With no data given, the bundled MNIST is read; a model trained on other data of another shape is
    refused naming the data it was trained on, which is what the user forgot to pass."""
    trained_on = record.get("name")
    if not trained_on or _fits(model_shape, data.input_shape):
        return
    raise DataError(f"no --data given: the model was trained on {trained_on!r} ({_describe_shape(tuple(model_shape))}), "
                    f"not the bundled {data.name!r} ({_describe_shape(_model_view(data.input_shape))})",
                    hint=f"pass the data {trained_on!r} with --data PATH")


def _refuse_another_split(data: Dataset, record: dict[str, Any], recorded: ReadOptions,
                          options: ReadOptions) -> None:
    """Scoring the model's training samples as test samples is refused: on the data it was trained
    on (also packed since), the test split must be the recorded one."""
    if recorded.test_fraction is None:
        return  # trained on a split the source gave (or on a packed set): options cannot move it
    origin = data.source.get("packed_from") or {}
    trained_on = {record.get("sha256"), record.get("packed_from_sha256")} - {None}
    if not trained_on & {data.sha256, origin.get("sha256")}:
        return  # other data: any split is a fair test
    split = (origin.get("source") or {}).get("split") if origin else data.source.get("split")
    split = split or {}
    now = {"test_fraction": split.get("test_fraction"), "seed": split.get("seed")}
    if split.get("method") != "fraction":
        now = {"test_fraction": None, "seed": None}
    changed = [name for name in SPLIT_OPTIONS if now[name] != getattr(recorded, name)]
    if not changed:
        return
    given = [name for name in changed if getattr(options, name) is not None]
    if given:
        what = ", ".join(option_given(n, now[n]) for n in given)
        hint = "leave the option out: the checkpoint's split is used"
    else:  # a packed copy split otherwise; `aelab data pack` takes --test-fraction, the seed only from Python
        what = f"the split {data.name!r} holds (test fraction {now['test_fraction']}, seed {now['seed']})"
        seed = "" if recorded.seed == DEFAULT_SEED else f" (and seed={recorded.seed}, from Python)"
        hint = f"pack the source again with --test-fraction {recorded.test_fraction:g}{seed}, or read the source itself"
    raise OptionError(f"{what} would put samples the model was trained on into the test split (it was trained "
                      f"with test fraction {recorded.test_fraction:g}, seed {recorded.seed})", hint=hint)


def inputs_as_recorded(path: str | os.PathLike, record: dict[str, Any], model_shape: tuple[int, ...],
                       options: ReadOptions | None = None) -> Samples:
    """The samples, labels, class names and file names of one input (a file or folder, not a data set's split) for a
    model: images read with the recorded channels, size and crop (``options`` given win), a table's rows
    scaled with the recorded scaler, its columns taken by name where it and the model's training table have
    a header (else by position), with or without the label column it was trained with. Data of
    another shape than ``model_shape`` is refused. The class names are the input's own (its label numbers
    count its own classes, not necessarily the training data's), None where it has none."""
    options = options or ReadOptions()
    _refuse_another_scale(options, record)
    source = resolve(path)
    if source.kind == "table":
        return _table_rows(source, record, model_shape, options)
    reading = options.over(recorded_options(record).applying_to(source))
    samples = load_single(source, reading, crop_to=tuple(model_shape[-2:]))[0]
    images = samples.images
    shape = (3, *images.shape[1:3]) if images.ndim == 4 else tuple(images.shape[1:])
    check_fits(model_shape, shape, source.path.name if source.path else source.name,
               image_options_apply=source.reads_images)
    return samples


def _table_rows(source: Source, record: dict[str, Any], model_shape: tuple[int, ...],
                options: ReadOptions) -> Samples:
    scaler = recorded_scaler(record)
    if scaler is None:
        raise DataError("this model was trained on images, not a table", path=source.path,
                        hint="pass images of the kind it was trained on")
    label_column = options.label_column
    optional_label = label_column is None  # the recorded one, when the rows have it: new rows may come without labels
    if optional_label:
        label_column = recorded_options(record).label_column
    table = read_table(source.path, label_column, model=recorded_columns(record), optional_label=optional_label)
    check_fits(model_shape, (table.rows.shape[1],), source.path.name)
    return Samples(scaler.transform(table.rows), table.labels, table.class_names, None)


def check_fits(model_shape: tuple[int, ...], input_shape: tuple[int, ...], name: str, *,
               image_options_apply: bool = True) -> None:
    """Refuse samples of ``input_shape`` (channels first, or (d,)) that a model of ``model_shape`` was
    not trained on. ``image_options_apply``: the samples are decoded image files, which --resize,
    --grayscale and --rgb can fit to the model (the hint names them only then)."""
    if _fits(model_shape, input_shape):
        return
    mine, theirs = tuple(model_shape), _model_view(input_shape)
    raise DataError(f"{name!r} holds {_describe_shape(theirs)}, but the model was trained on "
                    f"{_describe_shape(mine)}", hint=_fit_hint(mine, theirs, image_options_apply))


def _fits(model_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> bool:
    return tuple(model_shape) == _model_view(input_shape)


def _model_view(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """``input_shape`` as a model's input shape says it: grey images as (h, w), without their channel."""
    shape = tuple(input_shape)
    return shape[1:] if len(shape) == 3 and shape[0] == 1 else shape


def _describe_shape(shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return f"table rows of {shape[0]} columns"
    if len(shape) == 2:
        return f"{shape[0]}x{shape[1]} grey images"
    return f"{shape[1]}x{shape[2]} colour images ({shape[0]} channels)"


def _fit_hint(mine: tuple[int, ...], theirs: tuple[int, ...], image_options_apply: bool) -> str:
    if len(mine) == 1 or len(theirs) == 1:
        return "pass data of the kind the model was trained on"
    steps = []
    if mine[-2:] != theirs[-2:]:
        steps.append(f"--resize {mine[-2]}x{mine[-1]}")
    if len(mine) != len(theirs):
        steps.append("--grayscale" if len(mine) == 2 else "--rgb")
    if not image_options_apply:
        return (f"{' and '.join(steps)} appl{'ies' if len(steps) == 1 else 'y'} to image files only: convert "
                f"these to {_describe_shape(mine)} yourself, or pass data of that shape")
    return "read it with " + " ".join(steps)
