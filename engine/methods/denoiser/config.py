"""The shared VP denoiser's config: one network, read out by SANO and SPR."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import CalibrationConfig, DenoiserNetConfig, PreprocessConfig, ScheduleConfig, TrainConfig
from ..sano.config import SanoConfig
from ..spr.config import SprConfig


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
