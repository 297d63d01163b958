"""Networks, their losses, checkpoints and the shipped zoo.

Owns the autoencoder families and their registry (``networks``), the layers
they are built of (``layers``), principal components (``pca``: the residual
model's start and the baseline beside every model), the loss and
the tutorial's metric (``losses``), applying a model to images (``inference``:
encode, decode, reconstruct, and the CPU's faster copy in ``cpu_inference``),
checkpoint folders (``checkpoint``) and the pretrained models shipped in
``pretrained/`` (``zoo``, above the checkpoints). May import ``aelab.errors``,
``aelab.fileio``, ``aelab.device``, ``aelab.version`` and ``aelab.data``;
nothing that trains or evaluates.
"""
