"""The shared epsilon-prediction denoiser: its training objective, training plan, loading and read-out base."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...bundle import ModelBundle
from ...config import from_dict
from ...nets.denoiser import build_denoiser, unet_stride
from ...schedules import VPSchedule
from ..base import MapPredictor
from ..training_plan import Trainable, TrainingInputs, TrainingPlan
from .config import DenoiserMethodConfig

# The read-outs of one trained denoiser: a bundle trained for either serves both.
DENOISER_READOUTS = ["sano", "spr"]


def epsilon_loss(schedule: VPSchedule):
    """DDPM's simple loss: ||eps - eps_theta(sqrt(abar) x + sqrt(1 - abar) eps, t)||^2 with t ~ U{0..T-1}
    (the epsilon-parametrised denoising score matching objective, SANO Eq. 1)."""

    def loss(model: torch.nn.Module, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        t = torch.randint(0, schedule.num_timesteps, (x0.shape[0],), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
        prediction = model(schedule.add_noise(x0, noise, t), t).sample
        return F.mse_loss(prediction.float(), noise.float())

    return loss


def new_denoiser(config: DenoiserMethodConfig) -> torch.nn.Module:
    return build_denoiser(config.net, config.preprocess.channels, config.preprocess.image_size)


def denoiser_plan(config: DenoiserMethodConfig, inputs: TrainingInputs) -> TrainingPlan:
    """One denoiser, whichever of its read-outs the config was made for; the bundle offers both."""
    return TrainingPlan(
        [Trainable("denoiser", new_denoiser(config), epsilon_loss(VPSchedule(config.schedule)))], DENOISER_READOUTS
    )


def load_denoiser(
    bundle: ModelBundle, device: torch.device
) -> tuple[torch.nn.Module, DenoiserMethodConfig, VPSchedule, int]:
    config = from_dict(DenoiserMethodConfig, bundle.manifest["config"])
    model = new_denoiser(config)
    model.load_state_dict(bundle.state_dict("denoiser"))
    return model.to(device).eval(), config, VPSchedule(config.schedule), unet_stride(config.net)


class DenoiserReadout(MapPredictor):
    """A predictor reading out the shared denoiser; `name` picks its section of the config."""

    def __init__(self, bundle: ModelBundle, device: torch.device, precision: str = "auto"):
        super().__init__(bundle, device, precision)
        model, config, self.schedule, self.stride = load_denoiser(bundle, device)
        self.model = self.ready(model)
        self.config, self.preprocess = getattr(config, self.name), config.preprocess
