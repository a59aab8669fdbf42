"""The one in-memory form of every image the engine reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# 2**29 float32 voxels is 2 GiB: beyond that a single review case no longer fits comfortably
# beside a model on an ordinary workstation, so it is refused up front rather than swapping.
DEFAULT_MAX_VOXELS = 2**29


class ImageReadError(ValueError):
    """A file that cannot be read as an image; the message names the file and the reason."""

    def __init__(self, source: str | Path, reason: str):
        self.source = str(source)
        # Library messages can span lines; the reader gets one sentence.
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{Path(self.source).name}: {self.reason}")


@dataclass
class Case:
    """One image or volume ready for a method.

    pixels: float32 (slices, channels, H, W) in the modality's own units (Hounsfield units for CT
    after the rescale, raw intensities otherwise).
    spacing: (row, column) pixel spacing in mm, None when the source does not say.
    slice_spacing: distance between slice centres in mm, None when unknown or single-slice.
    window: default display window as (centre, width) in pixel units.
    """

    pixels: np.ndarray
    format: str
    modality: str
    source: str
    window: tuple[float, float]
    spacing: tuple[float, float] | None = None
    slice_spacing: float | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.pixels.ndim != 4:
            raise ValueError(f"Case pixels must be (slices, channels, H, W), got shape {self.pixels.shape}")
        self.pixels = np.ascontiguousarray(self.pixels, dtype=np.float32)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(int(n) for n in self.pixels.shape)

    def summary(self) -> dict:
        """The JSON-ready description `anomascope inspect` prints."""
        return {
            "format": self.format,
            "modality": self.modality,
            "shape": list(self.shape),
            "spacing": None if self.spacing is None else [float(s) for s in self.spacing],
            "slice_spacing": None if self.slice_spacing is None else float(self.slice_spacing),
            "window": [float(w) for w in self.window],
        }


def window_from_range(pixels: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> tuple[float, float]:
    """A display window covering the bulk of the intensities; robust to a few outlier voxels."""
    finite = pixels[np.isfinite(pixels)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = np.percentile(finite, [low_pct, high_pct])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    width = max(float(hi - lo), 1e-6)
    return (float(lo + hi) / 2.0, width)


def check_voxel_count(source: str | Path, n_voxels: int, max_voxels: int) -> None:
    if n_voxels > max_voxels:
        raise ImageReadError(
            source, f"too large: {n_voxels:,} voxels exceeds the limit of {max_voxels:,}"
        )
