"""Networks (nn.Modules built from typed configs). No training or sampling logic here."""

from .denoiser import build_denoiser
from .segmentation import build_segmentation_unet, enable_dropout, segmentation_stride

__all__ = ["build_denoiser", "build_segmentation_unet", "enable_dropout", "segmentation_stride"]
