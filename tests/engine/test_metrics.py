"""Metrics against hand-computed small cases and threshold-free definitions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from anomascope.engine import metrics as m


def _pairwise_auroc(scores, labels):
    """AUROC by definition: P(score of a positive > score of a negative), ties counting one half."""
    pos, neg = scores[labels], scores[~labels]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 40).astype(float)
    labels = rng.random(40) > 0.6
    assert m.auroc(scores, labels) == pytest.approx(_pairwise_auroc(scores, labels))


def test_hand_computed_small_case():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1], bool)
    assert m.auroc(scores, labels) == pytest.approx(0.75)
    # ranked: 0.8 (+), 0.4 (-), 0.35 (+), 0.1 (-): AP = 1/2 * 1 + 1/2 * 2/3
    assert m.average_precision(scores, labels) == pytest.approx(0.5 + 1 / 3)
    # best threshold 0.35: TP 2, FP 1, FN 0 -> Dice 4/5
    assert m.best_dice(scores, labels) == pytest.approx(0.8)


def test_single_class_gives_none():
    assert m.auroc(np.ones(3), np.zeros(3)) is None
    assert m.average_precision(np.ones(3), np.ones(3)) is None


def test_dice_iou_at_threshold():
    prediction = np.array([[1, 1, 0], [0, 0, 0]], bool)
    truth = np.array([[1, 0, 0], [1, 0, 0]], bool)
    dice, iou = m.dice_iou(prediction, truth)
    assert dice == pytest.approx(2 * 1 / (2 * 1 + 1 + 1)) and iou == pytest.approx(1 / 3)
    assert m.dice_iou(np.zeros(4, bool), np.zeros(4, bool)) == (1.0, 1.0)


def test_histogram_curves_agree_with_exact_metrics():
    rng = np.random.default_rng(1)
    labels = rng.random(5000) > 0.8
    scores = rng.normal(size=5000) + labels * 1.5
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, m.HISTOGRAM_BINS + 1)))
    positive = np.histogram(scores[labels], edges)[0]
    negative = np.histogram(scores[~labels], edges)[0]
    binned = m.histogram_curves(positive, negative)
    assert binned["pixel_auroc"] == pytest.approx(m.auroc(scores, labels), abs=2e-3)
    assert binned["pixel_ap"] == pytest.approx(m.average_precision(scores, labels), abs=1e-2)
    assert binned["max_dice"] == pytest.approx(m.best_dice(scores, labels), abs=1e-2)


def test_froc_counts_lesions_and_false_positives():
    heatmap = np.zeros((40, 40))
    mask = np.zeros((40, 40), bool)
    mask[5:10, 5:10] = True  # lesion 1, found by a peak of 0.9
    mask[25:30, 25:30] = True  # lesion 2, missed
    heatmap[7, 7] = 0.9
    heatmap[20, 5] = 0.5  # a false positive
    found = m.detections(heatmap, mask)
    assert list(found.lesion_scores) == [0.9, 0.0]
    assert list(found.false_positive_scores) == [0.5]
    assert m.froc_sensitivity([found], at_fp_per_image=10) == pytest.approx(0.5)


def test_bootstrap_groups_move_together():
    values = np.array([0.0, 0.0, 10.0, 10.0])
    one_group = m.bootstrap_std(["a", "a", "a", "a"], lambda idx: {"mean": float(values[idx].mean())}, resamples=50)
    assert one_group["mean"] == 0.0  # a single group: every resample is the whole set
    per_image = m.bootstrap_std(["a", "b", "c", "d"], lambda idx: {"mean": float(values[idx].mean())}, resamples=200)
    assert per_image["mean"] > 1.0


def test_froc_matches_monai():
    from monai.metrics import compute_froc_curve_data, compute_froc_score

    rng = np.random.default_rng(3)
    per_image = []
    for _ in range(6):
        lesions = rng.random(rng.integers(0, 4)) * (rng.random(1) > 0.2)
        per_image.append(m.Detections(rng.random(rng.integers(5, 30)), lesions))
    lesions = np.concatenate([d.lesion_scores for d in per_image])
    fp = np.concatenate([d.false_positive_scores for d in per_image])
    fps, sensitivity = compute_froc_curve_data(fp, lesions[lesions > 0], int(lesions.size), len(per_image))
    for rate in (0.5, 2.0, 10.0):
        assert m.froc_sensitivity(per_image, rate) == pytest.approx(compute_froc_score(fps, sensitivity, (rate,)))
