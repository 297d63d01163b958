"""Which image model should `aelab train --data PATH` choose? A small study against PCA, at equal steps.

On three image sets of own_data_quality.py (MNIST as PNG, 16x16 colour photo patches, 32x32 colour
shapes; smaller subsets), each model trains for the same number of optimiser steps with the recipe the
defaults use (``fit``: Adam, warm-up, cosine decay; minibatch 64) and early stopping on a 10%
validation split, and is scored by its test MSE over that of PCA with the same code size (32), fitted
on the same training split:

``conv``           the conv kind as it was the default for images: stride-2 stages of 32, 64 channels, two
                   3x3 convolutions per stage, SiLU, a linear code, BCE on sigmoid outputs
``conv-mse``       the same with linear outputs and the squared error (what PSNR and the ratio measure)
``residual-dense`` the residual model (PCA plus a part that starts at zero) with dense layers 256, 128
``residual``       the residual model with the conv stages the defaults choose (what `aelab train` trains)

    nice -n 10 python benchmarks/default_model_study.py [--steps N] [--only mnist-png,patches]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import own_data_quality as odq  # noqa: E402 - the data sets and the scoring

OUT = Path(__file__).resolve().parent / "results" / "own-data-quality"
SETS = ("mnist-png", "patches", "shapes")  # own_data_quality.py's --quick sizes
MODELS = ("conv", "conv-mse", "residual-dense", "residual")


def config_for(name: str, data, steps: int, seed: int = 0):
    """The study's settings for model ``name``: the defaults' choice, changed only where the model differs."""
    from aelab.api import train_settings
    chosen = train_settings(data, seed=seed, device="cpu").config
    rows = data.train.n - max(1, round(chosen.validation * data.train.n))
    sweeps = steps * chosen.minibatch_size / rows
    base = replace(chosen, sweeps=sweeps, budget=None)
    if name == "conv":
        return replace(base, model="conv", channels=(32, 64), conv_depth=2, activation="silu", hidden=None,
                       loss="bce")
    if name == "conv-mse":
        return replace(base, model="conv", channels=(32, 64), conv_depth=2, activation="silu", hidden=None,
                       loss="mse")
    if name == "residual-dense":
        return replace(base, channels=None, hidden=(256, 128))
    return base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps per model (default: 1500)")
    parser.add_argument("--only", default=",".join(SETS))
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    from aelab.device import cpu_model
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aelab-study-") as tmp:
        os.environ["AELAB_CACHE"] = str(Path(tmp) / "cache")
        for set_name in args.only.split(","):
            data = odq.make_dataset(set_name, Path(tmp), quick=True)
            pca = odq.pca_scores(data, 32)
            for model in MODELS:
                config = config_for(model, data, args.steps)
                ae = odq.ae_scores(data, config)
                row = {"data": set_name, "train_n": data.train.n, "model": model, "steps": ae["steps"],
                       "ratio": ae["test_mse"] / pca["test_mse"], "ae": ae, "pca": pca,
                       "config": config.to_dict()}
                rows.append(row)
                print(f"{set_name} {model}: AE/PCA {row['ratio']:.3f}, 5-NN {odq._fmt_pct(ae.get('knn_acc'))} "
                      f"(PCA {odq._fmt_pct(pca.get('knn_acc'))}), {ae['train_seconds']:.0f} s, "
                      f"{ae['params']:,} parameters", flush=True)
    result = {"benchmark": "default_model_study", "steps": args.steps, "cpu": cpu_model(),
              "seconds": time.perf_counter() - started, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "default-model-study.json").write_text(json.dumps(result, indent=1) + "\n")
    print("| data | model | steps | AE/PCA | 5-NN AE | 5-NN PCA | train s | parameters |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['data']} ({r['train_n']} train) | {r['model']} | {r['steps']} | {r['ratio']:.3f} "
              f"| {odq._fmt_pct(r['ae'].get('knn_acc'))} | {odq._fmt_pct(r['pca'].get('knn_acc'))} "
              f"| {r['ae']['train_seconds']:.0f} | {r['ae']['params']:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
