"""The one in-memory form of every image the engine reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class ImageReadError(ValueError):
    """A file that cannot be read as an image; the message names the file and the reason."""

    def __init__(self, source: str | Path, reason: str):
        self.source = str(source)
        # Library messages can span lines; the reader gets one sentence.
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.source_name}: {self.reason}")

    @property
    def source_name(self) -> str:
        """The file's name, with characters that would break the sentence (a newline) escaped."""
        return printable(Path(self.source).name)


def printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
        slices, channels, rows, columns = self.pixels.shape
        return int(slices), int(channels), int(rows), int(columns)

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
