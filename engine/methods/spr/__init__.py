"""Score-based perturbation resilience (Shin et al.): restoration error of small perturbations."""

from __future__ import annotations

from ...config import PreprocessConfig, TrainConfig
from ..method import Method


def paper_defaults():
    """SPR trains at 192 px with AdamW (lr 1e-4, weight decay 1e-3), batch 16, for 3000 epochs with the
    learning rate cut by 10 at epochs 1000 and 2000."""
    # Imported here: the shared denoiser's config imports this package's read-out config.
    from ..denoiser.config import DenoiserMethodConfig

    return DenoiserMethodConfig(
        method="spr",
        preprocess=PreprocessConfig(image_size=192),
        train=TrainConfig(
            optimizer="adamw",
            learning_rate=1e-4,
            weight_decay=1e-3,
            batch_size=16,
            steps=None,
            epochs=3000,
            lr_milestones=(1 / 3, 2 / 3),
        ),
    )


METHOD = Method(
    name="spr",
    summary="error of the shared VP denoiser on N = 3 small perturbations, 31 px box filter; image score = max",
    paper="Shin et al., Anomaly Detection using Score-based Perturbation Resilience",
    defaults=paper_defaults,
    predictor=f"{__name__}.readout:SprPredictor",
    plan="anomascope.engine.methods.denoiser.model:denoiser_plan",
)
