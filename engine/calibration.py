"""Thresholds and normal-score statistics, computed from validation images and kept in the bundle."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve

PERCENTILES = (50, 90, 95, 99, 99.9)


class CalibrationError(ValueError):
    """Validation data that cannot give a meaningful threshold."""


def normal_statistics(pixel_scores: np.ndarray, image_scores: np.ndarray) -> dict:
    """Distribution of scores on normal validation images: for z-scores, percentiles, k-sigma."""
    pixels = np.asarray(pixel_scores, dtype=np.float64).ravel()
    images = np.sort(np.asarray(image_scores, dtype=np.float64).ravel())
    return {
        "n_images": int(images.size),
        "n_pixels": int(pixels.size),
        "pixel_mean": float(pixels.mean()),
        "pixel_std": float(pixels.std()),
        "pixel_percentiles": {str(p): float(np.percentile(pixels, p)) for p in PERCENTILES},
        "image_scores": images.tolist(),
        "image_mean": float(images.mean()),
        "image_std": float(images.std()),
    }


def threshold_k_sigma(stats: dict, k: float) -> float:
    """SANO's heuristic: anomalous where the score exceeds the normal mean by k standard deviations."""
    return float(stats["pixel_mean"] + k * stats["pixel_std"])


def threshold_at_fpr(normal_pixel_scores: np.ndarray, fpr: float) -> float:
    """The smallest threshold that flags at most `fpr` of normal pixels.

    Never degenerate: if the normal scores are constant (no spread to set a rate on) it raises
    instead of returning a threshold that flags everything or nothing.
    """
    scores = np.asarray(normal_pixel_scores, dtype=np.float64).ravel()
    if not 0.0 < fpr < 1.0:
        raise CalibrationError(f"target false-positive rate must be in (0, 1), got {fpr}")
    if scores.size == 0 or np.ptp(scores) == 0:
        raise CalibrationError("normal validation scores have no spread; cannot set a false-positive rate")
    return float(np.quantile(scores, 1.0 - fpr, method="higher"))


def threshold_max_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 over all thresholds on labelled pixels."""
    labels = np.asarray(labels).ravel().astype(bool)
    if labels.all() or not labels.any():
        raise CalibrationError("max-F1 needs both anomalous and normal labelled pixels")
    precision, recall, thresholds = precision_recall_curve(labels, np.asarray(scores).ravel())
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1]))
    return float(thresholds[best]), float(f1[best])


def percentile_of(stats: dict, image_score: float) -> float:
    """Where an image score falls among normal validation images (0-100)."""
    scores = np.asarray(stats["image_scores"])
    return float(100.0 * np.searchsorted(scores, image_score, side="right") / max(scores.size, 1))
