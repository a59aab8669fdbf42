"""P-PII's config (Mueller et al.)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import AugmentConfig, CalibrationConfig, PreprocessConfig, TrainConfig


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
    # Not the paper's: the share of anomalies whose source is the image's own patch brightened by a smooth
    # bump (peak drawn from bright_amplitude, in [0, 1] image units) instead of a partner's patch, to resemble a
    # FLAIR hyperintensity; a negative amplitude darkens instead, as a pigmented skin lesion does. 0 draws
    # nothing for it, so the paper's generator is unchanged.
    bright_fraction: float = 0.0
    bright_amplitude: tuple[float, float] = (0.2, 0.6)
    # Not the paper's: the bump's peak per channel, as a share of the drawn one (one entry per channel), so
    # that a darkening has a colour: melanin darkens a photo's blue and green more than its red. None changes
    # every channel alike.
    bright_tint: tuple[float, ...] | None = None
    # Not the paper's: the bump's profile, as two radii in shares of the patch's half-side: flat at its peak out
    # to the first, then falling as a raised cosine to 0 at the second. Poisson blending keeps only the change
    # inside the raters' circles (0.7 of the half-side on average), and the label is that change, so the
    # shipped peaked bump, (0, 1), teaches the network to mark a hyperintensity's brightest part; a FLAIR
    # tumour is more a plateau with a soft border.
    bright_profile: tuple[float, float] = (0.0, 1.0)


@dataclass
class SegmentationNetConfig:
    """MONAI BasicUNet for P-PII: five levels (the paper's depth; widths are not given, these are MONAI's
    defaults: five levels and the up-path's last width); dropout 0.1 gives the MC-dropout U-Net. Not the
    paper's: another number of encoder widths builds the same blocks at that depth (one more for a larger
    input, so that the receptive field keeps its share of the image)."""

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
    # How an image becomes the network's input, in training and read-out alike: "equalise" (the paper's
    # histogram equalisation), "unit" (the intensities as they are, in [0, 1]) or "standardise" (a z-score
    # over the image's foreground, z in [-3, 3] mapped to [0, 1]): the last two keep a hyperintensity bright.
    intensity: str = "equalise"
    # Not the paper's: the map smoothed by a Gaussian of this sigma, in pixels of a 256 px image, scaled with
    # the image (as the median-distance reference smooths its own). 0, the paper's read-out, smooths nothing.
    smoothing_sigma_at_256: float = 0.0
    # Not the paper's: the scale the network reads an image at, as a share of the scale it was trained at (the
    # map is resampled back). A network trained on small crops judges a lesion larger than its crops from
    # inside it, where it looks like plain, darker skin; read smaller, the lesion fits the patches it learned
    # from. 1, the paper's read-out, reads the image as it is.
    read_scale: float = 1.0


@dataclass
class PpiiMethodConfig:
    """Everything `anomascope train --method ppii` needs; saved whole in the bundle. Training per the
    paper: 100,000 steps at batch 16 (the optimiser is not stated; Adam)."""

    method: str = "ppii"
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    net: SegmentationNetConfig = field(default_factory=SegmentationNetConfig)
    generator: PpiiGeneratorConfig = field(default_factory=PpiiGeneratorConfig)
    # The healthy images, augmented before the anomalies are interpolated in (the paper's Table 2; off).
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=16, steps=100_000, ema_decay=0.999)
    )
    ppii: PpiiConfig = field(default_factory=PpiiConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
