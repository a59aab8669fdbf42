"""Spatial smoothing of anomaly maps (torch, batched, on whatever device the maps are on)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, H, W) maps smoothed by a separable Gaussian (truncated at 4 sigma, reflect borders)."""
    if sigma <= 0:
        return maps
    radius = max(1, int(math.ceil(4.0 * sigma)))
    coords = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    kernel = torch.exp(-0.5 * (coords / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = maps[:, None]
    x = F.conv2d(_pad(x, 0, radius), kernel.view(1, 1, 1, -1))
    x = F.conv2d(_pad(x, radius, 0), kernel.view(1, 1, -1, 1))
    return x[:, 0]


def box_filter(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W) maps averaged over size x size windows (size odd; reflect borders)."""
    if size <= 1:
        return maps
    radius = size // 2
    x = _pad(_pad(maps[:, None], 0, radius), radius, 0)
    return F.avg_pool2d(x, kernel_size=2 * radius + 1, stride=1)[:, 0]


def scaled_odd(size_at_256: float, resolution: int) -> int:
    """A filter size given at 256 px, scaled to `resolution` and kept odd."""
    return max(1, int(round(size_at_256 * resolution / 256.0)) | 1)


def _pad(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    if rows == 0 and cols == 0:
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if rows < h and cols < w else "replicate"
    return F.pad(x, (cols, cols, rows, rows), mode=mode)


def ssim_map(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.5, data_range: float = 1.0) -> torch.Tensor:
    """(N, H, W) structural similarity of (N, C, H, W) images (Wang et al. 2004: Gaussian-weighted local
    statistics, K1 = 0.01, K2 = 0.03), averaged over channels."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    n, c = x.shape[:2]

    def local_mean(z: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(z.reshape(n * c, *z.shape[-2:]), sigma)

    mx, my = local_mean(x), local_mean(y)
    vx, vy = local_mean(x * x) - mx**2, local_mean(y * y) - my**2
    cov = local_mean(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return ssim.reshape(n, c, *x.shape[-2:]).mean(dim=1)
