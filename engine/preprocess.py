"""Method preprocessing: Case pixels to model input and model maps back to the original pixel grid."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import PreprocessConfig
from .io.limits import ReadLimits


class InputMismatchError(ValueError):
    """An image the bundle cannot score as it is (wrong channel count or size); says which and why."""

    def __init__(self, source: str, reason: str):
        self.source, self.reason = source, reason
        super().__init__(f"{source}: {reason}")


@dataclass
class Geometry:
    """How a slice was fitted to the network, so its map can be put back."""

    original_hw: tuple[int, int]
    model_hw: tuple[int, int]
    padding: tuple[int, int]  # rows, columns added at the bottom/right ("native" mode)
    resized: bool
    scaled_hw: tuple[int, int] | None = None  # "native" mode at the training scale: the size before padding


def window_to_unit(pixels: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Modality units to [0, 1] through the display window (what the reader sees is what is scored)."""
    centre, width = window
    return np.clip((pixels - (centre - width / 2.0)) / max(width, 1e-6), 0.0, 1.0).astype(np.float32)


def grey_as_rgb(pixels: np.ndarray) -> bool:
    """Whether (..., C, H, W) pixels are a greyscale image stored as RGB: three equal channels."""
    return pixels.shape[-3] == 3 and bool((pixels == pixels[..., :1, :, :]).all())


def to_model_input(
    pixels: np.ndarray,
    window: tuple[float, float],
    config: PreprocessConfig,
    stride: int,
    source: str = "image",
    spacing: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, Geometry]:
    """(C, H, W) in modality units to a (C, h, w) tensor in [-1, 1] and its Geometry. `spacing` is the
    input's (row, column) pixel size in mm, where known (a DICOM's; not finite and positive: unknown)."""
    channels, height, width = pixels.shape
    if config.channels == 1 and grey_as_rgb(pixels):
        pixels, channels = pixels[:1], 1  # a greyscale image stored as RGB
    if config.channels and channels != config.channels:
        raise InputMismatchError(
            source,
            f"has {channels} channel(s) but this model was trained on {config.channels}-channel images"
            f" ({'RGB' if config.channels == 3 else 'greyscale'}); choose a bundle trained on matching images",
        )
    if min(height, width) < config.min_side:
        raise InputMismatchError(source, f"is {width}x{height} px, smaller than the {config.min_side} px minimum")
    x = torch.from_numpy(window_to_unit(pixels, window)) * 2.0 - 1.0
    if config.mode == "resize":
        x = F.interpolate(
            x[None], size=(config.image_size, config.image_size), mode="bilinear", antialias=True, align_corners=False
        )[0]
        return x, Geometry((height, width), (config.image_size, config.image_size), (0, 0), True)
    if config.mode != "native":
        raise ValueError(f"unknown preprocessing mode {config.mode!r}")
    if config.pixel_spacing_mm and spacing and all(math.isfinite(s) and s > 0 for s in spacing):
        return _at_training_scale(x, _at_pixel_size(height, width, spacing, config, source), stride)
    if config.scale_side:
        factor = config.scale_side / max(height, width)
        return _at_training_scale(x, (max(1, round(height * factor)), max(1, round(width * factor))), stride)
    if max(height, width) > config.max_side:
        raise InputMismatchError(
            source,
            f"is {width}x{height} px; this bundle scores at native pixel scale up to {config.max_side} px a side"
            " (it was trained on crops at the source resolution): crop or downsample the image first",
        )
    x, (pad_h, pad_w) = padded_to_stride(x[None], stride)
    return x[0], Geometry((height, width), (height + pad_h, width + pad_w), (pad_h, pad_w), False)


def _at_pixel_size(
    height: int, width: int, spacing: tuple[float, float], config: PreprocessConfig, source: str
) -> tuple[int, int]:
    """The size of an image of `spacing` mm pixels resampled to the bundle's pixel size, each axis on its own
    (so non-square pixels come out square); refused where that would pass the reader's voxel limit."""
    target = config.pixel_spacing_mm
    if target is None or not target > 0:
        raise ValueError(f"the bundle's preprocess.pixel_spacing_mm is {target!r}; it must be a positive size in mm")
    rows, columns = (max(1, round(n * s / target)) for n, s in zip((height, width), spacing, strict=True))
    limit = ReadLimits.from_env().max_voxels
    if rows * columns * max(config.channels, 1) > limit:
        raise InputMismatchError(
            source,
            f"has {spacing[0]:g} x {spacing[1]:g} mm pixels; at this bundle's {target:g} mm it would be "
            f"{columns}x{rows} px, over the limit of {limit:,} voxels (ANOMASCOPE_MAX_VOXELS)",
        )
    return rows, columns


def _at_training_scale(x: torch.Tensor, scaled: tuple[int, int], stride: int) -> tuple[torch.Tensor, Geometry]:
    """(C, H, W) resampled to `scaled` (antialiased when shrinking), then padded to the stride."""
    height, width = x.shape[-2:]
    if scaled != (height, width):
        shrinking = scaled[0] < height or scaled[1] < width
        x = F.interpolate(x[None], size=scaled, mode="bilinear", antialias=shrinking, align_corners=False)[0]
    x, (pad_h, pad_w) = padded_to_stride(x[None], stride)
    model_hw = (scaled[0] + pad_h, scaled[1] + pad_w)
    return x[0], Geometry((height, width), model_hw, (pad_h, pad_w), scaled != (height, width), scaled)


def padded_to_stride(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(N, C, H, W) padded at the bottom and right to multiples of `stride` (reflected, or repeated where the
    image is too small to reflect), and the padding added (rows, columns)."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % stride, (-width) % stride
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (pad_h, pad_w)


def to_original_grid(maps: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(..., h, w) model-grid maps back to (..., H, W) on the original pixel grid."""
    height, width = geometry.original_hw
    if geometry.scaled_hw is not None:
        maps = maps[..., : geometry.scaled_hw[0], : geometry.scaled_hw[1]]  # the padding is not the image's
    if not geometry.resized:
        return np.ascontiguousarray(maps[..., :height, :width])
    lead = maps.shape[:-2]
    flat = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)).reshape(-1, 1, *maps.shape[-2:])
    back = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)
    return back.reshape(*lead, height, width).numpy()


def from_model_range(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] model images to [0, 1] numpy."""
    return ((x.float().clamp(-1, 1) + 1.0) / 2.0).cpu().numpy()


def foreground(unit: np.ndarray, above: float) -> np.ndarray:
    """(..., C, H, W) images in [0, 1] to (..., H, W) masks of the pixels brighter than `above` in any channel."""
    return np.any(np.asarray(unit) > above, axis=-3, keepdims=False).astype(bool)


def foreground_mask(x: torch.Tensor, above: float) -> torch.Tensor:
    """(N, 1, H, W) bool: pixels of (N, C, H, W) images in [0, 1] above `above` in any channel, as `foreground`
    computes it, on the images' device."""
    return (x.clamp(0, 1) > above).any(dim=1, keepdim=True)


def equalize_histogram(x: torch.Tensor, bins: int = 256, foreground_above: float | None = None) -> torch.Tensor:
    """Per image and channel histogram equalisation of (N, C, H, W) images in [0, 1] (values mapped
    through their own cumulative histogram, as skimage.exposure.equalize_hist), batched on any device.

    With `foreground_above`, only foreground pixels make the histogram and background stays 0: a head
    fills half of an MRI slice, and counting the air would lift it to mid-grey and stretch its noise.
    """
    n, c = x.shape[:2]
    flat = x.reshape(n * c, -1).clamp(0, 1)
    index = (flat * (bins - 1)).round().long()
    weights = torch.ones_like(flat)
    if foreground_above is not None:
        body = foreground_mask(x, foreground_above)
        weights = body.expand(-1, c, -1, -1).reshape(n * c, -1).to(flat.dtype)
    counts = torch.zeros(n * c, bins, device=x.device, dtype=flat.dtype).scatter_add_(1, index, weights)
    cdf = counts.cumsum(dim=1)
    cdf = cdf / cdf[:, -1:].clamp(min=1.0)
    return (cdf.gather(1, index) * weights if foreground_above is not None else cdf.gather(1, index)).reshape(x.shape)


def standardize_foreground(x: torch.Tensor, foreground_above: float | None = None, spread: float = 3.0) -> torch.Tensor:
    """Per image and channel z-score of (N, C, H, W) images in [0, 1] over their foreground (every pixel
    without `foreground_above`), with z in [-spread, spread] mapped to [0, 1] and the background at 0.

    Unlike equalisation it keeps how much brighter than the tissue a region is, the sign of a FLAIR
    hyperintensity; unlike the raw intensities it does not depend on a scan's overall gain.
    """
    x = x.clamp(0, 1)
    body = torch.ones_like(x[:, :1])
    if foreground_above is not None:
        body = foreground_mask(x, foreground_above).to(x.dtype)
    count = body.sum(dim=(2, 3), keepdim=True).clamp(min=1.0)
    mean = (x * body).sum(dim=(2, 3), keepdim=True) / count
    std = (((x - mean) ** 2 * body).sum(dim=(2, 3), keepdim=True) / count).sqrt().clamp(min=1e-6)
    return ((0.5 + (x - mean) / (2 * spread * std)).clamp(0, 1) * body).to(x.dtype)


# How a method's network sees intensities: histogram-equalised, as windowed, or z-scored over the foreground.
INTENSITIES = ("equalise", "unit", "standardise")


def network_intensity(unit: torch.Tensor, intensity: str, foreground_above: float | None) -> torch.Tensor:
    """(N, C, H, W) images in [0, 1] to a network's input in [0, 1], by the config's `intensity`: "equalise"
    (histogram equalisation), "unit" (as windowed) or "standardise" (z-score), over the foreground where
    `foreground_above` defines one."""
    if intensity == "equalise":
        return equalize_histogram(unit, foreground_above=foreground_above)
    if intensity == "standardise":
        return standardize_foreground(unit, foreground_above)
    check_intensity(intensity, "intensity")
    return unit.clamp(0, 1)


def check_intensity(intensity: str, key: str) -> None:
    """Raise, naming the config `key`, when `intensity` is not one of INTENSITIES."""
    if intensity not in INTENSITIES:
        raise ValueError(f"unknown {key} {intensity!r}; use one of {', '.join(INTENSITIES)}")
