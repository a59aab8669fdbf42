"""Typed configurations. Defaults are the papers' values; every bundle saves the full config."""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# What the networks run in at inference; "auto" is bf16 on CUDA and fp32 on the CPU.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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
    mode "native": models trained on crops (e.g. HAM10000 skin patches) score whole images at the pixel
    scale of the images the crops came from. With `scale_side` set (that scale, as the longer side of those
    source images), every input is resampled so that its longer side is `scale_side` before scoring and the
    maps are mapped back to its own grid: a photo of unknown scale is assumed to frame its subject as the
    training images did (the same field of view). Without it, inputs are scored at their own pixel scale
    and must lie in [min_side, max_side]. Either way the result is padded to a multiple of the network's
    stride.
    """

    image_size: int = 256
    channels: int = 3  # 0: any channel count (training-free references)
    mode: str = "resize"
    min_side: int = 16
    max_side: int = 1024
    scale_side: int | None = None  # native mode: the longer side of the training data's source images
    # Native mode: the training images' pixel size in mm, where known. An input whose pixel spacing is known
    # (DICOM) is resampled to it, by mm; any other input by field of view (scale_side).
    pixel_spacing_mm: float | None = None
    # Pixels at or below this intensity (after the display window, in [0, 1]) in every channel are background,
    # such as the air around a head in MRI: maps are zeroed there (the image-conditioned paper's one
    # post-processing: predictions outside the brain are set to zero) and histogram equalisation ignores them.
    foreground_above: float | None = None


@dataclass
class AugmentConfig:
    """Geometric augmentation of the training images, drawn per image on their device. P-PII's sensitivity
    analysis (Müller et al., Table 2) tries "scaling" and "combined" (rotation within +-10 degrees, elastic
    deformation and scaling) on a small data set; it gives no ranges, so these are the project's. The
    defaults change nothing and draw nothing, so a recipe without augmentation trains as before."""

    scale: tuple[float, float] = (1.0, 1.0)  # zoom drawn uniformly per image; above 1 enlarges
    rotation_degrees: float = 0.0  # rotation drawn uniformly in +-this
    # Elastic deformation: a displacement drawn normal (sd this share of the image side) at each point of a
    # coarse grid, upsampled smoothly to every pixel. 0 deforms nothing.
    elastic_sd: float = 0.0
    elastic_grid: int = 4  # the coarse grid's points per side


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
    # A wall-clock budget for a lent GPU's few minutes: training stops at the first loss read (every 25 steps)
    # after this many seconds, counted across resumes, however many steps remain; the bundle records the steps
    # done. The learning-rate milestones stay fractions of `steps`.
    max_seconds: float | None = None
    mixed_precision: str = "bf16"  # on CUDA only: "bf16", "fp16" or "no"
    # The CPU trains in fp32 unless this is set; set, it autocasts to bf16 as the GPU does (an ablation's
    # stand-in for a GPU's bf16 run, on a CPU that supports it).
    bf16_on_cpu: bool = False
    num_workers: int = 0
    # Throughput only; none of these changes what is optimised. The images and the network in NHWC memory,
    # the layout tensor cores' convolutions run in.
    channels_last: bool = False
    # torch.compile of the network: "no", "default", "reduce-overhead" (adds CUDA graphs) or "max-autotune".
    compile: str = "no"
    # Adam's kernels: "auto" (fused on CUDA, torch's default elsewhere), "fused" or "foreach".
    optimizer_kernels: str = "auto"


@dataclass
class CalibrationConfig:
    target_fpr: float = 0.01
    max_validation_images: int = 64


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
        elif isinstance(value, list) and (isinstance(default, tuple) or _optional_tuple(cls, key)):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _optional_tuple(cls, key: str) -> bool:
    """Whether field `key` is an optional tuple (`tuple[float, ...] | None`, default None): TOML and JSON give
    lists. A class whose hints cannot be resolved (a plugin's) keeps its lists as they come."""
    try:
        hint = typing.get_type_hints(cls)[key]
    except (NameError, TypeError):
        return False
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return False
    return any(typing.get_origin(arg) is tuple for arg in typing.get_args(hint))


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


def build_config(defaults, toml: str | Path | Sequence[str | Path] | None = None, overrides: dict | None = None):
    """The one way a method's config is made: its defaults (the paper's), then a TOML file (or several, each
    over the ones before it, as a change layered on a recipe), then overrides (a nested dict, such as the
    command line's options)."""
    config = defaults
    for file in [toml] if isinstance(toml, (str, Path)) else (toml or []):
        config = merge(config, load_toml(Path(file)))
    return merge(config, overrides) if overrides else config


def load_toml(path: Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)
