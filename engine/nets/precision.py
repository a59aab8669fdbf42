"""Running a network in reduced precision while everything around it stays in float32.

Autocast over a whole read-out would also turn the map filters (blurs, SSIM), the samplers' update
maths and the scores into half precision, and numpy cannot hold bfloat16. So only the network's own
forward runs under autocast, and what it returns is handed back as float32.
"""

from __future__ import annotations

import dataclasses

import torch

from ..config import PRECISIONS

REDUCED_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' is bf16 on CUDA (tensor cores, with float32's exponent range, so no overflow in the
    score maths) and fp32 on the CPU, where autocast costs casts and rarely saves time."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision


class AutocastNetwork(torch.nn.Module):
    """Wraps a network: its forward runs under autocast in `dtype`; tensors it returns are float32."""

    def __init__(self, network: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.network, self.dtype = network, dtype

    def forward(self, *args, **kwargs):
        device_type = next(self.network.parameters()).device.type
        with torch.autocast(device_type=device_type, dtype=self.dtype):
            output = self.network(*args, **kwargs)
        return as_float32(output)


def as_float32(output):
    """Floating tensors in a network's output (a tensor, a tuple, or a diffusers output dataclass)
    cast to float32; anything else unchanged."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, tuple):
        return tuple(as_float32(item) for item in output)
    if dataclasses.is_dataclass(output):
        return type(output)(
            **{field.name: as_float32(getattr(output, field.name)) for field in dataclasses.fields(output)}
        )
    return output


def in_precision(network: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The network as it should run for a resolved precision ("fp32", "bf16" or "fp16")."""
    if precision == "fp32":
        return network
    return AutocastNetwork(network, REDUCED_DTYPES[precision])
