"""Per-pixel distance from the image's own median colour or intensity."""

from __future__ import annotations

import torch

from ...filters import gaussian_blur
from ..base import TrainingFreeMap
from .config import MedianDistanceMethodConfig


class MedianDistance(TrainingFreeMap):
    """Per-pixel colour/intensity distance from the image's own median, Gaussian-smoothed
    (sigma 4 px at 256 px, scaled with the image). Image score = max of the map."""

    name = "median-distance"
    config_section = "median_distance"
    config_class = MedianDistanceMethodConfig

    def score_map(self, images: torch.Tensor) -> torch.Tensor:
        median = images.flatten(2).median(dim=2).values[..., None, None]
        distance = ((images - median) ** 2).sum(dim=1).sqrt()
        return gaussian_blur(distance, self.config.sigma_at_256 * min(images.shape[-2:]) / 256.0)
