"""What the methods' synthetic anomalies share: a DST Poisson solver and the draws of their shapes and
parameters. Each method's own generator lives in its folder (P-PII's in methods/ppii, the five tasks of
the image-conditioned diffusion model in methods/cddpm)."""

from .poisson import poisson_blend, solve_poisson
from .shapes import parameter_generator

__all__ = ["parameter_generator", "poisson_blend", "solve_poisson"]
