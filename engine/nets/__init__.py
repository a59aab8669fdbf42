"""Networks that several methods share (nn.Modules built from typed configs). No training or sampling logic
here; a network only one method uses lives in that method's folder."""

from .denoiser import build_denoiser

__all__ = ["build_denoiser"]
