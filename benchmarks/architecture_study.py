"""Which conv body should the default (``residual``) model have? Variants measured against PCA.

Each variant changes one thing of the residual model's nonlinear part (its conv layers) and is
trained with the settings ``aelab train --data PATH`` chooses otherwise (recipe, length, early
stopping), on data sets of ``benchmarks/own_data_quality.py``; PCA with the same code size on the
same split is the yardstick, as there. The variants:

``plain``        the conv body as ``aelab train`` chose it before this study: one stride-2 3x3
                 convolution per stage, SiLU, stages down to 7..8 pixels (two at 28, three at 32)
``depth2``       a second 3x3 convolution in each stage (``--conv-depth 2``)
``stages``       one stage more, down to 4 pixels (a smaller flattened map before the code layer)
``depth2-stages`` both
``res``          a residual block after each stage's convolution (``--res-blocks 1``), stages down to 4 pixels
``res-wd``       ``res`` trained with decoupled weight decay 1.0 (AdamW's), which pulls the nonlinear part
                 towards zero, that is the model towards its PCA
``res-relu``     the same with ReLU
``wide``         ``res`` with twice the channels
``res2``         two residual blocks per stage
``gdn``          ``plain`` with GDN (encoder) and inverse GDN (decoder) in place of SiLU, as in learned
                 image compression (Balle et al.); defined here, not in aelab
``groupnorm``    ``res`` with GroupNorm (8 groups) after each convolution but the output's, built here
                 by inserting the layers into the body; the same layers as ``--res-blocks 1 --norm group``,
                 which aelab added after this study and now chooses

    nice -n 10 python benchmarks/architecture_study.py --jobs 2          # every variant on shapes and mnist-colour
    python benchmarks/architecture_study.py --data shapes --variants plain,res

Each training runs on one thread, so ``--jobs 2`` trains two at once on 2 cores. The results
(one line per run, then a table, then JSON) go to benchmarks/results/architecture-study/;
docs/own-data.md discusses them.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import own_data_quality as odq  # noqa: E402

from aelab.models import networks  # noqa: E402
from aelab.models.layers import ResidualBlock  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "architecture-study"
PLAIN_BODY = networks.ConvAutoencoder  # the residual model's conv body, as aelab builds it
DATA = ("shapes", "mnist-colour")


def stages_to_four(side: int) -> tuple[int, ...]:
    """Channels of stride-2 stages that halve ``side`` down to 4 pixels or fewer: what aelab now chooses."""
    from aelab.training.auto import conv_channels
    return conv_channels(side)


class GDN(nn.Module):
    """Generalised divisive normalisation across channels, or its inverse (a product)."""

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(0.1 * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.gamma.shape[0]
        norm = F.conv2d(x * x, self.gamma.abs().view(c, c, 1, 1), self.beta.abs() + 1e-6)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


def gdn_body(config):
    """The residual model's conv body with GDN in place of each activation after a convolution."""
    body = PLAIN_BODY(config)
    for sequential, inverse in ((body.encoder, False), (body.decoder, True)):
        layers = list(sequential)
        for i in range(1, len(layers)):
            if isinstance(layers[i], nn.SiLU) and isinstance(layers[i - 1], (nn.Conv2d, nn.ConvTranspose2d)):
                channels = layers[i - 1].out_channels
                sequential[i] = GDN(channels, inverse)
    return body


def groupnorm_body(config):
    """The residual model's conv body with GroupNorm (8 groups) after each convolution but the output's."""
    body = PLAIN_BODY(config)

    def normalised(sequential: nn.Sequential) -> nn.Sequential:
        layers = []
        for layer in sequential:
            layers.append(layer)
            if isinstance(layer, ResidualBlock):
                convs = [m for m in layer.body if isinstance(m, nn.Conv2d)]
                layer.body = nn.Sequential(convs[0], nn.GroupNorm(8, convs[0].out_channels), layer.body[1], convs[1],
                                           nn.GroupNorm(8, convs[1].out_channels))
            elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and layer is not last:
                layers.append(nn.GroupNorm(8, layer.out_channels))
        return nn.Sequential(*layers)

    last = [m for m in body.decoder if isinstance(m, nn.ConvTranspose2d)][-1]
    body.encoder, body.decoder = normalised(body.encoder), normalised(body.decoder)
    return body


def variants(side: int) -> dict[str, dict]:
    """Each variant's TrainConfig overrides, and ``_body`` for one built here."""
    deeper = stages_to_four(side)
    wide = tuple(2 * c for c in deeper)
    return {
        "plain": {},
        "depth2": {"conv_depth": 2},
        "stages": {"channels": deeper},
        "depth2-stages": {"channels": deeper, "conv_depth": 2},
        "res": {"channels": deeper, "res_blocks": 1},
        "res-wd": {"channels": deeper, "res_blocks": 1, "_weight_decay": 1.0},
        "res-relu": {"channels": deeper, "res_blocks": 1, "activation": "relu"},
        "wide": {"channels": wide, "res_blocks": 1},
        "res2": {"channels": deeper, "res_blocks": 2},
        "gdn": {"_body": gdn_body},
        "groupnorm": {"channels": deeper, "res_blocks": 1, "_body": groupnorm_body},
    }


VARIANTS = tuple(variants(32))


def same_as_plain(variant: str, side: int) -> bool:
    """Whether ``variant`` only adds stages that images of ``side`` pixels already get (it would repeat
    ``plain`` or ``depth2``): not run."""
    return variant in ("stages", "depth2-stages") and stages_to_four(side) == plain_channels(side)


def loaded(name: str, root: Path):
    """Data set ``name``, written once under ``root`` and kept there as a pickle for the next run."""
    cached = root / f"{name}.pickle"
    if cached.exists():
        return pickle.loads(cached.read_bytes())
    data = odq.make_dataset(name, root, quick=False)
    cached.write_bytes(pickle.dumps(data))
    return data


def plain_channels(side: int) -> tuple[int, ...]:
    """The stages ``aelab train`` chose before this study: halvings down to 4..8 pixels, at most four."""
    stages = max(1, min(4, side.bit_length() - 3))
    return (32, 64, 64)[:stages] if stages <= 3 else (16, 32, 64, 64)


def baseline_config(data):
    """What ``aelab train`` chose for images before this study: its chosen recipe, length and
    validation, one convolution per stage down to 4..8 pixels, no residual blocks, SiLU, and no
    shifts of the training images (``--shift`` came after the study)."""
    config = odq.train_config(data, odq.SETTINGS[data.name], quick=False).config
    return replace(config, channels=plain_channels(min(data.image_shape)), conv_depth=None, res_blocks=None,
                   activation=None, shift=0)


@contextmanager
def body_built_by(body):
    """Within this block the residual model's conv body is ``body(config)`` (None: aelab's own); the
    model builds it through the name ``networks.ConvAutoencoder``, which is put back afterwards."""
    if body is None:
        yield
        return
    networks.ConvAutoencoder = type("StudyBody", (PLAIN_BODY,), {"__new__": lambda cls, c: body(c)})
    try:
        yield
    finally:
        networks.ConvAutoencoder = PLAIN_BODY


def run_one(job: tuple[str, str, str]) -> dict:
    """Train variant ``job[1]`` on data set ``job[0]`` (files under ``job[2]``); its scores against PCA."""
    name, variant, root = job
    data = loaded(name, Path(root))
    spec = dict(variants(min(data.image_shape))[variant])
    body = spec.pop("_body", None)
    decay = spec.pop("_weight_decay", 0.0)
    config = replace(baseline_config(data), **spec)
    pca = odq.pca_scores(data, config.code_size)
    from aelab.training import config as training_config
    recipe = training_config.RECIPES[config.recipe]
    training_config.RECIPES[config.recipe] = replace(recipe, weight_decay=decay)
    try:
        with body_built_by(body):
            torch.manual_seed(0)
            ae = odq.ae_scores(data, config)
    finally:
        training_config.RECIPES[config.recipe] = recipe
    row = {"data": name, "variant": variant, "channels": list(config.channels or ()), "weight_decay": decay,
           "conv_depth": config.conv_depth, "res_blocks": config.res_blocks, "activation": config.activation,
           "params": ae["params"], "steps": ae["steps"], "best_step": ae["validation"]["best_step"],
           "mse_ae": ae["test_mse"], "mse_pca": pca["test_mse"], "ratio": ae["test_mse"] / pca["test_mse"],
           "knn_ae": ae.get("knn_acc"), "knn_pca": pca.get("knn_acc"), "train_seconds": ae["train_seconds"]}
    print(f"{name} {variant}: AE/PCA {row['ratio']:.3f}, best step {row['best_step']} of {row['steps']}, "
          f"{row['params']} parameters, {row['train_seconds']:.0f} s", flush=True)
    return row


def markdown_table(rows: list[dict]) -> str:
    lines = ["| data | variant | channels | params | AE/PCA | best step / steps | 5-NN AE | 5-NN PCA | train s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['variant']} | {','.join(map(str, r['channels']))} | {r['params']:,} "
                     f"| {r['ratio']:.3f} | {r['best_step']} / {r['steps']} | {odq._fmt_pct(r['knn_ae'])} "
                     f"| {odq._fmt_pct(r['knn_pca'])} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=",".join(DATA),
                        help=f"comma-separated image data sets (default: {','.join(DATA)})")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of {', '.join(VARIANTS)}")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once, one thread each (default: 1)")
    parser.add_argument("--files", default=None, help="folder to keep the written data sets in between runs "
                                                      "(default: a temporary folder)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    names = [n for n in args.data.split(",") if n]
    chosen = [v for v in args.variants.split(",") if v]
    bad = [n for n in names if n not in odq.SETTINGS] + [v for v in chosen if v not in VARIANTS]
    if bad:
        parser.error(f"unknown data set or variant: {', '.join(bad)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aelab-study-") as tmp:
        root = Path(args.files or tmp)
        root.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("AELAB_CACHE", str(root / "cache"))
        sides = {name: min(loaded(name, root).image_shape) for name in names}  # written once, before the jobs
        jobs = [(n, v, str(root)) for n in names for v in chosen if not same_as_plain(v, sides[n])]
        if args.jobs > 1:
            import multiprocessing
            with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
                rows = pool.map(run_one, jobs, chunksize=1)
        else:
            rows = [run_one(job) for job in jobs]
    from aelab.device import cpu_model
    result = {"benchmark": "architecture_study", "cpu": cpu_model(), "cores": os.cpu_count(), "jobs": args.jobs,
              "seconds": time.perf_counter() - started, "rows": rows}
    print()
    print(markdown_table(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "architecture-study.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
