"""Quality of every model, measured the same way: train each with a named recipe, score it on the
10,000 MNIST test images, next to a PCA-32 baseline fitted in the same run.

    nice -n 10 python benchmarks/quality.py              # the full run (about half an hour on 2 CPU cores)
    python benchmarks/quality.py --quick                 # 2000 + 500 images, 1 sweep: a CI check, < 1 minute
    python benchmarks/quality.py --models conv,vae --recipe adam-long --sweeps 20
    python benchmarks/quality.py --no-train --models mnist-conv,mnist-deep --name shipped  # shipped, as they are

Reports parameters, training seconds, BCE, MSE, PSNR (as aelab.models.inference.evaluate), SSIM
(scikit-image, data_range=1), 5-NN accuracy on the codes (fitted on the training codes),
t-SNE trustworthiness (n_neighbors=5) of 1000 test codes against the codes and against the
pixels, and the PSNR of each model's output for gaussian:0.5 noisy test images. Writes
NAME.md, NAME.json and NAME.png (one row of reconstructions per model; NAME: --name, default
quality) into --out.
Same as `aelab compare`; both call aelab.evaluation.compare.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "quality"


def main(argv: list[str] | None = None) -> int:
    from aelab.evaluation.compare import DEFAULT_MODELS, DEFAULT_RECIPE, entries_from, markdown_table, quick_subset, run_comparison, write_results
    from aelab.data import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated kinds (KIND or KIND@NOISE), checkpoint folders or shipped names "
                             f"(default: {','.join(DEFAULT_MODELS)})")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, help="the named recipe every model trains with "
                                                                 "(default: %(default)s)")
    parser.add_argument("--sweeps", type=float, default=None, help="sweeps per model (default: 10; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="2000 training and 500 test images, 1 sweep")
    parser.add_argument("--no-train", action="store_true",
                        help="only checkpoints and shipped models: refuse model kinds, which would train")
    parser.add_argument("--data", default=None, help="dataset (default: the bundled MNIST)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT), help=f"output folder (default: {OUT})")
    parser.add_argument("--name", default="quality", help="stem of the output files (default: quality)")
    args = parser.parse_args(argv)

    sweeps = args.sweeps or (1.0 if args.quick else 10.0)
    entries = entries_from(args.models.split(","), recipe=args.recipe, sweeps=sweeps, seed=args.seed, device="cpu")
    if args.no_train and any(e.config is not None for e in entries):
        parser.error("--no-train takes only checkpoint folders and shipped names")
    data = load_dataset(args.data)
    if args.quick:
        data = quick_subset(data)
    result = run_comparison(data, entries, seed=args.seed, tsne_samples=200 if args.quick else 1000)
    result["meta"]["quick"] = args.quick
    paths = write_results(result, args.out, stem=args.name)
    print()
    print(markdown_table(result))
    print(f"Wrote {paths['markdown']}, {paths['json']} and {paths['picture']}")
    return 0


if __name__ == "__main__":
    from aelab.errors import run_script
    sys.exit(run_script(main, "quality.py"))
