"""P-PII (Müller et al.): a U-Net or MC-dropout U-Net trained on healthy images to predict where, and how
strongly, probabilistic Poisson-interpolated patches changed them."""

from __future__ import annotations

from ..method import Method
from .config import PpiiMethodConfig

METHOD = Method(
    name="ppii",
    summary="MC-dropout U-Net's per-pixel anomaly, trained on Poisson-interpolated patches; spread = uncertainty",
    paper="Müller et al., Confidence-Aware and Self-Supervised Image Anomaly Localisation",
    defaults=PpiiMethodConfig,
    predictor=f"{__name__}.model:PpiiPredictor",
    plan=f"{__name__}.model:ppii_plan",
)
