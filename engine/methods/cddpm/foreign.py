"""Images from outside the training data for the foreign-source blend: the natural and microscopy
photographs that ship inside scikit-image (no download), or a folder the user names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SHIPPED = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "immunohistochemistry",
    "moon",
    "rocket",
    "hubble_deep_field",
)


def foreign_images(size: int, folder: Path | None = None) -> torch.Tensor:
    """(M, 3, size, size) in [0, 1]: centre crops of the pool, resized."""
    arrays = _from_folder(folder) if folder else _shipped()
    tensors = []
    for array in arrays:
        x = torch.from_numpy(np.asarray(array, dtype=np.float32) / 255.0)
        x = x[..., None].expand(-1, -1, 3) if x.dim() == 2 else x[..., :3]
        side = min(x.shape[:2])
        top, left = (x.shape[0] - side) // 2, (x.shape[1] - side) // 2
        crop = x[top : top + side, left : left + side].permute(2, 0, 1)[None]
        tensors.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0])
    return torch.stack(tensors).clamp(0, 1)


def _shipped() -> list[np.ndarray]:
    import skimage.data

    return [getattr(skimage.data, name)() for name in SHIPPED]


def _from_folder(folder: Path) -> list[np.ndarray]:
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise ValueError(f"{folder}: no PNG/JPEG images for the foreign-source blend")
    return [np.asarray(Image.open(p).convert("RGB")) for p in files]
