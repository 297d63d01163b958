"""The learned codec: images to ``.aez`` bytes and back.

Owns the file format, the quantisers, the entropy coders and the predictor
that some of them use, the tables the coders learn and their cache, and the
compress/decompress API. May import the core modules, ``aelab.data``,
``aelab.models`` and ``aelab.training``; never evaluation, the tutorial or the CLI.
"""
