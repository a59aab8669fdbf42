"""DIA's config (Huang et al., "Dissolving is amplifying")."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import CalibrationConfig, PreprocessConfig, TrainConfig


@dataclass
class EncoderNetConfig:
    """DIA's backbone: MONAI ResNet-18 (no torchvision), with CSI's heads: a 2-layer projection to
    `projection_dim` for the contrastive loss and a linear shift classifier. stem "imagenet" is the
    7x7/2 convolution with max-pooling; "cifar" a 3x3/1 convolution without (small images)."""

    widen_factor: float = 1.0
    stem: str = "imagenet"
    projection_dim: int = 128


@dataclass
class DiaConfig:
    """DIA (Sec. 3-4): K = 4 rotation shifts (or jigsaw "perm"), dissolving at t ~ U(30, 130) computed at
    32 x 32 and resized back, feature-amplified NT-Xent with dissolved negatives plus gamma x the shift
    classifier's loss (gamma = 1). The temperature is CSI's 0.5 (the DIA paper does not state it).
    The restoration view shows the image dissolved at `view_timestep`."""

    shift: str = "rotation"
    num_shifts: int = 4
    dissolve_t_min: int = 30
    dissolve_t_max: int = 130
    dissolve_size: int = 32
    temperature: float = 0.5
    gamma: float = 1.0
    crop_scale: tuple[float, float] = (0.08, 1.0)  # SimCLR/CSI random resized crop
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_probability: float = 0.8
    grayscale_probability: float = 0.2
    feature_bank_size: int = 4096
    view_timestep: int = 80
    seed: int = 0
    k_sigma: float = 3.0


@dataclass
class DiaMethodConfig:
    """Everything `anomascope train --method dia` needs; saved whole in the bundle. Batch 32 per the
    paper; the optimiser is not stated (CSI uses LARS; Adam here)."""

    method: str = "dia"
    net: EncoderNetConfig = field(default_factory=EncoderNetConfig)
    preprocess: PreprocessConfig = field(default_factory=lambda: PreprocessConfig(image_size=64))
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=32, steps=20_000, ema_decay=0.999)
    )
    dia: DiaConfig = field(default_factory=DiaConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
