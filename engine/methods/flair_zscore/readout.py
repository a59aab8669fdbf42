"""Per-slice z-score of FLAIR intensity over the brain: tumours are hyperintense on FLAIR."""

from __future__ import annotations

import torch

from ...filters import gaussian_blur
from ..base import TrainingFreeMap
from .config import FlairZscoreMethodConfig


def zscore_map(images: torch.Tensor, brain_level: float) -> torch.Tensor:
    """(N, H, W): each slice's intensity in [0, 1] minus the mean over its brain pixels (brighter than
    `brain_level`), over their standard deviation; a slice with fewer than two brain pixels maps to 0."""
    unit = (images.float().mean(dim=1) + 1.0) / 2.0
    brain = unit > brain_level
    count = brain.sum(dim=(1, 2)).clamp(min=1)
    mean = (unit * brain).sum(dim=(1, 2)) / count
    variance = (((unit - mean[:, None, None]) ** 2) * brain).sum(dim=(1, 2)) / count
    std = variance.sqrt()[:, None, None]
    z = (unit - mean[:, None, None]) / std.clamp(min=1e-6)
    return torch.where((brain.sum(dim=(1, 2)) > 1)[:, None, None], z, torch.zeros_like(z))


class FlairZscore(TrainingFreeMap):
    """Image score = max of the map."""

    name = "flair-zscore"
    config_section = "flair_zscore"
    config_class = FlairZscoreMethodConfig

    def score_map(self, images: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(zscore_map(images, self.config.brain_level), self.config.sigma)
