"""Measuring and showing trained models.

Owns the metrics, ``evaluate`` (reconstruction quality, k-NN accuracy of the
codes), the side-by-side comparison with PCA (``compare``), the throughput
benchmark (``bench``), generation and denoising (``generate``) and the
figures (``plots``). May import everything below it: the core modules,
``aelab.data``, ``aelab.models``, ``aelab.training`` and ``aelab.codec``;
never the tutorial or the CLI.
"""
