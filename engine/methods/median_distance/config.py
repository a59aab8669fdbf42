"""The median-distance reference's settings. Not from a paper: the project's own training-free yardstick."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import CalibrationConfig, PreprocessConfig


@dataclass
class MedianDistanceConfig:
    sigma_at_256: float = 4.0  # Gaussian smoothing, in pixels at 256 px, scaled with the image
    k_sigma: float = 3.0


@dataclass
class MedianDistanceMethodConfig:
    """Native scale, any channel count: the reference scores images as they are."""

    method: str = "median-distance"
    preprocess: PreprocessConfig = field(
        default_factory=lambda: PreprocessConfig(image_size=256, channels=0, mode="native", min_side=8, max_side=8192)
    )
    median_distance: MedianDistanceConfig = field(default_factory=MedianDistanceConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
