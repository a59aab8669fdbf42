"""The implemented methods. A method that is not implemented is simply not listed here."""

from __future__ import annotations

import torch

from ..bundle import BundleError, ModelBundle
from ..method_names import METHODS
from .base import AnomalyResult, MapPredictor, Predictor
from .cddpm import CddpmPredictor
from .dia import DiaPredictor
from .ppii import PpiiPredictor
from .sano import SanoPredictor
from .spr import SprPredictor

PREDICTORS: dict[str, type[Predictor]] = {
    "sano": SanoPredictor,
    "spr": SprPredictor,
    "ppii": PpiiPredictor,
    "cddpm": CddpmPredictor,
    "dia": DiaPredictor,
}
assert tuple(PREDICTORS) == METHODS, "anomascope.engine.method_names.METHODS must list the predictors in the same order"
# Read-outs that one trained VP denoiser supports: a bundle trained for either serves both.
DENOISER_READOUTS = ("sano", "spr")


def make_predictor(
    bundle: ModelBundle, device: torch.device, method: str | None = None, precision: str = "auto"
) -> Predictor:
    """The bundle's read-out `method` (its own method by default) on `device`; `precision` is what the
    networks run in ("auto": bf16 on CUDA, fp32 on the CPU)."""
    method = method or bundle.method
    readouts = bundle.manifest.get("readouts", [bundle.method])
    if method not in readouts:
        raise BundleError(f"{bundle.path.name}: bundle {bundle.id} supports {', '.join(readouts)}, not {method!r}")
    if method not in PREDICTORS:
        raise BundleError(f"{bundle.path.name}: method {method!r} is not available in this version")
    return PREDICTORS[method](bundle, device, precision)


__all__ = ["AnomalyResult", "MapPredictor", "Predictor", "PREDICTORS", "DENOISER_READOUTS", "make_predictor"]
