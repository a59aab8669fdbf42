"""The five self-supervised anomaly tasks of Baugh et al. (used to train the image-conditioned diffusion
model): two Poisson blends, two deformations and a smooth intensity change.

Every task maps healthy images (N, C, H, W) in [0, 1] to (corrupted images, pixel labels (N, 1, H, W) in
{0, 1}), draws everything from the given torch.Generator, and runs on the images' device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ...devices import on_device
from ...filters import gaussian_blur
from ...synthetic.poisson import poisson_blend
from ...synthetic.shapes import parameter_generator, randint, random_ellipse, uniform, wobbly_mask
from .config import SyntheticTaskConfig

Task = Callable[[torch.Tensor, torch.Generator, SyntheticTaskConfig], tuple[torch.Tensor, torch.Tensor]]


def intra_dataset_blend(
    images: torch.Tensor,
    generator: torch.Generator,
    config: SyntheticTaskConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Poisson-blend regions of another image of the same batch (the same dataset) into each image."""
    draws = parameter_generator(generator)
    n = images.shape[0]
    shift = randint(draws, 1, n - 1) if n > 1 else 0
    return _blend(images, images.roll(shift, dims=0), draws, config)


def make_foreign_blend(foreign: torch.Tensor) -> Task:
    """The task blending regions of images from another source (`foreign`, (M, C', H', W') in [0, 1])."""
    pools: dict[torch.device, torch.Tensor] = {}  # the pool copied once to each device it is used on

    def foreign_blend(images: torch.Tensor, generator: torch.Generator, config: SyntheticTaskConfig):
        draws = parameter_generator(generator)
        picks = torch.randint(0, len(foreign), (images.shape[0],), generator=draws)
        if images.device not in pools:
            pools[images.device] = foreign.to(images.device)
        sources = _fit(pools[images.device][on_device(picks, images.device)].to(images.dtype), images.shape[1:])
        return _blend(images, sources, draws, config)

    return foreign_blend


def sink_deformation(images: torch.Tensor, generator: torch.Generator, config: SyntheticTaskConfig):
    """Content inside an elliptical region is pulled towards its centre (a shrinking, sink-like warp)."""
    return _deform(images, generator, config, sink=True)


def source_deformation(images: torch.Tensor, generator: torch.Generator, config: SyntheticTaskConfig):
    """Content inside an elliptical region is pushed out from its centre (a bulge)."""
    return _deform(images, generator, config, sink=False)


def smooth_intensity_change(images: torch.Tensor, generator: torch.Generator, config: SyntheticTaskConfig):
    """A smoothly fading brightness offset over an organic region."""
    draws = parameter_generator(generator)
    out, labels = images.clone(), torch.zeros_like(images[:, :1])
    n, _, height, width = images.shape
    for i in range(n):
        for _ in range(randint(draws, config.min_anomalies, config.max_anomalies)):
            ellipse = random_ellipse(draws, height, width, config.min_size, config.max_size)
            mask = wobbly_mask(draws, ellipse, height, width, config.shape_distortion, images.device)
            # Soft edges: the mask blurred by a quarter of its smaller semi-axis.
            sigma = max(0.5, min(ellipse.a, ellipse.b) / 4)
            falloff = gaussian_blur(mask[None].float(), sigma)[0] * mask
            sign = 1.0 if uniform(draws, 0.0, 1.0) < 0.5 else -1.0
            out[i] = out[i] + sign * uniform(draws, *config.intensity_change) * falloff
            labels[i, 0] = torch.maximum(labels[i, 0], mask.to(labels.dtype))
    return out.clamp(0, 1), labels


def _blend(images: torch.Tensor, sources: torch.Tensor, draws: torch.Generator, config: SyntheticTaskConfig):
    """Each image gets 1..max regions of its source (taken at a random offset) blended in with mixed
    gradients; all regions of one image are solved in one Poisson solve. `draws` is a `parameter_generator`."""
    n, _, height, width = images.shape
    canvas, masks = images.clone(), torch.zeros_like(images[:, :1])
    weights = torch.ones_like(images[:, :1])
    for i in range(n):
        for _ in range(randint(draws, config.min_anomalies, config.max_anomalies)):
            ellipse = random_ellipse(draws, height, width, config.min_size, config.max_size)
            mask = wobbly_mask(draws, ellipse, height, width, config.shape_distortion, images.device)
            dy, dx = randint(draws, -height // 4, height // 4), randint(draws, -width // 4, width // 4)
            shifted = sources[i].roll((dy, dx), dims=(-2, -1))
            canvas[i] = torch.where(mask, shifted, canvas[i])
            weights[i, 0] = torch.where(mask, uniform(draws, *config.blend_weight), weights[i, 0])
            masks[i, 0] = torch.maximum(masks[i, 0], mask.to(masks.dtype))
    blended = poisson_blend(images, canvas, masks, weights)
    return blended.clamp(0, 1), masks


def _deform(images: torch.Tensor, generator: torch.Generator, config: SyntheticTaskConfig, sink: bool):
    """Resample each image through a radial warp inside ellipses; the warp is the identity on each
    ellipse's outline, so the image stays continuous."""
    draws = parameter_generator(generator)
    n, _, height, width = images.shape
    ys = torch.linspace(-1, 1, height, device=images.device)
    xs = torch.linspace(-1, 1, width, device=images.device)
    base = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)  # (H, W, 2) as (x, y) for grid_sample
    grids, labels = base.expand(n, height, width, 2).clone(), torch.zeros_like(images[:, :1])
    for i in range(n):
        for _ in range(randint(draws, config.min_anomalies, config.max_anomalies)):
            ellipse = random_ellipse(draws, height, width, config.min_size, config.max_size)
            radius = ellipse.normalised_radius(height, width, images.device)
            inside = radius < 1
            strength = uniform(draws, *config.deformation_strength)
            # Sampling from farther out (factor > 1) shrinks content towards the centre (sink);
            # from nearer the centre (factor < 1) magnifies it (source).
            factor = 1 + strength * (1 - radius) if sink else radius.clamp(min=1e-3) ** strength
            centre_x, centre_y = 2 * ellipse.cx / (width - 1) - 1, 2 * ellipse.cy / (height - 1) - 1
            # Filled on the device: a tensor copied from the host would wait for the GPU.
            centre = torch.stack([grids.new_full((), centre_x), grids.new_full((), centre_y)])
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
