"""The five self-supervised anomaly tasks of Baugh et al. (used to train the image-conditioned diffusion
model): two Poisson blends, two deformations and a smooth intensity change.

Every task maps healthy images (N, C, H, W) in [0, 1] to (corrupted images, pixel labels (N, 1, H, W) in
{0, 1}), draws everything from the given torch.Generator, and runs on the images' device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..config import SyntheticTaskConfig
from ..filters import gaussian_blur
from .poisson import poisson_blend
from .shapes import randint, random_ellipse, uniform, wobbly_mask

Task = Callable[[torch.Tensor, torch.Generator, SyntheticTaskConfig], tuple[torch.Tensor, torch.Tensor]]


def intra_dataset_blend(
    images: torch.Tensor,
    generator: torch.Generator,
    config: SyntheticTaskConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Poisson-blend regions of another image of the same batch (the same dataset) into each image."""
    n = images.shape[0]
    shift = randint(generator, 1, n - 1) if n > 1 else 0
    return _blend(images, images.roll(shift, dims=0), generator, config)


def make_foreign_blend(foreign: torch.Tensor) -> Task:
    """The task blending regions of images from another source (`foreign`, (M, C', H', W') in [0, 1])."""

    def foreign_blend(images: torch.Tensor, generator: torch.Generator, config: SyntheticTaskConfig):
        picks = torch.randint(0, len(foreign), (images.shape[0],), generator=generator, device=generator.device)
        sources = _fit(foreign[picks.to(foreign.device)].to(images.device, images.dtype), images.shape[1:])
        return _blend(images, sources, generator, config)

    return foreign_blend


def sink_deformation(images: torch.Tensor, generator: torch.Generator, config: SyntheticTaskConfig):
    """Content inside an elliptical region is pulled towards its centre (a shrinking, sink-like warp)."""
    return _deform(images, generator, config, sink=True)


def source_deformation(images: torch.Tensor, generator: torch.Generator, config: SyntheticTaskConfig):
    """Content inside an elliptical region is pushed out from its centre (a bulge)."""
    return _deform(images, generator, config, sink=False)


def smooth_intensity_change(images: torch.Tensor, generator: torch.Generator, config: SyntheticTaskConfig):
    """A smoothly fading brightness offset over an organic region."""
    out, labels = images.clone(), torch.zeros_like(images[:, :1])
    n, _, height, width = images.shape
    for i in range(n):
        for _ in range(randint(generator, config.min_anomalies, config.max_anomalies)):
            ellipse = random_ellipse(generator, height, width, config.min_size, config.max_size)
            mask = wobbly_mask(generator, ellipse, height, width, config.shape_distortion, images.device)
            # Soft edges: the mask blurred by a quarter of its smaller semi-axis.
            sigma = max(0.5, min(ellipse.a, ellipse.b) / 4)
            falloff = gaussian_blur(mask[None].float(), sigma)[0] * mask
            sign = 1.0 if uniform(generator, 0.0, 1.0) < 0.5 else -1.0
            out[i] = out[i] + sign * uniform(generator, *config.intensity_change) * falloff
            labels[i, 0] = torch.maximum(labels[i, 0], mask.to(labels.dtype))
    return out.clamp(0, 1), labels


def _blend(images: torch.Tensor, sources: torch.Tensor, generator: torch.Generator, config: SyntheticTaskConfig):
    """Each image gets 1..max regions of its source (taken at a random offset) blended in with mixed
    gradients; all regions of one image are solved in one Poisson solve."""
    n, _, height, width = images.shape
    canvas, masks = images.clone(), torch.zeros_like(images[:, :1])
    weights = torch.ones_like(images[:, :1])
    for i in range(n):
        for _ in range(randint(generator, config.min_anomalies, config.max_anomalies)):
            ellipse = random_ellipse(generator, height, width, config.min_size, config.max_size)
            mask = wobbly_mask(generator, ellipse, height, width, config.shape_distortion, images.device)
            dy, dx = randint(generator, -height // 4, height // 4), randint(generator, -width // 4, width // 4)
            shifted = sources[i].roll((dy, dx), dims=(-2, -1))
            canvas[i] = torch.where(mask, shifted, canvas[i])
            weights[i, 0] = torch.where(mask, uniform(generator, *config.blend_weight), weights[i, 0])
            masks[i, 0] = torch.maximum(masks[i, 0], mask.to(masks.dtype))
    blended = poisson_blend(images, canvas, masks, weights)
    return blended.clamp(0, 1), masks


def _deform(images: torch.Tensor, generator: torch.Generator, config: SyntheticTaskConfig, sink: bool):
    """Resample each image through a radial warp inside ellipses; the warp is the identity on each
    ellipse's outline, so the image stays continuous."""
    n, _, height, width = images.shape
    ys = torch.linspace(-1, 1, height, device=images.device)
    xs = torch.linspace(-1, 1, width, device=images.device)
    base = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)  # (H, W, 2) as (x, y) for grid_sample
    grids, labels = base.expand(n, height, width, 2).clone(), torch.zeros_like(images[:, :1])
    for i in range(n):
        for _ in range(randint(generator, config.min_anomalies, config.max_anomalies)):
            ellipse = random_ellipse(generator, height, width, config.min_size, config.max_size)
            radius = ellipse.normalised_radius(height, width, images.device)
            inside = radius < 1
            strength = uniform(generator, *config.deformation_strength)
            # Sampling from farther out (factor > 1) shrinks content towards the centre (sink);
            # from nearer the centre (factor < 1) magnifies it (source).
            factor = 1 + strength * (1 - radius) if sink else radius.clamp(min=1e-3) ** strength
            centre = torch.tensor(
                [2 * ellipse.cx / (width - 1) - 1, 2 * ellipse.cy / (height - 1) - 1], device=images.device
            )
            warped = centre + (grids[i] - centre) * factor[..., None]
            grids[i] = torch.where(inside[..., None], warped, grids[i])
            labels[i, 0] = torch.maximum(labels[i, 0], inside.to(labels.dtype))
    out = F.grid_sample(images, grids, mode="bilinear", padding_mode="border", align_corners=True)
    return out, labels


def _fit(images: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Foreign images to (C, H, W): channels repeated or averaged, then resized."""
    channels, height, width = shape
    if images.shape[1] != channels:
        images = images.mean(1, keepdim=True).expand(-1, channels, -1, -1)
    return F.interpolate(images, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


TASK_NAMES = (
    "intra_dataset_blend",
    "foreign_blend",
    "sink_deformation",
    "source_deformation",
    "smooth_intensity_change",
)


def make_tasks(foreign: torch.Tensor) -> dict[str, Task]:
    """The five tasks by name; `foreign` is the pool of images for the foreign-source blend."""
    return {
        "intra_dataset_blend": intra_dataset_blend,
        "foreign_blend": make_foreign_blend(foreign),
        "sink_deformation": sink_deformation,
        "source_deformation": source_deformation,
        "smooth_intensity_change": smooth_intensity_change,
    }
