"""Image encoders for contrastive methods (MONAI ResNet-18 with CSI-style heads)."""

from __future__ import annotations

import torch
from monai.networks.nets.resnet import ResNet, ResNetBlock

from .config import EncoderNetConfig


class ContrastiveEncoder(torch.nn.Module):
    """ResNet-18 features -> (projection for the contrastive loss, logits of the shift classifier)."""

    def __init__(self, config: EncoderNetConfig, in_channels: int, num_shifts: int):
        super().__init__()
        cifar = config.stem == "cifar"
        self.backbone = ResNet(
            ResNetBlock,
            [2, 2, 2, 2],
            [64, 128, 256, 512],
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_size=3 if cifar else 7,
            conv1_t_stride=1 if cifar else 2,
            no_max_pool=cifar,
            widen_factor=config.widen_factor,
            feed_forward=False,
        )
        width = int(512 * config.widen_factor)
        self.projection = torch.nn.Sequential(
            torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, config.projection_dim)
        )
        self.shift_classifier = torch.nn.Linear(width, num_shifts)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        return self.projection(features), self.shift_classifier(features)
