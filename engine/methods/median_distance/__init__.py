"""The training-free colour/intensity reference every learned method is judged against."""

from __future__ import annotations

from ..method import Method
from .config import MedianDistanceMethodConfig

METHOD = Method(
    name="median-distance",
    summary="training-free reference: distance from the image's median colour, Gaussian-smoothed; score = max",
    paper="the project's reference (no paper): a method must beat it to earn its place",
    defaults=MedianDistanceMethodConfig,
    predictor=f"{__name__}.readout:MedianDistance",
    plan="anomascope.engine.methods.training_plan:no_training",
    reference=True,
)
