"""Per-pixel distance from the image's own median colour or intensity."""

from __future__ import annotations

import numpy as np
import torch

from ...bundle import ModelBundle
from ...config import from_dict
from ...filters import gaussian_blur
from ..base import AnomalyResult, MapPredictor
from ..training_plan import TrainingInputs, TrainingPlan
from .config import MedianDistanceMethodConfig


class MedianDistance(MapPredictor):
    """Per-pixel colour/intensity distance from the image's own median, Gaussian-smoothed
    (sigma 4 px at 256 px, scaled with the image). Image score = max of the map."""

    name = "median-distance"
    config_section = "median_distance"
    stride = 1

    def __init__(self, bundle: ModelBundle, device: torch.device, precision: str = "auto"):
        super().__init__(bundle, device, "fp32")  # no network: plain float32 arithmetic
        config = from_dict(MedianDistanceMethodConfig, bundle.manifest["config"])
        self.config, self.preprocess = config.median_distance, config.preprocess

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> AnomalyResult:
        x = images.to(self.device).float()
        median = x.flatten(2).median(dim=2).values[..., None, None]
        distance = ((x - median) ** 2).sum(dim=1).sqrt()
        maps = gaussian_blur(distance, self.config.sigma_at_256 * min(x.shape[-2:]) / 256.0).cpu().numpy()
        return AnomalyResult(maps, np.array([self.reduce(m) for m in maps]), None, None)

    def reduce(self, heatmap: np.ndarray) -> float:
        return float(heatmap.max())


def no_training(config: MedianDistanceMethodConfig, inputs: TrainingInputs) -> TrainingPlan:
    """Nothing to train: the bundle holds the config and the calibration on the site's validation split."""
    return TrainingPlan([], [MedianDistance.name])
