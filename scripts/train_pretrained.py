"""Train, measure and export the pretrained models that ship in src/aelab/pretrained/.

    nice -n 10 python scripts/train_pretrained.py                 # all of them (about 70 minutes on 2 CPU cores)
    python scripts/train_pretrained.py --only mnist-deep,mnist-vae
    python scripts/train_pretrained.py --list                     # the settings and equivalent commands only

Each model is trained on the CPU with a fixed seed exactly as the printed
`aelab train` command would train it (same TrainConfig, same code path),
then its weights are rounded to float16 (how they ship), measured on the
10,000 MNIST test images with aelab.evaluation.compare.quality_metrics (the same
numbers `aelab compare` reports; a denoiser also gets the PSNR of its noisy
and denoised test images) and exported with those metrics into
src/aelab/pretrained/<name>/ (model.safetensors + config.json).
On the same machine and thread count a re-run reproduces the weights bit for
bit; elsewhere, floating-point summation order may move the last digits.
One model is not trained from scratch: mnist-codec, the codec's model, is
mnist-conv fine-tuned (after it, from its shipped weights) for squared error,
what PSNR measures, on training images each shifted with probability 0.5 by
-1..1 pixels in each direction (so 4 in 9 move), against overfitting the
60,000 images (`fine_tune_squared_error` below; Adam, warm-up and cosine
schedule, seeded). On the same machine and thread count it too is reproduced bit for bit.
New weights make the packaged codec tables stale (they name the model's
fingerprint, and a stale file is ignored): run scripts/package_codec_tables.py
afterwards.
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Shipped:
    name: str
    description: str
    options: dict  # TrainConfig fields


SHIPPED = (
    Shipped("mnist-conv", "the best 32-number model trained from scratch: convolutional, 2 stages (32, 64 channels) "
                          "of 2 3x3 convolutions, SiLU, linear code",
            dict(model="conv", channels=(32, 64), conv_depth=2, activation="silu", recipe="adam-long", sweeps=40,
                 seed=0)),
    Shipped("mnist-denoise", "a denoiser for gaussian noise of 0.5 (clipped to 0..1): the residual model (PCA plus "
                             "3 conv stages of 32, 64, 64 channels, a residual block each, GroupNorm), squared error",
            dict(model="residual", channels=(32, 64, 64), res_blocks=1, norm="group", loss="mse", recipe="fit",
                 noise="gaussian:0.5", validation=0.05, sweeps=20, seed=0)),
    Shipped("mnist-vae", "a variational autoencoder (dense 784-128-64, Gaussian code; `aelab sample`)",
            dict(model="vae", hidden=(128, 64), recipe="adam-long", sweeps=30, seed=0)),
    Shipped("mnist-sparse", "a sparse autoencoder (dense 784-128-64, ReLU code with an L1 penalty of 0.01)",
            dict(model="sparse", hidden=(128, 64), sparsity=0.01, recipe="adam-long", sweeps=30, seed=0)),
    Shipped("mnist-simple", "the tutorial's simple 784-32-784 autoencoder, trained longer with Adam",
            dict(model="simple", recipe="adam-long", sweeps=30, seed=0)),
    Shipped("mnist-deep", "the tutorial's deep 784-128-64-32-64-128-784 autoencoder, trained longer with Adam",
            dict(model="deep", recipe="adam-long", sweeps=30, seed=0)),
)


@dataclass(frozen=True)
class FineTuned:
    name: str
    description: str
    base: str  # the shipped model it starts from
    sweeps: float
    lr: float
    shift_probability: float  # of drawing a shift of -1..1 pixels in each direction (one draw in 9 is no shift)
    seed: int = 0
    minibatch_size: int = 128
    warmup_steps: int = 200


FINE_TUNED = (
    FineTuned("mnist-codec", "the codec's model: mnist-conv fine-tuned for squared error (what PSNR measures) on "
                             "training images shifted by up to a pixel", base="mnist-conv", sweeps=20, lr=1e-3,
              shift_probability=0.5),
)


def shifted(images, probability: float):
    """``images`` (n, h, w), each rolled by -1..1 pixels in each direction with ``probability`` (one draw in 9
    is no shift). A roll wraps the edge row or column round; MNIST's edges are blank in all but about 1.4% of the
    training images. Draws from torch's global generator."""
    import torch
    out = images.clone()
    n = len(images)
    chosen = torch.rand(n) < probability
    dy, dx = torch.randint(-1, 2, (n,)), torch.randint(-1, 2, (n,))
    for sy in (-1, 0, 1):
        for sx in (-1, 0, 1):
            rows = chosen & (dy == sy) & (dx == sx)
            if (sy or sx) and rows.any():
                out[rows] = torch.roll(images[rows], shifts=(sy, sx), dims=(1, 2))
    return out


def fine_tune_steps(sweeps: float, n: int, minibatch_size: int) -> int:
    """The fine-tune's optimizer steps: ``sweeps`` over ``n`` images, whole minibatches, at least one."""
    return max(1, int(sweeps * n / minibatch_size))


def decoded_pixels(model, logits):
    """The decoded pixels / 255 that the squared error compares, with gradients: the sigmoid of a BCE model's
    outputs; an MSE model's own outputs (clipping them to [0, 1], as decoding does, would stop the gradient
    of every value outside)."""
    return logits.sigmoid() if model.config.loss == "bce" else logits


def fine_tune_squared_error(model, images, spec: FineTuned, say=print) -> float:
    """Fine-tune the conv or residual ``model`` in place on ``images`` (uint8 (n, h, w)) for the squared error of
    its decoded images (``decoded_pixels``) summed over the pixels; returns the seconds it took."""
    import numpy as np
    import torch
    torch.manual_seed(spec.seed)
    pixels = torch.from_numpy(np.ascontiguousarray(images))
    n, batch = len(pixels), spec.minibatch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
    steps = fine_tune_steps(spec.sweeps, n, batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / spec.warmup_steps) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    model.train()
    step, total, started = 0, 0.0, time.perf_counter()
    while step < steps:
        order = torch.randperm(n)
        for i in range(0, n - batch + 1, batch):
            x = shifted(pixels[order[i:i + batch]], spec.shift_probability).reshape(batch, -1)
            decoded = decoded_pixels(model, model.decode_logits(model.encode(x)).reshape(batch, -1))
            loss = ((decoded - x.float() / 255) ** 2).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
            step += 1
            if step % 1000 == 0:
                say(f"  step {step}/{steps}: squared error {total / 1000:.3f} per image, "
                    f"{time.perf_counter() - started:.0f} s", flush=True)
                total = 0.0
            if step >= steps:
                break
    model.eval()
    return time.perf_counter() - started


def fine_tune_command(spec: FineTuned) -> str:
    return f"python scripts/train_pretrained.py --only {spec.name}"


def fine_tune_record(spec: FineTuned, sweeps: float, seconds: float, n: int, base_info: dict, *, threads: int) -> dict:
    """The ``training`` block of a fine-tuned model's config.json: the fine-tune's own settings and time at the
    top (what ``aelab models`` and ``aelab compare`` show), the model it started from under ``base``."""
    base = base_info["training"]
    steps = fine_tune_steps(sweeps, n, spec.minibatch_size)
    return {**{k: base[k] for k in ("model", "code_size", "hidden", "channels", "conv_depth", "res_blocks", "norm",
                                    "loss", "activation", "noise",
                                    "sparsity", "beta") if k in base},
            "recipe": "fine-tune: squared error, shifts", "sweeps": sweeps, "minibatch_size": spec.minibatch_size,
            "seed": spec.seed, "device": "cpu", "samples_seen": steps * spec.minibatch_size, "seconds": seconds,
            "command": fine_tune_command(spec), "threads": threads,
            "fine_tune": {**asdict(spec), "sweeps": sweeps},
            "base": {"name": spec.base, "weights_sha256": base_info["weights_sha256"], "training": base}}


def shipped_metrics(model, data, noise: str | None = None) -> dict:
    """What a shipped model's config.json records: ``aelab compare``'s quality metrics on the test images and,
    for a denoiser, the PSNR of its noisy and denoised test images."""
    from aelab.evaluation.compare import denoising_psnr, quality_metrics
    metrics = quality_metrics(model, data, seed=0)
    metrics.pop("denoised_psnr_db", None)  # the comparison's fixed-noise column; a denoiser's own is below
    metrics.pop("code_size", None)
    if noise:
        metrics.update({k: v for k, v in denoising_psnr(model, data.test.images, noise, seed=0).items()
                        if k != "noise"})
    return metrics


def shown(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))


def command(spec: Shipped, out: str) -> str:
    """The `aelab train` command line that trains ``spec`` the same way."""
    flags = {"model": "--model", "hidden": "--hidden", "channels": "--channels", "conv_depth": "--conv-depth",
             "activation": "--activation",
             "res_blocks": "--res-blocks", "norm": "--norm", "loss": "--loss", "validation": "--validation",
             "sparsity": "--sparsity", "beta": "--beta", "noise": "--noise", "recipe": "--recipe",
             "sweeps": "--sweeps", "seed": "--seed", "shift": "--shift"}
    args = ["aelab", "train"]
    for key, value in spec.options.items():
        text = ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
        args += [flags[key], text]
    return shlex.join(args + ["--device", "cpu", "--out", out])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--out", default=str(REPO / "src" / "aelab" / "pretrained"),
                        help="folder for the exported models (default: src/aelab/pretrained)")
    parser.add_argument("--list", action="store_true", help="print the settings and commands, train nothing")
    parser.add_argument("--sweeps-scale", type=float, default=1.0,
                        help="multiply every run's sweeps (for a quick trial of the script; default 1)")
    args = parser.parse_args(argv)
    names = [s.name for s in SHIPPED] + [s.name for s in FINE_TUNED]
    wanted = names if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"unknown names {unknown}; choose from {names}")
    todo = [s for s in SHIPPED if s.name in wanted]
    tunes = [s for s in FINE_TUNED if s.name in wanted]
    for spec in todo:
        print(f"{spec.name}: {spec.description}\n  {command(spec, spec.name)}")
    for spec in tunes:
        print(f"{spec.name}: {spec.description}\n  {spec.base} fine-tuned for {spec.sweeps:g} sweeps, lr {spec.lr:g}, "
              f"shift probability {spec.shift_probability:g}, seed {spec.seed}")
    if args.list:
        return 0

    import torch

    from aelab.data import load_dataset
    from aelab.models.zoo import export_pretrained, rounded_to_shipped_dtype
    from aelab.training.loop import TrainConfig, train

    data = load_dataset()
    out = Path(args.out)
    for spec in todo:
        options = {**spec.options, "sweeps": spec.options["sweeps"] * args.sweeps_scale}
        config = TrainConfig(device="cpu", **options)
        config.validate()
        print(f"\n== {spec.name}: training ({torch.get_num_threads()} threads)", flush=True)
        started = time.perf_counter()
        result = train(data, config, log=print, progress_bar=False)
        model = rounded_to_shipped_dtype(result.model).eval()
        print(f"== {spec.name}: trained in {result.seconds:.0f} s; measuring", flush=True)
        metrics = shipped_metrics(model, data, config.noise)
        training = {**config.to_dict(), "recipe_settings": asdict(result.recipe),
                    "samples_seen": result.samples_seen, "seconds": result.seconds,
                    "train_error_pct": result.train_error_pct, "command": command(spec, spec.name),
                    "threads": torch.get_num_threads()}
        folder = export_pretrained(out / spec.name, model, training=training,
                                   data={"name": data.name, "sha256": data.sha256},
                                   metrics=metrics, description=spec.description)
        size = (folder / "model.safetensors").stat().st_size
        print(f"== {spec.name}: {size / 1024:.0f} KB in {folder} ({time.perf_counter() - started:.0f} s in all)\n"
              f"   {shown(metrics)}", flush=True)
    for spec in tunes:  # after the models they start from
        from aelab.models.checkpoint import load_checkpoint
        from aelab.models.checkpoint import pretrained_path
        base = load_checkpoint(out / spec.base if (out / spec.base).is_dir() else pretrained_path(spec.base))
        model = base.model.float().eval()
        sweeps = spec.sweeps * args.sweeps_scale
        print(f"\n== {spec.name}: fine-tuning {spec.base} for {sweeps:g} sweeps ({torch.get_num_threads()} threads)",
              flush=True)
        seconds = fine_tune_squared_error(model, data.train.images, FineTuned(**{**asdict(spec), "sweeps": sweeps}))
        model = rounded_to_shipped_dtype(model).eval()
        metrics = shipped_metrics(model, data)
        training = fine_tune_record(spec, sweeps, seconds, len(data.train.images), base.info,
                                    threads=torch.get_num_threads())
        folder = export_pretrained(out / spec.name, model, training=training,
                                   data={"name": data.name, "sha256": data.sha256},
                                   metrics=metrics, description=spec.description)
        print(f"== {spec.name}: fine-tuned in {seconds:.0f} s, in {folder}\n   {shown(metrics)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
