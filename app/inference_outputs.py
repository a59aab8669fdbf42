"""What `anomascope infer` writes for each input: JSON summary, heatmap .npy, overlay and restoration PNGs,
and the uncertainty .npy where the method estimates one."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from anomascope.engine.display import apply_window, overlay_heatmap, unit_to_rgb
from anomascope.engine.inference import CaseResult
from anomascope.engine.io import Case
from anomascope.engine.methods.base import Predictor


def real_path(path: Path) -> str:
    """The input's absolute path with links followed: what names it in the results table. Unlike
    `Path.resolve`, a link that loops does not raise (RuntimeError, before Python 3.13) here, so the input
    reaches the reader and fails as a row that says it loops, and the other inputs are still scored."""
    return os.path.realpath(path)


def output_stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".dcm", ".zip"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.is_file() else name


def unique_stem(out: Path, source: Path, taken: set[str]) -> str:
    """The input's stem, or <stem>-<8 hex digits of its path> when another input of this run, or an earlier
    run's outputs in `out` for another file, hold that stem: one input never overwrites another's outputs."""
    stem = output_stem(source)
    resolved = real_path(source)
    if stem in taken or _written_for_another(out / f"{stem}.json", resolved):
        stem = f"{stem}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"
    taken.add(stem)
    return stem


def _written_for_another(summary: Path, resolved: str) -> bool:
    if not summary.exists():
        return False
    try:
        return json.loads(summary.read_text()).get("source") != resolved
    except (OSError, ValueError):
        return True  # not ours to overwrite


def display_range(predictor: Predictor, heatmap: np.ndarray) -> tuple[float, float]:
    """Overlay colour range, the same for `anomascope infer` and the review page: from the normal median
    (clear below) to the map's maximum or the calibrated false-positive threshold, whichever is higher."""
    calibration = predictor.calibration
    if calibration.calibrated and calibration.normal is not None:
        low = calibration.normal.median_pixel
        high = max(float(heatmap.max()), calibration.thresholds["target_fpr"].value)
        return low, high
    return float(heatmap.min()), float(heatmap.max())


def write_outputs(
    out: Path,
    source: Path,
    stem: str,
    case: Case,
    result: CaseResult,
    predictor: Predictor,
    device: str,
    threshold: tuple[float, str] | None = None,
) -> dict:
    """Everything `infer` writes for one input; with `threshold` (value, how chosen), its mask too."""
    out.mkdir(parents=True, exist_ok=True)
    shown = int(np.argmax(result.slice_scores))  # a volume's overlay shows its most anomalous slice
    summary = {
        "file": source.name,
        "source": real_path(source),
        "stem": stem,
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
    if calibration.calibrated:
        summary["percentile_among_normals"] = calibration.percentile_of(result.image_score)
        summary["thresholds"] = calibration.values()
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
    if threshold is not None:
        summary.update(_at_threshold(out, stem, result, *threshold))
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    return summary


def _at_threshold(out: Path, stem: str, result: CaseResult, value: float, how: str) -> dict:
    """The mask at the threshold (methods with maps: pixels scoring at least it) or, for methods that
    score whole images, whether the image is flagged."""
    record: dict = {"threshold": value, "threshold_method": how}
    if result.heatmap is None:
        return {**record, "flagged": bool(result.image_score >= value)}
    mask = result.heatmap >= np.float32(value)  # compared as float32, as the page's viewer does
    np.save(out / f"{stem}_mask.npy", mask)
    record.update(mask=f"{stem}_mask.npy", mask_pixels=int(mask.sum()))
    if mask.shape[0] == 1:
        Image.fromarray(mask[0].astype(np.uint8) * 255).save(out / f"{stem}_mask.png")
        record["mask_png"] = f"{stem}_mask.png"
    return record
