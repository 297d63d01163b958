"""The ``aelab codec`` commands: ``codec fit`` stores a checkpoint's codec tables. Parsing and printing
only, as in :mod:`aelab.cli`, which adds them."""
from __future__ import annotations

from typing import Callable

from . import api


def add_codec(sub, add_checkpoint: Callable, notice: Callable[[str | None], None]) -> None:
    p = sub.add_parser("codec", help="the codec's probability tables in a checkpoint",
                       description="Manage the probability tables a checkpoint stores for `aelab compress`.")
    csub = p.add_subparsers(dest="codec_command", required=True, metavar="COMMAND")
    q = csub.add_parser("fit", help="fit the codec's tables to the training data and store them in the checkpoint",
                        description="Fit the codec's probability tables to the codes of the model's training images "
                                    "and store them in the checkpoint (codec.safetensors): for a checkpoint saved "
                                    "without them, or for tables training does not store (more bits, the range-ar "
                                    "and range-ctx coders). Tables it already holds stay as they are unless --again.")
    add_checkpoint(q)
    q.add_argument("--data", metavar="PATH", default=None,
                   help="the model's training data (default: the bundled MNIST, if the model was trained on it)")
    q.add_argument("--bits", type=int, nargs="+", default=list(api.CODEC_FIT_BITS), metavar="N",
                   help="bit depths to fit (default: %(default)s)")
    q.add_argument("--quantiser", choices=tuple(api.QUANTISERS), nargs="+", default=list(api.QUANTISERS),
                   help="quantisers to fit (default: both)")
    q.add_argument("--coder", choices=tuple(api.PREDICTIVE_CODERS), nargs="+", default=[],
                   help="also fit these coders' tables at every --bits (slow: each learns a predictor)")
    q.add_argument("--again", action="store_true",
                   help="fit every table again (files made with the old ones may no longer decode)")
    q.set_defaults(log=notice)


def cmd_codec(args) -> int:
    coders = set(args.coder)
    path = api.save_tables(args.checkpoint, args.bits, args.quantiser, data=args.data,
                           predictive="range-ar" in coders, spread="range-ctx" in coders, keep=not args.again,
                           log=args.log)
    print(f"Stored the codec's tables in {path}")
    return 0
