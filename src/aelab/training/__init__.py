"""Training: the loop and everything it drives.

Owns the loop (``loop``), what decides a run (``config``: ``TrainConfig``
and the recipes), the minibatch stream (``stream``), a step's loss and
gradients (``steps``: the explicit backward pass and autograd), the
optimisers and schedules, the fused CPU kernels, the CUDA-graph step, resume
files and progress output. May import the core modules, ``aelab.data`` and
``aelab.models``; never the codec, evaluation, tutorial or CLI.

The step protocol: a step is called as ``step(inputs, target)`` and returns
the minibatch's summed loss and metric as 0-d tensors (the progress windows
add them as they are); every optimiser's ``step()`` then applies the
gradients. Which step and optimiser is chosen once, before the loop.

Pixels: the data holds raw uint8 values 0..255 and stays uint8 in memory.
Training's steps take images scaled to [0, 1] (the stream scales them as it
gathers them, x * (1/255) in float32): they are the BCE's targets, and the
explicit backward pass and the fused kernels consume them directly. A
model's own API (``encode``, ``forward``, inference) takes raw pixels 0..255
and scales them inside (see ``aelab.models.networks``), so ``AutogradStep``
hands the model ``inputs * 255``. That round trip is not exact in float32
(x * (1/255) * 255 differs from x for 126 of the 256 values), but it is what
the shipped weights and the recorded results were trained with; scaling once
would change those results, so the convention is kept as it is.
"""
from .config import RECIPES, TrainConfig, TrainResult, get_recipe
from .loop import TrainingDiverged, TrainingInterrupted, train

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "TrainingDiverged", "TrainingInterrupted", "get_recipe", "train"]
