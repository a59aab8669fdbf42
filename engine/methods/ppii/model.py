"""P-PII (Mueller et al.): a U-Net or MC-dropout U-Net trained on healthy images to predict where, and
how strongly, probabilistic Poisson-interpolated patches changed them."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...augment import augmented, check_augment
from ...bundle import ModelBundle
from ...config import PreprocessConfig, from_dict
from ...filters import gaussian_blur
from ...preprocess import check_intensity, network_intensity, padded_to_stride
from ..base import AnomalyResult, MapPredictor
from ..training_plan import Trainable, TrainingInputs, TrainingPlan
from .config import PpiiMethodConfig
from .net import build_segmentation_unet, enable_dropout, segmentation_stride
from .synthetic import check_profile, check_tint, ppii_anomalies


def model_input(images: torch.Tensor, preprocess: PreprocessConfig, intensity: str = "equalise") -> torch.Tensor:
    """[-1, 1] images to the network's input in [0, 1]: histogram-equalised (the paper's pre-processing),
    as they are, or standardised, over the foreground where the config defines one."""
    return network_intensity((images.float() + 1.0) / 2.0, intensity, preprocess.foreground_above)


def ppii_loss(config: PpiiMethodConfig):
    """Binary cross-entropy between the predicted map and P-PII's soft label |target - mean result|,
    on network inputs (equalised, by default) made, from the augmented images, before the anomalies are
    interpolated in."""
    generator_config, preprocess, intensity = config.generator, config.preprocess, config.ppii.intensity

    def loss(model: torch.nn.Module, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        batch = augmented(batch, config.augment, generator)
        sample = ppii_anomalies(model_input(batch, preprocess, intensity), generator, generator_config)
        logits = model(sample.image)
        return F.binary_cross_entropy_with_logits(logits.float(), sample.label.float())

    return loss


def new_ppii_net(config: PpiiMethodConfig) -> torch.nn.Module:
    return build_segmentation_unet(config.net, config.preprocess.channels or 1)


def ppii_plan(config: PpiiMethodConfig, inputs: TrainingInputs) -> TrainingPlan:
    check_intensity(config.ppii.intensity, "ppii.intensity")  # before any image is loaded
    check_tint(config.generator.bright_tint, config.preprocess.channels or 1)  # the network's channels
    check_profile(config.generator.bright_profile)
    check_read_scale(config.ppii.read_scale)
    check_augment(config.augment)
    loss = ppii_loss(config)
    return TrainingPlan([Trainable("ppii", new_ppii_net(config), loss)], ["ppii"])


class PpiiPredictor(MapPredictor):
    name = "ppii"

    def __init__(self, bundle: ModelBundle, device: torch.device, precision: str = "auto"):
        super().__init__(bundle, device, precision)
        config = from_dict(PpiiMethodConfig, bundle.manifest["config"])
        self.config, self.preprocess = config.ppii, config.preprocess
        check_read_scale(self.config.read_scale)
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
        passes = self.read_passes(x)  # (passes, N, H, W)
        maps = self.smoothed(passes.mean(dim=0)).cpu().numpy()
        scores = np.array([self.reduce(m) for m in maps])
        spread = passes.std(dim=0).cpu().numpy() if self.mc_dropout else None
        return AnomalyResult(maps, scores, None, spread)

    def read_passes(self, x: torch.Tensor) -> torch.Tensor:
        """The network's maps of `x`, one per pass (one without MC dropout), read at `read_scale` and returned
        on x's grid."""
        read, scaled = at_read_scale(x, self.config.read_scale, self.stride)
        if not self.mc_dropout:
            passes = torch.sigmoid(self.model(read))[:, 0][None]
        else:
            # The same dropout draws for the same input: reproducible maps, without touching the global RNG.
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(self.config.seed)
                passes = torch.sigmoid(self.model(read.repeat(self.config.mc_passes, 1, 1, 1)))[:, 0]
            passes = passes.view(self.config.mc_passes, x.shape[0], *read.shape[-2:])
        return passes if scaled is None else back_from_read_scale(passes, scaled, (x.shape[-2], x.shape[-1]))

    def smoothed(self, maps: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(maps.float(), self.config.smoothing_sigma_at_256 * min(maps.shape[-2:]) / 256.0)

    def reduce(self, heatmap: np.ndarray) -> float:
        return float(heatmap.max() if self.config.image_score == "max" else heatmap.mean())


def check_read_scale(scale: float) -> None:
    """Reading larger than the training scale would show the network nothing it learned to see: the input is
    already brought to that scale before the read-out."""
    if isinstance(scale, bool) or not (isinstance(scale, (int, float)) and math.isfinite(scale) and 0 < scale <= 1):
        raise ValueError(
            f"ppii.read_scale is {scale!r}; it must be a share of the training scale in (0, 1],"
            " such as 0.5 to read an image at half the scale the network was trained at"
        )


def at_read_scale(x: torch.Tensor, scale: float, stride: int) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """(N, C, H, W) inputs shrunk by `scale` (antialiased) and padded to the stride, with
    the resampled size; at scale 1 the inputs as they are, and None."""
    if scale == 1.0:
        return x, None
    height, width = x.shape[-2:]
    scaled = (max(1, round(height * scale)), max(1, round(width * scale)))
    x = F.interpolate(x, size=scaled, mode="bilinear", antialias=True, align_corners=False)
    return padded_to_stride(x, stride)[0], scaled


def back_from_read_scale(maps: torch.Tensor, scaled: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(P, N, h, w) maps read at another scale, their padding cut off, back on the inputs' (H, W) grid."""
    maps = maps[..., : scaled[0], : scaled[1]]
    passes, n = maps.shape[:2]
    flat = maps.reshape(passes * n, 1, *scaled)
    resized = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return resized.reshape(passes, n, *size)
