"""Image-conditioned diffusion restoration (Baugh et al.): a DDPM whose U-Net sees the input image beside
x_t, trained to restore healthy images from synthetically corrupted ones."""

from __future__ import annotations

from ..method import Method, Option
from .config import CddpmMethodConfig

METHOD = Method(
    name="cddpm",
    summary="1 − SSIM between the input and its image-conditioned DDPM restoration, averaged over task folds",
    paper="Baugh et al., Image-conditioned Diffusion Models for Medical Anomaly Detection",
    defaults=CddpmMethodConfig,
    predictor=f"{__name__}.model:CddpmPredictor",
    plan=f"{__name__}.training:cddpm_plan",
    options=(
        Option(
            "folds",
            "how many of the C(5, 3) = 10 task folds to train, one network each (the paper: all 10)",
            type=int,
            metavar="N",
            config_key=("cddpm", "folds"),
        ),
    ),
)
