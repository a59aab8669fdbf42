"""What `anomascope infer` writes for each input: JSON summary, heatmap .npy, overlay and restoration PNGs,
and the uncertainty .npy where the method estimates one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from engine.calibration import percentile_of
from engine.display import apply_window, overlay_heatmap, unit_to_rgb
from engine.inference import CaseResult
from engine.io import Case
from engine.methods import Predictor


def output_stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".dcm", ".zip"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.is_file() else name


def display_range(predictor: Predictor, heatmap: np.ndarray) -> tuple[float, float]:
    """Overlay colour range, the same for `anomascope infer` and the review page: from the normal median
    (clear below) to the map's maximum or the calibrated false-positive threshold, whichever is higher."""
    calibration = predictor.calibration
    if calibration:
        low = calibration["normal"]["pixel_percentiles"]["50"]
        high = max(float(heatmap.max()), calibration["thresholds"]["target_fpr"]["value"])
        return low, high
    return float(heatmap.min()), float(heatmap.max())


def write_outputs(out: Path, source: Path, case: Case, result: CaseResult, predictor: Predictor, device: str) -> dict:
    stem = output_stem(source)
    out.mkdir(parents=True, exist_ok=True)
    shown = int(np.argmax(result.slice_scores))  # a volume's overlay shows its most anomalous slice
    summary = {
        "file": source.name,
        "method": predictor.name,
        "bundle_id": predictor.bundle.id,
        "parameters": predictor.parameters,
        "image_score": result.image_score,
        "slice_scores": result.slice_scores.tolist(),
        "seconds": round(result.seconds, 4),
        "device": device,
        "input_shape": list(case.shape),
        "heatmap_shape": None if result.heatmap is None else list(result.heatmap.shape),
        "overlay_slice": shown,
        "restoration": None,
        "uncertainty": None,
    }
    calibration = predictor.calibration
    if calibration:
        summary["percentile_among_normals"] = percentile_of(calibration["normal"], result.image_score)
        summary["thresholds"] = {k: v["value"] for k, v in calibration["thresholds"].items()}
    base = apply_window(case.pixels[shown], *case.window)
    if result.heatmap is not None:
        np.save(out / f"{stem}_heatmap.npy", result.heatmap.astype(np.float32))
        low, high = display_range(predictor, result.heatmap[shown])
        Image.fromarray(overlay_heatmap(base, result.heatmap[shown], low, high)).save(out / f"{stem}_overlay.png")
    if result.restoration is not None:
        Image.fromarray(unit_to_rgb(result.restoration[shown])).save(out / f"{stem}_restoration.png")
        summary["restoration"] = f"{stem}_restoration.png"
    if result.uncertainty is not None:
        np.save(out / f"{stem}_uncertainty.npy", result.uncertainty.astype(np.float32))
        summary["uncertainty"] = f"{stem}_uncertainty.npy"
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    return summary
