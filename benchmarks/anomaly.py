"""Anomaly detection on MNIST: one digit at a time is left out of training and scored among the test set.

    nice -n 10 python benchmarks/anomaly.py          # the full run: 10 digits, every training image
    python benchmarks/anomaly.py --quick             # 2000 training, 1000 test images, few sweeps: a check

For each digit d, every method fits on the training images of the other nine digits and scores the
test images (d's are the anomalies); the table is the AUROC of each method for each left-out digit,
and their mean. Methods: aelab models (trained by aelab's engine; score: the per-sample
reconstruction error, as `aelab score`), PCA reconstruction error (pixels / 255), scikit-learn's
IsolationForest and OneClassSVM (RBF, fitted on at most --svm-limit training images: its cost
grows with the square of the samples). Prints a Markdown table, then one JSON object last.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score
    from sklearn.svm import OneClassSVM

    from aelab.data import Dataset, Split, load_dataset
    from aelab.evaluation.anomaly import sample_errors
    from aelab.training import TrainConfig, train

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="the first 2000 training and 1000 test images, 2 sweeps per model")
    parser.add_argument("--models", default="deep,conv", help="aelab model kinds (default: %(default)s)")
    parser.add_argument("--recipe", default="adam", help="their recipe (default: %(default)s)")
    parser.add_argument("--sweeps", type=float, default=None, help="sweeps per model (default: 10; 2 with --quick)")
    parser.add_argument("--code-size", type=int, default=16, help="aelab models' code size and PCA's components")
    parser.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9", help="digits to leave out (default: all)")
    parser.add_argument("--svm-limit", type=int, default=5000, help="OneClassSVM fits on at most N images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    mnist = load_dataset()
    n_train, n_test = (2000, 1000) if args.quick else (mnist.train.n, mnist.test.n)
    sweeps = args.sweeps or (2.0 if args.quick else 10.0)
    train_x, train_y = mnist.train.images[:n_train], mnist.train.labels[:n_train]
    test_x, test_y = mnist.test.images[:n_test], mnist.test.labels[:n_test]
    flat_test = test_x.reshape(len(test_x), -1) / 255.0
    digits = [int(d) for d in args.digits.split(",")]
    models = [m for m in args.models.split(",") if m]

    def aelab_scores(kind: str, normal: np.ndarray) -> np.ndarray:
        data = Dataset(name=f"mnist-without-{d}", train=Split(normal), test=Split(normal[:256]), sha256="0" * 64)
        config = TrainConfig(model=kind, code_size=args.code_size, recipe=args.recipe, sweeps=sweeps,
                             seed=args.seed, device="cpu")
        return sample_errors(train(data, config, log=None, progress_bar=False).model, test_x)

    def pca_scores(normal_flat: np.ndarray) -> np.ndarray:
        pca = PCA(n_components=args.code_size, random_state=args.seed).fit(normal_flat)
        return ((pca.inverse_transform(pca.transform(flat_test)) - flat_test) ** 2).mean(axis=1)

    def forest_scores(normal_flat: np.ndarray) -> np.ndarray:
        return -IsolationForest(random_state=args.seed).fit(normal_flat).score_samples(flat_test)

    def svm_scores(normal_flat: np.ndarray) -> np.ndarray:
        pick = np.random.default_rng(args.seed).permutation(len(normal_flat))[:args.svm_limit]
        return -OneClassSVM(gamma="scale", nu=0.1).fit(normal_flat[pick]).score_samples(flat_test)

    methods = [f"aelab {m}" for m in models] + [f"PCA-{args.code_size}", "IsolationForest", "OneClassSVM"]
    auroc: dict[str, dict[int, float]] = {m: {} for m in methods}
    seconds: dict[str, float] = {m: 0.0 for m in methods}
    for d in digits:
        normal = train_x[train_y != d]
        normal_flat = normal.reshape(len(normal), -1) / 255.0
        is_anomaly = (test_y == d).astype(int)
        for name in methods:
            started = time.perf_counter()
            if name.startswith("aelab "):
                scores = aelab_scores(name.split(" ", 1)[1], normal)
            elif name.startswith("PCA"):
                scores = pca_scores(normal_flat)
            elif name == "IsolationForest":
                scores = forest_scores(normal_flat)
            else:
                scores = svm_scores(normal_flat)
            seconds[name] += time.perf_counter() - started
            auroc[name][d] = float(roc_auc_score(is_anomaly, scores))
        print(f"digit {d}: " + ", ".join(f"{m} {auroc[m][d]:.3f}" for m in methods), file=sys.stderr, flush=True)

    mean = {m: float(np.mean(list(auroc[m].values()))) for m in methods}
    print("| method | " + " | ".join(str(d) for d in digits) + " | mean | seconds |")
    print("| --- |" + " --- |" * (len(digits) + 2))
    for m in sorted(methods, key=lambda m: -mean[m]):
        print(f"| {m} | " + " | ".join(f"{auroc[m][d]:.3f}" for d in digits) + f" | **{mean[m]:.3f}** | {seconds[m]:.0f} |")
    print(json.dumps({"quick": args.quick, "train_images": n_train, "test_images": n_test, "sweeps": sweeps,
                      "recipe": args.recipe, "code_size": args.code_size, "svm_limit": args.svm_limit,
                      "auroc": {m: {str(d): v for d, v in auroc[m].items()} for m in methods},
                      "mean_auroc": mean, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    from aelab.errors import run_script
    sys.exit(run_script(main, "anomaly.py"))
