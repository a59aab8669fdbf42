"""Training-free references every learned method is judged against (not offered as review methods)."""

from __future__ import annotations

import numpy as np
import torch

from ..calibration import Calibration
from ..config import PreprocessConfig
from ..filters import gaussian_blur
from .base import AnomalyResult, MapPredictor


class MedianDistance(MapPredictor):
    """Per-pixel colour/intensity distance from the image's own median, Gaussian-smoothed
    (sigma 4 px at 256 px, scaled with the image). Image score = max of the map."""

    name = "median-distance"
    precision = "fp32"  # no network: plain float32 arithmetic

    def __init__(self, device: torch.device, sigma_at_256: float = 4.0):
        self.device, self.sigma_at_256 = device, sigma_at_256
        self.preprocess = PreprocessConfig(image_size=256, channels=0, mode="native", min_side=8, max_side=8192)
        self.stride = 1
        self.calibration_override = Calibration()  # a reference has no bundle: `eval` calibrates it

    @property
    def calibration(self) -> Calibration:
        return self.calibration_override

    @property
    def parameters(self) -> dict:
        return {"sigma_at_256": self.sigma_at_256}

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> AnomalyResult:
        x = images.to(self.device).float()
        median = x.flatten(2).median(dim=2).values[..., None, None]
        distance = ((x - median) ** 2).sum(dim=1).sqrt()
        maps = gaussian_blur(distance, self.sigma_at_256 * min(x.shape[-2:]) / 256.0).cpu().numpy()
        return AnomalyResult(maps, np.array([self.reduce(m) for m in maps]), None, None)

    def reduce(self, heatmap: np.ndarray) -> float:
        return float(heatmap.max())


BASELINES = {"median-distance": MedianDistance}
