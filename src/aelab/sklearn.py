"""aelab's autoencoders as a scikit-learn transformer: fit, transform to codes, score samples.

``AutoencoderTransformer`` trains with aelab's own engine (:func:`aelab.training.train`) on a
:class:`~aelab.data.Dataset` built from the arrays it is given, so it learns exactly as
``aelab train`` does. It takes what scikit-learn users pass:

* float (or integer) arrays (n, d) of any width: a table, scaled on the rows ``fit`` sees with
  :class:`~aelab.data.scaling.Scaler` (``scale``), as ``aelab train`` scales a table;
* uint8 image arrays (n, h, w) grey or (n, h, w, 3) colour: pixels, as aelab stores images.

``save(DIR)`` / ``load(DIR)`` use aelab's checkpoint format (safetensors and JSON, no pickle), so
a saved transformer also works with ``aelab encode``, ``aelab score`` and ``aelab export``.
Pickling works too (joblib users expect it); the pickled state holds the weights as safetensors
bytes, not torch objects.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6
    def validate_data(estimator, X, **kwargs):
        return estimator._validate_data(X, **kwargs)

from .api import load_model, train_settings
from .data import Dataset, Split
from .data.scaling import Scaler
from .errors import DataError
from .evaluation.anomaly import sample_errors
from .fileio import remove_file
from .models import inference
from .models.inference import check_float32_range
from .models.checkpoint import METRICS_FILE, NEXT_METRICS_FILE, save_checkpoint, weights_bytes
from .models.networks import ModelConfig, build_model
from .runconfig import RUN_CONFIG_FILE
from .training import train
from .training.config import get_recipe
from .training.out_folder import refuse_files_of_others

__all__ = ["AutoencoderTransformer"]

NAMED_MODEL_DEFAULTS = {"code_size": 32, "recipe": "adam", "sweeps": 20.0}  # with a model named
FITTED_ATTRIBUTES = ("model_", "model_config_", "scaler_", "train_loss_", "chosen_", "input_kind_", "sample_shape_",
                     "n_features_in_")


class SampleError(DataError, ValueError):
    """Samples that do not fit the transformer: a DataError, and a ValueError, as scikit-learn's own
    input checks raise (so ``except ValueError`` catches both)."""


class AutoencoderTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """An autoencoder as a scikit-learn transformer: ``transform`` gives codes, ``inverse_transform``
    decodes them, ``score_samples`` is the negated reconstruction error (higher = more normal, as
    scikit-learn's outlier detectors).

    Parameters are ``aelab train``'s options of the same names: ``model`` (simple, deep, dense,
    conv, sparse, vae, residual), ``code_size``, ``hidden`` (dense widths, None: the model's), ``recipe``,
    ``sweeps`` (passes over the training rows), ``minibatch_size`` (None: the recipe's, at most
    the number of rows), ``scale`` (a table's scaling: standard, minmax or none), ``loss`` (None:
    what the data suits), ``random_state`` (int, RandomState or None) and ``device``.
    As with ``aelab train``, leaving ``model`` None chooses the model, and every other setting left
    None, for the data (:func:`aelab.api.train_settings`: a residual model that starts as PCA, early
    stopping on a validation split); with a ``model`` named, the others default to code size 32,
    the ``adam`` recipe and 20 sweeps.

    Fitted attributes: ``model_`` (the torch module), ``model_config_``, ``scaler_`` (None for
    images), ``input_kind_`` ("table" or "images"), ``sample_shape_``, ``n_features_in_``,
    ``train_loss_``, ``chosen_`` (the line saying what was chosen; empty with a ``model`` named).
    """

    def __init__(self, model: str | None = None, code_size: int | None = None,
                 hidden: tuple[int, ...] | None = None, recipe: str | None = None, sweeps: float | None = None,
                 minibatch_size: int | None = None,
                 scale: str = "standard", loss: str | None = None, random_state: Any = None,
                 device: str = "auto") -> None:
        self.model = model
        self.code_size = code_size
        self.hidden = hidden
        self.recipe = recipe
        self.sweeps = sweeps
        self.minibatch_size = minibatch_size
        self.scale = scale
        self.loss = loss
        self.random_state = random_state
        self.device = device

    # --- fitting -----------------------------------------------------------------------------

    def fit(self, X, y=None) -> "AutoencoderTransformer":
        """Train on the rows (or images) of ``X``; ``y`` is ignored. A refit that fails (refused settings,
        unusable rows) leaves the transformer unfitted, never its old model beside the new rows' scaling."""
        self._forget_fit()
        rows = self._input(X, reset=True)
        if self.input_kind_ == "table":
            self.scaler_ = Scaler(self.scale).fit(rows)
            rows = self.scaler_.transform(rows)
        else:
            self.scaler_ = None
        n = len(rows)
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        digest = hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()
        data = Dataset(name="sklearn", train=Split(rows), test=Split(rows[: min(n, 256)]), sha256=digest)
        named = {} if self.model is None else NAMED_MODEL_DEFAULTS
        settings = {"code_size": self.code_size, "recipe": self.recipe, "sweeps": self.sweeps}
        choice = train_settings(data, model=self.model, hidden=self.hidden,
                                minibatch_size=self.minibatch_size, seed=seed, device=self.device, loss=self.loss,
                                **{k: v if v is not None else named.get(k) for k, v in settings.items()})
        config = choice.config
        minibatch = config.minibatch_size or get_recipe(config.recipe).minibatch_size
        held = max(1, round(config.validation * n)) if config.validation else 0
        config = replace(config, minibatch_size=max(1, min(minibatch, n - held, int(config.sweeps * (n - held)))))
        result = train(data, config, log=None, progress_bar=False)
        self.chosen_ = choice.reason
        self.model_ = result.model
        self.model_config_ = result.model_config
        self.train_loss_ = float(result.train_loss)
        return self

    def _forget_fit(self) -> None:
        for name in FITTED_ATTRIBUTES:
            self.__dict__.pop(name, None)

    def _input(self, X, reset: bool) -> np.ndarray:
        """``X`` validated: uint8 images (n, h, w) / (n, h, w, 3) as they are, anything else of 3 or 4
        dimensions refused as images of the wrong kind, and the rest as float32 rows (n, d) via
        scikit-learn's checks (which refuse NaN, sparse, empty input)."""
        images = _image_array(X)
        if images is not None:
            return self._images(images, reset)
        if not reset and getattr(self, "input_kind_", None) == "images":
            raise SampleError(f"X of shape {_shape_of(X)} does not fit this transformer, fitted on {self._fitted_on()}",
                              hint=self._images_hint(X))
        rows = validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])
        check_float32_range(rows, "X", SampleError)
        if reset:
            self.input_kind_, self.sample_shape_ = "table", (int(rows.shape[1]),)
        return rows.astype(np.float32, copy=False)

    def _images(self, X: np.ndarray, reset: bool) -> np.ndarray:
        """uint8 images (n, h, w) / (n, h, w, 3), checked against what fit saw."""
        if reset:
            self.input_kind_, self.sample_shape_ = "images", tuple(int(s) for s in X.shape[1:])
            self.n_features_in_ = int(np.prod(X.shape[1:]))
        elif getattr(self, "input_kind_", None) != "images" or tuple(X.shape[1:]) != self.sample_shape_:
            raise SampleError(f"images of shape {tuple(X.shape[1:])} do not fit this transformer, fitted on "
                              f"{self._fitted_on()}")
        if not len(X):
            raise SampleError("no images: X is empty")
        return X

    def _images_hint(self, X) -> str:
        if _shape_of(X) == getattr(self, "sample_shape_", None):
            return "a single image: pass X[None], a batch of one"
        return "pass uint8 images of that shape"

    def _fitted_on(self) -> str:
        kind = getattr(self, "input_kind_", "table")
        return f"{kind} of shape {getattr(self, 'sample_shape_', '?')}"

    def _model_input(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        rows = self._input(X, reset=False)
        return self.scaler_.transform(rows) if self.scaler_ is not None else rows

    # --- using the model ---------------------------------------------------------------------

    def transform(self, X) -> np.ndarray:
        """The codes of ``X``: float32 (n, code_size)."""
        rows = self._model_input(X)  # first: it checks that the transformer is fitted
        return inference.encode(self.model_, rows)

    def inverse_transform(self, X) -> np.ndarray:
        """Rows decoded from codes ``X`` (n, code_size): a table's rows in its own units (the scaling
        undone), or images as float32 pixel values in [0, 255] in the shape fit saw."""
        check_is_fitted(self, "model_")
        codes = check_array(X, dtype=[np.float32, np.float64])
        if codes.shape[1] != self.model_config_.code_size:
            raise SampleError(f"codes of {codes.shape[1]} columns do not fit this transformer's code size "
                              f"{self.model_config_.code_size}")
        check_float32_range(codes, "the codes", SampleError)
        decoded = inference.decode(self.model_, codes.astype(np.float32, copy=False))
        if self.scaler_ is not None:
            return self.scaler_.inverse_transform(decoded)
        return decoded * np.float32(self.model_config_.input_max)

    def score_samples(self, X) -> np.ndarray:
        """Minus each sample's mean squared reconstruction error (model units): higher = more normal."""
        rows = self._model_input(X)
        return -sample_errors(self.model_, rows)

    @property
    def _n_features_out(self) -> int:
        return self.model_config_.code_size

    # --- persistence -------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the fitted transformer as an aelab checkpoint folder (model.safetensors, config.json). A
        checkpoint already there is replaced; a folder holding files of a checkpoint's names that aelab did
        not write (a metrics.csv of your own) is refused, and they are kept."""
        check_is_fitted(self, "model_")
        refuse_files_of_others(Path(folder), hint="save into another folder")
        record: dict[str, Any] = {"name": "sklearn", "kind": self.input_kind_,
                                  "input_shape": list(self.model_config_.input_shape), "options": {}}
        if self.scaler_ is not None:
            record["scaler"] = self.scaler_.to_dict()
        else:
            record["channels"] = 3 if len(self.sample_shape_) == 3 else 1
        saved = save_checkpoint(folder, self.model_, self.model_config_, data=record,
                                training={"sklearn": _json_params(self.get_params()), "train_loss": self.train_loss_})
        for other_run in (METRICS_FILE, NEXT_METRICS_FILE, RUN_CONFIG_FILE):  # a replaced model's curve and options
            remove_file(saved / other_run)
        return saved

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> "AutoencoderTransformer":
        """A fitted transformer from a checkpoint folder (any aelab checkpoint, or the name of a
        shipped model): the parameters it was saved with, the model, its scaler."""
        ckpt = load_model(folder, device)
        params = ckpt.info.get("training", {}).get("sklearn") or _checkpoint_params(ckpt.model_config, ckpt.info)
        known = cls().get_params()
        est = cls(**{k: (tuple(v) if k == "hidden" and v is not None else v) for k, v in params.items() if k in known})
        scaler = ckpt.info.get("data", {}).get("scaler")
        train_loss = ckpt.info.get("training", {}).get("train_loss")  # null where it was NaN
        est._set_fitted(ckpt.model, ckpt.model_config, Scaler.from_dict(scaler) if scaler else None,
                        float("nan") if train_loss is None else float(train_loss))
        return est

    def _set_fitted(self, model: torch.nn.Module, config: ModelConfig, scaler: Scaler | None,
                    train_loss: float) -> None:
        self.model_, self.model_config_, self.scaler_, self.train_loss_ = model, config, scaler, train_loss
        self.input_kind_ = "table" if len(config.input_shape) == 1 else "images"
        self.sample_shape_ = inference.sample_shape(config)
        self.n_features_in_ = config.input_dim

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        model = state.pop("model_", None)
        if model is not None:
            state["model_"] = {"weights": weights_bytes(model), "config": state["model_config_"].to_dict(),
                               "scaler": None if self.scaler_ is None else self.scaler_.to_dict()}
            state.pop("model_config_")
            state.pop("scaler_")
        return state

    def __setstate__(self, state: dict) -> None:
        saved = state.pop("model_", None)
        self.__dict__.update(state)
        if saved is not None:
            config = ModelConfig.from_dict(saved["config"])
            model = build_model(config)
            model.load_state_dict(load_safetensors(saved["weights"]))
            scaler = Scaler.from_dict(saved["scaler"]) if saved["scaler"] else None
            self.model_, self.model_config_, self.scaler_ = model.eval(), config, scaler

    # --- scikit-learn's tags -----------------------------------------------------------------

    def _more_tags(self) -> dict:  # scikit-learn < 1.6
        return {"preserves_dtype": [np.float32]}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.non_deterministic = False
        return tags


# the transformer's parameters that a training record keeps under the same names
TRAINING_PARAMS = ("hidden", "recipe", "sweeps", "minibatch_size", "loss")


def _checkpoint_params(config: ModelConfig, info: dict) -> dict:
    """The transformer's parameters that describe a checkpoint it did not save (a shipped model, one
    ``aelab train`` made): its model and code size, and what its training record and scaler say, so
    that ``clone`` makes an estimator of the same kind."""
    training, scaler = info.get("training") or {}, (info.get("data") or {}).get("scaler")
    params = {k: training[k] for k in TRAINING_PARAMS if training.get(k) is not None}
    if scaler:
        params["scale"] = scaler["method"]
    return {**params, "model": config.kind, "code_size": config.code_size}


def _shape_of(X) -> tuple | str:
    try:
        return np.shape(X)
    except ValueError:  # a ragged list
        return "?"


def _image_array(X) -> np.ndarray | None:
    """``X`` as uint8 images (n, h, w) / (n, h, w, 3) when it has their 3 or 4 dimensions; None when it
    has not (a table, for scikit-learn's checks). Images of another dtype or channel count are refused
    with what to pass instead."""
    try:
        array = X if isinstance(X, np.ndarray) else np.asarray(X)
    except (ValueError, TypeError):  # ragged lists and the like: scikit-learn's checks say what is wrong
        return None
    if array.ndim not in (3, 4):
        return None
    if array.ndim == 4 and array.shape[3] != 3:
        channels = array.shape[3]
        raise SampleError(f"images must be grey (n, h, w) or colour (n, h, w, 3), got {channels} "
                          f"channel{'s' if channels != 1 else ''} (shape {array.shape})", hint=_channels_hint(channels))
    if array.dtype != np.uint8:
        raise SampleError(f"images must be uint8 pixels 0..255, grey (n, h, w) or colour (n, h, w, 3); got "
                          f"{array.dtype} {type(X).__name__} of shape {array.shape}", hint=_pixels_hint(array))
    return array


def _channels_hint(channels: int) -> str:
    if channels == 1:
        return "grey images have no channel axis: pass X[..., 0]"
    if channels == 4:
        return "drop the alpha channel: pass X[..., :3]"
    return "pass grey or RGB images, or flatten them to rows (n, h*w*c) to treat them as a table"


def _pixels_hint(array: np.ndarray) -> str:
    table = "or flatten them to rows (n, h*w) to treat them as a table"
    if array.dtype.kind == "f" and array.size and np.nanmax(array) <= 1:
        return f"float images in 0..1: pass uint8 pixels ((X * 255).round().astype(np.uint8)), {table}"
    return f"pass uint8 pixels (X.astype(np.uint8) if they lie in 0..255), {table}"


def _json_params(params: dict) -> dict:
    out = {}
    for key, value in params.items():
        if isinstance(value, tuple):
            value = list(value)
        if value is None or isinstance(value, (bool, int, float, str, list)):
            out[key] = value
    return out
