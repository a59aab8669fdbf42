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
