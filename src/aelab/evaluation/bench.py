"""Training and inference throughput, side by side in one process (`aelab bench`).

Runs on the bundled MNIST, for the simple and the deep autoencoder:
- "typical": the PyTorch loop a competent user writes (TensorDataset +
  DataLoader(batch_size=64, shuffle=True), nn.Sequential, Adam, BCELoss);
- "aelab": aelab's engine with the tutorial recipe at minibatch 64, and at 1024;
- "roof": the matrix-multiply roof, 6 x MACs per sample at the measured
  2048^3 GEMM rate: the median of three measurements, at the start, between
  the two models and at the end, so that a moment's burst or stall of a
  shared machine does not decide every row's fraction;
- "encode" and "decode": inference at batch 8192 (uint8 pixels to codes, codes
  to images); their roof fraction is against 2 x the MACs of that half of the
  network (a forward pass only).
Prints a table, then one JSON object as its last line.

    aelab bench [--quick] [--device cpu|cuda]
    python benchmarks/throughput.py [--quick] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from ..data import load_dataset
from ..device import describe_device, resolve_device
from ..models.networks import build_model, model_config
from ..training.loop import TrainConfig, train

LAYERS = {"simple": [784, 32, 784], "deep": [784, 128, 64, 32, 64, 128, 784]}


def macs_per_sample(kind: str, part: str = "all") -> int:
    """Multiply-accumulates per sample of the whole autoencoder, or of its "encoder" or "decoder" half."""
    dims = LAYERS[kind]
    middle = len(dims) // 2
    dims = {"all": dims, "encoder": dims[:middle + 1], "decoder": dims[middle:]}[part]
    return sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def typical_loop(kind: str, images: torch.Tensor, samples: int, device: torch.device) -> float:
    """What a competent PyTorch user writes first; returns samples per second."""
    dims = LAYERS[kind]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        layers.append(nn.Sigmoid() if i == len(dims) - 2 else nn.ReLU())
    model = nn.Sequential(*layers).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCELoss()
    x = images.float() / 255.0
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=64, shuffle=True)
    seen = 0
    start = time.perf_counter()
    while seen < samples:
        for (batch,) in loader:
            batch = batch.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(batch), batch)
            loss.backward()
            optimizer.step()
            seen += batch.shape[0]
            if seen >= samples:
                break
    sync(device)
    return seen / (time.perf_counter() - start)


def aelab_engine(kind: str, data, sweeps: float, minibatch: int, device: str) -> float:
    config = TrainConfig(model=kind, sweeps=sweeps, minibatch_size=minibatch, device=device)
    return train(data, config, log=None, progress_bar=False).samples_per_second


def inference(kind: str, images: torch.Tensor, device: torch.device, batch: int = 8192,
              rounds: int = 5) -> tuple[float, float]:
    """Images per second of ``encode`` (uint8 pixels to codes) and of ``decode`` (codes to images)."""
    model = build_model(model_config(kind)).to(device).eval()
    x = images[:batch].to(device)
    with torch.inference_mode():
        codes = model.encode(x)
        model.decode(codes)
        rates = []
        for step, arg in ((model.encode, x), (model.decode, codes)):
            sync(device)
            start = time.perf_counter()
            for _ in range(rounds):
                step(arg)
            sync(device)
            rates.append(rounds * x.shape[0] / (time.perf_counter() - start))
    return rates[0], rates[1]


def run_benchmark(quick: bool = False, device_name: str = "auto", *, typical_samples: int | None = None,
                  sweeps: float | None = None) -> dict:
    """Measure everything side by side; returns the result that ``main`` prints as JSON.

    ``typical_samples`` and ``sweeps`` override how long each training is measured.
    """
    device = resolve_device(device_name)
    data = load_dataset()
    images = torch.from_numpy(data.train.images.reshape(data.train.n, -1).copy())
    roofs = [gemm_gflops(device)]
    typical_samples = typical_samples or (30_000 if quick else 120_000)
    sweeps = sweeps or (0.5 if quick else 2.0)
    measured = {}
    for kind in ("simple", "deep"):
        encode_rate, decode_rate = inference(kind, images, device)
        measured[kind] = {
            ("typical", 64): typical_loop(kind, images, typical_samples, device),
            ("aelab", 64): aelab_engine(kind, data, sweeps, 64, device_name),
            ("aelab", 1024): aelab_engine(kind, data, sweeps * 2, 1024, device_name),
            ("encode", 8192): encode_rate,
            ("decode", 8192): decode_rate,
        }
        roofs.append(gemm_gflops(device))
    roof = statistics.median(roofs)
    rows = []
    for kind in ("simple", "deep"):
        roof_sps = roof * 1e9 / (6 * macs_per_sample(kind))
        flops = {"encode": 2 * macs_per_sample(kind, "encoder"), "decode": 2 * macs_per_sample(kind, "decoder")}
        for (engine, batch), sps in measured[kind].items():
            flops_per_sample = flops.get(engine, 6 * macs_per_sample(kind))
            rows.append({"model": kind, "engine": engine, "batch": batch, "samples_per_second": sps,
                         "roof_fraction": sps * flops_per_sample / (roof * 1e9)})
        rows.append({"model": kind, "engine": "roof", "batch": None, "samples_per_second": roof_sps,
                     "roof_fraction": 1.0})

    def sps(kind, engine, batch):
        return next(r["samples_per_second"] for r in rows
                    if r["model"] == kind and r["engine"] == engine and r["batch"] == batch)

    return {
        "device": describe_device(device),
        "threads": torch.get_num_threads(),
        "roof_gflops": roof,
        "roof_gflops_each": roofs,
        "rows": rows,
        "ratios": {"simple_b64_vs_typical": sps("simple", "aelab", 64) / sps("simple", "typical", 64),
                   "deep_b64_vs_typical": sps("deep", "aelab", 64) / sps("deep", "typical", 64)},
    }


def format_table(result: dict) -> str:
    each = ", ".join(f"{r:.0f}" for r in result["roof_gflops_each"])
    lines = [f"device: {result['device']}, GEMM roof {result['roof_gflops']:.0f} GFLOP/s (median of {each}), "
             f"torch {torch.__version__}",
             f"{'model':<7} {'engine':<10} {'batch':>6} {'samples/s':>12} {'of roof':>8}"]
    for r in result["rows"]:
        batch = "" if r["batch"] is None else str(r["batch"])
        lines.append(f"{r['model']:<7} {r['engine']:<10} {batch:>6} {r['samples_per_second']:>12,.0f} "
                     f"{100 * r['roof_fraction']:>7.1f}%")
    ratios = result["ratios"]
    lines.append(f"aelab vs typical at minibatch 64: simple {ratios['simple_b64_vs_typical']:.2f}x, "
                 f"deep {ratios['deep_b64_vs_typical']:.2f}x")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples per measurement (about a minute)")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda (default: auto)")
    args = parser.parse_args(argv)
    result = run_benchmark(args.quick, args.device)
    print(format_table(result))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
