"""The ``aelab`` command line: argument parsing only; each subcommand calls the Python API."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import warnings
from typing import Sequence

from . import api, cli_codec, cli_pipeline
from .data import convert, describe, download_mnist, format_description
from .evaluation.bench import format_table, run_benchmark
from .models.zoo import list_pretrained
from .training.loop import TrainingInterrupted
from .tutorial.run import run_tutorial
from .data.codes import read_codes
from .evaluation.compare import markdown_table
from .device import describe_device, resolve_device
from .fileio import ensure_dir, write_text
from . import runconfig
from .terminal import Terminated, guarded_stdout, sigterm_interrupts
from .training.resume import RESUME_FILE

RUN_CONFIG = "run.toml"  # the resolved options of `aelab train`, beside its checkpoint
from .version import __version__
from .cli_options import (_add_alias, _add_checkpoint, _add_data, _add_device, _add_limit, _add_reading_options,
                          _add_sweeps, _data_options, _int_list, _load_data, _non_negative_float, _non_negative_int,
                          _positive_float, _positive_int)
from .errors import EXIT_USER_ERROR, AelabError, OptionError

EXIT_INTERRUPTED = 130  # the shell's code for a program stopped by Ctrl-C

def build_parser() -> argparse.ArgumentParser:
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
    _add_data(p, reading=False)
    _add_sweeps(p)
    _add_device(p)
    p.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("--tsne-limit", dest="tsne_limit", type=_non_negative_int, default=1000, metavar="N",
                   help="test images in the t-SNE map; 0 skips it (default: %(default)s)")
    _add_alias(p, "--tsne-samples", "--tsne-limit", "tsne_limit", _non_negative_int)
    p.add_argument("--models", default="simple,deep", help="comma-separated models to run (default: simple,deep)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")

    p = sub.add_parser("train", help="train one model and save it as a checkpoint folder",
                       description="Train an autoencoder and write DIR/model.safetensors and DIR/config.json.")
    p.add_argument("--model", default="simple", help=f"model: {', '.join(api.MODEL_NAMES)} (default: simple)")
    _add_sweeps(p)
    p.add_argument("--code-size", type=_positive_int, default=32, metavar="N", help="code length (default: %(default)s)")
    tutorial = api.RECIPES["tutorial"]
    p.add_argument("--recipe", default=tutorial.name,
                   help=f"training recipe: {', '.join(api.RECIPES)} (default: %(default)s, CNTK's FSAdaGrad at "
                        f"lr {tutorial.lr:g} per sample, minibatch {tutorial.minibatch_size})")
    p.add_argument("--minibatch-size", type=_positive_int, default=None, metavar="N",
                   help="override the recipe's minibatch size")
    p.add_argument("--hidden", type=_int_list, default=None, metavar="W1,W2,...",
                   help="dense hidden widths of the encoder, mirrored by the decoder ('none': no hidden layer; "
                        "default: the model's)")
    p.add_argument("--channels", type=_int_list, default=None, metavar="C1,C2,...",
                   help="channels of the stride-2 convolution stages (conv; also sparse and vae; default: the model's)")
    p.add_argument("--conv-depth", type=_positive_int, default=None, metavar="N",
                   help="3x3 convolutions per stage, the first with stride 2 (default: the model's)")
    p.add_argument("--activation", choices=("relu", "silu"), default=None,
                   help="nonlinearity of conv, sparse and vae models (default: the model's)")
    p.add_argument("--sparsity", type=_non_negative_float, default=None, metavar="W",
                   help="sparse model: weight of the L1 penalty on the code, per image, in the units of the "
                        "summed BCE (default: the model's)")
    p.add_argument("--beta", type=_positive_float, default=None, metavar="B",
                   help="vae model: weight of the KL term (default: the model's)")
    p.add_argument("--noise", default=None, metavar="SPEC",
                   help="train a denoiser: corrupt the inputs (targets stay clean) with gaussian:SIGMA, "
                        "masking:P or salt-pepper:P, e.g. gaussian:0.5")
    p.add_argument("--loss", choices=api.LOSSES, default=None,
                   help="bce (sigmoid outputs, for images and data in [0, 1]) or mse (linear outputs, for "
                        "anything else; an image model's are clipped to [0, 1]); default: bce for images and "
                        "data in [0, 1], else mse")
    _add_data(p)
    _add_device(p)
    p.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("--out", default="aelab-model", metavar="DIR", help="checkpoint folder (default: ./aelab-model)")
    p.add_argument("--checkpoint-every", type=_non_negative_float, default=30.0, metavar="SECONDS",
                   help="save the run's state to DIR/resume.safetensors this often, so that a crash loses "
                        "at most this much work; 0: only on Ctrl-C (default: %(default)g)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run whose state is in DIR/resume.safetensors "
                        "(same options; --sweeps may change)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a trained model already in DIR that has other settings or data (default: refuse)")
    p.add_argument("--quiet", action="store_true", help="no progress table or bar")
    p.add_argument("--tensorboard", default=None, metavar="LOGDIR",
                   help="also log the training curve (DIR/metrics.csv's values) for TensorBoard into LOGDIR "
                        "(needs the tensorboard extra)")
    p.add_argument("--config", default=None, metavar="FILE.toml",
                   help="options from a TOML file, each a key named as its option (code_size = 16); the command "
                        "line overrides them; the resolved options are saved as DIR/run.toml")
    p.add_argument("--print-config", action="store_true", help="print the resolved options as TOML and stop")
    parser.set_defaults(train_parser=p)

    p = sub.add_parser("evaluate", help="score a trained model on the test split",
                       description="Average test error (CNTK's metric), BCE, MSE and PSNR on the test split; "
                                   "for a table, the MSE and R^2 in its scaled units.")
    _add_checkpoint(p)
    _add_data(p)
    _add_device(p)
    p.add_argument("--split", choices=("test", "train"), default="test", help="which split (default: test)")
    p.add_argument("--knn", action="store_true",
                   help="also the accuracy of a 5-nearest-neighbour classifier on the codes, fitted on the "
                        "training split's codes (knn_acc, 0..1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("encode", help="images or table rows to codes (.npy or .csv)",
                       description="Encode images or table rows into codes; writes codes and labels.")
    _add_checkpoint(p)
    p.add_argument("input", nargs="?", default=None,
                   help="images: an IDX, CTF or .npz file, a PNG, or a folder of PNGs; or a table (.npy, .csv, "
                        ".tsv, .parquet) for a table model (default: the test split of --data)")
    _add_data(p)
    _add_device(p)
    _add_limit(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="FILE.npy (codes; labels go to FILE.labels.npy) or FILE.csv (label, then the code)")

    p = sub.add_parser("decode", help="codes (.npy or .csv) to PNG images",
                       description="Decode codes into images, one PNG each, plus a grid of the first ones.")
    _add_checkpoint(p)
    p.add_argument("codes", help="a .npy array (n, code size) or a .csv written by `aelab encode`")
    _add_device(p)
    _add_limit(p, "codes")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for img-NNNNN.png and grid.png (a table model: FILE.csv or FILE.npy of rows)")

    p = sub.add_parser("reconstruct", help="images (or table rows) encoded and decoded",
                       description="Encode and decode images; writes each decoded image and a comparison grid "
                                   "(a table model: the decoded rows, in the table's own units).")
    _add_checkpoint(p)
    p.add_argument("input", nargs="?", default=None,
                   help="images: an IDX, CTF or .npz file, a PNG, or a folder of PNGs; or a table for a table "
                        "model (default: the test split of --data)")
    _add_data(p)
    _add_device(p)
    _add_limit(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for img-NNNNN.png and grid.png (a table model: FILE.csv or FILE.npy of rows)")

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
    p.add_argument("--limit", type=_positive_int, default=2000, metavar="N",
                   help="test images in the map (default: %(default)s)")
    _add_alias(p, "--samples", "--limit", "limit", _positive_int)
    p.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png", help="picture to write")

    p = sub.add_parser("report", help="one self-contained HTML page about a model, to open in a browser",
                       description="Scores, training curve, images and decodings, similarities and an interactive "
                                   "map of the codes (hover, zoom, hide classes) in one offline HTML file.")
    _add_checkpoint(p)
    _add_data(p)
    _add_device(p)
    p.add_argument("--limit", type=_positive_int, default=1000, metavar="N",
                   help="test samples on the map (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.html", help="where to write the page")

    p = sub.add_parser("compress", help="images to one .aez file of quantised, entropy-coded codes",
                       description="Encode images with a trained model, quantise the codes (--bits) and entropy code "
                                   "them into one .aez file (format: docs/format.md). `aelab decompress` reverses it "
                                   "with the same model.")
    p.add_argument("input", help="images: an IDX, CTF or .npz file, a PNG, or a folder of PNGs")
    _add_checkpoint(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE.aez", help="the compressed file to write")
    p.add_argument("--bits", type=int, default=api.DEFAULT_BITS, metavar="N",
                   help=f"quantiser bit depth, {api.MIN_BITS} to {api.MAX_BITS}: at most 2**N levels per component "
                        "(default: %(default)s)")
    p.add_argument("--quantiser", choices=tuple(api.QUANTISERS), default=api.DEFAULT_QUANTISER,
                   help="transform: decorrelated components weighted by the decoder's sensitivity, one step for all "
                        "(default; fewer bytes at equal PSNR); uniform: each code number on its own [min, max]")
    p.add_argument("--table", choices=("checkpoint", "embedded"), default="checkpoint",
                   help="where the probability model lives: the checkpoint's, fitted to its training codes and "
                        "stored in it as codec.safetensors (default), or this set's own, stored in the file")
    p.add_argument("--coder", choices=tuple(api.CODERS), default=None, help=api.coder_help())
    p.add_argument("--data", metavar="PATH", default=None,
                   help="the model's training data, to learn a probability table the checkpoint does not store "
                        "(`aelab codec fit` stores it; default: the bundled MNIST, if the model was trained on it)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="the encoder's arithmetic: fp32 (default) or bf16, faster for convolutional models on CPUs "
                        "with bfloat16 units (AMX, AVX512-BF16); a few code numbers land in a neighbouring "
                        "quantiser bin, the PSNR stays the same")
    p.add_argument("--search", type=_non_negative_int, default=0, metavar="STEPS",
                   help="search each image's symbols through the decoder for STEPS steps (e.g. 100): higher PSNR "
                        "for the bytes, and any aelab decodes the file, but compressing is far slower (default: 0, "
                        "no search)")
    p.add_argument("--rate-weight", type=_non_negative_float, default=api.DEFAULT_RATE_WEIGHT, metavar="W",
                   help="what the search trades a bit for, in squared error (pixels in 0..1, summed per image): "
                        "higher: fewer bytes, a lower PSNR (default: %(default)s)")

    p = sub.add_parser("decompress", help="an .aez file back to images (PNG folder, IDX or .npz)",
                       description="Decode an .aez file written by `aelab compress`, with the same model.")
    p.add_argument("input", metavar="FILE.aez", help="the compressed file")
    _add_checkpoint(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="FILE.npz (array 'images'); an IDX file, a name ending in -idx3-ubyte, .idx3-ubyte or .idx "
                        "(add .gz to gzip it); anything else is a new or empty folder for PNGs")
    p.add_argument("--data", metavar="PATH", default=None,
                   help="the model's training data, for a probability table the checkpoint does not store")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="the decoder's arithmetic: fp32 (default) or bf16, faster for convolutional models on CPUs "
                        "with bfloat16 units; pixels a few grey levels at most from fp32's; either decodes a "
                        "file compressed with either")

    cli_codec.add_codec(sub, _add_checkpoint, _notice)

    p = sub.add_parser("bench", help="training and inference throughput, side by side with a typical PyTorch loop",
                       description="Measure, in one run on the bundled MNIST: a typical PyTorch training loop, "
                                   "aelab's engine at minibatch 64 and 1024, the GEMM roof, and encoding and "
                                   "decoding. Prints a table, then one JSON object.")
    p.add_argument("--quick", action="store_true", help="fewer samples per measurement")
    _add_device(p)

    p = sub.add_parser("denoise", help="corrupt test images, denoise them, report PSNRs and draw triplets",
                       description="Corrupt test images with seeded noise, run the model on them, print the PSNR "
                                   "of the noisy and of the denoised images against the clean ones, and write "
                                   "clean / noisy / denoised triplets as pictures.")
    _add_checkpoint(p)
    p.add_argument("--noise", default=None, metavar="SPEC",
                   help="gaussian:SIGMA, masking:P or salt-pepper:P (default: the noise the model was trained with)")
    _add_data(p)
    _add_device(p)
    p.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="seed of the noise (default: 0)")
    p.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="only the first N test images (default: all)")
    p.add_argument("--draw", type=_non_negative_int, default=10, metavar="N",
                   help="triplets to draw (default: %(default)s)")
    _add_alias(p, "--count", "--draw", "draw", _non_negative_int)
    p.add_argument("-o", "--output", default="aelab-denoise", metavar="DIR",
                   help="folder for triplets.png and triplet-NNNNN.png (default: ./aelab-denoise)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("sample", help="draw new digits from a VAE's prior",
                       description="Decode codes drawn from a VAE's prior N(0, I) into a grid of new images.")
    _add_checkpoint(p)
    _add_device(p)
    p.add_argument("--draw", type=_positive_int, default=64, metavar="N", help="images to draw (default: %(default)s)")
    _add_alias(p, "-n", "--draw", "draw", _positive_int)
    p.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("--columns", type=_positive_int, default=8, metavar="N", help="images per row (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png", help="picture to write")

    p = sub.add_parser("interpolate", help="walk the code space between two test images",
                       description="Encode test images A and B, decode evenly spaced codes on the line between "
                                   "their codes, and draw them between the two originals.")
    _add_checkpoint(p)
    p.add_argument("a", type=_non_negative_int, metavar="A", help="index of the first test image")
    p.add_argument("b", type=_non_negative_int, metavar="B", help="index of the second test image")
    p.add_argument("--steps", type=_positive_int, default=10, metavar="N",
                   help="decoded codes, both ends included (default: %(default)s)")
    _add_data(p)
    _add_device(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE.png", help="picture to write")

    p = sub.add_parser("compare", help="train or load models and measure them all the same way",
                       description="Train each model with a named recipe (or load checkpoints and shipped models) "
                                   "and report on the test split: parameters, training seconds, BCE, MSE, PSNR, "
                                   "SSIM, 5-NN accuracy on the codes, t-SNE trustworthiness and denoising PSNR, "
                                   "with a PCA baseline. Writes DIR/quality.md, .json and .png.")
    p.add_argument("--models", default=None,
                   help="comma-separated: model kinds to train (KIND or KIND@NOISE for a denoiser), checkpoint "
                        f"folders or shipped names (default: {','.join(api.COMPARE_MODELS)})")
    p.add_argument("--recipe", default=api.COMPARE_RECIPE,
                   help=f"training recipe: {', '.join(api.RECIPES)} (default: %(default)s)")
    p.add_argument("--sweeps", type=_positive_float, default=None, metavar="N",
                   help=f"sweeps per model (default: {api.COMPARE_SWEEPS:g}; {api.QUICK_SWEEPS:g} with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="a small subset of the data, for a quick check")
    p.add_argument("--no-pca", dest="pca", action="store_false", help="leave out the PCA baseline")
    p.add_argument("--tsne-limit", dest="tsne_limit", type=_positive_int, default=None, metavar="N",
                   help=f"test images in the t-SNE map (default: {api.COMPARE_TSNE_LIMIT}; {api.QUICK_TSNE_LIMIT} with --quick)")
    _add_alias(p, "--tsne-samples", "--tsne-limit", "tsne_limit", _positive_int)
    _add_data(p, reading=False)
    _add_device(p)
    p.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("-o", "--output", default="aelab-compare", metavar="DIR",
                   help="folder for quality.md, quality.json and quality.png (default: ./aelab-compare)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")

    p = sub.add_parser("models", help="list the shipped pretrained models and their test metrics",
                       description="The pretrained models that ship with aelab; pass a name to --checkpoint.")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of objects (name, kind, code_size, ..., and the test metrics)")

    p = sub.add_parser("data", help="dataset tools: info, convert, pack, download",
                       description="Inspect, convert, pack and download datasets.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = dsub.add_parser("info", help="counts, shape, label histogram and checksums",
                        description="Describe a dataset or a single IDX, CTF or .npz file.")
    q.add_argument("path", nargs="?", default=None, help="anything --data accepts, or one file (default: bundled MNIST)")
    q.add_argument("--json", action="store_true", help="print JSON")
    _add_reading_options(q)
    q = dsub.add_parser("convert", help="convert a dataset between IDX, CTF and .npz",
                        description="Convert a dataset (anything --data accepts) to IDX files, the tutorial's "
                                    "CTF files, or one .npz.")
    q.add_argument("source", help="anything --data accepts; 'mnist' for the bundled copy")
    q.add_argument("dest", help="a folder (idx, idx.gz, ctf) or a .npz file")
    q.add_argument("--to", dest="fmt", choices=("idx", "idx.gz", "ctf", "npz"), default=None,
                   help="output format (default: npz when DEST ends in .npz)")
    q = dsub.add_parser("pack", help="write a data set to disk in shards, to train on it with bounded memory",
                        description="Pack a data set (anything --data accepts, read with the options below) into "
                                    "folder OUT: its samples in checksummed shards with an index.json (a folder "
                                    "of images is read a few thousand files at a time). --data OUT then trains "
                                    "(block-shuffled), evaluates and encodes from disk without loading it whole.")
    q.add_argument("source", help="anything --data accepts; 'mnist' for the bundled copy")
    q.add_argument("-o", "--out", required=True, metavar="OUT", help="the folder to create (must not exist)")
    _add_reading_options(q)
    q = dsub.add_parser("download", help="download MNIST from its public mirrors, checksums verified",
                        description="Download the four MNIST files into DIR, verifying their SHA-256. aelab "
                                    "works offline with its bundled copy; this is for fresh copies.")
    q.add_argument("dir", nargs="?", default="mnist", help="destination folder (default: ./mnist)")
    q.add_argument("--mirror", action="append", default=None, metavar="URL",
                   help="base URL to try (repeatable; default: the usual mirrors)")
    cli_pipeline.add_commands(sub, _add_checkpoint, _add_data, _add_device, _add_limit)
    return parser


def _log(args) -> object:
    return None if getattr(args, "quiet", False) else print


def _load_model(args):
    return api.load_model(args.checkpoint, args.device)


def _progress(message: str) -> None:
    """A progress line for a person watching; not when stderr is a file, which keeps errors one line there."""
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


def cmd_tutorial(args) -> int:
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    api.check_models(models)
    run_tutorial(args.out, data=args.data, sweeps=args.sweeps, slow=args.sweeps == 100.0, device=args.device,
                 seed=args.seed, tsne_samples=args.tsne_limit, models=models, log=_log(args),
                 progress_bar=not args.quiet, helper="process")  # this command's entry points are import-safe
    return 0


def _with_config(args, argv: Sequence[str] | None) -> argparse.Namespace:
    """``args`` of `aelab train` with the options of ``--config`` filled in under the command line's."""
    if getattr(args, "config", None) is None:
        return args
    given = list(sys.argv[1:] if argv is None else argv)
    given = given[given.index("train") + 1:]
    from_file = runconfig.config_arguments(args.train_parser, runconfig.read_config(args.config), given, args.config)
    runconfig.check_arguments(args.train_parser, from_file, args.config)
    merged = args.train_parser.parse_args(from_file + given)
    merged.command, merged.debug, merged.train_parser = args.command, args.debug, args.train_parser
    return merged


def cmd_train(args) -> int:
    options = runconfig.resolved_options(args.train_parser, args)
    if args.print_config:
        print(runconfig.to_toml(options), end="")
        return 0
    if api.process_rank() != 0:  # under torchrun, rank 0 alone prints
        args.quiet = True
    say = _log(args) or (lambda _m: None)
    config = api.TrainConfig(model=args.model, code_size=args.code_size, recipe=args.recipe,
                             sweeps=args.sweeps or 5.0, minibatch_size=args.minibatch_size, seed=args.seed,
                             device=args.device, hidden=args.hidden, channels=args.channels,
                             conv_depth=args.conv_depth, activation=args.activation, sparsity=args.sparsity,
                             beta=args.beta, noise=args.noise, loss=args.loss)
    config.validate()  # unknown model names and unusable options fail before data loads
    out = ensure_dir(args.out)  # an unusable --out fails now, not after the training
    data = _load_data(args)
    say(f"Training {config.model} on {data.name} ({data.train.n} {_samples(data)}), "
        f"device {describe_device(resolve_device(config.device))}")
    try:
        trained = api.train_model(data, config, out, log=_log(args), progress_bar=not args.quiet,
                                  resume_file=out / RESUME_FILE, checkpoint_every=args.checkpoint_every,
                                  resume=args.resume, overwrite=args.overwrite, tensorboard=args.tensorboard)
        if api.process_rank() != 0:  # a torchrun helper rank: rank 0 reports and writes
            return 0
    except KeyboardInterrupt as e:  # e.g. during the final evaluation: the resume file keeps the run
        if not (out / RESUME_FILE).exists():
            raise
        stopped = TrainingInterrupted(f"stopped before the checkpoint was saved; the run's last saved state is in "
                                      f"{out / RESUME_FILE}", hint="run the same command with --resume to continue")
        stopped.signum = signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT
        raise stopped from None
    write_text(out / RUN_CONFIG, runconfig.to_toml(options))
    scores, result = trained.scores, trained.result
    say(_score_line(scores))
    say(f"Saved {trained.folder / 'model.safetensors'} and {trained.folder / 'config.json'} "
        f"({result.seconds:.1f} s, {result.samples_per_second:,.0f} samples/s)")
    return 0


def _samples(data) -> str:
    return "rows" if data.kind == "table" else "images"


def _score_line(scores: dict) -> str:
    if "test_error_pct" in scores:
        return f"Average test error: {scores['test_error_pct']:.2f}%  (PSNR {scores['test_psnr_db']:.2f} dB)"
    return f"Test MSE (scaled units): {scores['test_mse']:.5f}  (R^2 {scores['test_r2']:.4f})"


def _written(ckpt, count: int, pngs: str) -> str:
    return f"{count} {pngs} and {api.GRID_NAME}" if ckpt.model_config.is_image else f"{count} rows"


def cmd_evaluate(args) -> int:
    ckpt = _load_model(args)
    scores = api.evaluate_model(ckpt, _load_data(args, ckpt), args.split, knn=args.knn)
    if args.json:
        print(json.dumps(scores))
        return 0
    print(f"{args.split} split of {scores['data']}: {scores['n']} "
          f"{'images' if ckpt.model_config.is_image else 'rows'}")
    if "test_error_pct" in scores:
        print(f"Average {args.split} error: {scores['test_error_pct']:.2f}%")
        print(f"BCE per pixel: {scores['test_bce']:.4f}   MSE: {scores['test_mse']:.5f}   "
              f"PSNR: {scores['test_psnr_db']:.2f} dB")
    else:
        print(f"MSE (scaled units): {scores['test_mse']:.5f}   R^2: {scores['test_r2']:.4f}")
    if "knn_acc" in scores:
        print(f"5-NN accuracy on the codes: {100 * scores['knn_acc']:.2f}%")
    return 0


def cmd_denoise(args) -> int:
    ckpt = _load_model(args)
    summary = api.denoise_images(ckpt, _load_data(args, ckpt), args.noise, seed=args.seed, limit=args.limit,
                                 draw=args.draw, output=args.output)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{summary['n']} test images of {summary['data']} with {summary['noise']} noise (seed {args.seed}):")
    print(f"PSNR of the noisy images: {summary['noisy_psnr_db']:.2f} dB")
    print(f"PSNR of the denoised images: {summary['denoised_psnr_db']:.2f} dB")
    print(f"Wrote {summary['triplets']} triplets (clean | noisy | denoised) and triplets.png to {args.output}")
    return 0


def cmd_sample(args) -> int:
    api.sample_images(_load_model(args), args.draw, seed=args.seed, columns=args.columns, output=args.output)
    print(f"Wrote {args.draw} samples to {args.output}")
    return 0


def cmd_interpolate(args) -> int:
    ckpt = _load_model(args)
    api.interpolate_images(ckpt, _load_data(args, ckpt), args.a, args.b, steps=args.steps,
                           output=args.output)
    print(f"Wrote {args.output}: test images {args.a} and {args.b} with {args.steps} decoded codes between them")
    return 0


def cmd_compare(args) -> int:
    result = api.compare_models(None if args.models is None else tuple(args.models.split(",")), data=args.data,
                                recipe=args.recipe, sweeps=args.sweeps, quick=args.quick, pca=args.pca,
                                tsne_limit=args.tsne_limit, seed=args.seed, device=args.device,
                                output=args.output, log=None if args.json else print)
    if args.json:
        print(json.dumps(result["rows"]))
        return 0
    paths = result["paths"]
    print(markdown_table(result))
    print(f"Wrote {paths['markdown']}, {paths['json']} and {paths['picture']}")
    return 0


def cmd_models(args) -> int:
    models = list_pretrained()
    if args.json:
        print(json.dumps(models))
        return 0
    if not models:
        print("No pretrained models are installed.")
        return 0
    print(f"{'name':<16} {'kind':<7} {'code':>4} {'params':>8} {'KB':>5} {'PSNR dB':>8} {'5-NN':>7}  description")
    for m in models:
        knn = f"{100 * m['knn_acc']:.2f}%" if m.get("knn_acc") is not None else "-"
        psnr = f"{m['test_psnr_db']:.2f}" if m.get("test_psnr_db") is not None else "-"
        extra = (f" (denoises {m['noise']}: {m['noisy_psnr_db']:.1f} -> {m['denoised_psnr_db']:.1f} dB)"
                 if m.get("noise") and m.get("noisy_psnr_db") is not None else "")
        print(f"{m['name']:<16} {m['kind']:<7} {m['code_size']:>4} {m['params'] or 0:>8,} "
              f"{m['weights_bytes'] / 1024:>5.0f} {psnr:>8} {knn:>7}  {m['description']}{extra}")
    print("Use a name wherever --checkpoint is asked for, e.g. aelab evaluate --checkpoint "
          f"{models[0]['name']}")
    return 0


def cmd_encode(args) -> int:
    ckpt = _load_model(args)
    images, labels = api.input_images(args.input, args.data, args.limit, ckpt, **_data_options(args))
    _progress(f"Encoding {len(images)} samples ...")
    codes = api.encode_images(ckpt, images, labels, output=args.output)
    print(f"Wrote {len(codes)} codes of {codes.shape[1]} numbers to {args.output}")
    return 0


def cmd_decode(args) -> int:
    ckpt = _load_model(args)
    codes = read_codes(args.codes)
    codes = codes[: args.limit] if args.limit else codes
    _progress(f"Decoding {len(codes)} codes ...")
    images = api.decode_codes(ckpt, codes, output=args.output)
    print(f"Wrote {_written(ckpt, len(images), 'PNGs')} to {args.output}")
    return 0


def cmd_reconstruct(args) -> int:
    ckpt = _load_model(args)
    images, labels = api.input_images(args.input, args.data, args.limit, ckpt, **_data_options(args))
    decoded = api.reconstruct_images(ckpt, images, labels, output=args.output)
    print(f"Wrote {_written(ckpt, len(decoded), 'decoded PNGs')} to {args.output}")
    return 0


def cmd_similarity(args) -> int:
    ckpt = _load_model(args)
    rows = api.similarity_pairs(ckpt, _load_data(args, ckpt),
                                None if args.pair is None else tuple(args.pair), output=args.output)
    plain = [{k: v for k, v in r.items() if k.startswith(("title", "index", "cos"))} for r in rows]
    if args.json:
        print(json.dumps(plain))
        return 0
    for r in plain:
        print(f"{r['title']} (test images {r['index_a']}, {r['index_b']}): cosine similarity of originals "
              f"{r['cos_original']:.3f}, of decodings {r['cos_decoded']:.3f}, of codes {r['cos_code']:.3f}")
    return 0


def cmd_report(args) -> int:
    ckpt = _load_model(args)
    api.report_model(ckpt, _load_data(args, ckpt), args.output, limit=args.limit)
    print(f"Wrote {args.output}")
    return 0


def cmd_tsne(args) -> int:
    ckpt = _load_model(args)
    api.tsne_map(ckpt, _load_data(args, ckpt), args.limit, seed=args.seed, output=args.output)
    print(f"Wrote {args.output}")
    return 0


def _notice(line: str | None) -> None:
    if line:
        print(line, file=sys.stderr, flush=True)


def cmd_compress(args) -> int:
    result = api.compress(args.input, args.checkpoint, args.output, args.bits, quantiser=args.quantiser,
                          table=args.table, coder=args.coder, data=args.data, precision=args.precision,
                          search=args.search, rate_weight=args.rate_weight, log=_notice)
    print(f"Compressed {result['count']} images into {result['bytes']:,} bytes ({result['bytes_per_image']:.2f} "
          f"bytes/image; {result['quantiser']} quantiser, {result['bits']} bits, {result['coder']} coder, "
          f"{result['table']} table): {result['path']}")
    return 0


def cmd_decompress(args) -> int:
    result = api.decompress(args.input, args.checkpoint, args.output, data=args.data, precision=args.precision,
                            log=_notice)
    what = {"png": "a folder of PNGs", "npz": "a .npz file", "idx": "an IDX file",
            "idx.gz": "a gzipped IDX file"}[result["format"]]
    print(f"Decompressed {result['count']} images to {what}: {result['path']}")
    return 0


def cmd_bench(args) -> int:
    result = run_benchmark(args.quick, args.device)
    print(format_table(result))
    print(json.dumps(result))
    return 0


def cmd_data(args) -> int:
    if args.data_command == "info":
        d = describe(args.path, **{k: v for k, v in _data_options(args).items() if v})
        print(json.dumps(d, indent=2) if args.json else format_description(d))
    elif args.data_command == "convert":
        src = None if args.source == "mnist" else args.source
        if args.fmt is None and not str(args.dest).endswith(".npz"):
            raise OptionError(f"cannot tell the output format of {args.dest}",
                              hint="add --to idx, idx.gz, ctf or npz, or name the destination FILE.npz")
        dest = convert(src, args.dest, args.fmt)
        print(f"Wrote {dest}")
    elif args.data_command == "pack":
        src = None if args.source == "mnist" else args.source
        out = api.pack_data(src, args.out, **_data_options(args))
        data = api.load_data(out)
        print(f"Packed {data.train.n} + {data.test.n} {_samples(data)} into {out}; train on it with --data {out}")
    elif args.data_command == "download":
        kwargs = {"base_urls": args.mirror} if args.mirror else {}
        folder = download_mnist(args.dir, **kwargs)
        print(f"MNIST is in {folder}, checksums verified; use it with --data {folder}")
    return 0


COMMANDS = {"tutorial": cmd_tutorial, "train": cmd_train, "evaluate": cmd_evaluate, "encode": cmd_encode,
            "decode": cmd_decode, "reconstruct": cmd_reconstruct, "similarity": cmd_similarity,
            "tsne": cmd_tsne, "report": cmd_report, "bench": cmd_bench, "data": cmd_data,
            "compress": cmd_compress, "decompress": cmd_decompress, "codec": cli_codec.cmd_codec, "denoise": cmd_denoise, "sample": cmd_sample,
            "interpolate": cmd_interpolate, "compare": cmd_compare, "models": cmd_models,
            "score": lambda args: cli_pipeline.cmd_score(args, _data_options(args)), "export": cli_pipeline.cmd_export}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status. Standard output may close or fill and SIGTERM may come: see aelab.terminal."""
    with guarded_stdout() as stdout, sigterm_interrupts(), warnings.catch_warnings():
        parser = build_parser()
        args = parser.parse_args(argv)
        warnings.showwarning = lambda message, *_args, **_kw: print(f"aelab {args.command}: warning: {message}",
                                                                     file=sys.stderr)
        status = _run(args, argv)
        stdout.flush()
    if stdout.error is not None and not stdout.reader_left:  # a closed pipe: its reader wanted no more
        print(f"aelab {args.command}: error: cannot write to standard output: {stdout.error.strerror or stdout.error}",
              file=sys.stderr)
        return status or EXIT_USER_ERROR
    return status


def _run(args, argv: Sequence[str] | None) -> int:
    try:
        if api.process_count() > 1 and args.command != "train":
            raise OptionError(f"aelab {args.command} runs in one process; torchrun starts several for aelab train only",
                              hint=f"run aelab {args.command} without torchrun")
        return COMMANDS[args.command](_with_config(args, argv))
    except TrainingInterrupted as e:
        print(f"aelab {args.command}: {e}", file=sys.stderr)
        return 128 + e.signum
    except AelabError as e:
        if args.debug:
            raise
        print(f"aelab {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated)
        print(f"aelab {args.command}: {'terminated' if isinstance(e, Terminated) else 'interrupted'}",
              file=sys.stderr)
        return getattr(e, "exit_status", EXIT_INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
