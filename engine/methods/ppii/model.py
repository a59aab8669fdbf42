"""P-PII (Mueller et al.): a U-Net or MC-dropout U-Net trained on healthy images to predict where, and
how strongly, probabilistic Poisson-interpolated patches changed them."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...bundle import ModelBundle
from ...config import PreprocessConfig, from_dict
from ...filters import gaussian_blur
from ...preprocess import check_intensity, network_intensity
from ..base import AnomalyResult, MapPredictor
from ..training_plan import Trainable, TrainingInputs, TrainingPlan
from .config import PpiiMethodConfig
from .net import build_segmentation_unet, enable_dropout, segmentation_stride
from .synthetic import check_tint, ppii_anomalies


def model_input(images: torch.Tensor, preprocess: PreprocessConfig, intensity: str = "equalise") -> torch.Tensor:
    """[-1, 1] images to the network's input in [0, 1]: histogram-equalised (the paper's pre-processing),
    as they are, or standardised, over the foreground where the config defines one."""
    return network_intensity((images.float() + 1.0) / 2.0, intensity, preprocess.foreground_above)


def ppii_loss(config: PpiiMethodConfig):
    """Binary cross-entropy between the predicted map and P-PII's soft label |target - mean result|,
    on network inputs (equalised, by default) made before the anomalies are interpolated in."""
    generator_config, preprocess, intensity = config.generator, config.preprocess, config.ppii.intensity

    def loss(model: torch.nn.Module, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        sample = ppii_anomalies(model_input(batch, preprocess, intensity), generator, generator_config)
        logits = model(sample.image)
        return F.binary_cross_entropy_with_logits(logits.float(), sample.label.float())

    return loss


def new_ppii_net(config: PpiiMethodConfig) -> torch.nn.Module:
    return build_segmentation_unet(config.net, config.preprocess.channels or 1)


def ppii_plan(config: PpiiMethodConfig, inputs: TrainingInputs) -> TrainingPlan:
    check_intensity(config.ppii.intensity, "ppii.intensity")  # before any image is loaded
    check_tint(config.generator.bright_tint, config.preprocess.channels or 1)  # the network's channels
    loss = ppii_loss(config)
    return TrainingPlan([Trainable("ppii", new_ppii_net(config), loss)], ["ppii"])


class PpiiPredictor(MapPredictor):
    name = "ppii"

    def __init__(self, bundle: ModelBundle, device: torch.device, precision: str = "auto"):
        super().__init__(bundle, device, precision)
        config = from_dict(PpiiMethodConfig, bundle.manifest["config"])
        self.config, self.preprocess = config.ppii, config.preprocess
        self.stride = segmentation_stride(config.net)
        self.mc_dropout = config.net.dropout > 0 and config.ppii.mc_passes > 1
        model = new_ppii_net(config)
        model.load_state_dict(bundle.state_dict("ppii"))
        self.model = self.ready(model)
        if self.mc_dropout:
            enable_dropout(self.model)

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> AnomalyResult:
        x = model_input(images.to(self.device), self.preprocess, self.config.intensity)
        if not self.mc_dropout:
            maps = self.smoothed(torch.sigmoid(self.model(x))[:, 0]).cpu().numpy()
            return AnomalyResult(maps, np.array([self.reduce(m) for m in maps]), None, None)
        # The same dropout draws for the same input: reproducible maps, without touching the global RNG.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config.seed)
            passes = torch.sigmoid(self.model(x.repeat(self.config.mc_passes, 1, 1, 1)))[:, 0]
        passes = passes.view(self.config.mc_passes, x.shape[0], *x.shape[-2:])
        maps = self.smoothed(passes.mean(dim=0)).cpu().numpy()
        spread = passes.std(dim=0).cpu().numpy()
        return AnomalyResult(maps, np.array([self.reduce(m) for m in maps]), None, spread)

    def smoothed(self, maps: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(maps.float(), self.config.smoothing_sigma_at_256 * min(maps.shape[-2:]) / 256.0)

    def reduce(self, heatmap: np.ndarray) -> float:
        return float(heatmap.max() if self.config.image_score == "max" else heatmap.mean())
