"""Moving small host-made tensors to the device without making the host wait for it."""

from __future__ import annotations

import torch


def on_device(index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """An index tensor made on the CPU, moved without waiting: a plain copy to a GPU first waits for every
    queued kernel, which would stop the CPU from running ahead of the GPU."""
    if device.type != "cuda":
        return index.to(device)
    return index.pin_memory().to(device, non_blocking=True)
