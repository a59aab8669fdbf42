"""DIA, "Dissolving is amplifying" (Shi et al.): contrastive image-level detection in which images
dissolved by a trained denoiser are extra negatives."""

from __future__ import annotations

from ..method import Method, Option
from .config import DiaMethodConfig

METHOD = Method(
    name="dia",
    summary="image-level only: contrastive ResNet-18 with rotation shifts and dissolved negatives (no heatmap)",
    paper="Shi et al., Dissolving Is Amplifying: Towards Fine-Grained Anomaly Detection",
    defaults=DiaMethodConfig,
    predictor=f"{__name__}.model:DiaPredictor",
    plan=f"{__name__}.training:dia_plan",
    maps=False,
    restoration="Dissolved image: the denoiser's view the encoder compares",
    options=(
        Option(
            "denoiser",
            "a trained denoiser bundle (sano/spr) whose network dissolves the images; it travels inside the bundle",
            metavar="BUNDLE",
            required=True,
        ),
    ),
)
