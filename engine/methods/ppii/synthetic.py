"""The P-PII anomaly generator (Mueller et al., "Confidence-aware and self-supervised image anomaly
localisation", Sec. 2): probabilistic Poisson image interpolation with simulated raters."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...devices import on_device
from ...synthetic.poisson import poisson_blend
from ...synthetic.shapes import normal, parameter_generator, randint, uniform
from .config import PpiiGeneratorConfig


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
    rater draws a circle (radius and centre normal, kept inside the patch) as the anomaly mask. With
    `bright_fraction` set, that share of the patches is the image's own, brightened (or, with a negative
    amplitude, darkened) by a smooth bump, per channel in the shares `bright_tint` gives.
    """
    draws = parameter_generator(generator)
    n, channels, height, width = images.shape
    tint = bump_tint(config.bright_tint, channels, images)
    partners = images.roll(randint(draws, 1, n - 1), dims=0) if n > 1 else images
    canvas = images.clone()
    weights = torch.zeros_like(images[:, :1])
    patches: list[tuple[int, int, int, int, int]] = []  # (image, top, left, height, width) where pasted
    circles: list[tuple[float, float, float]] = []  # each patch's raters' circles, in the patch
    for i in range(n):
        for _ in range(randint(draws, config.min_anomalies, config.max_anomalies)):
            ph, pw = (
                max(4, int(round(uniform(draws, config.min_patch, config.max_patch) * side)))
                for side in (height, width)
            )
            sy, sx = randint(draws, 0, height - ph), randint(draws, 0, width - pw)
            ty, tx = randint(draws, 1, height - ph - 1), randint(draws, 1, width - pw - 1)
            if config.bright_fraction and uniform(draws, 0.0, 1.0) < config.bright_fraction:
                peak = uniform(draws, *config.bright_amplitude)
                canvas[i, :, ty : ty + ph, tx : tx + pw] += (
                    peak * tint * smooth_bump(ph, pw, images.device, images.dtype, config.bright_profile)
                )
            else:
                canvas[i, :, ty : ty + ph, tx : tx + pw] = partners[i, :, sy : sy + ph, sx : sx + pw]
            weights[i, 0, ty : ty + ph, tx : tx + pw] = uniform(draws, *config.source_weight)
            patches.append((i, ty, tx, ph, pw))
            circles.extend(rater_circle(draws, ph, pw, config) for _ in range(config.raters))
    masks = rater_masks(patches, circles, images, config.raters)
    targets = images[:, None].expand(-1, config.raters, -1, -1, -1)
    results = poisson_blend(targets, canvas[:, None], masks, weights[:, None], config.gradient_scale).clamp(0, 1)
    union = masks.amax(dim=1)
    average = results.mean(dim=1)
    # Outside every rater's mask all results equal the target; the union keeps rounding in the mean
    # from leaking into the label there.
    mean = torch.where(union.bool(), average, images)
    # The spread written out: Tensor.var over the raters' axis is several times slower on the CPU.
    variance = ((results - average[:, None]) ** 2).mean(dim=1)
    return PpiiSample(
        image=mean,
        label=(images - mean).abs().mean(dim=1, keepdim=True),
        variance=variance.mean(dim=1, keepdim=True) * union,
        masks=masks,
    )


def bump_tint(tint: tuple[float, ...] | None, channels: int, images: torch.Tensor) -> torch.Tensor:
    """(C, 1, 1): each channel's share of a bump's peak; all ones without a tint."""
    if tint is None:
        return images.new_ones(channels, 1, 1)
    check_tint(tint, channels)
    return on_device(torch.tensor(tint, dtype=images.dtype), images.device).view(channels, 1, 1)


def check_tint(tint: tuple[float, ...] | None, channels: int) -> None:
    if tint is not None and len(tint) != channels:
        raise ValueError(f"generator.bright_tint has {len(tint)} entries for images of {channels} channels")


def smooth_bump(
    height: int, width: int, device: torch.device, dtype: torch.dtype, profile: tuple[float, float] = (0.0, 1.0)
) -> torch.Tensor:
    """(H, W): 1 out to `profile[0]` of the half-side, then falling smoothly (a raised cosine) to 0 at
    `profile[1]`; soft-bordered, as a FLAIR hyperintensity fades into the tissue around it. (0, 1) is the bump
    peaked at the centre that reaches 0 at the patch's edges."""
    check_profile(profile)
    flat, edge = profile
    rows = torch.linspace(-1.0, 1.0, height, device=device)
    columns = torch.linspace(-1.0, 1.0, width, device=device)
    radius = (rows[:, None] ** 2 + columns[None, :] ** 2).sqrt()
    fall = ((radius - flat) / (edge - flat)).clamp(0.0, 1.0)
    return ((1.0 + torch.cos(math.pi * fall)) / 2.0).to(dtype)


def check_profile(profile: tuple[float, float]) -> None:
    flat, edge = profile
    if not 0.0 <= flat < edge <= 1.0:
        raise ValueError(
            f"generator.bright_profile is {list(profile)}; its radii must rise from at least 0 to at most 1 "
            "(shares of the patch's half-side)"
        )


def rater_circle(draws: torch.Generator, ph: int, pw: int, config: PpiiGeneratorConfig) -> tuple[float, float, float]:
    """One rater's circle inside a (ph, pw) patch, as (centre row, centre column, radius²): radius ~ N(mu,
    sigma) and centre ~ N(patch centre, sigma), both clipped so the circle at most touches the patch's edges.
    `draws` is a `parameter_generator`."""
    side = min(ph, pw)
    radius = min(max(1.0, normal(draws, config.radius_mean * side, config.radius_std * side)), (side - 1) / 2)
    cy = min(max(normal(draws, (ph - 1) / 2, config.centre_std * side), radius), ph - 1 - radius)
    cx = min(max(normal(draws, (pw - 1) / 2, config.centre_std * side), radius), pw - 1 - radius)
    return cy, cx, radius**2


def rater_masks(
    patches: list[tuple[int, int, int, int, int]],
    circles: list[tuple[float, float, float]],
    images: torch.Tensor,
    raters: int,
) -> torch.Tensor:
    """(N, R, 1, H, W): each rater's mask, the union of their circles over the image's patches, drawn for
    every patch at once (a few kernels a batch, not a few per circle)."""
    n, _, height, width = images.shape
    if not patches:
        return images.new_zeros(n, raters, 1, height, width)
    device = images.device
    where = on_device(torch.tensor(patches), device)  # (P, 5)
    circle = on_device(torch.tensor(circles, dtype=torch.float32), device).view(len(patches), raters, 3, 1)
    # Coordinates in each patch, whole numbers, so exact in float32 (the circles are drawn in the patch);
    # outside the patch the squared distance is infinite, so no circle reaches there.
    rows = torch.arange(height, device=device, dtype=torch.float32) - where[:, 1:2]  # (P, H)
    columns = torch.arange(width, device=device, dtype=torch.float32) - where[:, 2:3]  # (P, W)
    dy2 = (rows[:, None] - circle[:, :, 0]) ** 2  # (P, R, H)
    dx2 = (columns[:, None] - circle[:, :, 1]) ** 2  # (P, R, W)
    dy2 = dy2.masked_fill(((rows < 0) | (rows >= where[:, 3:4]))[:, None], math.inf)
    dx2 = dx2.masked_fill(((columns < 0) | (columns >= where[:, 4:5]))[:, None], math.inf)
    inside = dy2[..., :, None] + dx2[..., None, :] <= circle[:, :, 2, :, None]  # (P, R, H, W)
    per_image = [0] * n
    for patch in patches:
        per_image[patch[0]] += 1
    masks = [
        circles_of_one.any(dim=0) if len(circles_of_one) else inside.new_zeros(raters, height, width)
        for circles_of_one in inside.split(per_image)
    ]
    return torch.stack(masks).to(images.dtype)[:, :, None]
