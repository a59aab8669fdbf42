"""Score-based perturbation resilience (Shin et al.): restoration error of small perturbations."""

from __future__ import annotations

import numpy as np
import torch

from ...filters import box_filter, scaled_odd
from ...preprocess import from_model_range
from ...schedules import VPSchedule, spr_noise_scale
from ..base import AnomalyResult
from ..denoiser.model import DenoiserReadout
from .config import SprConfig


def spr_timestep(schedule: VPSchedule, config: SprConfig) -> int:
    """The VP timestep whose noise-to-signal ratio equals SPR's sigma_k on the model's [-1, 1] range.

    SPR perturbs x + sigma_k eps on [0, 1] images; x_t / sqrt(abar_t) = x + (sigma_t / sqrt(abar_t)) eps
    is the same perturbation, so the shared VP denoiser is read out at that t.
    """
    ratio = spr_noise_scale(config.sigma, config.k) * 2.0 / config.data_range
    return schedule.timestep_for_noise_to_signal(ratio)


def spr_error_map(
    model: torch.nn.Module, schedule: VPSchedule, x: torch.Tensor, config: SprConfig, resolution: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps (N, H, W), restorations (N, C, H, W)): mean over N draws of ||eps - eps_theta(x_t)||^2
    summed over channels (Algorithm 1), box-filtered (31 px at 256 px, scaled); the restoration is the
    one-step denoised image averaged over the draws."""
    t = spr_timestep(schedule, config)
    n, draws = x.shape[0], config.num_perturbations
    generator = torch.Generator(device=x.device).manual_seed(config.seed)
    # The draws are independent: run them as one batch (the paper's parallel evaluation).
    repeated = x.repeat(draws, 1, 1, 1)
    noise = torch.randn(repeated.shape, generator=generator, device=x.device, dtype=x.dtype)
    steps = torch.full((repeated.shape[0],), t, device=x.device, dtype=torch.long)
    noisy = schedule.add_noise(repeated, noise, steps)
    eps = model(noisy, steps).sample.float()
    error = ((noise - eps) ** 2).sum(dim=1).view(draws, n, *x.shape[-2:]).mean(dim=0)
    restored = schedule.predict_x0(noisy, eps, t).view(draws, n, *x.shape[1:]).mean(dim=0)
    return box_filter(error, scaled_odd(config.box_filter_at_256, resolution)), restored


class SprPredictor(DenoiserReadout):
    name = "spr"

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> AnomalyResult:
        maps, restored = spr_error_map(
            self.model, self.schedule, images.to(self.device), self.config, self.preprocess.image_size
        )
        heatmaps = maps.cpu().numpy()
        return AnomalyResult(heatmaps, np.array([self.reduce(m) for m in heatmaps]), from_model_range(restored), None)

    def reduce(self, heatmap: np.ndarray) -> float:
        return float(heatmap.max())  # image score = max of the restoration error map (Sec. 4.4)
