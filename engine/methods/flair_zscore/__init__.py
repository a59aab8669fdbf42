"""The brain MRI benchmark's training-free reference: FLAIR intensity as a per-slice z-score."""

from __future__ import annotations

from ..method import Method
from .config import FlairZscoreMethodConfig

METHOD = Method(
    name="flair-zscore",
    summary="training-free reference for FLAIR MRI: per-slice z-score over the brain, Gaussian sigma 1 px; score = max",
    paper="the brain MRI benchmark's reference (no paper): hyperintensity on FLAIR",
    defaults=FlairZscoreMethodConfig,
    predictor=f"{__name__}.readout:FlairZscore",
    plan="anomascope.engine.methods.training_plan:no_training",
    reference=True,
)
