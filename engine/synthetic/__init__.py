"""Synthetic anomalies for self-supervised training: a DST Poisson solver, the five tasks of the
image-conditioned diffusion model and the P-PII generator."""

from .foreign import foreign_images
from .poisson import poisson_blend, solve_poisson
from .ppii import PpiiSample, ppii_anomalies
from .shapes import parameter_generator
from .tasks import TASK_NAMES, make_tasks

__all__ = [
    "TASK_NAMES",
    "PpiiSample",
    "foreign_images",
    "make_tasks",
    "parameter_generator",
    "poisson_blend",
    "ppii_anomalies",
    "solve_poisson",
]
