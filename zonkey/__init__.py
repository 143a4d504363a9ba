"""Zonkey: a hierarchical diffusion language model with a learned, differentiable tokenizer."""

from zonkey.config import LevelConfig, LossWeights, ZonkeyConfig
from zonkey.model import Zonkey
from zonkey.outputs import GenerationResult, InfillResult, LevelSegmentation, Segmentation, TrajectoryStep
from zonkey.validation import ZonkeyInputError

__all__ = [
    "GenerationResult",
    "InfillResult",
    "LevelConfig",
    "LevelSegmentation",
    "LossWeights",
    "Segmentation",
    "TrajectoryStep",
    "Zonkey",
    "ZonkeyConfig",
    "ZonkeyInputError",
]
