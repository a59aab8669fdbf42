"""Per-slice z-score of FLAIR intensity over the brain: tumours are hyperintense on FLAIR."""

from __future__ import annotations

import numpy as np
import torch

from ...bundle import ModelBundle
from ...config import from_dict
from ...filters import gaussian_blur
from ..base import AnomalyResult, MapPredictor
from ..training_plan import TrainingInputs, TrainingPlan
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


class FlairZscore(MapPredictor):
    """Image score = max of the map."""

    name = "flair-zscore"
    config_section = "flair_zscore"
    stride = 1

    def __init__(self, bundle: ModelBundle, device: torch.device, precision: str = "auto"):
        super().__init__(bundle, device, "fp32")  # no network: plain float32 arithmetic
        config = from_dict(FlairZscoreMethodConfig, bundle.manifest["config"])
        self.config, self.preprocess = config.flair_zscore, config.preprocess

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> AnomalyResult:
        z = zscore_map(images.to(self.device), self.config.brain_level)
        maps = gaussian_blur(z, self.config.sigma).cpu().numpy()
        return AnomalyResult(maps, np.array([self.reduce(m) for m in maps]), None, None)

    def reduce(self, heatmap: np.ndarray) -> float:
        return float(heatmap.max())


def no_training(config: FlairZscoreMethodConfig, inputs: TrainingInputs) -> TrainingPlan:
    """Nothing to train: the bundle holds the config and the calibration on the validation split."""
    return TrainingPlan([], [FlairZscore.name])
