"""SANO (Gonzalez-Jimenez et al.): the squared score of a diffusion model at t ~ 0 as the anomaly map."""

from __future__ import annotations

from ..method import Method


def paper_defaults():
    """SANO's schedule and optimiser at 256 px (Sec. 3.2): Adam, lr 2e-4, batch 64, 400k iterations."""
    # Imported here: the shared denoiser's config imports this package's read-out config.
    from ..denoiser.config import DenoiserMethodConfig

    return DenoiserMethodConfig(method="sano")


METHOD = Method(
    name="sano",
    summary="channel-summed squared score of the shared VP denoiser at t ≈ 0, Gaussian-smoothed",
    paper="Gonzalez-Jimenez et al., SANO: Score-based Diffusion Model for Anomaly Localization in Dermatology",
    defaults=paper_defaults,
    predictor=f"{__name__}.readout:SanoPredictor",
    plan="anomascope.engine.methods.denoiser.model:denoiser_plan",
)
