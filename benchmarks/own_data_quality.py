"""Quality on data that is not MNIST: an autoencoder against PCA with the same code size, in one run.

Writes four data sets the way a user would hand them to aelab, loads each with
``aelab.data.load_dataset`` and, on each, trains one autoencoder and fits a PCA
with the same number of components on the same training split:

``digits``         scikit-learn's 8x8 digits as a table (64 columns + label, CSV), standard scaling
``breast-cancer``  scikit-learn's breast cancer table (30 columns + label, CSV), standard scaling
``patches``        16x16 colour patches cut from scikit-image's bundled photographs, PNG files in
                   one class folder per photograph (the label: which photograph)
``mnist-png``      a subset of the bundled MNIST written as PNG files, train/ and test/ with class folders

Both are scored on the test split in the same space: the scaled table rows
(standardised units) or pixels / 255 (so [0, 1], colour channels included).
Reported per data set: the test MSE of each (PCA's reconstruction as it comes,
and clipped to [0, 1] for images, which only helps it), the fraction of the
test variance each explains (R^2), their ratio, and the accuracy of a 5-NN
classifier fitted on the training codes (where there are labels). The CPU
model and one JSON line come last; the JSON is also written to --out.

    nice -n 10 python benchmarks/own_data_quality.py          # the full run (minutes on 2 CPU cores)
    python benchmarks/own_data_quality.py --quick             # fewer samples and sweeps: a check
    python benchmarks/own_data_quality.py --only digits,patches --sweeps-scale 2

Each data set's model, code size and sweeps are in SETTINGS; the docs page
docs/own-data.md explains the choices.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "own-data-quality"


@dataclass(frozen=True)
class Setting:
    """How one data set is made and what trains on it."""

    code_size: int
    model: str
    hidden: tuple[int, ...] | None
    sweeps: float
    quick_sweeps: float
    recipe: str = "adam-long"
    minibatch_size: int | None = None
    repeats: int = 1                    # autoencoders trained (seeds seed, seed + 1, ...); scores are their mean
    extra: dict = field(default_factory=dict)


CONV = {"channels": (32, 64), "conv_depth": 1}  # one 3x3 convolution per stage: cheaper steps, more of them

SETTINGS: dict[str, Setting] = {
    "digits": Setting(code_size=8, model="dense", hidden=(256, 128), sweeps=100, quick_sweeps=50,
                      minibatch_size=64, repeats=3),
    "breast-cancer": Setting(code_size=4, model="dense", hidden=(32, 16), sweeps=150, quick_sweeps=100,
                             minibatch_size=32, repeats=3),
    "patches": Setting(code_size=32, model="conv", hidden=None, sweeps=40, quick_sweeps=20,
                       minibatch_size=32, repeats=2, extra=CONV),
    "mnist-png": Setting(code_size=32, model="conv", hidden=None, sweeps=20, quick_sweeps=10,
                         minibatch_size=32, extra=CONV),
}
DATASETS = tuple(SETTINGS)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
PATCH = 16
PATCHES_PER_PHOTO = 3000
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
    folder = root / "patches"
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


def make_dataset(name: str, root: Path, quick: bool, seed: int = 0):
    """Write data set ``name`` under ``root`` and load it with ``load_dataset``."""
    from aelab.data import load_dataset
    if name == "digits":
        return load_dataset(make_digits(root), label_column="label", scale="standard",
                            test_fraction=0.2, seed=seed)
    if name == "breast-cancer":
        return load_dataset(make_breast_cancer(root), label_column="label", scale="standard",
                            test_fraction=0.2, seed=seed)
    if name == "patches":
        return load_dataset(make_patches(root, 500 if quick else PATCHES_PER_PHOTO, seed=seed), test_fraction=0.2, seed=seed)
    if name == "mnist-png":
        return load_dataset(make_mnist_png(root, *((2000, 500) if quick else (6000, 1000))))
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


def pca_scores(data, code_size: int, seed: int = 0) -> dict:
    """PCA with ``code_size`` components fitted on the training rows, scored on the test rows."""
    from sklearn.decomposition import PCA

    from aelab.evaluation.metrics import knn_accuracy
    started = time.perf_counter()
    train, test = scored_rows(data, data.train.images), scored_rows(data, data.test.images)
    pca = PCA(n_components=code_size, svd_solver="full").fit(train)  # exact: the best linear code there is
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
    test = scored_rows(data, data.test.images)
    out = inference.reconstruct(model, data.test.images).reshape(len(test), -1).astype(np.float64)
    scores = {"test_mse": mse(out, test), "train_seconds": result.seconds,
              "params": sum(p.numel() for p in model.parameters())}
    scores["test_r2"] = explained(test, scores["test_mse"])
    # the same figure as aelab's own evaluate() (in the model's channel order): a check on the units
    scores["evaluate_mse"] = evaluate(model, data.test.images)["test_mse"]
    if data.train.labels is not None:
        scores["knn_acc"] = knn_accuracy(inference.encode(model, data.train.images), data.train.labels,
                                         inference.encode(model, data.test.images), data.test.labels, k=KNN_K)
    return scores


def train_config(setting: Setting, quick: bool, seed: int = 0, sweeps_scale: float = 1.0):
    from aelab.training import TrainConfig
    sweeps = (setting.quick_sweeps if quick else setting.sweeps) * sweeps_scale
    return TrainConfig(model=setting.model, code_size=setting.code_size, hidden=setting.hidden,
                       recipe=setting.recipe, sweeps=sweeps, minibatch_size=setting.minibatch_size, seed=seed,
                       device="cpu", **setting.extra)


def compare(data, setting: Setting, *, quick: bool = False, seed: int = 0, sweeps_scale: float = 1.0) -> dict:
    """One data set's row: PCA and the autoencoder with the same code size, scored the same way.

    The autoencoder is trained ``setting.repeats`` times (seeds ``seed``, ``seed + 1``, ...); its
    scores are the mean over those runs, each run's are kept under ``ae["runs"]``.
    """
    import torch
    pca = pca_scores(data, setting.code_size, seed)
    runs = []
    for run_seed in range(seed, seed + setting.repeats):
        torch.manual_seed(run_seed)
        runs.append(ae_scores(data, train_config(setting, quick, run_seed, sweeps_scale)))
    ae = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
    ae["params"] = runs[0]["params"]
    ae["runs"] = runs
    ratios = [r["test_mse"] / pca["test_mse"] for r in runs]
    config = train_config(setting, quick, seed, sweeps_scale)
    return {"data": data.name, "kind": data.kind, "input_shape": list(data.input_shape),
            "train_n": data.train.n, "test_n": data.test.n, "code_size": setting.code_size,
            "model": setting.model, "hidden": None if setting.hidden is None else list(setting.hidden),
            "recipe": config.recipe, "sweeps": config.sweeps, "minibatch_size": config.minibatch_size,
            "repeats": setting.repeats, "train_config": config.to_dict(),
            "units": "pixels / 255" if data.kind == "images" else "standardised",
            "pca": pca, "ae": ae, "mse_ratio_ae_over_pca": ae["test_mse"] / pca["test_mse"],
            "mse_ratio_worst_run": max(ratios), "ae_at_least_as_good": max(ratios) <= 1.0}


# --- printing --------------------------------------------------------------------------------------

def _fmt_pct(v) -> str:
    return "-" if v is None else f"{v:.1%}"


def markdown_table(rows: list[dict]) -> str:
    """One line per data set; "AE/PCA" is the ratio of the test MSEs (below 1: the autoencoder is better),
    with the worst single run's in brackets where several were trained."""
    head = ("| data | train/test | code | autoencoder | MSE AE | MSE PCA | MSE PCA clipped | AE/PCA | R² AE "
            "| R² PCA | 5-NN AE | 5-NN PCA | AE train s |")
    lines = [head, "|---|---:|---:|---|" + "---:|" * 9]
    for r in rows:
        shape = "x".join(map(str, r["input_shape"]))
        ae, pca = r["ae"], r["pca"]
        ratio = f"{r['mse_ratio_ae_over_pca']:.2f}"
        if r["repeats"] > 1:
            ratio += f" ({r['mse_ratio_worst_run']:.2f})"
        runs = f", mean of {r['repeats']} seeds" if r["repeats"] > 1 else ""
        clipped = f"{pca['test_mse_clipped']:.5f}" if "test_mse_clipped" in pca else "-"
        lines.append(
            f"| {r['name']} ({shape}, {r['units']}) | {r['train_n']}/{r['test_n']} | {r['code_size']} "
            f"| {r['model']} {'x'.join(map(str, r['hidden'] or ())) or ''}{' ' if r['hidden'] else ''}"
            f"{r['recipe']} {r['sweeps']:g} sweeps{runs} | {ae['test_mse']:.5f} | {pca['test_mse']:.5f} "
            f"| {clipped} | {ratio} | {ae['test_r2']:.3f} | {pca['test_r2']:.3f} "
            f"| {_fmt_pct(ae.get('knn_acc'))} | {_fmt_pct(pca.get('knn_acc'))} | {ae['train_seconds']:.0f} |")
    return "\n".join(lines)


def run(names, *, quick: bool, seed: int = 0, sweeps_scale: float = 1.0, log=print) -> dict:
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
                row = {"name": name, **compare(data, SETTINGS[name], quick=quick, seed=seed,
                                              sweeps_scale=sweeps_scale)}
                row["seconds"] = time.perf_counter() - t0
                rows.append(row)
                if log:
                    log(f"{name}: AE MSE {row['ae']['test_mse']:.4f}, PCA {row['pca']['test_mse']:.4f} "
                        f"(AE/PCA {row['mse_ratio_ae_over_pca']:.2f}), {row['seconds']:.0f} s", flush=True)
        finally:
            if cache_before is None:
                os.environ.pop("AELAB_CACHE", None)
            else:
                os.environ["AELAB_CACHE"] = cache_before
    return {"benchmark": "own_data_quality", "quick": quick, "seed": seed, "sweeps_scale": sweeps_scale,
            "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "seconds": time.perf_counter() - started, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and sweeps: a check, not a result")
    parser.add_argument("--only", default=",".join(DATASETS), help=f"comma-separated subset of {', '.join(DATASETS)}")
    parser.add_argument("--sweeps-scale", type=float, default=1.0, help="multiply every data set's sweeps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT), help=f"folder for own-data-quality.json (default: {OUT})")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown data set(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    result = run(names, quick=args.quick, seed=args.seed, sweeps_scale=args.sweeps_scale)
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
