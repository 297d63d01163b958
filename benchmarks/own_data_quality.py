"""Quality on data that is not MNIST: aelab's default autoencoder against PCA with the same code size.

Writes data sets the way a user would hand them to aelab, loads each with
``aelab.data.load_dataset`` and, on each, trains one autoencoder with the
settings ``aelab train --data PATH`` chooses (nothing given but the code size
for tables) and fits a PCA with the same number of components on the same
training split:

``digits``         scikit-learn's 8x8 digits as a table (64 columns + label, CSV), standard scaling
``breast-cancer``  scikit-learn's breast cancer table (30 columns + label, CSV), standard scaling
``wine``           scikit-learn's wine table (13 columns + label, CSV), standard scaling
``digits-png``     the same 8x8 digits as grey PNG files (values 0..16 stretched to 0..255), class folders
``mnist-png``      a subset of the bundled MNIST written as PNG files, train/ and test/ with class folders
``mnist-colour``   MNIST digits painted in a random colour on a random background colour, 28x28 colour PNGs
``patches``        16x16 colour patches cut from scikit-image's bundled photographs, PNG files in
                   one class folder per photograph (the label: which photograph)
``patches-32``     the same at 32x32
``shapes``         20,000 32x32 colour pictures of one filled shape (disc, square, triangle, ring) of random
                   size, place and colour on a random background, one class folder per shape

Both are scored on the test split in the same space: the scaled table rows
(standardised units) or pixels / 255 (so [0, 1], colour channels included).
Reported per data set: the test MSE of each (PCA's reconstruction as it comes,
and clipped to [0, 1] for images, which only helps it), the fraction of the
test variance each explains (R^2), their ratio, and the accuracy of a 5-NN
classifier fitted on the training codes (where there are labels). The CPU
model and one JSON line come last; the JSON is also written to --out.

    nice -n 10 python benchmarks/own_data_quality.py          # the full run (tens of minutes on 2 CPU cores)
    nice -n 10 python benchmarks/own_data_quality.py --jobs 2 # two data sets at once (each trains on one thread)
    python benchmarks/own_data_quality.py --quick             # fewer samples and sweeps: a check
    python benchmarks/own_data_quality.py --only digits,patches

docs/own-data.md discusses the results.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "own-data-quality"


@dataclass(frozen=True)
class Setting:
    """What the benchmark gives aelab for one data set: a code size for tables (None: aelab chooses),
    the sweeps of a --quick check (None: aelab chooses), and how many seeds to train."""

    code_size: int | None = None
    quick_sweeps: float | None = None
    repeats: int = 1                    # autoencoders trained (seeds seed, seed + 1, ...); scores are their mean


SETTINGS: dict[str, Setting] = {
    "digits": Setting(code_size=8, quick_sweeps=20),
    "breast-cancer": Setting(code_size=4, quick_sweeps=40),
    "wine": Setting(code_size=3, quick_sweeps=40),
    "digits-png": Setting(quick_sweeps=8),
    "mnist-png": Setting(quick_sweeps=2),
    "mnist-colour": Setting(quick_sweeps=2),
    "patches": Setting(quick_sweeps=3),
    "patches-32": Setting(quick_sweeps=2),
    "shapes": Setting(quick_sweeps=2),
}
DATASETS = tuple(SETTINGS)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
PATCH = 16
PATCHES_PER_PHOTO = 3000
PATCHES_32_PER_PHOTO = 1500
SHAPES = ("disc", "square", "triangle", "ring")
SHAPE_IMAGES = 20_000
KNN_K = 5


# --- making the data sets, as files a user would have ---------------------------------------------

def write_table_csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """``x`` (n, d) and integer labels ``y`` as a CSV with a header and a last column ``label``."""
    header = ",".join([f"f{i}" for i in range(x.shape[1])] + ["label"])
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header=header, comments="",
               fmt=["%.10g"] * x.shape[1] + ["%d"])
    return path


def make_digits(root: Path, limit: int | None = None) -> Path:
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    return write_table_csv(root / "digits.csv", x[:limit], y[:limit])


def make_breast_cancer(root: Path, limit: int | None = None) -> Path:
    from sklearn.datasets import load_breast_cancer
    x, y = load_breast_cancer(return_X_y=True)
    return write_table_csv(root / "breast-cancer.csv", x[:limit], y[:limit])


def make_wine(root: Path, limit: int | None = None) -> Path:
    from sklearn.datasets import load_wine
    x, y = load_wine(return_X_y=True)
    return write_table_csv(root / "wine.csv", x[:limit], y[:limit])


def save_class_folders(folder: Path, images: np.ndarray, labels: np.ndarray, names) -> Path:
    """Images (uint8, grey or colour channels last) as PNG files in one folder per class name."""
    from PIL import Image
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(folder / names[int(label)] / f"{i:05d}.png")
    return folder


def make_digits_png(root: Path) -> Path:
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    images = np.round(x.reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)
    return save_class_folders(root / "digits-png", images, y, [str(c) for c in range(10)])


def cut_patches(photo: np.ndarray, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random ``size`` x ``size`` colour patches of ``photo`` (grey photos get three equal channels)."""
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=2)
    photo = np.ascontiguousarray(photo[..., :3]).astype(np.uint8)
    h, w = photo.shape[:2]
    ys = rng.integers(0, h - size + 1, count)
    xs = rng.integers(0, w - size + 1, count)
    return np.stack([photo[y:y + size, x:x + size] for y, x in zip(ys, xs)])


def make_patches(root: Path, per_photo: int, size: int = PATCH, seed: int = 0) -> Path:
    """Random patches of scikit-image's photographs as PNG files in one class folder per photograph."""
    import skimage.data
    from PIL import Image
    rng = np.random.default_rng(seed)
    folder = root / ("patches" if size == PATCH else f"patches-{size}")
    for name in PHOTOS:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i, patch in enumerate(cut_patches(getattr(skimage.data, name)(), per_photo, size, rng)):
            Image.fromarray(patch).save(folder / name / f"{i:05d}.png")
    return folder


def make_mnist_png(root: Path, train: int, test: int) -> Path:
    """The first ``train`` + ``test`` bundled MNIST images as PNG files: train/ and test/, class folders."""
    from PIL import Image

    from aelab.data import load_dataset
    mnist = load_dataset()
    folder = root / "mnist-png"
    for split, n in (("train", train), ("test", test)):
        s = getattr(mnist, split)
        for label in range(mnist.num_classes):
            (folder / split / str(label)).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(s.images[i]).save(folder / split / str(int(s.labels[i])) / f"{i:05d}.png")
    return folder


def recolour(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey images (n, h, w) as colour ones: each image's ink and background get their own random colour."""
    ink = rng.integers(0, 256, (len(grey), 1, 1, 3))
    paper = rng.integers(0, 256, (len(grey), 1, 1, 3))
    alpha = grey[..., None].astype(np.float64) / 255.0
    return np.round(alpha * ink + (1.0 - alpha) * paper).astype(np.uint8)


def make_mnist_colour(root: Path, count: int, seed: int = 0) -> Path:
    """The first ``count`` bundled MNIST training images, recoloured, as colour PNGs in class folders."""
    from aelab.data import load_dataset
    mnist = load_dataset()
    images = recolour(mnist.train.images[:count], np.random.default_rng(seed))
    return save_class_folders(root / "mnist-colour", images, mnist.train.labels[:count], [str(c) for c in range(10)])


def draw_shape(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``size`` x ``size`` colour picture of a filled ``kind`` of random size, place and colour."""
    import skimage.draw
    image = np.empty((size, size, 3), np.uint8)
    image[:] = rng.integers(0, 256, 3)
    radius = rng.uniform(0.18, 0.42) * size
    cy, cx = rng.uniform(radius, size - radius, 2)
    colour = rng.integers(0, 256, 3)
    if kind in ("disc", "ring"):
        rr, cc = skimage.draw.disk((cy, cx), radius, shape=image.shape[:2])
        image[rr, cc] = colour
        if kind == "ring":
            rr, cc = skimage.draw.disk((cy, cx), radius * 0.55, shape=image.shape[:2])
            image[rr, cc] = image[0, 0] if (image[0, 0] != colour).any() else 255 - colour
    elif kind == "square":
        r = radius / np.sqrt(2)
        rr, cc = skimage.draw.rectangle((cy - r, cx - r), (cy + r, cx + r), shape=image.shape[:2])
        image[rr.astype(int), cc.astype(int)] = colour
    else:
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        rr, cc = skimage.draw.polygon(cy + radius * np.sin(angles), cx + radius * np.cos(angles), shape=image.shape[:2])
        image[rr, cc] = colour
    return image


def make_shapes(root: Path, count: int, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(SHAPES), count)
    images = np.stack([draw_shape(SHAPES[k], size, rng) for k in labels])
    return save_class_folders(root / "shapes", images, labels, list(SHAPES))


def make_dataset(name: str, root: Path, quick: bool, seed: int = 0):
    """Write data set ``name`` under ``root`` and load it with ``load_dataset``."""
    from aelab.data import load_dataset
    tables = {"digits": make_digits, "breast-cancer": make_breast_cancer, "wine": make_wine}
    if name in tables:
        return load_dataset(tables[name](root), label_column="label", scale="standard", test_fraction=0.2, seed=seed)
    if name == "digits-png":
        return load_dataset(make_digits_png(root), test_fraction=0.2, seed=seed)
    if name == "patches":
        return load_dataset(make_patches(root, 250 if quick else PATCHES_PER_PHOTO, seed=seed), test_fraction=0.2,
                            seed=seed)
    if name == "patches-32":
        return load_dataset(make_patches(root, 100 if quick else PATCHES_32_PER_PHOTO, size=32, seed=seed),
                            test_fraction=0.2, seed=seed)
    if name == "mnist-png":
        return load_dataset(make_mnist_png(root, *((1000, 200) if quick else (6000, 1000))))
    if name == "mnist-colour":
        return load_dataset(make_mnist_colour(root, 1000 if quick else 7000, seed=seed), test_fraction=1 / 7,
                            seed=seed)
    if name == "shapes":
        return load_dataset(make_shapes(root, 800 if quick else SHAPE_IMAGES, seed=seed), test_fraction=0.1,
                            seed=seed)
    raise ValueError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")


# --- the comparison ---------------------------------------------------------------------------------

def scored_rows(data, samples: np.ndarray) -> np.ndarray:
    """Samples as the flat float64 rows both models are scored on: pixels / 255, or the scaled table rows."""
    rows = samples.reshape(len(samples), -1).astype(np.float64)
    return rows / 255.0 if data.kind == "images" else rows


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - b) ** 2))


def explained(target: np.ndarray, error: float) -> float:
    """R^2: 1 - the squared error over the test data's squared deviations from its own per-value means."""
    spread = float(np.mean((target - target.mean(axis=0)) ** 2))
    return 1.0 - error / spread if spread > 0 else float("nan")


EXACT_PCA_LIMIT = 4096


def fitted_pca(train: np.ndarray, code_size: int, seed: int = 0):
    """PCA of the training rows: exact up to ``EXACT_PCA_LIMIT`` values per row (a full SVD up to 1,024,
    above the covariance's eigenvectors, seconds where a full SVD of 20,000 x 3,072 takes minutes on 2
    cores), above a randomised SVD with 10 power iterations (as close to exact as makes no difference to
    the MSE)."""
    from sklearn.decomposition import PCA
    if train.shape[1] <= 1024:
        return PCA(n_components=code_size, svd_solver="full").fit(train)
    if train.shape[1] <= EXACT_PCA_LIMIT:
        return PCA(n_components=code_size, svd_solver="covariance_eigh").fit(train)
    return PCA(n_components=code_size, svd_solver="randomized", iterated_power=10, n_oversamples=32,
               random_state=seed).fit(train)


def pca_scores(data, code_size: int, seed: int = 0) -> dict:
    """PCA with ``code_size`` components fitted on the training rows, scored on the test rows."""
    from aelab.evaluation.metrics import knn_accuracy
    started = time.perf_counter()
    train, test = scored_rows(data, data.train.images), scored_rows(data, data.test.images)
    pca = fitted_pca(train, code_size, seed)
    seconds = time.perf_counter() - started
    codes_test = pca.transform(test)
    out = pca.inverse_transform(codes_test)
    scores = {"test_mse": mse(out, test), "train_seconds": seconds}
    scores["test_r2"] = explained(test, scores["test_mse"])
    if data.kind == "images":
        scores["test_mse_clipped"] = mse(np.clip(out, 0.0, 1.0), test)
    if data.train.labels is not None:
        scores["knn_acc"] = knn_accuracy(pca.transform(train), data.train.labels, codes_test, data.test.labels,
                                         k=KNN_K)
    return scores


def ae_scores(data, config) -> dict:
    """Train an autoencoder with ``config`` (a TrainConfig) and score it on the test split."""
    from aelab.evaluation.evaluate import evaluate
    from aelab.evaluation.metrics import knn_accuracy
    from aelab.models import inference
    from aelab.training import train
    result = train(data, config, log=None, progress_bar=False)
    model = result.model
    validation = result.validation or {}
    test = scored_rows(data, data.test.images)
    out = inference.reconstruct(model, data.test.images).reshape(len(test), -1).astype(np.float64)
    scores = {"test_mse": mse(out, test), "train_seconds": result.seconds,
              "params": sum(p.numel() for p in model.parameters()), "steps": result.minibatches,
              "validation": {k: validation.get(k) for k in ("best_loss", "best_step", "stopped_at", "budget_spent")}}
    scores["test_r2"] = explained(test, scores["test_mse"])
    # the same figure as aelab's own evaluate() (in the model's channel order): a check on the units
    scores["evaluate_mse"] = evaluate(model, data.test.images)["test_mse"]
    if data.train.labels is not None:
        scores["knn_acc"] = knn_accuracy(inference.encode(model, data.train.images), data.train.labels,
                                         inference.encode(model, data.test.images), data.test.labels, k=KNN_K)
    return scores


def train_config(data, setting: Setting, quick: bool, seed: int = 0):
    """The settings ``aelab train --data PATH`` chooses (given only the table's code size; --quick: fewer sweeps)."""
    from aelab.api import train_settings
    return train_settings(data, code_size=setting.code_size, sweeps=setting.quick_sweeps if quick else None,
                          seed=seed, device="cpu")


def compare(data, setting: Setting, *, quick: bool = False, seed: int = 0) -> dict:
    """One data set's row: PCA and the default autoencoder with the same code size, scored the same way.

    The autoencoder is trained ``setting.repeats`` times (seeds ``seed``, ``seed + 1``, ...); its
    scores are the mean over those runs, each run's are kept under ``ae["runs"]``.
    """
    import torch
    choice = train_config(data, setting, quick, seed)
    pca = pca_scores(data, choice.config.code_size, seed)
    runs = []
    for run_seed in range(seed, seed + setting.repeats):
        torch.manual_seed(run_seed)
        runs.append(ae_scores(data, train_config(data, setting, quick, run_seed).config))
    ae = {key: float(np.mean([r[key] for r in runs])) for key in runs[0] if key != "validation"}
    ae["params"] = runs[0]["params"]
    ae["runs"] = runs
    ratios = [r["test_mse"] / pca["test_mse"] for r in runs]
    config = choice.config
    return {"data": data.name, "kind": data.kind, "input_shape": list(data.input_shape),
            "train_n": data.train.n, "test_n": data.test.n, "code_size": config.code_size,
            "model": config.model, "hidden": None if config.hidden is None else list(config.hidden),
            "channels": None if config.channels is None else list(config.channels),
            "recipe": config.recipe, "sweeps": config.sweeps, "minibatch_size": config.minibatch_size,
            "repeats": setting.repeats, "train_config": config.to_dict(), "chosen": choice.reason,
            "units": "pixels / 255" if data.kind == "images" else "standardised",
            "pca": pca, "ae": ae, "mse_ratio_ae_over_pca": ae["test_mse"] / pca["test_mse"],
            "mse_ratio_worst_run": max(ratios), "ae_at_least_as_good": max(ratios) <= 1.0}


# --- printing --------------------------------------------------------------------------------------

def _fmt_pct(v) -> str:
    return "-" if v is None else f"{v:.1%}"


def _conv_extras(config: dict) -> str:
    """", a residual block each, GroupNorm, shifts of up to 2 px" for the conv part's residual blocks,
    normalisation and training images' shifts, if any."""
    blocks, shift = config.get("res_blocks") or 0, config.get("shift") or 0
    extras = ([f"{'a' if blocks == 1 else blocks} residual block{'s' if blocks > 1 else ''} each"] if blocks else []) \
        + (["GroupNorm"] if config.get("norm") == "group" else []) + ([f"shifts of up to {shift} px"] if shift else [])
    return "".join(f", {e}" for e in extras)


def markdown_table(rows: list[dict]) -> str:
    """One line per data set; "AE/PCA" is the ratio of the test MSEs (below 1: the autoencoder is better),
    with the worst single run's in brackets where several were trained."""
    head = ("| data | train/test | code | chosen model | steps | MSE AE | MSE PCA | MSE PCA clipped | AE/PCA | R² AE "
            "| R² PCA | 5-NN AE | 5-NN PCA | AE train s |")
    lines = [head, "|---|---:|---:|---|" + "---:|" * 10]
    for r in rows:
        shape = "x".join(map(str, r["input_shape"]))
        ae, pca = r["ae"], r["pca"]
        ratio = f"{r['mse_ratio_ae_over_pca']:.2f}"
        if r["repeats"] > 1:
            ratio += f" ({r['mse_ratio_worst_run']:.2f})"
        runs = f", mean of {r['repeats']} seeds" if r["repeats"] > 1 else ""
        clipped = f"{pca['test_mse_clipped']:.5f}" if "test_mse_clipped" in pca else "-"
        body = f"conv {','.join(map(str, r['channels']))}{_conv_extras(r.get('train_config', {}))}" \
            if r.get("channels") else f"dense {','.join(map(str, r['hidden'] or ()))}"
        lines.append(
            f"| {r['name']} ({shape}, {r['units']}) | {r['train_n']}/{r['test_n']} | {r['code_size']} "
            f"| {r['model']} ({body}), {r['sweeps']:g} sweeps max{runs} | {ae['steps']:.0f} "
            f"| {ae['test_mse']:.5f} | {pca['test_mse']:.5f} "
            f"| {clipped} | {ratio} | {ae['test_r2']:.3f} | {pca['test_r2']:.3f} "
            f"| {_fmt_pct(ae.get('knn_acc'))} | {_fmt_pct(pca.get('knn_acc'))} | {ae['train_seconds']:.0f} |")
    return "\n".join(lines)


def run(names, *, quick: bool, seed: int = 0, log=print) -> dict:
    """Make, load and compare each named data set (in a temporary folder); returns the JSON-ready result."""
    import torch

    from aelab.device import cpu_model
    started = time.perf_counter()
    cache_before = os.environ.get("AELAB_CACHE")
    rows = []
    with tempfile.TemporaryDirectory(prefix="aelab-own-data-") as tmp:
        os.environ["AELAB_CACHE"] = str(Path(tmp) / "cache")  # the folders' decoding cache: thrown away after
        try:
            for name in names:
                t0 = time.perf_counter()
                data = make_dataset(name, Path(tmp), quick, seed)
                row = {"name": name, **compare(data, SETTINGS[name], quick=quick, seed=seed)}
                row["seconds"] = time.perf_counter() - t0
                rows.append(row)
                if log:
                    log(f"{name}: AE MSE {row['ae']['test_mse']:.5f}, PCA {row['pca']['test_mse']:.5f} "
                        f"(AE/PCA {row['mse_ratio_ae_over_pca']:.2f}), 5-NN AE {_fmt_pct(row['ae'].get('knn_acc'))} "
                        f"PCA {_fmt_pct(row['pca'].get('knn_acc'))}, train {row['ae']['train_seconds']:.0f} s, "
                        f"{row['seconds']:.0f} s", flush=True)
        finally:
            if cache_before is None:
                os.environ.pop("AELAB_CACHE", None)
            else:
                os.environ["AELAB_CACHE"] = cache_before
    return {"benchmark": "own_data_quality", "quick": quick, "seed": seed,
            "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "seconds": time.perf_counter() - started, "rows": rows}


def _run_alone(name: str, quick: bool, seed: int) -> dict:
    return run([name], quick=quick, seed=seed)


def run_in_parallel(names, jobs: int, *, quick: bool, seed: int = 0) -> dict:
    """:func:`run` with each data set in its own process, ``jobs`` at a time, the largest first; the rows
    come back in ``names``' order."""
    import functools
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    started = time.perf_counter()
    order = sorted(names, key=lambda n: -COST_ORDER.index(n) if n in COST_ORDER else 0)
    # not multiprocessing.Pool: its workers are daemons, which may not start the image readers' processes
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(functools.partial(_run_alone, quick=quick, seed=seed), order))
    rows = {r["rows"][0]["name"]: r["rows"][0] for r in results}
    return {**results[0], "jobs": jobs, "seconds": time.perf_counter() - started, "rows": [rows[n] for n in names]}


COST_ORDER = ("wine", "breast-cancer", "digits", "digits-png", "patches", "mnist-png", "patches-32", "mnist-colour",
              "shapes")  # cheapest first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and sweeps: a check, not a result")
    parser.add_argument("--only", default=",".join(DATASETS), help=f"comma-separated subset of {', '.join(DATASETS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT), help=f"folder for own-data-quality.json (default: {OUT})")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--jobs", type=int, default=1,
                        help="data sets at once, each in its own process (training runs on one thread; default: 1)")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown data set(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    result = run(names, quick=args.quick, seed=args.seed) if args.jobs <= 1 else \
        run_in_parallel(names, args.jobs, quick=args.quick, seed=args.seed)
    print()
    print(markdown_table(result["rows"]))
    print(f"\nCPU: {result['cpu']}, {result['cores']} cores, {result['torch_threads']} torch threads; "
          f"{result['seconds']:.0f} s in all{' (--quick)' if args.quick else ''}")
    if not args.no_write:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = "own-data-quality-quick" if args.quick else "own-data-quality"
        (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"Wrote {out / (stem + '.json')}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
