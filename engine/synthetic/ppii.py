"""The P-PII anomaly generator (Mueller et al., "Confidence-aware and self-supervised image anomaly
localisation", Sec. 2): probabilistic Poisson image interpolation with simulated raters."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import PpiiGeneratorConfig
from .poisson import poisson_blend
from .shapes import disk, normal, randint, uniform


@dataclass
class PpiiSample:
    image: torch.Tensor  # (N, C, H, W): the mean of the raters' interpolations (the training input)
    label: torch.Tensor  # (N, 1, H, W): |target - mean result|, averaged over channels
    variance: torch.Tensor  # (N, 1, H, W): variance over the raters' results, averaged over channels
    masks: torch.Tensor  # (N, R, 1, H, W): each rater's anomaly mask


def ppii_anomalies(images: torch.Tensor, generator: torch.Generator, config: PpiiGeneratorConfig) -> PpiiSample:
    """Interpolate 1..10 patches of a partner image (drawn from the batch) into each image.

    Each patch is taken at one place of the source and pasted at another place of the target with
    up-scaled mixed gradients and an interpolation factor alpha; inside each patch every simulated
    rater draws a circle (radius and centre normal, kept inside the patch) as the anomaly mask.
    """
    n, _, height, width = images.shape
    partners = images.roll(randint(generator, 1, n - 1), dims=0) if n > 1 else images
    canvas = images.clone()
    weights = torch.zeros_like(images[:, :1])
    masks = torch.zeros(n, config.raters, 1, height, width, dtype=images.dtype, device=images.device)
    for i in range(n):
        for _ in range(randint(generator, config.min_anomalies, config.max_anomalies)):
            ph, pw = (
                max(4, int(round(uniform(generator, config.min_patch, config.max_patch) * side)))
                for side in (height, width)
            )
            sy, sx = randint(generator, 0, height - ph), randint(generator, 0, width - pw)
            ty, tx = randint(generator, 1, height - ph - 1), randint(generator, 1, width - pw - 1)
            canvas[i, :, ty : ty + ph, tx : tx + pw] = partners[i, :, sy : sy + ph, sx : sx + pw]
            weights[i, 0, ty : ty + ph, tx : tx + pw] = uniform(generator, *config.source_weight)
            for rater in range(config.raters):
                masks[i, rater, 0, ty : ty + ph, tx : tx + pw] = torch.maximum(
                    masks[i, rater, 0, ty : ty + ph, tx : tx + pw],
                    rater_circle(generator, ph, pw, config, images.device),
                )
    targets = images[:, None].expand(-1, config.raters, -1, -1, -1)
    results = poisson_blend(targets, canvas[:, None], masks, weights[:, None], config.gradient_scale).clamp(0, 1)
    # Outside every rater's mask all results equal the target; the union keeps rounding in the mean
    # from leaking into the label there.
    mean = torch.where(masks.amax(dim=1).bool(), results.mean(dim=1), images)
    return PpiiSample(
        image=mean,
        label=(images - mean).abs().mean(dim=1, keepdim=True),
        variance=results.var(dim=1, unbiased=False).mean(dim=1, keepdim=True) * masks.amax(dim=1),
        masks=masks,
    )


def rater_circle(
    generator: torch.Generator, ph: int, pw: int, config: PpiiGeneratorConfig, device: torch.device
) -> torch.Tensor:
    """One rater's circular mask inside a (ph, pw) patch: radius ~ N(mu, sigma) and centre ~ N(patch
    centre, sigma), both clipped so the circle at most touches the patch's edges."""
    side = min(ph, pw)
    radius = min(max(1.0, normal(generator, config.radius_mean * side, config.radius_std * side)), (side - 1) / 2)
    cy = min(max(normal(generator, (ph - 1) / 2, config.centre_std * side), radius), ph - 1 - radius)
    cx = min(max(normal(generator, (pw - 1) / 2, config.centre_std * side), radius), pw - 1 - radius)
    return disk(ph, pw, cy, cx, radius, device).float()
