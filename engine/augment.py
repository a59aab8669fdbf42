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
    low, high = config.scale
    if not (0 < low <= high):
        raise ValueError(f"augment.scale is {list(config.scale)}; it must be [low, high] with 0 < low <= high")
    if not (0 <= config.rotation_degrees <= 180):
        raise ValueError(f"augment.rotation_degrees is {config.rotation_degrees}; it must be in [0, 180]")
    if config.elastic_sd < 0 or config.elastic_grid < 2:
        raise ValueError(
            f"augment.elastic_sd is {config.elastic_sd} and augment.elastic_grid {config.elastic_grid};"
            " the sd must be >= 0 and the grid >= 2 points per side"
        )


def augmented(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """(N, C, H, W) images each zoomed, rotated and elastically deformed by its own draw, resampled
    bilinearly; what a zoom-out or rotation brings in from outside is the image mirrored at its edge. The
    images as they are, with nothing drawn, when `config` changes nothing."""
    if not augments(config):
        return images
    n, _, height, width = images.shape
    grid = F.affine_grid(inverse_affine(n, config, generator, images.device), [n, 1, height, width], False)
    if config.elastic_sd > 0:
        grid = grid + elastic_displacement(n, (height, width), config, generator, images.device)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.to(images.dtype)


def inverse_affine(n: int, config: AugmentConfig, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(N, 2, 3) maps from output to input coordinates: a zoom by s samples the input at 1/s the distance
    from the centre."""
    low, high = config.scale
    zoom = low + (high - low) * torch.rand(n, generator=generator, device=device)
    angle = math.radians(config.rotation_degrees) * (2 * torch.rand(n, generator=generator, device=device) - 1)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zero = torch.zeros_like(cos)
    return torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)


def elastic_displacement(
    n: int, size: tuple[int, int], config: AugmentConfig, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """(N, H, W, 2) smooth displacements in grid_sample's [-1, 1] units (2 is the image side)."""
    coarse = torch.randn(n, 2, config.elastic_grid, config.elastic_grid, generator=generator, device=device)
    fine = F.interpolate(coarse * (2 * config.elastic_sd), size=size, mode="bicubic", align_corners=True)
    return fine.permute(0, 2, 3, 1)
