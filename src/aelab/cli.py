"""The ``aelab`` command line: it parses the arguments, calls one function of :mod:`aelab.api`, and prints.

One ``add_<command>`` per subcommand builds its options; one ``cmd_<command>`` runs it. Building the
parser imports nothing heavy (choices and defaults come from :mod:`aelab.cli_choices`), so ``aelab
--help`` is quick; the API, and torch with it, is imported when a command runs.
"""
from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path
from typing import NoReturn, Sequence

from . import cli_codec, cli_data, cli_pipeline, fileio, runconfig
from .cli_choices import (COMPARE_MODELS, COMPARE_RECIPE, COMPARE_SWEEPS, COMPARE_TSNE_LIMIT, DEFAULT_RECIPE,
                          DEFAULT_RECIPE_LR, DEFAULT_RECIPE_MINIBATCH, LOSSES, MODEL_NAMES, NORMS, QUICK_SWEEPS,
                          QUICK_TSNE_LIMIT, RECIPE_NAMES)
from .cli_options import (MAX_PICTURE_IMAGES, _api, _add_alias, _add_checkpoint, _add_data, _add_device,
                          _add_input, _add_limit, _add_sweeps, _duration, _int_list, _json, _non_negative_float,
                          _non_negative_int, _positive_float, _positive_int, _seed, _share)
from .errors import EXIT_USER_ERROR, AelabError, OptionError
from .terminal import Terminated, guarded_stdout, sigterm_interrupts
from .version import __version__

EXIT_INTERRUPTED = 130  # the shell's code for a program stopped by Ctrl-C


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line, as aelab's own are (argparse prints the whole usage
    first, up to eight lines; ``--help`` shows it), but for a missing command, where the usage lists them.
    Its "expected one argument" says how to give a value that starts with '-' (``--budget -5s`` reads
    ``-5s`` as an option; only ``--budget=-5s`` reaches the option's own check)."""

    def error(self, message: str) -> NoReturn:
        missing = re.fullmatch(r"argument ([^:]+): expected one argument", message)
        if missing:
            names = missing[1].split("/")
            name = next((n for n in names if n.startswith("--")), names[0])
            message += f" (a value that starts with '-' is written {name}=VALUE)"
        if "COMMAND" in message:
            super().error(message)
        self._one_line(self.prog, message)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:  # argparse names the top command here: name the one whose options these are not
            prog = f"aelab {command_name(parsed)}" if getattr(parsed, "command", None) else self.prog
            self._one_line(prog, f"unrecognized arguments: {' '.join(unknown)}")
        return parsed

    def _one_line(self, prog: str, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{prog}: error: {message} (`{prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="aelab",
        description="Autoencoders for MNIST-style images: compress 28x28 digits into small codes and back. "
                    "`aelab tutorial` reproduces the CNTK 105 tutorial end to end.",
        epilog="Errors in input or options exit with status 2 and one line saying what to fix; "
               "--debug shows the traceback.")
    parser.add_argument("--version", action="version", version=f"aelab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_tutorial(sub)
    parser.set_defaults(train_parser=add_train(sub))  # --config reads a file against train's options
    for add in (add_evaluate, add_encode, add_decode, add_reconstruct, add_similarity, add_tsne, add_report,
                cli_codec.add_compress, cli_codec.add_decompress, cli_codec.add_codec, add_bench, add_denoise, add_sample,
                add_interpolate,
                add_compare, add_models, cli_data.add_data_tools, cli_pipeline.add_score, cli_pipeline.add_export):
        add(sub)
    _name_outputs(sub)
    return parser


OUTPUT_DESTS = ("output", "out", "dest", "dir")  # the arguments that name where a command writes
OUTPUT_KINDS = {".png": "a PNG picture", ".html": "an HTML page", ".aez": "an .aez file"}  # by the metavar's suffix
INPUT_DESTS = ("input", "codes", "data", "source")  # the arguments that name the samples a command reads


def _name_outputs(sub: argparse._SubParsersAction) -> None:
    """Give each command's parser the argument that names its output (``output_dest``) and how the user
    writes it (``output_option``: -o, --out, DEST), for the errors about it."""
    for parser in sub.choices.values():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _name_outputs(action)
            elif action.dest in OUTPUT_DESTS:
                option = action.option_strings[0] if action.option_strings else action.metavar or action.dest.upper()
                suffix = Path(action.metavar or "").suffix  # FILE.png: a picture, FILE.html: a page, FILE.aez
                parser.set_defaults(output_dest=action.dest, output_option=option,
                                    output_suffix=suffix if suffix in OUTPUT_KINDS else None)


def add_tutorial(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("tutorial", help="the CNTK 105 tutorial end to end: train both models, write every output",
                       description="Train the simple and the deep autoencoder as the CNTK 105 tutorial does and "
                                   "write pictures, checkpoints, summary.json and report.md into --out.")
    p.add_argument("--out", default="aelab-out", metavar="DIR",
                   help="output folder: new, empty, or an earlier tutorial's, whose outputs are replaced "
                        "(default: ./aelab-out)")
    _add_data(p, reading=False)
    _add_sweeps(p)
    _add_device(p)
    p.add_argument("--seed", type=_seed, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("--tsne-limit", dest="tsne_limit", type=_non_negative_int, default=1000, metavar="N",
                   help="test images in the t-SNE map; 0 skips it (default: %(default)s)")
    _add_alias(p, "--tsne-samples", "--tsne-limit", "tsne_limit", _non_negative_int)
    p.add_argument("--models", default="simple,deep", help="comma-separated models to run (default: simple,deep)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def add_train(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train one model and save it as a checkpoint folder",
                       description="Train an autoencoder and write DIR/model.safetensors and DIR/config.json.")
    p.add_argument("--model", default=None, help=f"model: {', '.join(MODEL_NAMES)} (default: chosen for the data, "
                                                 "with the options below not given; with a model named: simple's)")
    _add_sweeps(p)
    p.add_argument("--code-size", type=_positive_int, default=None, metavar="N",
                   help="code length (default: chosen for the data; 32 with --model)")
    p.add_argument("--recipe", default=None,
                   help=f"training recipe: {', '.join(RECIPE_NAMES)} (default: chosen for the data; with --model, "
                        f"{DEFAULT_RECIPE}: CNTK's FSAdaGrad at lr {DEFAULT_RECIPE_LR:g} per sample, minibatch "
                        f"{DEFAULT_RECIPE_MINIBATCH})")
    p.add_argument("--validation", type=_share, default=None, metavar="SHARE",
                   help="hold out this share of the training split, stop once its loss stops improving and keep "
                        "the best weights (default: chosen for the data; 0 with --model)")
    p.add_argument("--budget", type=_duration, default=None, metavar="DURATION",
                   help="train for at most this long: 90s, 10m, 1h (default: chosen for the data; none with --model)")
    p.add_argument("--minibatch-size", type=_positive_int, default=None, metavar="N",
                   help="override the recipe's minibatch size")
    p.add_argument("--hidden", type=_int_list, default=None, metavar="W1,W2,...",
                   help="dense hidden widths of the encoder, mirrored by the decoder ('none': no hidden layer; "
                        "default: the model's)")
    p.add_argument("--channels", type=_int_list, default=None, metavar="C1,C2,...",
                   help="channels of the stride-2 convolution stages (conv; also sparse and vae; default: the model's)")
    p.add_argument("--conv-depth", type=_positive_int, default=None, metavar="N",
                   help="3x3 convolutions per stage, the first with stride 2 (default: the model's)")
    p.add_argument("--res-blocks", type=_non_negative_int, default=None, metavar="N",
                   help="residual blocks (two 3x3 convolutions and a skip) after each stage's convolutions "
                        "(default: the model's)")
    p.add_argument("--norm", choices=NORMS, default=None,
                   help="normalisation after each convolution: none, or group (GroupNorm; default: the model's)")
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
    p.add_argument("--shift", type=_non_negative_int, default=None, metavar="PIXELS",
                   help="images: move each training image by its own random offset of up to PIXELS each way "
                        "(edges repeated), so a small set gives more distinct images; 0: none (default: chosen "
                        "for the data; 0 with --model)")
    p.add_argument("--loss", choices=LOSSES, default=None,
                   help="bce (sigmoid outputs, for images and data in [0, 1]) or mse (linear outputs, for "
                        "anything else; an image model's are clipped to [0, 1]); default: bce for images and "
                        "data in [0, 1], else mse")
    _add_data(p)
    _add_device(p)
    p.add_argument("--seed", type=_seed, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("--out", default="aelab-model", metavar="DIR", help="checkpoint folder (default: ./aelab-model)")
    p.add_argument("--checkpoint-every", type=_non_negative_float, default=30.0, metavar="SECONDS",
                   help="save the run's state to DIR/resume.safetensors this often, so that a crash loses "
                        "at most this much work; 0: only on Ctrl-C (default: %(default)g)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run whose state is in DIR/resume.safetensors "
                        "(same options; --sweeps may change)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a trained model already in DIR that has other settings or data, or files of "
                        "a checkpoint's names that aelab did not write, or discard the saved state of an "
                        "interrupted run there (default: refuse)")
    p.add_argument("--quiet", action="store_true", help="no progress table or bar")
    p.add_argument("--tensorboard", default=None, metavar="LOGDIR",
                   help="also log the training curve (DIR/metrics.csv's values) for TensorBoard into LOGDIR "
                        "(needs the tensorboard extra)")
    p.add_argument("--config", default=None, metavar="FILE.toml",
                   help="options from a TOML file, each a key named as its option (code_size = 16); the command "
                        "line overrides them; the resolved options are saved as DIR/run.toml")
    p.add_argument("--print-config", action="store_true", help="print the resolved options as TOML and stop")
    return p


def add_evaluate(sub) -> argparse.ArgumentParser:
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
    return p


def add_encode(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("encode", help="images or table rows to codes (.npy or .csv)",
                       description="Encode images or table rows into codes; writes codes and labels.")
    _add_checkpoint(p)
    _add_input(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="FILE.npy (labels: FILE.labels.npy, class names: FILE.classes.json, image files' names: "
                        "FILE.files.json) or FILE.csv (file, label, then code)")
    return p


def add_decode(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("decode", help="codes (.npy or .csv) to PNG images",
                       description="Decode codes into images, one PNG each, plus a grid of the first ones.")
    _add_checkpoint(p)
    p.add_argument("codes", help="a .npy array (n, code size) or a .csv written by `aelab encode`")
    _add_device(p)
    _add_limit(p, "codes")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for img-NNNNN.png and grid.png, not one holding your own pictures (a table model: "
                        "FILE.csv or FILE.npy of rows)")
    return p


def add_reconstruct(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("reconstruct", help="images (or table rows) encoded and decoded",
                       description="Encode and decode images; writes each decoded image and a comparison grid "
                                   "(a table model: the decoded rows, in the table's own units).")
    _add_checkpoint(p)
    _add_input(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for img-NNNNN.png and grid.png, not one holding your own pictures (a table model: "
                        "FILE.csv or FILE.npy of rows)")
    return p


def add_similarity(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("similarity", help="cosine similarities of images, their decodings and codes",
                       description="Cosine similarity of two test images, of their decodings and of their codes. "
                                   "Without --pair, the tutorial's pairs: two 6s, and a 3 and an 8.")
    _add_checkpoint(p)
    _add_data(p)
    _add_device(p)
    p.add_argument("--pair", nargs=2, type=_non_negative_int, metavar=("A", "B"), help="two test image indices")
    p.add_argument("-o", "--output", default=None, metavar="FILE.png", help="also draw the comparison")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def add_tsne(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("tsne", help="a t-SNE map of the codes of test images",
                       description="Encode test images and draw a t-SNE map of their codes, coloured by label.")
    _add_checkpoint(p)
    _add_data(p)
    _add_device(p)
    p.add_argument("--limit", type=_positive_int, default=2000, metavar="N",
                   help="test images in the map (default: %(default)s)")
    _add_alias(p, "--samples", "--limit", "limit", _positive_int)
    p.add_argument("--seed", type=_seed, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("--perplexity", type=_positive_float, default=None, metavar="P",
                   help="t-SNE's perplexity, below the number of images (default: scikit-learn's, lowered for "
                        "small sets)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png", help="picture to write")
    return p


def add_report(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="one self-contained HTML page about a model, to open in a browser",
                       description="Scores, training curve, images and decodings, similarities and an interactive "
                                   "map of the codes (hover, zoom, hide classes) in one offline HTML file.")
    _add_checkpoint(p)
    _add_data(p)
    _add_device(p)
    p.add_argument("--limit", type=_positive_int, default=1000, metavar="N",
                   help="test samples on the map (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.html", help="where to write the page")
    return p


def add_bench(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="training and inference throughput, side by side with a typical PyTorch loop",
                       description="Measure, in one run on the bundled MNIST: a typical PyTorch training loop, "
                                   "aelab's engine at minibatch 64 and 1024, the GEMM roof, and encoding and "
                                   "decoding. Prints a table, then one JSON object.")
    p.add_argument("--quick", action="store_true", help="fewer samples per measurement")
    _add_device(p)
    return p


def add_denoise(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("denoise", help="corrupt test images, denoise them, report PSNRs and draw triplets",
                       description="Corrupt test images with seeded noise, run the model on them, print the PSNR "
                                   "of the noisy and of the denoised images against the clean ones, and write "
                                   "clean / noisy / denoised triplets as pictures.")
    _add_checkpoint(p)
    p.add_argument("--noise", default=None, metavar="SPEC",
                   help="gaussian:SIGMA, masking:P or salt-pepper:P (default: the noise the model was trained with)")
    _add_data(p)
    _add_device(p)
    p.add_argument("--seed", type=_seed, default=0, metavar="N", help="seed of the noise (default: 0)")
    p.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="only the first N test images (default: all)")
    p.add_argument("--draw", type=_non_negative_int, default=10, metavar="N",
                   help="triplets to draw (default: %(default)s)")
    _add_alias(p, "--count", "--draw", "draw", _non_negative_int)
    p.add_argument("-o", "--output", default="aelab-denoise", metavar="DIR",
                   help="folder for triplets.png and triplet-NNNNN.png (default: ./aelab-denoise)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def add_sample(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sample", help="draw new digits from a VAE's prior",
                       description="Decode codes drawn from a VAE's prior N(0, I) into a grid of new images.")
    _add_checkpoint(p)
    _add_device(p)
    p.add_argument("--draw", type=_positive_int, default=64, metavar="N",
                   help=f"images to draw, at most {MAX_PICTURE_IMAGES} (default: %(default)s)")
    _add_alias(p, "-n", "--draw", "draw", _positive_int)
    p.add_argument("--seed", type=_seed, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("--columns", type=_positive_int, default=8, metavar="N", help="images per row (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png", help="picture to write")
    return p


def add_interpolate(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("interpolate", help="walk the code space between two test images",
                       description="Encode test images A and B, decode evenly spaced codes on the line between "
                                   "their codes, and draw them between the two originals (image models only).")
    _add_checkpoint(p)
    p.add_argument("a", type=_non_negative_int, metavar="A", help="index of the first test image")
    p.add_argument("b", type=_non_negative_int, metavar="B", help="index of the second test image")
    p.add_argument("--steps", type=_positive_int, default=10, metavar="N",
                   help=f"decoded codes, both ends included, at most {MAX_PICTURE_IMAGES} (default: %(default)s)")
    _add_data(p)
    _add_device(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE.png", help="picture to write")
    return p


def add_compare(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", help="train or load models and measure them all the same way",
                       description="Train each model with a named recipe (or load checkpoints and shipped models) "
                                   "and report on the test split: parameters, training seconds, BCE, MSE, PSNR, "
                                   "SSIM, 5-NN accuracy on the codes, t-SNE trustworthiness and denoising PSNR, "
                                   "with a PCA baseline of the models' code size. Writes DIR/quality.md, .json "
                                   "and, for images, .png. With a checkpoint, --data is read as the first one "
                                   "remembers (its label column, scaling and test split).")
    p.add_argument("--models", default=None,
                   help="comma-separated: model kinds to train (KIND or KIND@NOISE for a denoiser), checkpoint "
                        f"folders or shipped names (default: {','.join(COMPARE_MODELS)})")
    p.add_argument("--recipe", default=COMPARE_RECIPE,
                   help=f"training recipe: {', '.join(RECIPE_NAMES)} (default: %(default)s)")
    p.add_argument("--sweeps", type=_positive_float, default=None, metavar="N",
                   help=f"sweeps per model (default: {COMPARE_SWEEPS:g}; {QUICK_SWEEPS:g} with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="a small subset of the data, for a quick check")
    p.add_argument("--no-pca", dest="pca", action="store_false", help="leave out the PCA baseline")
    p.add_argument("--tsne-limit", dest="tsne_limit", type=_positive_int, default=None, metavar="N",
                   help=f"test images in the t-SNE map (default: {COMPARE_TSNE_LIMIT}; {QUICK_TSNE_LIMIT} with --quick)")
    _add_alias(p, "--tsne-samples", "--tsne-limit", "tsne_limit", _positive_int)
    _add_data(p)
    _add_device(p)
    p.add_argument("--seed", type=_seed, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument("-o", "--output", default="aelab-compare", metavar="DIR",
                   help="folder for quality.md, quality.json and, for images, quality.png (default: ./aelab-compare)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    return p


def add_models(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="list the shipped pretrained models and their test metrics",
                       description="The pretrained models that ship with aelab; pass a name to --checkpoint.")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of objects (name, kind, code_size, ..., and the test metrics)")
    return p


def _log(args) -> object:
    return None if getattr(args, "quiet", False) else print


def _load_model(args):
    return _api().load_model(args.checkpoint, args.device)


def _load_data(args, checkpoint=None):
    """``--data`` read with the reading options given (and, for a checkpoint, those it was trained with)."""
    api = _api()
    return api.load_data(args.data, checkpoint, **api.data_options(vars(args)))


def _input_samples(args, checkpoint):
    """The positional INPUT, else the test split of ``--data``, read as ``checkpoint`` needs: samples, labels,
    the names of the label numbers and the samples' files (:func:`aelab.api.read_input`)."""
    api = _api()
    return api.read_input(args.input, args.data, args.limit, checkpoint, **api.data_options(vars(args)))


def _progress(message: str) -> None:
    """A progress line for a person watching; not when stderr is a file, which keeps errors one line there."""
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


def cmd_tutorial(args) -> int:
    from .tutorial.run import run_tutorial
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    _api().check_models(models)
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
    options = runconfig.to_toml(runconfig.with_data_located(runconfig.resolved_options(args.train_parser, args)))
    if args.print_config:
        print(options, end="")
        return 0
    api = _api()
    main_process = api.process_rank() == 0  # under torchrun, rank 0 alone prints
    log = _log(args) if main_process else None
    trained = api.train_from_options(vars(args), log=log, progress_bar=not args.quiet and main_process,
                                     run_config=options)
    if log is not None:
        result = trained.result
        log(_score_line(trained.scores))
        log(f"Saved {trained.folder / 'model.safetensors'} and {trained.folder / 'config.json'} "
            f"({result.seconds:.1f} s, {result.samples_per_second:,.0f} samples/s)")
    return 0


def _score_line(scores: dict) -> str:
    if "test_error_pct" in scores:
        return f"Average test error: {scores['test_error_pct']:.2f}%  (PSNR {scores['test_psnr_db']:.2f} dB)"
    return f"Test MSE (scaled units): {scores['test_mse']:.5f}  (R^2 {scores['test_r2']:.4f})"


def _written(ckpt, count: int, pngs: str) -> str:
    plural = "" if count == 1 else "s"
    return f"{count} {pngs}{plural} and {_api().GRID_NAME}" if ckpt.model_config.is_image else f"{count} row{plural}"


def cmd_evaluate(args) -> int:
    ckpt = _load_model(args)
    scores = _api().evaluate_model(ckpt, _load_data(args, ckpt), args.split, knn=args.knn)
    if args.json:
        print(_json(scores))
        return 0
    print(f"{args.split} split of {scores['data']}: {scores['n']} "
          f"{'images' if ckpt.model_config.is_image else 'rows'}")
    if "test_error_pct" in scores:
        print(f"Average {args.split} error: {scores['test_error_pct']:.2f}%")
        bce = f"BCE per pixel: {scores['test_bce']:.4f}   " if "test_bce" in scores else ""
        print(f"{bce}MSE: {scores['test_mse']:.5f}   PSNR: {scores['test_psnr_db']:.2f} dB")
    else:
        print(f"MSE (scaled units): {scores['test_mse']:.5f}   R^2: {scores['test_r2']:.4f}")
    if "knn_acc" in scores:
        print(f"5-NN accuracy on the codes: {100 * scores['knn_acc']:.2f}%")
    if "pca" in scores:
        print(_pca_line(scores))
    return 0


def _pca_line(scores: dict) -> str:
    """PCA with the model's code size on the same split, beside the model's MSE."""
    pca = scores["pca"]
    parts = [f"MSE {pca['mse']:.5f} ({scores['test_mse'] / pca['mse']:.2f}x for the model)" if pca["mse"] > 0
             else f"MSE {pca['mse']:.5f}"]
    if "psnr_db" in pca:
        parts.append(f"PSNR {pca['psnr_db']:.2f} dB")
    if "knn_acc" in pca:
        parts.append(f"5-NN {100 * pca['knn_acc']:.2f}%")
    return f"PCA with {pca['code_size']} components on the same split: " + ", ".join(parts)


def cmd_denoise(args) -> int:
    ckpt = _load_model(args)
    summary = _api().denoise_images(ckpt, _load_data(args, ckpt), args.noise, seed=args.seed, limit=args.limit,
                                 draw=args.draw, output=args.output)
    if args.json:
        print(_json(summary))
        return 0
    print(f"{summary['n']} test images of {summary['data']} with {summary['noise']} noise (seed {args.seed}):")
    print(f"PSNR of the noisy images: {summary['noisy_psnr_db']:.2f} dB")
    print(f"PSNR of the denoised images: {summary['denoised_psnr_db']:.2f} dB")
    if summary["triplets"]:
        print(f"Wrote {summary['triplets']} triplets (clean | noisy | denoised) and triplets.png to {args.output}")
    return 0


def cmd_sample(args) -> int:
    _api().sample_images(_load_model(args), args.draw, seed=args.seed, columns=args.columns, output=args.output)
    print(f"Wrote {args.draw} samples to {args.output}")
    return 0


def cmd_interpolate(args) -> int:
    api = _api()
    ckpt = _load_model(args)
    api.check_interpolation(ckpt.model, args.steps)  # before the data are read
    api.interpolate_images(ckpt, _load_data(args, ckpt), args.a, args.b, steps=args.steps, output=args.output)
    print(f"Wrote {args.output}: test images {args.a} and {args.b} with {args.steps} decoded codes between them")
    return 0


def cmd_compare(args) -> int:
    api = _api()
    result = api.compare_models(None if args.models is None else tuple(args.models.split(",")), data=args.data,
                                recipe=args.recipe, sweeps=args.sweeps, quick=args.quick, pca=args.pca,
                                tsne_limit=args.tsne_limit, seed=args.seed, device=args.device,
                                output=args.output, log=None if args.json else print, **api.data_options(vars(args)))
    if args.json:
        print(_json(result["rows"]))
        return 0
    *first, last = result["paths"].values()
    print(api.markdown_table(result))
    print(f"Wrote {', '.join(map(str, first))} and {last}")
    return 0


def cmd_models(args) -> int:
    models = _api().list_pretrained()
    if args.json:
        print(_json(models))
        return 0
    if not models:
        print("No pretrained models are installed.")
        return 0
    kind = max(len("kind"), *(len(m["kind"]) for m in models))  # the kind column fits the longest kind
    print(f"{'name':<16} {'kind':<{kind}} {'code':>4} {'params':>8} {'KB':>5} {'PSNR dB':>8} {'5-NN':>7}  description")
    for m in models:
        knn = f"{100 * m['knn_acc']:.2f}%" if m.get("knn_acc") is not None else "-"
        psnr = f"{m['test_psnr_db']:.2f}" if m.get("test_psnr_db") is not None else "-"
        extra = (f" (denoises {m['noise']}: {m['noisy_psnr_db']:.1f} -> {m['denoised_psnr_db']:.1f} dB)"
                 if m.get("noise") and m.get("noisy_psnr_db") is not None else "")
        print(f"{m['name']:<16} {m['kind']:<{kind}} {m['code_size']:>4} {m['params'] or 0:>8,} "
              f"{m['weights_bytes'] / 1024:>5.0f} {psnr:>8} {knn:>7}  {m['description']}{extra}")
    print("Use a name wherever --checkpoint is asked for, e.g. aelab evaluate --checkpoint "
          f"{models[0]['name']}")
    return 0


def cmd_encode(args) -> int:
    ckpt = _load_model(args)
    samples = _input_samples(args, ckpt)
    _progress(f"Encoding {len(samples.images)} samples ...")
    codes = _api().encode_images(ckpt, samples.images, samples.labels, output=args.output,
                                 class_names=samples.class_names, names=samples.names)
    print(f"Wrote {len(codes)} code{'' if len(codes) == 1 else 's'} of {codes.shape[1]} numbers to {args.output}")
    return 0


def cmd_decode(args) -> int:
    api = _api()
    ckpt = _load_model(args)
    codes = api.read_codes(args.codes)
    codes = codes[: args.limit] if args.limit else codes
    _progress(f"Decoding {len(codes)} codes ...")
    images = api.decode_codes(ckpt, codes, output=args.output)
    print(f"Wrote {_written(ckpt, len(images), 'PNG')} to {args.output}")
    return 0


def cmd_reconstruct(args) -> int:
    ckpt = _load_model(args)
    images, labels, *_ = _input_samples(args, ckpt)
    decoded = _api().reconstruct_images(ckpt, images, labels, output=args.output)
    print(f"Wrote {_written(ckpt, len(decoded), 'decoded PNG')} to {args.output}")
    return 0


def cmd_similarity(args) -> int:
    ckpt = _load_model(args)
    rows = _api().similarity_pairs(ckpt, _load_data(args, ckpt),
                                None if args.pair is None else tuple(args.pair), output=args.output)
    plain = [{k: v for k, v in r.items() if k.startswith(("title", "index", "cos"))} for r in rows]
    if args.json:
        print(_json(plain))
        return 0
    for r in plain:
        print(f"{r['title']} (test images {r['index_a']}, {r['index_b']}): cosine similarity of originals "
              f"{r['cos_original']:.3f}, of decodings {r['cos_decoded']:.3f}, of codes {r['cos_code']:.3f}")
    return 0


def cmd_report(args) -> int:
    ckpt = _load_model(args)
    _api().report_model(ckpt, _load_data(args, ckpt), args.output, limit=args.limit)
    print(f"Wrote {args.output}")
    return 0


def cmd_tsne(args) -> int:
    ckpt = _load_model(args)
    _api().tsne_map(ckpt, _load_data(args, ckpt), args.limit, seed=args.seed, output=args.output,
                    perplexity=args.perplexity)
    print(f"Wrote {args.output}")
    return 0


def cmd_bench(args) -> int:
    api = _api()
    result = api.run_benchmark(args.quick, args.device)
    print(api.benchmark_table(result))
    print(_json(result))
    return 0


COMMANDS = {"tutorial": cmd_tutorial, "train": cmd_train, "evaluate": cmd_evaluate, "encode": cmd_encode,
            "decode": cmd_decode, "reconstruct": cmd_reconstruct, "similarity": cmd_similarity,
            "tsne": cmd_tsne, "report": cmd_report, "bench": cmd_bench, "data": cli_data.cmd_data,
            "compress": cli_codec.cmd_compress, "decompress": cli_codec.cmd_decompress, "codec": cli_codec.cmd_codec,
            "denoise": cmd_denoise,
            "sample": cmd_sample, "interpolate": cmd_interpolate, "compare": cmd_compare, "models": cmd_models,
            "score": cli_pipeline.cmd_score, "export": cli_pipeline.cmd_export}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status. Standard output may close or fill and SIGTERM may come: see aelab.terminal."""
    with guarded_stdout() as stdout, sigterm_interrupts(), warnings.catch_warnings():
        parser = build_parser()
        args = parser.parse_args(argv)
        name = command_name(args)
        warnings.showwarning = lambda message, *_args, **_kw: print(f"aelab {name}: warning: {message}",
                                                                     file=sys.stderr)
        status = _run(args, argv, name)
        stdout.flush()
    if stdout.error is not None and not stdout.reader_left:  # a closed pipe: its reader wanted no more
        print(f"aelab {name}: error: cannot write to standard output: {stdout.error.strerror or stdout.error}",
              file=sys.stderr)
        return status or EXIT_USER_ERROR
    return status


def command_name(args: argparse.Namespace) -> str:
    """The command as messages name it: ``train``, or with its action, ``data info``."""
    action = getattr(args, "data_command", None)
    return f"{args.command} {action}" if action else args.command


def _refuse_output_over_input(args: argparse.Namespace) -> None:
    """Refuse, before any work, an empty output name (`--out ""` wrote into the current folder), and an
    output that is one of the command's inputs or lies inside one."""
    output = getattr(args, getattr(args, "output_dest", ""), None)
    option = getattr(args, "output_option", "the output")
    if output is not None and not str(output).strip():
        raise OptionError(f"{option} is empty", hint=f"name the file or folder to write with {option}")
    suffix = getattr(args, "output_suffix", None)
    if output is not None and suffix and Path(output).suffix.lower() != suffix:
        raise OptionError(f"{option} {output}: aelab {command_name(args)} writes {OUTPUT_KINDS[suffix]}",
                          hint=f"name it FILE{suffix}")
    if output is not None:
        fileio.refuse_output_over_input(output, [v for v in (getattr(args, d, None) for d in INPUT_DESTS) if v])


def _run(args, argv: Sequence[str] | None, name: str) -> int:
    try:
        api = _api()
        if api.process_count() > 1 and args.command != "train":
            raise OptionError(f"aelab {name} runs in one process; torchrun starts several for aelab train only",
                              hint=f"run aelab {name} without torchrun")
        args = _with_config(args, argv)
        with fileio.output_option(getattr(args, "output_option", None)):
            _refuse_output_over_input(args)
            return COMMANDS[args.command](args)
    except AelabError as e:
        signum = getattr(e, "signum", None)  # a TrainingInterrupted: the signal that stopped the training
        if signum is not None:
            print(f"aelab {name}: {e}", file=sys.stderr)
            return 128 + signum
        if args.debug:
            raise
        print(f"aelab {name}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated)
        print(f"aelab {name}: {'terminated' if isinstance(e, Terminated) else 'interrupted'}", file=sys.stderr)
        return getattr(e, "exit_status", EXIT_INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
