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


def random_disk(rng: np.random.Generator, size: int, low: float, high: float) -> np.ndarray:
    """A disk mask of radius in [low, high] x size, wholly inside the image."""
    radius = rng.uniform(low, high) * size
    cy, cx = rng.uniform(radius + 1, size - radius - 1, 2)
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def plant_blob(rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A disk of high-frequency texture (never seen in training) and its mask."""
    mask = random_disk(rng, image.shape[0], 0.12, 0.2)
    out = image.copy()
    out[mask] = np.clip(out[mask] + rng.uniform(-0.45, 0.45, (mask.sum(), 3)), 0, 1)
    return out, mask


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image * 255).round().astype(np.uint8)).save(path)


def make_blob_dataset(
    root: Path, size: int = 32, n_train: int = 48, n_val: int = 8, n_test: int = 8, seed: int = 0
) -> Path:
    return make_dataset(root, smooth_image, plant_blob, size, n_train, n_val, n_test, seed)


def striped_image(rng: np.random.Generator, size: int, angle: float | None = None) -> np.ndarray:
    """Colour stripes of one random orientation: normal images whose texture has a direction."""
    angle = rng.uniform(0, np.pi) if angle is None else angle
    yy, xx = np.mgrid[0:size, 0:size]
    phase = (np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / 6 + rng.uniform(0, 2 * np.pi)
    base = rng.uniform(0.35, 0.65, 3)
    return np.clip(base + 0.15 * np.sin(phase)[..., None], 0, 1)


def plant_cross_stripes(rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A disk of stripes from another image (another orientation and colour) and its mask."""
    mask = random_disk(rng, image.shape[0], 0.15, 0.25)
    out = image.copy()
    out[mask] = striped_image(rng, image.shape[0])[mask]
    return out, mask


def make_dataset(root: Path, normal, plant, size: int, n_train: int, n_val: int, n_test: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n_train):
        _save(root / "train" / "good" / f"n{i:03d}.png", normal(rng, size))
    for split, count in (("val", n_val), ("test", n_test)):
        for i in range(count):
            _save(root / split / "good" / f"{split}_n{i:03d}.png", normal(rng, size))
            image, mask = plant(rng, normal(rng, size))
            _save(root / split / "blob" / f"{split}_a{i:03d}.png", image)
            mask_path = root / "ground_truth" / "blob" / f"{split}_a{i:03d}_mask.png"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
    return root


def make_stripe_dataset(
    root: Path, size: int = 32, n_train: int = 48, n_val: int = 8, n_test: int = 8, seed: int = 0
) -> Path:
    return make_dataset(root, striped_image, plant_cross_stripes, size, n_train, n_val, n_test, seed)


def oriented_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """Lit from above, with fine grain: normal images whose orientation is knowable (for rotation
    shifts) and whose fine texture is regular."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0.35, 0.55, 3)
    grain = 0.03 * np.sin(2 * np.pi * xx * size / 4)[..., None]
    return np.clip(base + 0.35 * (1 - yy)[..., None] + grain + rng.normal(0, 0.01, (size, size, 3)), 0, 1)


def make_oriented_dataset(
    root: Path, size: int = 32, n_train: int = 48, n_val: int = 8, n_test: int = 8, seed: int = 0
) -> Path:
    return make_dataset(root, oriented_image, plant_blob, size, n_train, n_val, n_test, seed)
