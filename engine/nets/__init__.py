"""Networks (nn.Modules built from typed configs). No training or sampling logic here."""
from .denoiser import build_denoiser

__all__ = ["build_denoiser"]
