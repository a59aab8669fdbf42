"""SANO's read-out settings (Gonzalez-Jimenez et al., Sec. 2.2)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SanoConfig:
    """SANO read-out (Sec. 2.2): squared score summed over channels at t ~ 0, Gaussian sigma 4 px at 256 px."""

    timestep: int = 0
    smoothing_sigma_at_256: float = 4.0
    image_score: str = "max"
    k_sigma: float = 3.0
