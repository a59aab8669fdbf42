"""Typed configurations. Defaults are the papers' values; every bundle saves the full config."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class ScheduleConfig:
    """VP diffusion (DDPM) schedule: SANO Sec. 3.2, linear beta from 1e-4 to 0.02 over T = 1000 steps."""

    beta_start: float = 1e-4
    beta_end: float = 0.02
    num_train_timesteps: int = 1000


@dataclass
class DenoiserNetConfig:
    """Epsilon-prediction U-Net (diffusers UNet2DModel). The papers use ADM-sized U-Nets; the
    default here is compact, with attention at the lowest resolution only (2-4x cheaper on a CPU)."""

    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)
    layers_per_block: int = 2
    attention_levels: tuple[bool, ...] = (False, False, False, True)
    norm_num_groups: int = 8
    dropout: float = 0.0


@dataclass
class PreprocessConfig:
    """How an image becomes model input.

    mode "resize": every image is resized to image_size x image_size (SANO and SPR resize).
    mode "native": images keep their pixel scale (models trained on crops, e.g. HAM10000 skin
    patches) and are padded to a multiple of the U-Net's stride; they must lie in [min_side, max_side].
    """

    image_size: int = 256
    channels: int = 3  # 0: any channel count (training-free references)
    mode: str = "resize"
    min_side: int = 16
    max_side: int = 1024


@dataclass
class TrainConfig:
    """Optimisation. SANO: Adam, lr 2e-4, batch 64, 400k iterations. SPR: AdamW (0.9, 0.999),
    lr 1e-4, weight decay 1e-3, batch 16, EMA 0.9999, 3000 epochs, lr x0.1 at epochs 1000 and 2000."""

    optimizer: str = "adam"
    learning_rate: float = 2e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    batch_size: int = 64
    steps: int | None = 400_000
    epochs: int | None = None  # when set (and steps is None), steps = epochs x batches per epoch
    lr_milestones: tuple[float, ...] = ()  # fractions of training after which lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    ema_decay: float = 0.9999
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 1000
    mixed_precision: str = "bf16"  # on CUDA only: "bf16", "fp16" or "no"
    num_workers: int = 0


@dataclass
class SanoConfig:
    """SANO read-out (Sec. 2.2): squared score summed over channels at t ~ 0, Gaussian sigma 4 px at 256 px."""

    timestep: int = 0
    smoothing_sigma_at_256: float = 4.0
    image_score: str = "max"
    k_sigma: float = 3.0


@dataclass
class SprConfig:
    """SPR read-out (Sec. 4.4, 5.3): N = 3 perturbations at (sigma, k) = (25, 0.001), 31x31 box filter
    at 256 px, image score = max of the map."""

    sigma: float = 25.0
    k: float = 0.001
    num_perturbations: int = 3
    box_filter_at_256: int = 31
    data_range: float = 1.0  # the paper perturbs images scaled to [0, 1]; the model sees [-1, 1]
    seed: int = 0
    k_sigma: float = 3.0


@dataclass
class CalibrationConfig:
    target_fpr: float = 0.01
    max_validation_images: int = 64


@dataclass
class DenoiserMethodConfig:
    """Everything `anomascope train --method sano|spr` needs; saved whole in the bundle."""

    method: str = "sano"
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    net: DenoiserNetConfig = field(default_factory=DenoiserNetConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sano: SanoConfig = field(default_factory=SanoConfig)
    spr: SprConfig = field(default_factory=SprConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


@dataclass
class SyntheticTaskConfig:
    """The five self-supervised tasks of Baugh et al. ("Many tasks make light work", used by the
    image-conditioned diffusion model). The papers name the tasks, not every constant: counts, sizes and
    strengths here are this project's choices, in fractions of the image side where they are lengths."""

    min_anomalies: int = 1
    max_anomalies: int = 3
    min_size: float = 0.1  # shape diameter / image side
    max_size: float = 0.5
    shape_distortion: float = 0.3  # relative amplitude of the low-frequency radial wobble of each ellipse
    blend_weight: tuple[float, float] = (0.5, 1.0)  # source weight of the mixed-gradient blend
    deformation_strength: tuple[float, float] = (0.3, 0.7)
    intensity_change: tuple[float, float] = (0.1, 0.4)  # |offset| in [0, 1] image units, random sign


@dataclass
class PpiiGeneratorConfig:
    """Probabilistic Poisson image interpolation (P-PII, Mueller et al. Sec. 2). One to ten anomalies per
    image; per anomaly a source patch pasted at another location with up-scaled gradients, and per
    simulated rater a circular mask with normally distributed radius and centre inside the patch.
    The paper gives no numeric values for the patch sizes, the normal distributions, the rater count
    or the up-scaling factor: these defaults are this project's."""

    min_anomalies: int = 1
    max_anomalies: int = 10
    min_patch: float = 0.1  # patch side / image side
    max_patch: float = 0.35
    raters: int = 5
    radius_mean: float = 0.35  # fraction of the patch side
    radius_std: float = 0.06
    centre_std: float = 0.08  # fraction of the patch side
    source_weight: tuple[float, float] = (0.05, 0.95)  # PII's interpolation factor alpha, drawn per anomaly
    gradient_scale: float = 2.0  # P-PII's up-scaling of the source gradients


@dataclass
class SegmentationNetConfig:
    """MONAI BasicUNet for P-PII: five levels (the paper's depth; widths are not given, these are MONAI's
    defaults: five levels and the up-path's last width); dropout 0.1 gives the MC-dropout U-Net."""

    features: tuple[int, ...] = (32, 32, 64, 128, 256, 32)
    dropout: float = 0.1


@dataclass
class PpiiConfig:
    """P-PII read-out: per-pixel anomaly = the U-Net's prediction (mean over MC-dropout passes);
    uncertainty = their standard deviation. The paper does not say how a sample score is formed;
    "mean" of the map is PII's, "max" suits small lesions."""

    mc_passes: int = 10
    image_score: str = "mean"
    seed: int = 0
    k_sigma: float = 3.0


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


@dataclass
class CddpmConfig:
    """Image-conditioned diffusion restoration (Baugh et al. Sec. 2): the corrupted image is concatenated
    to x_t; 20 % of training samples keep a clean condition; one model per split of the five tasks into
    three for training and two for monitoring (C(5, 3) = 10 folds), ensembled by averaging maps.
    Anomaly map = 1 - SSIM(restoration, input) (Gaussian window sigma 1.5, Wang et al.), image score =
    its mean. The paper samples with full DDPM; "ddim" with few steps is the fast deterministic option.
    prediction_type "sample" (x0 prediction) is an option for short CPU runs; the paper's is "epsilon"."""

    folds: int = 10
    clean_fraction: float = 0.2
    prediction_type: str = "epsilon"
    sampler: str = "ddpm"
    sampling_steps: int = 1000
    ssim_sigma: float = 1.5
    seed: int = 0
    monitor_images: int = 16
    k_sigma: float = 3.0


@dataclass
class CddpmMethodConfig:
    """Everything `anomascope train --method cddpm` needs; saved whole in the bundle. The paper trains at
    128 x 128 with batch 32; it does not state the optimiser, learning rate or step count (Adam, 1e-4
    and 100k steps here)."""

    method: str = "cddpm"
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    net: DenoiserNetConfig = field(default_factory=DenoiserNetConfig)
    preprocess: PreprocessConfig = field(default_factory=lambda: PreprocessConfig(image_size=128))
    tasks: SyntheticTaskConfig = field(default_factory=SyntheticTaskConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(learning_rate=1e-4, batch_size=32, steps=100_000))
    cddpm: CddpmConfig = field(default_factory=CddpmConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


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


def paper_defaults(method: str):
    """The defaults of the paper the method comes from (resolution and optimiser differ)."""
    if method == "sano":
        return DenoiserMethodConfig(method="sano")
    if method == "spr":
        return DenoiserMethodConfig(
            method="spr",
            preprocess=PreprocessConfig(image_size=192),
            train=TrainConfig(
                optimizer="adamw",
                learning_rate=1e-4,
                weight_decay=1e-3,
                batch_size=16,
                steps=None,
                epochs=3000,
                lr_milestones=(1 / 3, 2 / 3),
            ),
        )
    if method == "ppii":
        return PpiiMethodConfig()
    if method == "cddpm":
        return CddpmMethodConfig()
    if method == "dia":
        return DiaMethodConfig()
    raise ValueError(f"unknown method {method!r}")


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def from_dict(cls, data: dict):
    """Build a (nested) config dataclass from a dict, rejecting unknown keys with their name."""
    kwargs = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            raise ValueError(f"unknown config key {key!r} for {cls.__name__}; known: {', '.join(fields)}")
        default = getattr(cls(), key) if _has_default(fields[key]) else None
        if dataclasses.is_dataclass(default):
            kwargs[key] = from_dict(type(default), value)
        elif isinstance(default, tuple):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _has_default(f) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def merge(config, overrides: dict):
    """A copy of `config` with a nested dict of overrides applied."""
    merged = to_dict(config)
    _deep_update(merged, overrides)
    return from_dict(type(config), merged)


def _deep_update(target: dict, updates: dict) -> None:
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def load_toml(path: Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)
