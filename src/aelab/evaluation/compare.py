"""Quality of every model, measured one way: the library behind ``aelab compare`` and benchmarks/quality.py.

For each model (trained here with a named recipe, or loaded from a checkpoint
or a shipped name) and for a PCA baseline fitted in the same run, on the test
split:

``params``                 trainable parameters (PCA: its components and mean)
``train_seconds``          training time (PCA: the fit)
``test_bce``, ``test_mse``, ``test_psnr_db``, ``test_error_pct``
                           as :func:`aelab.models.inference.evaluate` (BCE and MSE per pixel)
``test_ssim``              mean SSIM of decoded vs original images
                           (``skimage.metrics.structural_similarity``, data_range=1)
``knn_acc``                accuracy (0..1) of a 5-nearest-neighbour classifier on the
                           codes, fitted on the training codes (Euclidean, scikit-learn)
``tsne_trust``             ``sklearn.manifold.trustworthiness`` (n_neighbors=5) of a
                           t-SNE map of the codes of the first ``tsne_samples`` test
                           images, against those codes
``tsne_trust_pixels``      the same map's trustworthiness against the images' pixels
                           (comparable across models: the reference space is the same)
``code_zeros``             fraction of the test codes' numbers that are exactly 0
                           (what a sparse model's penalty buys; ReLU codes have some anyway)
``denoised_psnr_db``       PSNR of the model's output for test images corrupted with
                           ``DENOISE_NOISE`` (seeded) against the clean images; the
                           noisy images' own PSNR is in the run's ``meta``

Everything is deterministic for a given seed on a given machine.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import OptionError
from ..models.networks import ModelConfig, count_parameters
from .metrics import KNN_NEIGHBOURS, knn_accuracy

DENOISE_NOISE = "gaussian:0.5"

TSNE_NEIGHBOURS = 5
DEFAULT_RECIPE = "adam-long"  # the recipe `aelab compare` and benchmarks/quality.py both train with
DEFAULT_MODELS = ("simple", "deep", "dense", "conv", "sparse", "vae", "dense@gaussian:0.5")

# the columns of the Markdown table: key, header, format
COLUMNS = (
    ("name", "model", "{}"),
    ("params", "params", "{:,}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("test_bce", "BCE", "{:.4f}"),
    ("test_mse", "MSE", "{:.5f}"),
    ("test_psnr_db", "PSNR dB", "{:.2f}"),
    ("test_ssim", "SSIM", "{:.4f}"),
    ("knn_acc", "5-NN acc", "{:.2%}"),
    ("tsne_trust", "t-SNE trust (codes)", "{:.4f}"),
    ("tsne_trust_pixels", "t-SNE trust (pixels)", "{:.4f}"),
    ("code_zeros", "code zeros", "{:.0%}"),
    ("denoised_psnr_db", "denoised PSNR dB", "{:.2f}"),
)


class PCAModel(nn.Module):
    """PCA as an autoencoder with aelab's model protocol, for baselines.

    ``encode`` projects pixels/255 (a table's rows: their scaled values) on the components; ``decode``
    maps back and, for images, clips to [``EPS``, 1 - ``EPS``] (so BCE stays finite); ``decode_logits``
    is the logit of that (a table's values: themselves, as an ``mse`` model's), so
    :func:`aelab.models.inference.evaluate` scores it like any model.
    """

    EPS = 1e-4

    def __init__(self, components: np.ndarray, mean: np.ndarray, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.components = nn.Parameter(torch.as_tensor(components, dtype=torch.float32), requires_grad=False)
        self.mean = nn.Parameter(torch.as_tensor(mean, dtype=torch.float32), requires_grad=False)
        table = {} if len(input_shape) >= 2 else {"loss": "mse", "input_max": 1.0}
        self.config = ModelConfig(kind="pca", input_shape=tuple(input_shape), code_size=int(components.shape[0]),
                                  **table)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.to(torch.float32) * (1.0 / self.config.input_max) - self.mean) @ self.components.T

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        values = codes @ self.components + self.mean
        return values.clamp(self.EPS, 1.0 - self.EPS) if self.config.is_image else values

    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.logit(self.decode(codes)) if self.config.is_image else self.decode(codes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(pixels))


def fit_pca(images: np.ndarray, code_size: int = 32, seed: int = 0) -> PCAModel:
    """PCA with ``code_size`` components fitted on ``images`` (n, h, w) 0..255, or a table's scaled rows (n, d)."""
    from sklearn.decomposition import PCA
    x = images.reshape(len(images), -1).astype(np.float32) / (255.0 if images.ndim > 2 else 1.0)
    pca = PCA(n_components=code_size, svd_solver="randomized", random_state=seed).fit(x)
    return PCAModel(pca.components_, pca.mean_, images.shape[1:])


def mean_ssim(decoded: np.ndarray, originals: np.ndarray) -> float:
    """Mean SSIM over images: ``decoded`` in [0, 1] and ``originals`` 0..255, both (n, h, w)."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        raise OptionError("SSIM needs scikit-image, an optional extra", hint="pip install 'aelab[quality]'") from None
    ref = np.asarray(originals, dtype=np.float64) / 255.0
    out = np.asarray(decoded, dtype=np.float64)
    win = min(7, *ref.shape[1:])
    win -= 1 - win % 2  # odd
    return float(np.mean([structural_similarity(a, b, data_range=1.0, win_size=win) for a, b in zip(out, ref)]))


def tsne_trustworthiness(codes: np.ndarray, images: np.ndarray, seed: int = 0,
                         n_neighbors: int = TSNE_NEIGHBOURS) -> tuple[float, float]:
    """Trustworthiness of a t-SNE map of ``codes``: against the codes, and against the images' pixels."""
    from sklearn.manifold import trustworthiness

    from .plots import tsne_2d
    n = len(codes)
    perplexity = min(30.0, max(1.0, math.floor((n - 1) / 3)))
    points = tsne_2d(codes, seed=seed, perplexity=perplexity)
    k = min(n_neighbors, max(1, n // 2 - 1))
    pixels = images.reshape(n, -1).astype(np.float32) / 255.0
    return (float(trustworthiness(np.asarray(codes, np.float32), points, n_neighbors=k)),
            float(trustworthiness(pixels, points, n_neighbors=k)))


def denoising_psnr(model: nn.Module, images: np.ndarray, noise: str = DENOISE_NOISE, seed: int = 0,
                   batch_size: int = 4096) -> dict:
    """PSNR against ``images`` (0..255) of their seeded corruption and of the model's output for it."""
    from .metrics import psnr_db
    from ..data.noise import corrupt, parse_noise
    spec = parse_noise(noise)
    generator = torch.Generator().manual_seed(seed)
    clean = torch.as_tensor(np.asarray(images).reshape(len(images), -1)).to(torch.float32) / 255.0
    noisy = corrupt(clean, spec, generator)
    device = next(model.parameters()).device
    se_noisy = se_out = 0.0
    with torch.no_grad():
        for start in range(0, len(clean), batch_size):
            c, x = clean[start:start + batch_size], noisy[start:start + batch_size]
            out = model(x.to(device) * 255.0).cpu()
            se_noisy += float(((x - c).double() ** 2).sum())
            se_out += float(((out - c).double() ** 2).sum())
    pixels = clean.numel()
    return {"noise": str(spec), "noisy_psnr_db": psnr_db(se_noisy / pixels),
            "denoised_psnr_db": psnr_db(se_out / pixels)}


def quality_metrics(model: nn.Module, data, *, tsne_samples: int = 1000, seed: int = 0,
                    denoise_noise: str | None = DENOISE_NOISE) -> dict:
    """Every metric of the module docstring (but ``train_seconds``) for ``model`` on ``data``'s test split."""
    from ..models.inference import encode, reconstruct
    from .evaluate import evaluate
    model.eval()
    test = data.test
    row = {"params": int(count_parameters(model)), "code_size": int(model.config.code_size)}
    scores = evaluate(model, test.images)
    row.update({k: v for k, v in scores.items() if k != "n"})
    if model.config.is_image:  # SSIM and the denoising noise are defined on pixels
        row["test_ssim"] = mean_ssim(reconstruct(model, test.images), test.images)
    test_codes = encode(model, test.images)
    row["code_zeros"] = float(np.mean(test_codes == 0))
    if data.train.labels is not None and test.labels is not None:
        row["knn_acc"] = knn_accuracy(encode(model, data.train.images), data.train.labels, test_codes, test.labels)
    n = min(tsne_samples, test.n)
    if n >= 4:
        row["tsne_trust"], row["tsne_trust_pixels"] = tsne_trustworthiness(test_codes[:n], test.images[:n], seed=seed)
    if denoise_noise and model.config.is_image:
        d = denoising_psnr(model, test.images, denoise_noise, seed=seed)
        row["denoised_psnr_db"] = d["denoised_psnr_db"]
    return row


@dataclass
class Entry:
    """One model to compare: a name and either training settings or a ready model."""

    name: str
    config: object = None            # a TrainConfig to train, or None
    model: nn.Module | None = None   # a ready model (checkpoint, shipped, PCA)
    info: dict = field(default_factory=dict)
    checkpoint: object = None        # the Checkpoint the model was loaded from, which remembers its data


def parse_model_spec(spec: str, recipe: str, sweeps: float, seed: int, device: str):
    """``KIND`` or ``KIND@NOISE`` (a denoiser, e.g. ``dense@gaussian:0.5``) as a TrainConfig."""
    from ..training.loop import TrainConfig
    kind, _, noise = spec.partition("@")
    config = TrainConfig(model=kind.strip(), recipe=recipe, sweeps=sweeps, seed=seed, device=device,
                         noise=noise.strip() or None)
    config.validate()
    return config


def entries_from(specs: Sequence[str], *, recipe: str, sweeps: float, seed: int = 0,
                 device: str = "cpu") -> list[Entry]:
    """Entries for ``specs``: model kinds (``KIND[@NOISE]``) to train, or checkpoints (folders or shipped names)."""
    from ..models.checkpoint import load_checkpoint
    from ..models.networks import MODEL_KINDS
    from ..models.checkpoint import pretrained_names
    entries = []
    shipped = set(pretrained_names())
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        if spec.partition("@")[0] in MODEL_KINDS and not Path(spec).is_dir():
            entries.append(Entry(spec, parse_model_spec(spec, recipe, sweeps, seed, device)))
        elif Path(spec).is_dir() or spec in shipped:
            ckpt = load_checkpoint(spec, device="cpu")
            entries.append(Entry(spec, model=ckpt.model, checkpoint=ckpt,
                                 info={"checkpoint": str(ckpt.path), "training": ckpt.info.get("training", {})}))
        else:
            raise OptionError(f"{spec!r} is neither a model kind nor a checkpoint",
                              hint=f"use kinds ({', '.join(MODEL_KINDS)}, optionally KIND@NOISE), checkpoint "
                                   f"folders or shipped names ({', '.join(sorted(shipped)) or 'none'})")
    if not entries:
        raise OptionError("no models to compare", hint="e.g. --models simple,deep,conv")
    return entries


def recorded_checkpoint(entries: Sequence[Entry]):
    """The first checkpoint compared (None if every model is trained here): the data are read as it
    remembers its training data was (label column, scaler, test split), as `aelab evaluate` reads them."""
    return next((e.checkpoint for e in entries if e.checkpoint is not None), None)


def pca_code_size(entries: Sequence[Entry], data) -> int:
    """The PCA baseline's components: the largest code size of the models compared, at most what the
    training split allows (its samples, and the values in one sample)."""
    sizes = [e.model.config.code_size if e.model is not None else e.config.code_size for e in entries]
    values = math.prod(data.train.images.shape[1:])
    return max(1, min(max(sizes, default=32), data.train.n, values))


def run_comparison(data, entries: Sequence[Entry], *, pca: bool = True, code_size: int | None = None, seed: int = 0,
                   tsne_samples: int = 1000, reconstruct_count: int = 10,
                   log: Callable[[str], None] | None = print) -> dict:
    """Train (where needed) and measure each entry, PCA first; returns ``{"meta", "rows", "reconstructions"}``.

    The PCA has ``code_size`` components (None: :func:`pca_code_size`). ``reconstructions`` maps each
    row's name to the decodings of the first ``reconstruct_count`` test images (``"original"`` holds
    those images); it is empty for a table, whose rows are not pictures.
    """
    from ..models.inference import reconstruct
    from ..training.loop import train
    say = log or (lambda _m: None)
    images = data.kind == "images"
    shown = data.test.images[:reconstruct_count] if images else data.test.images[:0]
    rows, pictures = [], {"original": shown.astype(np.float32) / 255.0} if images else {}
    todo: list[Entry] = list(entries)
    if pca:
        code_size = code_size or pca_code_size(entries, data)
        started = time.perf_counter()
        model = fit_pca(data.train.images, code_size, seed)
        todo.insert(0, Entry(f"pca-{code_size}", model=model, info={"train_seconds": time.perf_counter() - started,
                                                                     "kind": "pca"}))
    for entry in todo:
        row = {"name": entry.name}
        model = entry.model
        if model is None:
            say(f"training {entry.name} ({entry.config.recipe}, {entry.config.sweeps:g} sweeps)")
            result = train(data, entry.config, log=None, progress_bar=False)
            model = result.model
            row.update(kind=entry.config.model, recipe=entry.config.recipe, sweeps=entry.config.sweeps,
                       noise=entry.config.noise, train_seconds=result.seconds)
        else:
            training = entry.info.get("training", {})
            row.update(kind=entry.info.get("kind", model.config.kind), recipe=training.get("recipe"),
                       sweeps=training.get("sweeps"), noise=training.get("noise"),
                       train_seconds=entry.info.get("train_seconds", training.get("seconds")))
        model = model.to("cpu").eval()
        say(f"measuring {entry.name}")
        row.update(quality_metrics(model, data, tsne_samples=tsne_samples, seed=seed))
        rows.append(row)
        if images:
            pictures[entry.name] = reconstruct(model, shown)
        say("  " + ", ".join(f"{h} {_fmt(row.get(k), f)}" for k, h, f in COLUMNS[1:]))
    meta = {"data": data.name, "samples": "images" if images else "table rows", "train_images": int(data.train.n),
            "test_images": int(data.test.n), "tsne_samples": int(min(tsne_samples, data.test.n)),
            "knn_neighbours": KNN_NEIGHBOURS, "tsne_neighbours": TSNE_NEIGHBOURS, "seed": seed,
            "denoise_noise": DENOISE_NOISE if images else None,
            "noisy_psnr_db": _noisy_psnr(data.test.images, DENOISE_NOISE, seed) if images else None,
            "torch": torch.__version__, "threads": torch.get_num_threads()}
    settings = {(e.config.recipe, e.config.sweeps) for e in entries if e.config is not None}
    if len(settings) == 1:
        meta["recipe"], meta["sweeps"] = settings.pop()
    return {"meta": meta, "rows": rows, "reconstructions": pictures}


def _noisy_psnr(images: np.ndarray, noise: str, seed: int) -> float:
    from .metrics import psnr_db
    from ..data.noise import corrupt, parse_noise
    clean = torch.as_tensor(images.reshape(len(images), -1)).to(torch.float32) / 255.0
    noisy = corrupt(clean, parse_noise(noise), torch.Generator().manual_seed(seed))
    return psnr_db(float(((noisy - clean).double() ** 2).mean()))


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return spec.format(value)


def markdown_table(result: dict) -> str:
    """The rows as a Markdown table, with a line on what was measured."""
    meta = result["meta"]
    samples = meta.get("samples", "images")
    pictured = (f"denoising with {meta['denoise_noise']} (noisy images: {meta['noisy_psnr_db']:.2f} dB)."
                if meta.get("noisy_psnr_db") is not None else
                f"SSIM, denoising and the reconstruction picture are for images: none for {samples}.")
    lines = [f"Test split of {meta['data']} ({meta['test_images']:,} {samples}; {meta['train_images']:,} for "
             f"training and the 5-NN fit); t-SNE on the first {meta['tsne_samples']:,} test {samples}; {pictured}"
             + (f" Models trained with recipe {meta['recipe']} for {meta['sweeps']:g} sweeps, seed {meta['seed']}."
                if meta.get("recipe") and meta.get("sweeps") else ""), "",
             "| " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|" + "|".join("---" if k == "name" else "---:" for k, _, _ in COLUMNS) + "|"]
    for row in result["rows"]:
        lines.append("| " + " | ".join(_fmt(row.get(k), f) for k, _, f in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def save_reconstructions(path: str | Path, pictures: dict[str, np.ndarray]) -> Path:
    """One row of reconstructions per model, the originals on top."""
    from .plots import _figure, _save, _show_image, _MUTED
    names = list(pictures)
    ncols = max(len(v) for v in pictures.values())
    cell = 0.62
    with _figure(figsize=(1.6 + ncols * cell, len(names) * cell + 0.1)) as fig:
        grid = fig.add_gridspec(len(names), ncols, left=1.5 / (1.6 + ncols * cell), right=1, bottom=0, top=1,
                                wspace=0.05, hspace=0.05)
        for i, name in enumerate(names):
            for j in range(ncols):
                ax = fig.add_subplot(grid[i, j])
                images = pictures[name]
                if j < len(images):
                    _show_image(ax, np.clip(images[j], 0.0, 1.0))
                else:
                    ax.axis("off")
                if j == 0:
                    ax.set_ylabel(name, rotation=0, ha="right", va="center", labelpad=6, color=_MUTED, fontsize=8)
        return _save(fig, path)


def write_results(result: dict, out: str | Path, stem: str = "quality") -> dict[str, Path]:
    """Write ``stem.md``, ``stem.json`` and, for images, ``stem.png`` (reconstructions) into ``out``."""
    from ..fileio import ensure_dir, write_text
    folder = ensure_dir(out)
    paths = {"markdown": folder / f"{stem}.md", "json": folder / f"{stem}.json"}
    if result["reconstructions"]:  # none for a table: its rows are not pictures
        paths["picture"] = save_reconstructions(folder / f"{stem}.png", result["reconstructions"])
    write_text(paths["markdown"], f"# Autoencoder quality\n\n{markdown_table(result)}")
    plain = {"meta": result["meta"], "rows": result["rows"]}
    write_text(paths["json"], json.dumps(plain, indent=2, default=_json_default) + "\n")
    return paths


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def quick_subset(data, train: int = 2000, test: int = 500):
    """The first ``train`` training and ``test`` test images of ``data``, for --quick runs."""
    from ..data import Dataset, Split
    return Dataset(name=f"{data.name} (first {min(train, data.train.n)} + {min(test, data.test.n)})",
                   train=Split(data.train.images[:train], None if data.train.labels is None
                               else data.train.labels[:train]),
                   test=Split(data.test.images[:test], None if data.test.labels is None else data.test.labels[:test]),
                   sha256=data.sha256, num_classes=data.num_classes)
