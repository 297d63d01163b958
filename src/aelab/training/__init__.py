"""Training: the loop and everything it drives.

Owns the loop (``loop``), a step's loss and gradients (``steps``: the explicit
backward pass and autograd), the optimisers and schedules, the fused CPU
kernels, the CUDA-graph step, resume files and progress output. May import
the core modules, ``aelab.data`` and ``aelab.models``; never the codec,
evaluation, tutorial or CLI.
"""
from .config import RECIPES, TrainConfig, TrainResult, get_recipe
from .loop import TrainingDiverged, TrainingInterrupted, train

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "TrainingDiverged", "TrainingInterrupted", "get_recipe", "train"]
