"""Training a method end to end: data, training loop, bundle, calibration and validation metrics."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from . import calibration as cal
from .bundle import ModelBundle, save_bundle, update_manifest
from .config import to_dict
from .data import (
    at_split_scale,
    describe_dataset,
    folder_hash,
    list_images,
    load_training_images,
    read_mask,
    validation_sample,
    with_image_facts,
)
from .distributed import is_main_process
from .inference import score_case
from .io import load_case
from .methods import make_predictor, registry
from .methods.training_plan import Trained, TrainingInputs
from .metrics import auroc, average_precision
from .training import check_settings, pick_device, train


def fit_method(
    config,
    data_root: Path,
    out: Path,
    device: torch.device | None = None,
    show_progress: bool = True,
    keep_checkpoint: bool = False,
    half_weights: bool = False,
    options: dict | None = None,
) -> ModelBundle | None:
    """Train method `config.method` on data_root/train/good and write a calibrated bundle to `out`; under a
    launcher every process trains its share and the main one writes the bundle (the others return None).
    `options` are the values of the method's own command-line options that are not config entries
    (DIA's denoiser bundle)."""
    device = device or pick_device()
    training = getattr(config, "train", None)  # a training-free method's config has no train section
    if training is not None:
        check_settings(training)
    config = at_training_scale(config, data_root)
    files = list_images(data_root / "train" / "good")
    torch.manual_seed(training.seed if training else 0)  # before the plan: it initialises the networks
    plan = registry().get(config.method).training_plan()(config, TrainingInputs(data_root, device, options or {}))
    # A training-free plan loads no images: it is only calibrated.
    data = load_training_images(files, config.preprocess) if plan.networks else None
    trained = Trained({}, [], data, data_root, device)
    workdir = out / "checkpoint"
    for spec in plan.networks:
        assert data is not None
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
    if not is_main_process():  # the other training processes are done: the main one writes the bundle
        return None
    extra = plan.finish(trained)  # before the manifest: cddpm's finish adds each fold's monitoring figures
    records = trained.records
    manifest = {
        "method": config.method,
        "readouts": plan.readouts,
        "config": to_dict(config),
        "preprocessing": to_dict(config.preprocess),
        "data": training_data_record(data_root, files, len(files) if data is None else len(data)),
        "training": training_summary(records),
        **extra,
    }
    bundle = save_bundle(out, manifest, trained.networks, half=half_weights)
    if not keep_checkpoint:
        shutil.rmtree(workdir, ignore_errors=True)
    return calibrate(bundle, data_root, device, config.calibration.max_validation_images)


def at_training_scale(config, data_root: Path):
    """`config` with `preprocess.scale_side` taken from the prepared split (the longer side of the images
    its crops were cut from) when the method scores natively and the config leaves it unset, so that the
    bundle scores every photo at the scale it was trained at. A config's own value wins."""
    preprocess = config.preprocess
    side = describe_dataset(data_root).get("source_side")
    if preprocess.mode != "native" or preprocess.scale_side is not None or not side:
        return config
    return replace(config, preprocess=replace(preprocess, scale_side=int(side)))


def training_summary(records: list[dict]) -> dict:
    if not records:
        return {"steps": 0, "note": "training-free: nothing trained, only calibrated"}
    return records[0] if len(records) == 1 else {"components": records}


def training_data_record(data_root: Path, files: list[Path], n_images: int) -> dict:
    return dict(
        with_image_facts(describe_dataset(data_root), files),
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
    target_fpr = bundle.manifest["config"]["calibration"]["target_fpr"]
    for readout in bundle.manifest.get("readouts", [bundle.method]):
        predictor = at_split_scale(make_predictor(bundle, device, readout, precision="fp32"), data_root)
        calibrations[readout] = calibrate_predictor(
            predictor, normals, anomalous, target_fpr, predictor.settings["k_sigma"]
        )
    return update_manifest(
        bundle,
        calibration={readout: c.to_manifest() for readout, c in calibrations.items()},
        validation_metrics={readout: c.validation_metrics for readout, c in calibrations.items()},
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
