"""The ``aelab`` command line's building blocks: argument types and the options several commands share."""
from __future__ import annotations

import argparse
import sys

from .cli_choices import IMAGE_FORMATS, SCALE_METHODS
from .fileio import strict_json as _json  # noqa: F401 - the commands' --json output
from .runconfig import MAX_SEED

# aelab.evaluation.generate's cap on the images in one picture of `aelab sample` or `aelab interpolate`,
# repeated here because building the parser must not import torch (tests/test_drawing_faults.py checks it)
MAX_PICTURE_IMAGES = 1024


def _number(kind: type, minimum: float, inclusive: bool, what: str):
    """An argparse type: ``kind`` (int or float) above ``minimum`` (or equal, if inclusive), finite."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value >= minimum if inclusive else value > minimum) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value
    return parse


_positive_int = _number(int, 0, False, "a positive integer")
_non_negative_int = _number(int, 0, True, "an integer >= 0")


def _seed(text: str) -> int:
    value = _non_negative_int(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to {MAX_SEED} (2**32 - 1), got {text}")
    return value
_positive_float = _number(float, 0, False, "a positive number")
_non_negative_float = _number(float, 0, True, "a number >= 0")


def _unit_fraction(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def _share(text: str) -> float:
    value = _non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a share from 0 up to (not including) 1, got {text!r}")
    return value


def _duration(text: str) -> float:
    from .errors import OptionError
    from .runconfig import parse_duration
    try:
        return parse_duration(text)
    except OptionError as e:
        raise argparse.ArgumentTypeError(f"{e.message} ({e.hint})") from None


class _DeprecatedAlias(argparse.Action):
    """An old spelling of an option: still works, hidden from --help, with a one-line note on stderr."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"aelab: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _add_alias(p: argparse.ArgumentParser, old: str, new: str, dest: str, type) -> None:
    p.add_argument(old, dest=dest, type=type, action=_DeprecatedAlias, new=new, help=argparse.SUPPRESS)


def _api():
    """:mod:`aelab.api`, imported when a command runs (it imports torch), not when the parser is built."""
    from . import api
    return api


def _add_limit(p: argparse.ArgumentParser, what: str = "images") -> None:
    p.add_argument("--limit", type=_positive_int, default=None, metavar="N", help=f"only the first N {what}")


def _add_input(p: argparse.ArgumentParser, what: str = "images") -> None:
    """The samples a model command reads: the positional INPUT, else the test split of --data (with its
    reading options), and --device and --limit."""
    p.add_argument("input", nargs="?", default=None,
                   help="images: an IDX, CTF or .npz file, a picture, or a folder of them; or a table (.npy, .csv, "
                        ".tsv, .parquet) for a table model (default: the test split of --data)")
    _add_data(p)
    _add_device(p)
    _add_limit(p, what)


def _add_data(p: argparse.ArgumentParser, reading: bool = True) -> None:
    p.add_argument("--data", metavar="PATH", default=None,
                   help=f"dataset: a folder of images ({IMAGE_FORMATS}; train/ and test/ subfolders, "
                        "class folders or flat), a table (.npy, .csv, .tsv, .parquet), a .npz, a folder of "
                        "MNIST-format IDX files or of the tutorial's CTF files, TRAIN.txt,TEST.txt, or a packed "
                        "data set's folder (`aelab data pack`) "
                        "(default: the bundled MNIST)")
    if reading:
        _add_reading_options(p)


def _add_reading_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("reading --data (a checkpoint remembers how its training data was read)")
    g.add_argument("--test-fraction", type=_unit_fraction, default=None, metavar="F",
                   help="the share of a source without a test split that becomes its (seeded, stratified) test "
                        "split (default: 0.1)")
    g.add_argument("--label-column", default=None, metavar="NAME|INDEX",
                   help="a table's column of labels, by header name or 0-based index")
    _add_image_reading(g)
    g.add_argument("--scale", choices=SCALE_METHODS, default=None,
                   help="how a table's columns are scaled on the training split (default: none for data in "
                        "[0, 1], else standard; with a checkpoint, the one it was trained with)")


def _add_image_reading(g) -> None:
    """How image files are read: grey or colour, their size, and bad files (a parser or an argument group)."""
    colour = g.add_mutually_exclusive_group()
    colour.add_argument("--grayscale", dest="colour", action="store_const", const="grayscale",
                        help="read images as grey (default: colour if any image is)")
    colour.add_argument("--rgb", dest="colour", action="store_const", const="rgb", help="read images as colour")
    g.add_argument("--resize", default=None, metavar="HxW", help="resize every image to H x W (antialiased)")
    g.add_argument("--crop", action="store_true",
                   help="centre-crop every image to the --resize size (default: the smallest size found)")
    g.add_argument("--skip-bad", action="store_true", help="skip and count unreadable images instead of failing")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                   help="where to compute; auto picks CUDA when available and honours "
                        "TEST_DEVICE=cpu|gpu (default: auto)")


def _add_checkpoint(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="a trained model: the folder `aelab train --out` wrote, or the name of a shipped model "
                        "(`aelab models`; an existing folder of that name wins)")


def _int_list(text: str) -> tuple[int, ...]:
    """'512,256' -> (512, 256); '' or 'none' -> ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _add_sweeps(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fast", dest="sweeps", action="store_const", const=5.0,
                   help="the tutorial's fast mode (default)")
    g.add_argument("--slow", dest="sweeps", action="store_const", const=100.0,
                   help="the tutorial's slow mode")
    g.add_argument("--sweeps", dest="sweeps", type=_positive_float, metavar="N",
                   help="number of sweeps (epochs) over the training data")
    p.set_defaults(sweeps=None)
