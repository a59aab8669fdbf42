"""Turning Case pixels into 8-bit display images (window/level)."""

from __future__ import annotations

import numpy as np


def apply_window(pixels: np.ndarray, centre: float, width: float) -> np.ndarray:
    """(C, H, W) values to (H, W, 3) uint8 through a linear window; greyscale is repeated to RGB."""
    width = max(float(width), 1e-6)
    low = centre - width / 2.0
    scaled = np.clip((pixels - low) / width, 0.0, 1.0)
    image = (scaled * 255.0 + 0.5).astype(np.uint8)
    if image.shape[0] == 1:
        image = np.repeat(image, 3, axis=0)
    elif image.shape[0] != 3:
        image = np.repeat(image[:1], 3, axis=0)  # multi-channel volumes: show the first channel
    return image.transpose(1, 2, 0)


# Plotly's colour scales of these names (the ones the UI shows), as their evenly spaced stops: written
# out here because the engine runs where plotly is not installed (the lent GPU machine's image).
COLOUR_SCALES = {
    "Inferno": (
        "#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925", "#fb9b06", "#f7d13d", "#fcffa4",
    ),
}  # fmt: skip


def colormap_lut(name: str = "Inferno") -> np.ndarray:
    """(256, 3) uint8 lookup table: the colour scale sampled at 256 even points, linear between its stops
    (plotly's `sample_colorscale`)."""
    stops = np.array([[int(colour[k : k + 2], 16) for k in (1, 3, 5)] for colour in COLOUR_SCALES[name]], float)
    at = np.linspace(0.0, 1.0, 256)
    where = np.linspace(0.0, 1.0, len(stops))
    rgb = np.stack([np.interp(at, where, stops[:, channel]) for channel in range(3)], axis=1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def overlay_heatmap(
    base: np.ndarray, heatmap: np.ndarray, low: float, high: float, opacity: float = 0.5, colormap: str = "Inferno"
) -> np.ndarray:
    """Blend a colour-mapped heatmap over an (H, W, 3) uint8 image; scores at or below `low` stay clear."""
    span = max(float(high) - float(low), 1e-12)
    level = np.clip((heatmap - low) / span, 0.0, 1.0)
    colours = colormap_lut(colormap)[(level * 255).astype(np.uint8)].astype(np.float32)
    alpha = (opacity * (level > 0))[..., None]
    return (base.astype(np.float32) * (1 - alpha) + colours * alpha + 0.5).astype(np.uint8)


def unit_to_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] to (H, W, 3) uint8."""
    return apply_window(image, 0.5, 1.0)
