"""Per-pixel prediction networks (MONAI), built from typed configs."""

from __future__ import annotations

from itertools import pairwise

import torch
from monai.networks.nets import BasicUNet
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat

from .config import SegmentationNetConfig

# BasicUNet's layers, as every P-PII bundle so far was built: leaky ReLU, batch norm, convolutions with bias.
ACT = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})
NORM = ("batch", {"affine": True})
BASIC_UNET_LEVELS = 5


def levels(config: SegmentationNetConfig) -> int:
    """The encoder's levels: one per width but the last (the up-path's final width)."""
    if len(config.features) < 3:
        raise ValueError(f"net.features needs at least two encoder widths and the last width, not {config.features}")
    return len(config.features) - 1


def build_segmentation_unet(config: SegmentationNetConfig, in_channels: int, out_channels: int = 1) -> torch.nn.Module:
    """A U-Net with dropout after every convolution (0.1 makes it the MC-dropout U-Net of P-PII): MONAI's
    BasicUNet for five levels (four 2x down-samplings, the paper's depth), and the same blocks one level
    deeper or shallower for other lengths of `features`, so that a larger input keeps the receptive field's
    share of the image."""
    if levels(config) == BASIC_UNET_LEVELS:
        return BasicUNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=out_channels,
            features=tuple(config.features),
            norm=NORM,
            dropout=config.dropout,
        )
    return LeveledUNet(tuple(config.features), in_channels, out_channels, config.dropout)


class LeveledUNet(torch.nn.Module):
    """BasicUNet's blocks (MONAI's TwoConv, Down and UpCat) at any depth: features[:-1] are the encoder's
    widths, level by level, and features[-1] the width after the last up-sampling."""

    def __init__(self, features: tuple[int, ...], in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        encoder, last = features[:-1], features[-1]
        self.first = TwoConv(2, in_channels, encoder[0], ACT, NORM, True, dropout)
        self.downs = torch.nn.ModuleList(
            Down(2, wider, deeper, ACT, NORM, True, dropout) for wider, deeper in pairwise(encoder)
        )
        ups = []
        for level in range(len(encoder) - 1, 0, -1):
            deeper, skip = encoder[level], encoder[level - 1]
            # As BasicUNet: every up-sampling halves the channels but the last, which keeps them.
            halves = level > 1
            ups.append(UpCat(2, deeper, skip, skip if halves else last, ACT, NORM, True, dropout, halves=halves))
        self.ups = torch.nn.ModuleList(ups)
        self.final = torch.nn.Conv2d(last, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.first(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.final(x)


def segmentation_stride(config: SegmentationNetConfig) -> int:
    """Input sides must be multiples of this: one 2x down-sampling per level but the first."""
    return 2 ** (levels(config) - 1)


def enable_dropout(model: torch.nn.Module) -> None:
    """Keep dropout sampling at inference (Monte-Carlo dropout) while normalisation stays in eval mode."""
    for module in model.modules():
        if isinstance(module, (torch.nn.Dropout, torch.nn.Dropout2d)):
            module.train()
