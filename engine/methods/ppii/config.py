"""P-PII's config (Mueller et al.)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import CalibrationConfig, PpiiGeneratorConfig, PreprocessConfig, SegmentationNetConfig, TrainConfig


@dataclass
class PpiiConfig:
    """P-PII read-out: per-pixel anomaly = the U-Net's prediction (mean over MC-dropout passes);
    uncertainty = their standard deviation. The paper does not say how a sample score is formed;
    "mean" of the map is PII's, "max" suits small lesions."""

    mc_passes: int = 10
    image_score: str = "mean"
    seed: int = 0
    k_sigma: float = 3.0
    # How an image becomes the network's input, in training and read-out alike: "equalise" (the paper's
    # histogram equalisation), "unit" (the intensities as they are, in [0, 1]) or "standardise" (a z-score
    # over the image's foreground, z in [-3, 3] mapped to [0, 1]): the last two keep a hyperintensity bright.
    intensity: str = "equalise"


@dataclass
class PpiiMethodConfig:
    """Everything `anomascope train --method ppii` needs; saved whole in the bundle. Training per the
    paper: 100,000 steps at batch 16 (the optimiser is not stated; Adam)."""

    method: str = "ppii"
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    net: SegmentationNetConfig = field(default_factory=SegmentationNetConfig)
    generator: PpiiGeneratorConfig = field(default_factory=PpiiGeneratorConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=16, steps=100_000, ema_decay=0.999)
    )
    ppii: PpiiConfig = field(default_factory=PpiiConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
