"""DIA's training plan: the contrastive encoder, trained against images dissolved by a denoiser from
another bundle; afterwards the feature bank of training images, and the dissolver's weights so that
the bundle shows dissolved images without its source bundle."""

from __future__ import annotations

from pathlib import Path

import torch

from ...bundle import ModelBundle, load_bundle
from ...data import DataError
from ..training_plan import Trainable, Trained, TrainingInputs, TrainingPlan
from .config import DiaMethodConfig
from .model import Dissolver, build_feature_bank, dia_loss, load_dissolver, new_encoder


def dia_plan(config: DiaMethodConfig, inputs: TrainingInputs) -> TrainingPlan:
    record, weights = dissolver_source(inputs.options.get("denoiser"))
    dissolver = dia_dissolver(config, record, weights, inputs)

    def bank_and_dissolver(trained: Trained) -> dict:
        assert trained.data is not None  # a plan with networks is trained on loaded images
        bank_images = trained.data[: config.dia.feature_bank_size].to(trained.device)
        encoder = trained.networks["encoder"].to(trained.device)
        trained.networks["bank"] = build_feature_bank(encoder, bank_images, config.dia)
        trained.networks["dissolver"] = dissolver.denoiser
        return {"dissolver": record}

    return TrainingPlan(
        [Trainable("encoder", new_encoder(config), dia_loss(config.dia, dissolver))], ["dia"], bank_and_dissolver
    )


def dissolver_source(value: ModelBundle | str | Path | None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Where the dissolver comes from (bundle id, config, data: kept in the manifest) and its weights:
    a denoiser bundle, or a DIA bundle, whose dissolver is reused."""
    if value is None:
        raise DataError("dia needs a trained denoiser bundle for its dissolving transformations (--denoiser)")
    bundle = value if isinstance(value, ModelBundle) else load_bundle(Path(value))
    if "dissolver" in bundle.manifest:
        return bundle.manifest["dissolver"], bundle.state_dict("dissolver")
    record = {"bundle_id": bundle.id, "config": bundle.manifest["config"], "data": bundle.manifest.get("data")}
    return record, bundle.state_dict("denoiser")


def dia_dissolver(
    config: DiaMethodConfig, record: dict, weights: dict[str, torch.Tensor], inputs: TrainingInputs
) -> Dissolver:
    """The dissolving transformation from a denoiser trained on images like DIA's."""
    channels = record["config"]["preprocess"]["channels"]
    if channels != config.preprocess.channels:
        raise DataError(
            f"{record['bundle_id']}: the denoiser was trained on {channels}-channel images but dia is"
            f" configured for {config.preprocess.channels}; train a denoiser on the same data"
        )
    return load_dissolver(record, weights, config.dia.dissolve_size, inputs.device)
