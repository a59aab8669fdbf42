"""SANO (Gonzalez-Jimenez et al.): the squared score of a diffusion model at t ~ 0 as the anomaly map."""

from __future__ import annotations

import numpy as np
import torch

from ...filters import gaussian_blur
from ...schedules import VPSchedule
from ..base import AnomalyResult
from ..denoiser.model import DenoiserReadout
from .config import SanoConfig


def sano_score_map(
    model: torch.nn.Module, schedule: VPSchedule, x: torch.Tensor, config: SanoConfig, resolution: int
) -> torch.Tensor:
    """(N, H, W): sum over channels of s(x, t)^2, s = -eps_theta / sigma_t, Gaussian-smoothed
    (sigma 4 px at 256 px, scaled to the model resolution)."""
    t = torch.full((x.shape[0],), config.timestep, device=x.device, dtype=torch.long)
    score = -model(x, t).sample.float() / schedule.sigma(config.timestep)
    squared = (score**2).sum(dim=1)
    return gaussian_blur(squared, config.smoothing_sigma_at_256 * resolution / 256.0)


class SanoPredictor(DenoiserReadout):
    name = "sano"

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> AnomalyResult:
        maps = (
            sano_score_map(self.model, self.schedule, images.to(self.device), self.config, self.preprocess.image_size)
            .cpu()
            .numpy()
        )
        return AnomalyResult(maps, np.array([self.reduce(m) for m in maps]), None, None)

    def reduce(self, heatmap: np.ndarray) -> float:
        return float(heatmap.max() if self.config.image_score == "max" else heatmap.mean())
