"""Per-pixel prediction networks (MONAI), built from typed configs."""

from __future__ import annotations

import torch
from monai.networks.nets import BasicUNet

from .config import SegmentationNetConfig


def build_segmentation_unet(config: SegmentationNetConfig, in_channels: int, out_channels: int = 1) -> BasicUNet:
    """MONAI's BasicUNet: five levels (four 2x down-samplings), a 1x1 output convolution, and dropout
    after every convolution (0.1 makes it the MC-dropout U-Net of P-PII)."""
    return BasicUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=out_channels,
        features=tuple(config.features),
        norm=("batch", {"affine": True}),
        dropout=config.dropout,
    )


def segmentation_stride(config: SegmentationNetConfig) -> int:
    """Input sides must be multiples of this (BasicUNet always down-samples four times)."""
    return 16


def enable_dropout(model: torch.nn.Module) -> None:
    """Keep dropout sampling at inference (Monte-Carlo dropout) while normalisation stays in eval mode."""
    for module in model.modules():
        if isinstance(module, (torch.nn.Dropout, torch.nn.Dropout2d)):
            module.train()
