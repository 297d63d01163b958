"""The ``aelab`` command line: argument parsing only; each subcommand calls the Python API."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import AelabError, OptionError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for a program stopped by Ctrl-C


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="PATH", default=None,
                   help="dataset: a folder of MNIST-format IDX files, a folder with the tutorial's "
                        "Train-28x28_cntk_text.txt/Test-28x28_cntk_text.txt, a .npz (x_train, y_train, "
                        "x_test, y_test) or TRAIN.txt,TEST.txt CTF files (default: the bundled MNIST)")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                   help="where to compute; auto picks CUDA when available and honours "
                        "TEST_DEVICE=cpu|gpu (default: auto)")


def _add_checkpoint(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="a trained model: the folder `aelab train --out` wrote")


def _add_sweeps(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fast", dest="sweeps", action="store_const", const=5.0,
                   help="5 sweeps of the training data, the tutorial's fast mode (default)")
    g.add_argument("--slow", dest="sweeps", action="store_const", const=100.0,
                   help="100 sweeps, the tutorial's slow mode")
    g.add_argument("--sweeps", dest="sweeps", type=_positive_float, metavar="N",
                   help="number of sweeps (epochs) over the training data")
    p.set_defaults(sweeps=None)


def build_parser() -> argparse.ArgumentParser:
    from .models import MODEL_NAMES
    from .train import RECIPES

    parser = argparse.ArgumentParser(
        prog="aelab",
        description="Autoencoders for MNIST-style images: compress 28x28 digits into small codes and back. "
                    "`aelab tutorial` reproduces the CNTK 105 tutorial end to end.",
        epilog="Errors in input or options exit with status 2 and one line saying what to fix; "
               "--debug shows the traceback.")
    parser.add_argument("--version", action="version", version=f"aelab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("tutorial", help="the CNTK 105 tutorial end to end: train both models, write every output",
                       description="Train the simple and the deep autoencoder as the CNTK 105 tutorial does and "
                                   "write pictures, checkpoints, summary.json and report.md into --out.")
    p.add_argument("--out", default="aelab-out", metavar="DIR", help="output folder (default: ./aelab-out)")
    _add_data(p)
    _add_sweeps(p)
    _add_device(p)
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--tsne-samples", type=_non_negative_int, default=2000, metavar="N",
                   help="test images in the t-SNE map; 0 skips it (default: 2000)")
    p.add_argument("--models", default="simple,deep", help="comma-separated models to run (default: simple,deep)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")

    p = sub.add_parser("train", help="train one model and save it as a checkpoint folder",
                       description="Train an autoencoder and write DIR/model.safetensors and DIR/config.json.")
    p.add_argument("--model", default="simple", help=f"model: {', '.join(MODEL_NAMES)} (default: simple)")
    _add_sweeps(p)
    p.add_argument("--code-size", type=_positive_int, default=32, metavar="N", help="code length (default: 32)")
    p.add_argument("--recipe", default="tutorial",
                   help=f"training recipe: {', '.join(RECIPES)} (default: tutorial = CNTK's FSAdaGrad, "
                        "lr 3e-5 per sample, minibatch 64)")
    p.add_argument("--minibatch-size", type=_positive_int, default=None, metavar="N",
                   help="override the recipe's minibatch size")
    _add_data(p)
    _add_device(p)
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", default="aelab-model", metavar="DIR", help="checkpoint folder (default: ./aelab-model)")
    p.add_argument("--checkpoint-every", type=_non_negative_float, default=30.0, metavar="SECONDS",
                   help="save the run's state to DIR/resume.safetensors this often, so that a crash loses "
                        "at most this much work; 0: only on Ctrl-C (default: 30)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run whose state is in DIR/resume.safetensors "
                        "(same options; --sweeps may change)")
    p.add_argument("--quiet", action="store_true", help="no progress table or bar")

    p = sub.add_parser("evaluate", help="score a trained model on the test split",
                       description="Average test error (CNTK's metric), BCE, MSE and PSNR on the test split.")
    _add_checkpoint(p)
    _add_data(p)
    _add_device(p)
    p.add_argument("--split", choices=("test", "train"), default="test", help="which split (default: test)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("encode", help="images to codes (.npy or .csv)",
                       description="Encode images into codes; writes codes and labels.")
    _add_checkpoint(p)
    p.add_argument("input", nargs="?", default=None,
                   help="images: an IDX, CTF or .npz file, a PNG, or a folder of PNGs "
                        "(default: the test split of --data)")
    _add_data(p)
    _add_device(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="FILE.npy (codes; labels go to FILE.labels.npy) or FILE.csv (label, then the code)")

    p = sub.add_parser("decode", help="codes (.npy or .csv) to PNG images",
                       description="Decode codes into images, one PNG each, plus a grid of the first ones.")
    _add_checkpoint(p)
    p.add_argument("codes", help="a .npy array (n, code size) or a .csv written by `aelab encode`")
    _add_device(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the PNGs")

    p = sub.add_parser("reconstruct", help="images to decoded PNG images",
                       description="Encode and decode images; writes each decoded image and a comparison grid.")
    _add_checkpoint(p)
    p.add_argument("input", nargs="?", default=None,
                   help="images: an IDX, CTF or .npz file, a PNG, or a folder of PNGs "
                        "(default: the test split of --data)")
    _add_data(p)
    _add_device(p)
    p.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="only the first N images")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the PNGs")

    p = sub.add_parser("similarity", help="cosine similarities of images, their decodings and codes",
                       description="Cosine similarity of two test images, of their decodings and of their codes. "
                                   "Without --pair, the tutorial's pairs: two 6s, and a 3 and an 8.")
    _add_checkpoint(p)
    _add_data(p)
    _add_device(p)
    p.add_argument("--pair", nargs=2, type=_non_negative_int, metavar=("A", "B"), help="two test image indices")
    p.add_argument("-o", "--output", default=None, metavar="FILE.png", help="also draw the comparison")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("tsne", help="a t-SNE map of the codes of test images",
                       description="Encode test images and draw a t-SNE map of their codes, coloured by label.")
    _add_checkpoint(p)
    _add_data(p)
    _add_device(p)
    p.add_argument("--samples", type=_positive_int, default=2000, metavar="N", help="test images (default: 2000)")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png", help="picture to write")

    p = sub.add_parser("data", help="dataset tools: info, convert, download",
                       description="Inspect, convert and download datasets.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = dsub.add_parser("info", help="counts, shape, label histogram and checksums",
                        description="Describe a dataset or a single IDX, CTF or .npz file.")
    q.add_argument("path", nargs="?", default=None, help="anything --data accepts, or one file (default: bundled MNIST)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q = dsub.add_parser("convert", help="convert a dataset between IDX, CTF and .npz",
                        description="Convert a dataset (anything --data accepts) to IDX files, the tutorial's "
                                    "CTF files, or one .npz.")
    q.add_argument("source", help="anything --data accepts; 'mnist' for the bundled copy")
    q.add_argument("dest", help="a folder (idx, idx.gz, ctf) or a .npz file")
    q.add_argument("--to", dest="fmt", choices=("idx", "idx.gz", "ctf", "npz"), default=None,
                   help="output format (default: npz when DEST ends in .npz)")
    q = dsub.add_parser("download", help="download MNIST from its public mirrors, checksums verified",
                        description="Download the four MNIST files into DIR, verifying their SHA-256. aelab "
                                    "works offline with its bundled copy; this is for fresh copies.")
    q.add_argument("dir", nargs="?", default="mnist", help="destination folder (default: ./mnist)")
    q.add_argument("--mirror", action="append", default=None, metavar="URL",
                   help="base URL to try (repeatable; default: the usual mirrors)")
    return parser


def _log(args) -> object:
    return None if getattr(args, "quiet", False) else print


def _load_model(args):
    from .checkpoint import load_checkpoint
    from .device import resolve_device
    return load_checkpoint(args.checkpoint, device=resolve_device(args.device))


def _images_from(args):
    """Images (and labels) named by the positional input, else the test split of --data."""
    from .data import load_dataset, load_images
    if getattr(args, "input", None):
        return load_images(args.input)
    data = load_dataset(args.data)
    return data.test.images, data.test.labels


def cmd_tutorial(args) -> int:
    from .tutorial import run_tutorial
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    if not models:
        raise OptionError("--models names no model", hint="e.g. --models simple,deep")
    from .models import model_config
    for name in models:
        model_config(name)  # an unknown name fails now, not after the models before it have trained
    run_tutorial(args.out, data=args.data, sweeps=args.sweeps, slow=args.sweeps == 100.0, device=args.device,
                 seed=args.seed, tsne_samples=args.tsne_samples, models=models, log=_log(args),
                 progress_bar=not args.quiet)
    return 0


def cmd_train(args) -> int:
    from .checkpoint import save_checkpoint
    from .data import load_dataset
    from .device import describe_device, resolve_device
    from .fileio import ensure_dir
    from .inference import evaluate
    from .models import model_config
    from .resume import RESUME_FILE
    from .train import TrainConfig, train
    say = _log(args) or (lambda _m: None)
    config = TrainConfig(model=args.model, code_size=args.code_size, recipe=args.recipe,
                         sweeps=args.sweeps or 5.0, minibatch_size=args.minibatch_size, seed=args.seed,
                         device=args.device)
    config.validate()
    model_config(config.model, code_size=config.code_size)  # unknown model names fail before data loads
    out = ensure_dir(args.out)  # an unusable --out fails now, not after the training
    data = load_dataset(args.data)
    say(f"Training {config.model} on {data.name} ({data.train.n} images), "
        f"device {describe_device(resolve_device(config.device))}")
    result = train(data, config, log=_log(args), progress_bar=not args.quiet, resume_file=out / RESUME_FILE,
                   checkpoint_every=args.checkpoint_every, resume=args.resume)
    say(f"Average training error: {result.train_error_pct:.2f}%")
    scores = evaluate(result.model, data.test.images)
    say(f"Average test error: {scores['test_error_pct']:.2f}%  (PSNR {scores['test_psnr_db']:.2f} dB)")
    folder = save_checkpoint(out, result.model, result.model_config,
                             training={**config.to_dict(), "samples_seen": result.samples_seen,
                                       "seconds": result.seconds, "train_error_pct": result.train_error_pct},
                             data={"name": data.name, "sha256": data.sha256},
                             metrics={k: v for k, v in scores.items() if k != "n"})
    say(f"Saved {folder / 'model.safetensors'} and {folder / 'config.json'} "
        f"({result.seconds:.1f} s, {result.samples_per_second:,.0f} samples/s)")
    return 0


def cmd_evaluate(args) -> int:
    from .data import load_dataset
    from .inference import evaluate
    ckpt = _load_model(args)
    data = load_dataset(args.data)
    split = data.test if args.split == "test" else data.train
    scores = evaluate(ckpt.model, split.images)
    scores = {"checkpoint": str(ckpt.path), "data": data.name, "split": args.split, **scores}
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"{args.split} split of {data.name}: {scores['n']} images")
        print(f"Average {args.split} error: {scores['test_error_pct']:.2f}%")
        print(f"BCE per pixel: {scores['test_bce']:.4f}   MSE: {scores['test_mse']:.5f}   "
              f"PSNR: {scores['test_psnr_db']:.2f} dB")
    return 0


def cmd_encode(args) -> int:
    import numpy as np

    from .fileio import atomic_write, write_text
    from .inference import encode
    ckpt = _load_model(args)
    images, labels = _images_from(args)
    codes = encode(ckpt.model, images)
    out = Path(args.output)
    if out.suffix == ".csv":
        size = codes.shape[1]
        header = ("label," if labels is not None else "") + ",".join(f"c{i}" for i in range(size))
        rows = [(f"{int(labels[i])}," if labels is not None else "") + ",".join(f"{v:.6g}" for v in code)
                for i, code in enumerate(codes)]
        write_text(out, header + "\n" + "\n".join(rows) + "\n")
    elif out.suffix == ".npy":
        with atomic_write(out) as f:
            np.save(f, codes)
        if labels is not None:
            with atomic_write(out.with_suffix(".labels.npy")) as f:
                np.save(f, np.asarray(labels))
    else:
        raise OptionError(f"cannot tell the format of {out}", hint="name the output FILE.npy or FILE.csv")
    print(f"Wrote {len(codes)} codes of {codes.shape[1]} numbers to {out}")
    return 0


def _read_codes(path: str):
    import numpy as np

    from .errors import DataError
    p = Path(path)
    try:
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if p.suffix == ".csv":
            lines = p.read_text(encoding="utf-8").splitlines()
            if not lines:
                raise DataError("empty codes file", path=p)
            header = lines[0].split(",")
            skip = 1 if header and header[0] == "label" else 0
            start = 1 if not _is_number(header[0]) else 0
            return np.array([[float(v) for v in line.split(",")[skip:]] for line in lines[start:] if line.strip()],
                            dtype=np.float32)
    except FileNotFoundError:
        raise DataError("codes file not found", path=p) from None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read codes: {e}", path=p, hint="pass a file written by `aelab encode`") from e
    raise OptionError(f"cannot tell the format of {p}", hint="pass a .npy or .csv file")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def cmd_decode(args) -> int:
    from . import plots
    from .inference import decode
    ckpt = _load_model(args)
    images = decode(ckpt.model, _read_codes(args.codes))
    paths = plots.save_pngs(args.output, images, prefix="decoded")
    if len(images):
        plots.save_image_grid(Path(args.output) / "grid.png", images[:50], title="decoded images")
    print(f"Wrote {len(paths)} PNGs and grid.png to {args.output}")
    return 0


def cmd_reconstruct(args) -> int:
    from . import plots
    from .inference import reconstruct
    ckpt = _load_model(args)
    images, labels = _images_from(args)
    if args.limit:
        images = images[: args.limit]
        labels = None if labels is None else labels[: args.limit]
    decoded = reconstruct(ckpt.model, images)
    paths = plots.save_pngs(args.output, decoded, prefix="decoded")
    n = min(len(images), 20)
    if n:
        plots.save_reconstruction_grid(Path(args.output) / "comparison.png", images[:n], decoded[:n],
                                       labels=None if labels is None else labels[:n])
    print(f"Wrote {len(paths)} decoded PNGs and comparison.png to {args.output}")
    return 0


def cmd_similarity(args) -> int:
    from . import plots
    from .data import load_dataset
    from .inference import encode, reconstruct
    from .metrics import cosine_similarity
    from .tutorial import similarity_rows
    ckpt = _load_model(args)
    data = load_dataset(args.data)
    images = data.test.images
    if args.pair:
        a, b = args.pair
        for i in (a, b):
            if i >= len(images):
                raise OptionError(f"test image index {i} is out of range", hint=f"use 0..{len(images) - 1}")
        decoded = reconstruct(ckpt.model, images[[a, b]])
        codes = encode(ckpt.model, images[[a, b]])
        rows = [{"title": f"test images {a} and {b}", "index_a": a, "index_b": b, "a": images[a], "b": images[b],
                 "a_decoded": decoded[0], "b_decoded": decoded[1],
                 "cos_original": cosine_similarity(images[a], images[b]),
                 "cos_decoded": cosine_similarity(decoded[0], decoded[1]),
                 "cos_code": cosine_similarity(codes[0], codes[1])}]
    else:
        rows = similarity_rows(ckpt.model, images, data.test.labels)
        if not rows:
            raise OptionError("the tutorial's pairs need labelled test images with 6s, 3s and 8s",
                              hint="name two test images with --pair A B")
    plain = [{k: v for k, v in r.items() if k.startswith(("title", "index", "cos"))} for r in rows]
    if args.json:
        print(json.dumps(plain))
    else:
        for r in plain:
            print(f"{r['title']} (test images {r['index_a']}, {r['index_b']}): cosine similarity of originals "
                  f"{r['cos_original']:.3f}, of decodings {r['cos_decoded']:.3f}, of codes {r['cos_code']:.3f}")
    if args.output:
        plots.save_similarity_figure(args.output, rows)
    return 0


def cmd_tsne(args) -> int:
    from . import plots
    from .data import load_dataset
    from .inference import encode
    ckpt = _load_model(args)
    data = load_dataset(args.data)
    if data.test.labels is None:
        raise OptionError("the t-SNE map is coloured by label, and this test split has none")
    n = min(args.samples, data.test.n)
    points = plots.tsne_2d(encode(ckpt.model, data.test.images[:n]), seed=args.seed)
    plots.save_tsne_map(args.output, points, data.test.labels[:n],
                        title=f"t-SNE map of the codes of {n} test images")
    print(f"Wrote {args.output}")
    return 0


def cmd_data(args) -> int:
    from .data import convert, describe, download_mnist, format_description
    if args.data_command == "info":
        d = describe(args.path)
        print(json.dumps(d, indent=2) if args.json else format_description(d))
    elif args.data_command == "convert":
        src = None if args.source == "mnist" else args.source
        if args.fmt is None and not str(args.dest).endswith(".npz"):
            raise OptionError(f"cannot tell the output format of {args.dest}",
                              hint="add --to idx, idx.gz, ctf or npz, or name the destination FILE.npz")
        dest = convert(src, args.dest, args.fmt)
        print(f"Wrote {dest}")
    elif args.data_command == "download":
        kwargs = {"base_urls": args.mirror} if args.mirror else {}
        folder = download_mnist(args.dir, **kwargs)
        print(f"MNIST is in {folder}, checksums verified; use it with --data {folder}")
    return 0


COMMANDS = {"tutorial": cmd_tutorial, "train": cmd_train, "evaluate": cmd_evaluate, "encode": cmd_encode,
            "decode": cmd_decode, "reconstruct": cmd_reconstruct, "similarity": cmd_similarity,
            "tsne": cmd_tsne, "data": cmd_data}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .train import TrainingInterrupted
    try:
        return COMMANDS[args.command](args)
    except TrainingInterrupted as e:
        print(f"aelab {args.command}: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except AelabError as e:
        if args.debug:
            raise
        print(f"aelab {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"aelab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
