"""Noise schedules and the maths of the forward process, in one place (no networks here)."""

from __future__ import annotations

import math

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from .config import ScheduleConfig


class VPSchedule:
    """Variance-preserving (DDPM) schedule: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""

    def __init__(self, config: ScheduleConfig):
        self.config = config
        self.scheduler = DDPMScheduler(
            num_train_timesteps=config.num_train_timesteps,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            beta_schedule="linear",
            prediction_type="epsilon",
            clip_sample=False,
        )
        # Set in DDPMScheduler.__init__, behind a config decorator that hides it from type checkers.
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(torch.float64)  # type: ignore[attr-defined]

    @property
    def num_timesteps(self) -> int:
        return self.config.num_train_timesteps

    def signal(self, t: int) -> float:
        return math.sqrt(float(self.alphas_cumprod[t]))

    def sigma(self, t: int) -> float:
        """Noise standard deviation sigma_t = sqrt(1 - abar_t) at integer timestep t."""
        return math.sqrt(1.0 - float(self.alphas_cumprod[t]))

    def noise_to_signal(self, t: int) -> float:
        return self.sigma(t) / self.signal(t)

    def timestep_for_noise_to_signal(self, ratio: float) -> int:
        """The timestep whose perturbation x + ratio * eps (up to scale) matches `ratio` best."""
        ratios = torch.sqrt((1.0 - self.alphas_cumprod) / self.alphas_cumprod)
        return int(torch.argmin((ratios - ratio).abs()))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = self.alphas_cumprod.to(x0.device)[t].to(x0.dtype).view(-1, 1, 1, 1)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def predict_x0(self, xt: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """Tweedie / one-step denoised estimate of the clean image."""
        return (xt - self.sigma(t) * eps) / self.signal(t)


def spr_noise_scale(sigma: float, k: float) -> float:
    """SPR's multi-scale noise level sigma_k = sqrt((sigma^(2k) - 1) / (2 log sigma)) (Sec. 4.3)."""
    return math.sqrt((sigma ** (2 * k) - 1.0) / (2.0 * math.log(sigma)))


def make_sampler(config: ScheduleConfig, sampler: str, prediction_type: str = "epsilon"):
    """A diffusers scheduler over the training schedule: "ddpm" (ancestral, the full chain) or "ddim"
    (deterministic, eta = 0, few steps)."""
    kwargs = dict(
        num_train_timesteps=config.num_train_timesteps,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        beta_schedule="linear",
        prediction_type=prediction_type,
        clip_sample=True,
        clip_sample_range=1.0,
    )
    if sampler == "ddpm":
        return DDPMScheduler(**kwargs)
    if sampler == "ddim":
        return DDIMScheduler(**kwargs, set_alpha_to_one=True)
    raise ValueError(f"unknown sampler {sampler!r}; use ddpm or ddim")


@torch.no_grad()
def sample_conditioned(
    model: torch.nn.Module, condition: torch.Tensor, scheduler, steps: int, generator: torch.Generator
) -> torch.Tensor:
    """Map Gaussian noise to an image, concatenating `condition` to x_t at every step (image-conditioned
    reverse diffusion). Returns (N, C, H, W) in [-1, 1]."""
    scheduler.set_timesteps(min(steps, scheduler.config.num_train_timesteps), device=condition.device)
    x = torch.randn(condition.shape, generator=generator, device=condition.device, dtype=condition.dtype)
    extra = {"eta": 0.0} if isinstance(scheduler, DDIMScheduler) else {}
    for t in scheduler.timesteps:
        steps_t = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        output = model(torch.cat([x, condition], dim=1), steps_t).sample
        x = scheduler.step(output, t, x, generator=generator, **extra).prev_sample
    return x.clamp(-1, 1)
