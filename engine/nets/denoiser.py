"""The epsilon-prediction U-Net shared by SANO, SPR and DIA's dissolving transform."""

from __future__ import annotations

from typing import cast

import torch
from diffusers import UNet2DModel

from ..config import DenoiserNetConfig


def build_denoiser(
    config: DenoiserNetConfig, channels: int, sample_size: int, in_channels: int | None = None
) -> torch.nn.Module:
    """A diffusers UNet2DModel with block types chosen explicitly (attention only where asked)."""
    if len(config.attention_levels) != len(config.block_out_channels):
        raise ValueError("attention_levels needs one entry per block_out_channels level")
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in config.attention_levels)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention_levels))
    # A torch.nn.Module, which diffusers' class hierarchy does not show a type checker.
    unet = UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels or channels,
        out_channels=channels,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=config.norm_num_groups,
        dropout=config.dropout,
    )
    return cast(torch.nn.Module, unet)


def unet_stride(config: DenoiserNetConfig) -> int:
    """Inputs must be a multiple of this many pixels on each side."""
    return 2 ** (len(config.block_out_channels) - 1)
