"""The ``aelab data`` tools (info, convert, pack, download): parsing and printing only, as in
:mod:`aelab.cli`, which adds them."""
from __future__ import annotations

import argparse

from .cli_options import _add_reading_options, _api, _json


def add_data_tools(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("data", help="dataset tools: info, convert, pack, download",
                       description="Inspect, convert, pack and download datasets.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = dsub.add_parser("info", help="counts, shape, label histogram and checksums",
                        description="Describe a dataset or a single IDX, CTF, .npz or picture file.")
    q.add_argument("path", nargs="?", default=None, help="anything --data accepts, or one file (default: bundled MNIST)")
    q.add_argument("--json", action="store_true", help="print JSON")
    _add_reading_options(q)
    q = dsub.add_parser("convert", help="convert a dataset between IDX, CTF and .npz",
                        description="Convert a dataset (anything --data accepts, read with the options below) to IDX "
                                    "files, the tutorial's CTF files, or one .npz; a table keeps its own units "
                                    "unless --scale is given.")
    q.add_argument("source", help="anything --data accepts; 'mnist' for the bundled copy")
    q.add_argument("dest", help="a folder (idx, idx.gz, ctf) or a .npz file")
    q.add_argument("--to", dest="fmt", choices=("idx", "idx.gz", "ctf", "npz"), default=None,
                   help="output format (default: npz when DEST ends in .npz)")
    _add_reading_options(q)
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
    return p


def _source(name: str) -> str | None:
    """A data tool's SOURCE: 'mnist' is the bundled copy."""
    return None if name == "mnist" else name


def _samples(data) -> str:
    return "rows" if data.kind == "table" else "images"


def cmd_data(args) -> int:
    api = _api()
    if args.data_command == "info":
        d = api.describe_data(args.path, **api.data_options(vars(args)))
        print(_json(d, indent=2) if args.json else api.format_description(d))
    elif args.data_command == "convert":
        print(f"Wrote {api.convert_data(_source(args.source), args.dest, args.fmt, **api.data_options(vars(args)))}")
    elif args.data_command == "pack":
        out = api.pack_data(_source(args.source), args.out, **api.data_options(vars(args)))
        data = api.load_data(out)
        print(f"Packed {data.train.n} + {data.test.n} {_samples(data)} into {out}; train on it with --data {out}")
    elif args.data_command == "download":
        kwargs = {"base_urls": args.mirror} if args.mirror else {}
        folder = api.download_mnist(args.dir, **kwargs)
        print(f"MNIST is in {folder}, checksums verified; use it with --data {folder}")
    return 0
