"""Threshold-free detection and localisation metrics (scikit-learn does the curves)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def _both_classes(labels: np.ndarray) -> bool:
    return bool(labels.any() and not labels.all())


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    labels = np.asarray(labels).ravel().astype(bool)
    return float(roc_auc_score(labels, np.asarray(scores).ravel())) if _both_classes(labels) else None


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float | None:
    labels = np.asarray(labels).ravel().astype(bool)
    return float(average_precision_score(labels, np.asarray(scores).ravel())) if _both_classes(labels) else None
