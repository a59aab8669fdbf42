"""The FLAIR z-score reference's settings: the brain MRI benchmark's training-free yardstick (issue 16)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import CalibrationConfig, PreprocessConfig


@dataclass
class FlairZscoreConfig:
    brain_level: float = 10.0 / 255.0  # brain = pixels brighter than 10 of 255 (the benchmark's mask)
    sigma: float = 1.0  # Gaussian smoothing of the z-score map, in pixels as scored
    k_sigma: float = 3.0


@dataclass
class FlairZscoreMethodConfig:
    """Greyscale, native scale: FLAIR slices are scored as they are."""

    method: str = "flair-zscore"
    preprocess: PreprocessConfig = field(
        default_factory=lambda: PreprocessConfig(image_size=128, channels=1, mode="native", min_side=8, max_side=8192)
    )
    flair_zscore: FlairZscoreConfig = field(default_factory=FlairZscoreConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
