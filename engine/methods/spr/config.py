"""SPR's read-out settings (Shin et al., Sec. 4.4 and 5.3)."""

from __future__ import annotations

from dataclasses import dataclass


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
