"""Training a method end to end: data, training loop, bundle, calibration and validation metrics."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import calibration as cal
from .bundle import ModelBundle, save_bundle, update_manifest
from .config import to_dict
from .data import DataError, describe_dataset, folder_hash, labelled_split, list_images, load_training_images, read_mask
from .inference import score_case
from .io import load_case
from .methods import DENOISER_READOUTS, make_predictor
from .methods.cddpm import conditional_loss, monitor_fold, new_conditional_unet, task_folds
from .methods.denoiser import epsilon_loss, new_denoiser
from .methods.dia import Dissolver, build_feature_bank, dia_loss, load_dissolver, new_encoder
from .methods.ppii import new_ppii_net, ppii_loss
from .metrics import auroc, average_precision
from .schedules import VPSchedule
from .synthetic import foreign_images, make_tasks
from .training import pick_device, train


@dataclass
class Trainable:
    """One network that `anomascope train --method` optimises, and the loss it is optimised with."""

    component: str  # the weights' prefix in the bundle
    model: torch.nn.Module
    loss: Callable
    details: dict = field(default_factory=dict)  # recorded in the manifest beside the training figures


@dataclass
class Trained:
    """What training produced, handed to a plan's finishing step."""

    networks: dict[str, torch.nn.Module]  # component -> trained network; a finishing step may add weights
    records: list[dict]  # per network: training figures and details, in the plan's order
    data: torch.Tensor  # the training images, model-ready
    data_root: Path
    device: torch.device


@dataclass
class TrainingPlan:
    """What `anomascope train --method` does for one method: the networks it optimises, the read-outs
    the bundle will offer, and what follows training (cddpm's fold monitoring, DIA's feature bank)."""

    networks: list[Trainable]
    readouts: list[str]
    finish: Callable[[Trained], dict] = lambda trained: {}  # returns extra manifest entries


def training_plan(config, dissolver: Dissolver | None = None, dissolver_record: dict | None = None) -> TrainingPlan:
    """The plan for a method's config. DIA needs a dissolver and the record of the bundle it came from."""
    if config.method in DENOISER_READOUTS:
        return TrainingPlan(
            [Trainable("denoiser", new_denoiser(config), epsilon_loss(VPSchedule(config.schedule)))],
            list(DENOISER_READOUTS),
        )
    if config.method == "ppii":
        return TrainingPlan([Trainable("ppii", new_ppii_net(config), ppii_loss(config.generator))], ["ppii"])
    if config.method == "cddpm":
        return cddpm_plan(config)
    if config.method == "dia":
        if dissolver is None:
            raise DataError("dia needs a trained denoiser bundle for its dissolving transformations (--denoiser)")
        return dia_plan(config, dissolver, dissolver_record or {})
    raise ValueError(f"method {config.method!r} is not trained by fit_method")


def cddpm_plan(config) -> TrainingPlan:
    """One network per task fold; after training, each fold is scored on its two held-out tasks."""
    tasks = make_tasks(foreign_images(config.preprocess.image_size))
    networks = [
        Trainable(
            fold.component,
            new_conditional_unet(config),
            conditional_loss(config, tasks, fold),
            {"train_tasks": list(fold.train_tasks), "monitor_tasks": list(fold.monitor_tasks)},
        )
        for fold in task_folds(config.cddpm.folds)
    ]

    def monitor_folds(trained: Trained) -> dict:
        normals, _ = validation_sample(trained.data_root, config.cddpm.monitor_images)
        images = load_training_images([item.path for item in normals], config.preprocess).to(trained.device)
        for fold, record in zip(task_folds(config.cddpm.folds), trained.records, strict=True):
            generator = torch.Generator(device=trained.device).manual_seed(config.cddpm.seed)
            record.update(monitor_fold(trained.networks[fold.component], images, tasks, fold, config, generator))
        return {}

    return TrainingPlan(networks, ["cddpm"], monitor_folds)


def dia_plan(config, dissolver: Dissolver, dissolver_record: dict) -> TrainingPlan:
    """The encoder; after training, the feature bank of training images, and the dissolver's weights
    so that the bundle can show dissolved images without its source bundle."""

    def bank_and_dissolver(trained: Trained) -> dict:
        bank_images = trained.data[: config.dia.feature_bank_size].to(trained.device)
        encoder = trained.networks["encoder"].to(trained.device)
        trained.networks["bank"] = build_feature_bank(encoder, bank_images, config.dia)
        trained.networks["dissolver"] = dissolver.denoiser
        return {"dissolver": dissolver_record}

    return TrainingPlan(
        [Trainable("encoder", new_encoder(config), dia_loss(config.dia, dissolver))], ["dia"], bank_and_dissolver
    )


def fit_method(
    config,
    data_root: Path,
    out: Path,
    device: torch.device | None = None,
    show_progress: bool = True,
    keep_checkpoint: bool = False,
    half_weights: bool = False,
    denoiser: ModelBundle | None = None,
) -> ModelBundle:
    """Train a method on data_root/train/good and write a calibrated bundle to `out`. DIA needs
    `denoiser`, a trained denoiser bundle whose weights travel inside the DIA bundle."""
    device = device or pick_device()
    torch.manual_seed(config.train.seed)
    files = list_images(data_root / "train" / "good")
    data = load_training_images(files, config.preprocess)
    plan = training_plan(config, dia_dissolver(config, denoiser, device), dissolver_record(denoiser))
    workdir = out / "checkpoint"
    trained = Trained({}, [], data, data_root, device)
    for spec in plan.networks:
        # One checkpoint folder per network, so an interrupted multi-fold run resumes where it stopped.
        result = train(
            spec.model,
            spec.loss,
            data,
            config.train,
            workdir if len(plan.networks) == 1 else workdir / spec.component,
            device,
            show_progress,
        )
        trained.networks[spec.component] = result.model
        trained.records.append(dict(training_record(result), component=spec.component, **spec.details))
    extra = plan.finish(trained)  # before the manifest: cddpm's finish adds each fold's monitoring figures
    records = trained.records
    manifest = {
        "method": config.method,
        "readouts": plan.readouts,
        "config": to_dict(config),
        "preprocessing": to_dict(config.preprocess),
        "data": training_data_record(data_root, files, len(data)),
        "training": records[0] if len(records) == 1 else {"components": records},
        **extra,
    }
    bundle = save_bundle(out, manifest, trained.networks, half=half_weights)
    if not keep_checkpoint:
        shutil.rmtree(workdir, ignore_errors=True)
    return calibrate(bundle, data_root, device, config.calibration.max_validation_images)


def dia_dissolver(config, denoiser: ModelBundle | None, device: torch.device) -> Dissolver | None:
    """The dissolving transformation from a denoiser bundle trained on images like DIA's."""
    if denoiser is None:
        return None
    channels = denoiser.manifest["config"]["preprocess"]["channels"]
    if channels != config.preprocess.channels:
        raise DataError(
            f"{denoiser.path.name}: the denoiser was trained on {channels}-channel images but dia is"
            f" configured for {config.preprocess.channels}; train a denoiser on the same data"
        )
    return load_dissolver(denoiser.manifest, denoiser.state_dict("denoiser"), config.dia.dissolve_size, device)


def dissolver_record(denoiser: ModelBundle | None) -> dict | None:
    """Where a DIA bundle's dissolver came from, for its manifest."""
    if denoiser is None:
        return None
    return {"bundle_id": denoiser.id, "config": denoiser.manifest["config"], "data": denoiser.manifest.get("data")}


def training_data_record(data_root: Path, files: list[Path], n_images: int) -> dict:
    return dict(
        describe_dataset(data_root),
        folder=data_root.name,
        n_train_files=len(files),
        n_train_images=int(n_images),
        sha256=folder_hash(files),
    )


def training_record(result) -> dict:
    return {
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "device": result.device,
        "final_loss": float(np.mean(result.losses[-50:])) if result.losses else None,
    }


def calibrate(bundle: ModelBundle, data_root: Path, device: torch.device, max_images: int) -> ModelBundle:
    """Normal-score statistics and thresholds per read-out, from the validation split. Measured in
    float32, the reference that reduced-precision inference is checked against."""
    normals, anomalous = validation_sample(data_root, max_images)
    calibrations = {}
    config = bundle.manifest["config"]
    for readout in bundle.manifest.get("readouts", [bundle.method]):
        predictor = make_predictor(bundle, device, readout, precision="fp32")
        calibrations[readout] = calibrate_predictor(
            predictor, normals, anomalous, config["calibration"]["target_fpr"], config[readout]["k_sigma"]
        )
    return update_manifest(
        bundle,
        calibration={readout: c.to_manifest() for readout, c in calibrations.items()},
        validation_metrics={readout: c.validation_metrics for readout, c in calibrations.items()},
    )


def validation_sample(data_root: Path, max_images: int) -> tuple[list, list]:
    items = labelled_split(data_root, "val")
    if not any(item.kind == "good" for item in items):
        raise DataError(f"{data_root}: no val/good images to calibrate thresholds on; run `anomascope prepare`")
    rng = np.random.default_rng(0)
    return (
        _sample([i for i in items if i.kind == "good"], max_images, rng),
        _sample([i for i in items if i.kind != "good"], max_images, rng),
    )


def calibrate_predictor(
    predictor, normals: list, anomalous: list, target_fpr: float, k: float, provenance: str = "val split"
) -> cal.Calibration:
    """One read-out's calibration and validation metrics: normal statistics, k-sigma and target-FPR
    thresholds from normal images, max-F1 from images with masks. A method without maps (DIA) is
    calibrated on image scores: its thresholds say which images to flag."""
    normal_results = [score_case(predictor, load_case(i.path)) for i in normals]
    normal_scores = np.array([r.image_score for r in normal_results])
    normal_maps = [r.heatmap for r in normal_results if r.heatmap is not None]
    pixel_level = len(normal_maps) == len(normal_results)
    normal_pixels = np.concatenate([h.ravel() for h in normal_maps]) if pixel_level else normal_scores
    stats = cal.normal_statistics(normal_pixels, normal_scores)
    source = f"{provenance}: {len(normals)} normal images"
    thresholds = {
        "k_sigma": cal.Threshold(cal.threshold_k_sigma(stats, k), source, {"k": k}),
        "target_fpr": cal.Threshold(cal.threshold_at_fpr(normal_pixels, target_fpr), source, {"fpr": target_fpr}),
    }
    metrics: dict[str, float | None] = {"n_normal": len(normals), "n_anomalous": len(anomalous)}
    if anomalous:
        anomalous_results = [score_case(predictor, load_case(i.path)) for i in anomalous]
        scores = np.concatenate([normal_scores, [r.image_score for r in anomalous_results]])
        labels = np.concatenate([np.zeros(len(normals)), np.ones(len(anomalous))])
        metrics.update(image_auroc=auroc(scores, labels), image_ap=average_precision(scores, labels))
        masked = [
            (r.heatmap, read_mask(i.mask_path))
            for r, i in zip(anomalous_results, anomalous, strict=True)
            if i.mask_path and r.heatmap is not None
        ]
        if masked and pixel_level:
            pixel_scores = np.concatenate([normal_pixels] + [h[0].ravel() for h, _ in masked])
            pixel_labels = np.concatenate([np.zeros(normal_pixels.size)] + [m.ravel() for _, m in masked])
            value, f1 = cal.threshold_max_f1(pixel_scores, pixel_labels)
            thresholds["max_f1"] = cal.Threshold(
                value, f"{provenance}: {len(masked)} images with masks + normals", {"f1": f1}
            )
            metrics.update(
                pixel_auroc=auroc(pixel_scores, pixel_labels), pixel_ap=average_precision(pixel_scores, pixel_labels)
            )
        elif not pixel_level:
            value, f1 = cal.threshold_max_f1(scores, labels)
            thresholds["max_f1"] = cal.Threshold(value, f"{provenance}: image labels", {"f1": f1})
    return cal.Calibration(stats, thresholds, "pixel" if pixel_level else "image", metrics)


def _sample(items: list, count: int, rng: np.random.Generator) -> list:
    if len(items) <= count:
        return items
    return [items[i] for i in sorted(rng.choice(len(items), size=count, replace=False))]
