"""Store the codec's tables in the shipped models' folders (codec.safetensors, its SHA-256 in
config.json), as `aelab train` does for the models it trains, so that compressing with them never
learns a table on the user's machine, and a file made with them decodes on any machine: a table
learned again elsewhere can differ in its last bits (a range-ar or range-ctx predictor almost surely
does), and the file's table digest would then refuse it.

    python scripts/package_codec_tables.py          # adds what is missing: about 5 minutes on 2 CPU cores
    python scripts/package_codec_tables.py --again  # learns every table again (files made with the old ones
                                                    # then no longer decode)

Packages, for every shipped model, the plain tables of both quantisers at 2..8 bits, and for mnist-conv
and mnist-codec the range-ar and range-ctx tables at 6 bits (the default) and 7 (the rate-distortion
headline's), learned from the bundled MNIST training images. Tables a folder already holds are kept as
they are, unless --again.
"""
from __future__ import annotations

import argparse
import sys
import time

PREDICTIVE_NAMES = ("mnist-conv", "mnist-codec")
BITS = range(2, 9)
RANGE_AR_BITS = (6, 7)
RANGE_CTX_BITS = (6, 7)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--again", action="store_true", help="learn every table again instead of adding the missing")
    args = parser.parse_args(argv)
    from aelab.codec import api as codec
    from aelab.models.checkpoint import pretrained_names, pretrained_path
    for name in pretrained_names():
        start = time.perf_counter()
        predictive = name in PREDICTIVE_NAMES
        path = codec.save_tables(pretrained_path(name), bits=BITS, predictive=RANGE_AR_BITS if predictive else False,
                                 spread=RANGE_CTX_BITS if predictive else False, keep=not args.again)
        print(f"{name}: {path} ({path.stat().st_size:,} bytes, {time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
