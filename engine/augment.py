"""Geometric augmentation of training batches (torch, batched, on the batch's device, no host reads)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import AugmentConfig


def augments(config: AugmentConfig) -> bool:
    """Whether `config` changes an image at all."""
    return tuple(config.scale) != (1.0, 1.0) or config.rotation_degrees > 0 or config.elastic_sd > 0


def check_augment(config: AugmentConfig) -> None:
    """Refuse a config out of range before any image is read, naming the key and its value."""
    scale = tuple(config.scale)
    if len(scale) != 2 or not all(math.isfinite(s) for s in scale) or not 0 < scale[0] <= scale[1]:
        raise ValueError(f"augment.scale is {list(scale)}; it must be [low, high] with 0 < low <= high")
    if not 0 <= config.rotation_degrees <= 180:
        raise ValueError(f"augment.rotation_degrees is {config.rotation_degrees}; it must be in [0, 180]")
    if not (0 <= config.elastic_sd < math.inf) or config.elastic_grid < 2:
        raise ValueError(
            f"augment.elastic_sd is {config.elastic_sd} and augment.elastic_grid {config.elastic_grid};"
            " the sd must be a finite number >= 0 and the grid >= 2 points per side"
        )


def augmented(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """(N, C, H, W) images each zoomed, rotated and elastically deformed by its own draw, resampled
    bilinearly; what a zoom-out or rotation brings in from outside is the image mirrored at its edge. The
    images as they are, with nothing drawn, when `config` changes nothing."""
    if not augments(config):
        return images
    n, _, height, width = images.shape
    # In float32 whatever autocast is on: a bf16 sampling grid puts pixels a third of a pixel off at 256 px.
    with torch.autocast(images.device.type, enabled=False):
        theta = inverse_affine(n, height / width, config, generator, images.device)
        grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
        if config.elastic_sd > 0:
            grid = grid + elastic_displacement(n, (height, width), config, generator, images.device)
        out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.to(images.dtype)


def inverse_affine(
    n: int, aspect: float, config: AugmentConfig, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """(N, 2, 3) maps from output to input coordinates, in grid_sample's units (each side spans [-1, 1], so
    a rotation is scaled by the aspect H / W to stay a rotation of the pixels): a zoom by s samples the input
    at 1/s the distance from the centre."""
    low, high = config.scale
    zoom = low + (high - low) * torch.rand(n, generator=generator, device=device, dtype=torch.float32)
    turn = 2 * torch.rand(n, generator=generator, device=device, dtype=torch.float32) - 1
    angle = math.radians(config.rotation_degrees) * turn
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zero = torch.zeros_like(cos)
    return torch.stack([torch.stack([cos, -sin * aspect, zero], 1), torch.stack([sin / aspect, cos, zero], 1)], 1)


def elastic_displacement(
    n: int, size: tuple[int, int], config: AugmentConfig, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """(N, H, W, 2) smooth displacements in grid_sample's units (2 is the image side): sd `elastic_sd` of the
    side at the coarse grid's points, a little less between them."""
    grid = config.elastic_grid
    coarse = torch.randn(n, 2, grid, grid, generator=generator, device=device, dtype=torch.float32)
    fine = F.interpolate(coarse * (2 * config.elastic_sd), size=size, mode="bicubic", align_corners=True)
    return fine.permute(0, 2, 3, 1)
