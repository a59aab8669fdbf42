"""Detection and localisation metrics, the same code for every method.

Threshold-free curves come from scikit-learn; FROC follows MONAI's definition (checked against it in the
tests). Pixel metrics pool all test
pixels (normal images contribute only negatives). Bootstrap standard deviations resample images,
or whole groups (patient, lesion) where the split records them, as in SANO's tables; pixel metrics
inside the bootstrap use per-image score histograms so 1000 resamples stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

HISTOGRAM_BINS = 2048


def has_both_classes(labels: np.ndarray) -> bool:
    return bool(labels.any() and not labels.all())


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    labels = np.asarray(labels).ravel().astype(bool)
    return float(roc_auc_score(labels, np.asarray(scores).ravel())) if has_both_classes(labels) else None


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float | None:
    labels = np.asarray(labels).ravel().astype(bool)
    return float(average_precision_score(labels, np.asarray(scores).ravel())) if has_both_classes(labels) else None


def best_dice(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Max over thresholds of pooled Dice = 2TP / (2TP + FP + FN), i.e. the best pixel F1."""
    labels = np.asarray(labels).ravel().astype(bool)
    if not has_both_classes(labels):
        return None
    precision, recall, _ = precision_recall_curve(labels, np.asarray(scores).ravel())
    return float(np.max(2 * precision * recall / np.maximum(precision + recall, 1e-12)))


def dice_iou(prediction: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Pooled Dice and IoU of a binary prediction; both 1.0 when prediction and truth are empty."""
    prediction, labels = np.asarray(prediction).astype(bool), np.asarray(labels).astype(bool)
    tp = np.logical_and(prediction, labels).sum()
    fp = np.logical_and(prediction, ~labels).sum()
    fn = np.logical_and(~prediction, labels).sum()
    return dice_iou_from_counts(tp, fp, fn)


def dice_iou_from_counts(tp: int, fp: int, fn: int) -> tuple[float, float]:
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return float(2 * tp / (2 * tp + fp + fn)), float(tp / (tp + fp + fn))


@dataclass
class Detections:
    """Peaks of one map: scores of peaks outside every lesion, and each lesion's best peak (0 if missed)."""

    false_positive_scores: np.ndarray
    lesion_scores: np.ndarray


def detections(heatmap: np.ndarray, mask: np.ndarray | None, min_distance: int = 5) -> Detections:
    """Candidate detections are the map's local maxima (within min_distance px); a peak inside a
    ground-truth connected component detects that lesion."""
    peaks = heatmap == ndimage.maximum_filter(heatmap, size=2 * min_distance + 1, mode="nearest")
    peaks &= heatmap > heatmap.min()
    scores = heatmap[peaks]
    if mask is None or not mask.any():
        return Detections(scores, np.zeros(0))
    lesions, count = ndimage.label(mask)
    lesion_of_peak = lesions[peaks]
    best = np.zeros(count)
    for label, score in zip(lesion_of_peak[lesion_of_peak > 0], scores[lesion_of_peak > 0], strict=True):
        best[label - 1] = max(best[label - 1], score)
    return Detections(scores[lesion_of_peak == 0], best)


def froc_sensitivity(per_image: list[Detections], at_fp_per_image: float = 10.0) -> float | None:
    """Lesion sensitivity at `at_fp_per_image` false positives per image, from the FROC curve.

    Same definition as MONAI's compute_froc_curve_data + compute_froc_score (thresholds at every
    candidate score, sensitivity interpolated at the FP rate), computed by one sort instead of a
    pass per threshold: bootstrap runs call this a thousand times on tens of thousands of peaks.
    """
    lesions = np.concatenate([d.lesion_scores for d in per_image]) if per_image else np.zeros(0)
    if lesions.size == 0:
        return None
    fp = np.sort(np.concatenate([d.false_positive_scores for d in per_image]))
    tp = np.sort(lesions[lesions > 0])
    thresholds = np.unique(np.concatenate([fp, tp]))
    # counts of candidates scoring >= each threshold
    fps_per_image = (fp.size - np.searchsorted(fp, thresholds, side="left")) / len(per_image)
    sensitivity = (tp.size - np.searchsorted(tp, thresholds, side="left")) / lesions.size
    # np.interp needs increasing x: thresholds rise as the FP rate falls
    return float(np.interp(at_fp_per_image, fps_per_image[::-1], sensitivity[::-1]))


def histogram_curves(positive: np.ndarray, negative: np.ndarray) -> dict[str, float | None]:
    """AUROC, AP and best Dice from positive/negative pixel counts per score bin (bins ascending)."""
    total_pos, total_neg = positive.sum(), negative.sum()
    if total_pos == 0 or total_neg == 0:
        return {"pixel_auroc": None, "pixel_ap": None, "max_dice": None}
    # Sweep thresholds from the highest bin down.
    tp = np.cumsum(positive[::-1])
    fp = np.cumsum(negative[::-1])
    tpr, fpr = tp / total_pos, fp / total_neg
    tpr0, fpr0 = np.concatenate([[0], tpr]), np.concatenate([[0], fpr])
    roc = float(np.sum((fpr0[1:] - fpr0[:-1]) * (tpr0[1:] + tpr0[:-1]) / 2))
    precision = tp / np.maximum(tp + fp, 1)
    ap = float(np.sum((tpr0[1:] - tpr0[:-1]) * precision))
    dice = float(np.max(2 * tp / np.maximum(tp + fp + total_pos, 1)))
    return {"pixel_auroc": roc, "pixel_ap": ap, "max_dice": dice}


def bootstrap_std(groups: list[str], statistic, resamples: int = 1000, seed: int = 0) -> dict[str, float | None]:
    """Standard deviation of each value `statistic(indices)` returns over resamples of the groups.

    Every image of a drawn group enters the resample together, so correlated images (one patient,
    one lesion) are not counted as independent evidence.
    """
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    names = list(members)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        chosen = rng.integers(0, len(names), len(names))
        indices = np.concatenate([members[names[i]] for i in chosen])
        for key, value in statistic(indices).items():
            if value is not None:
                draws.setdefault(key, []).append(value)
    return {key: float(np.std(values, ddof=1)) if len(values) > 1 else None for key, values in draws.items()}
