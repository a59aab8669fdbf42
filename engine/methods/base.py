"""The interface every method implements and the result it returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

from ..bundle import ModelBundle
from ..calibration import Calibration
from ..config import PreprocessConfig, from_dict
from ..nets.precision import in_precision, resolve_precision


@dataclass
class AnomalyResult:
    heatmap: np.ndarray | None  # (N, H, W) anomaly score per pixel; None for image-level-only methods
    image_score: np.ndarray  # (N,)
    restoration: np.ndarray | None  # (N, C, H, W) in [0, 1], pseudo-healthy image where the method makes one
    uncertainty: np.ndarray | None  # (N, H, W), e.g. MC-dropout or ensemble spread


class Predictor(ABC):
    """A trained method ready to score batches of model-ready images ((N, C, h, w) in [-1, 1]).
    Image-level methods (DIA) return only image scores; methods with maps are MapPredictors."""

    name: str
    config_section: str | None = None  # the read-out's section of the config when not `name`
    bundle: ModelBundle
    preprocess: PreprocessConfig
    stride: int
    device: torch.device
    precision: str  # what its networks run in: "fp32", "bf16" or "fp16"; maps and scores are float32

    def __init__(self, bundle: ModelBundle, device: torch.device, precision: str = "auto"):
        self.bundle, self.device = bundle, device
        self.precision = resolve_precision(precision, device)

    def ready(self, network: torch.nn.Module) -> torch.nn.Module:
        """A loaded network on this predictor's device, in eval mode, running in its precision."""
        return in_precision(network.to(self.device).eval(), self.precision)

    @abstractmethod
    def predict(self, images: torch.Tensor) -> AnomalyResult:
        """Score a batch; maps are on the model grid."""

    @property
    def calibration(self) -> Calibration:
        return Calibration.from_manifest(self.bundle.manifest, self.name)

    @property
    def settings(self) -> dict:
        """The read-out's section of the bundle's config (e.g. cddpm's sampler, steps and seed)."""
        return self.bundle.manifest.get("config", {}).get(self.config_section or self.name, {})

    @property
    def parameters(self) -> dict:
        """The read-out's settings and the precision its networks ran in, recorded with every run."""
        return {**self.settings, "precision": self.precision}


class MapPredictor(Predictor):
    """A method that makes a per-pixel map and derives the image score from it."""

    @abstractmethod
    def reduce(self, heatmap: np.ndarray) -> float:
        """Image score from one (H, W) map on the original grid."""


class TrainingFreeMap(MapPredictor):
    """A map computed from the image alone, in float32 with no network: the config (`config_class`) comes
    from the bundle, the read-out's section holds its settings, and the image score is the map's max."""

    stride = 1
    config_class: type

    def __init__(self, bundle: ModelBundle, device: torch.device, precision: str = "auto"):
        super().__init__(bundle, device, "fp32")  # no network to run in reduced precision
        config = from_dict(self.config_class, bundle.manifest["config"])
        self.config, self.preprocess = getattr(config, self.config_section or self.name), config.preprocess

    @abstractmethod
    def score_map(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W) maps of (N, C, H, W) float32 images in [-1, 1] on this predictor's device."""

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> AnomalyResult:
        maps = self.score_map(images.to(self.device).float()).cpu().numpy()
        return AnomalyResult(maps, np.array([self.reduce(m) for m in maps]), None, None)

    def reduce(self, heatmap: np.ndarray) -> float:
        return float(heatmap.max())
