"""Small synthetic datasets in the prepared layout: smooth normal images, textured blob anomalies."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def smooth_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth colour field: base colour plus a gentle linear gradient, (H, W, 3) in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0.3, 0.7, 3)
    tilt = rng.uniform(-0.15, 0.15, (2, 3))
    return np.clip(base + yy[..., None] * tilt[0] + xx[..., None] * tilt[1], 0, 1)


def plant_blob(rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A disk of high-frequency texture (never seen in training) and its mask."""
    size = image.shape[0]
    radius = rng.uniform(0.12, 0.2) * size
    cy, cx = rng.uniform(radius + 1, size - radius - 1, 2)
    yy, xx = np.mgrid[0:size, 0:size]
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    out = image.copy()
    out[mask] = np.clip(out[mask] + rng.uniform(-0.45, 0.45, (mask.sum(), 3)), 0, 1)
    return out, mask


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image * 255).round().astype(np.uint8)).save(path)


def make_blob_dataset(root: Path, size: int = 32, n_train: int = 48, n_val: int = 8, n_test: int = 8,
                      seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n_train):
        _save(root / "train" / "good" / f"n{i:03d}.png", smooth_image(rng, size))
    for split, count in (("val", n_val), ("test", n_test)):
        for i in range(count):
            _save(root / split / "good" / f"{split}_n{i:03d}.png", smooth_image(rng, size))
            image, mask = plant_blob(rng, smooth_image(rng, size))
            _save(root / split / "blob" / f"{split}_a{i:03d}.png", image)
            mask_path = root / "ground_truth" / "blob" / f"{split}_a{i:03d}_mask.png"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
    return root
