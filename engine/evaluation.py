"""Evaluating a scorer on a prepared test split: every method is judged with the same code."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from . import metrics as m
from .data import labelled_split, masked_images, read_mask
from .inference import score_case
from .io import load_case
from .methods.base import Predictor


@dataclass
class TestImage:
    path: Path
    kind: str
    mask: np.ndarray | None
    group: str


def load_test_split(root: Path, split: str = "test", max_images: int | None = None, seed: int = 0) -> list[TestImage]:
    """The split's images with masks and groups (from split.json); a seeded sample when max_images is set.
    A folder that is not a prepared split is read as images with `X_mask.png` beside each (`masked_folder`)."""
    if not (root / split).is_dir() and not (root / "split.json").exists():
        return _sample(masked_folder(root), max_images, seed)
    groups = {}
    split_file = root / "split.json"
    if split_file.exists():
        groups = json.loads(split_file.read_text()).get("groups", {})
    items = _sample(labelled_split(root, split), max_images, seed)
    return [
        TestImage(
            i.path,
            i.kind,
            read_mask(i.mask_path) if i.mask_path else None,
            groups.get(f"{split}/{i.kind}/{i.path.name}", i.path.name),
        )
        for i in items
    ]


def masked_folder(root: Path) -> list[TestImage]:
    """A reader's own folder: every image X with X_mask.png beside it; an all-black mask marks a normal
    image ("good", as in a prepared split), any other an anomalous one. Each image is its own group."""
    images = []
    for item in masked_images(root):
        assert item.mask_path is not None  # a folder's images all have masks (masked_images checks)
        mask = read_mask(item.mask_path)
        images.append(
            TestImage(item.path, "anomalous" if mask.any() else "good", mask if mask.any() else None, item.group)
        )
    return images


def _sample(items: list, max_images: int | None, seed: int) -> list:
    if max_images is None or len(items) <= max_images:
        return items
    chosen = np.random.default_rng(seed).choice(len(items), size=max_images, replace=False)
    return [items[i] for i in sorted(chosen)]


@dataclass
class Evaluation:
    name: str
    metrics: dict
    image_scores: np.ndarray
    labels: np.ndarray
    heatmaps: list[np.ndarray | None] = field(default_factory=list)
    per_image_dice: list[float | None] = field(default_factory=list)
    curves: dict = field(default_factory=dict)


def best_median_worst(values: Sequence[float | None]) -> dict[str, int]:
    """Indices of the best, median and worst of the values that are not None (a normal image has no figure of
    its own); ties go to the lower index for the worst, the higher for the best. Empty when none has a value."""
    ranked = sorted((value, index) for index, value in enumerate(values) if value is not None)
    if not ranked:
        return {}
    return {"best": ranked[-1][1], "median": ranked[len(ranked) // 2][1], "worst": ranked[0][1]}


def chosen_threshold(predictor: Predictor) -> tuple[float | None, str | None]:
    """The calibrated threshold used for Dice/IoU: the calibration's preferred one (max-F1 where labelled
    validation data gave one, else the target false-positive rate on normal validation images)."""
    preferred = predictor.calibration.preferred()
    if preferred is None:
        return None, None
    name, threshold = preferred
    return threshold.value, f"{name} ({threshold.provenance})"


def evaluate(
    predictor: Predictor,
    images: list[TestImage],
    name: str,
    device: str,
    bootstrap: int = 1000,
    seed: int = 0,
    threshold: tuple[float, str] | None = None,
) -> Evaluation:
    """Metrics of the read-out on the images; Dice and IoU at `threshold` (value, how chosen), by default
    the calibration's preferred threshold."""
    started = time.perf_counter()
    results = [score_case(predictor, load_case(item.path)) for item in images]
    seconds = (time.perf_counter() - started) / max(len(images), 1)
    labels = np.array([item.kind != "good" for item in images])
    scores = np.array([r.image_score for r in results])
    cut, threshold_method = threshold or chosen_threshold(predictor)
    groups = [item.group for item in images]
    values = {"image_auroc": m.auroc(scores, labels), "image_ap": m.average_precision(scores, labels)}
    evaluation = Evaluation(name, {}, scores, labels)
    maps = [r.heatmap[0] for r in results if r.heatmap is not None]
    pixel_level = len(maps) == len(results) and any(i.mask is not None for i in images)
    if pixel_level:
        truths = [i.mask if i.mask is not None else np.zeros_like(h, bool) for i, h in zip(images, maps, strict=True)]
        pooled_scores, pooled_truth = (
            np.concatenate([h.ravel() for h in maps]),
            np.concatenate([t.ravel() for t in truths]),
        )
        values.update(
            pixel_auroc=m.auroc(pooled_scores, pooled_truth),
            pixel_ap=m.average_precision(pooled_scores, pooled_truth),
            max_dice=m.best_dice(pooled_scores, pooled_truth),
        )
        found = [m.detections(h, t) for h, t in zip(maps, truths, strict=True)]
        values["froc_10fp"] = m.froc_sensitivity(found)
        if cut is not None:
            values["dice"], values["iou"] = m.dice_iou(pooled_scores >= cut, pooled_truth)
            evaluation.per_image_dice = [
                m.dice_iou(h >= cut, t)[0] if t.any() else None for h, t in zip(maps, truths, strict=True)
            ]
        evaluation.heatmaps = maps
        evaluation.curves = _pixel_curves(pooled_scores, pooled_truth)
        histograms = _pixel_histograms(maps, truths, pooled_scores)
    else:
        found, histograms = None, None
    counts = _confusion_counts(evaluation.heatmaps, images, cut) if pixel_level and cut is not None else None
    stds = (
        m.bootstrap_std(groups, _statistic(scores, labels, histograms, found, counts), resamples=bootstrap, seed=seed)
        if bootstrap
        else {}
    )
    keys = ["pixel_auroc", "pixel_ap", "max_dice", "dice", "iou", "image_auroc", "image_ap", "froc_10fp"]
    for key in keys:
        evaluation.metrics[key] = values.get(key)
        evaluation.metrics[f"{key}_std"] = stds.get(key) if values.get(key) is not None else None
    evaluation.metrics.update(
        threshold=cut,
        threshold_method=threshold_method,
        n_images=len(images),
        n_anomalous=int(labels.sum()),
        seconds_per_image=seconds,
        device=device,
        precision=predictor.precision,
        bootstrap_resamples=bootstrap,
        bootstrap_unit="group" if len(set(groups)) < len(groups) else "image",
    )
    evaluation.curves.update(_image_curves(scores, labels))
    return evaluation


def _pixel_histograms(maps, truths, pooled_scores):
    """Per-image counts of positive/negative pixels in shared quantile bins (for fast bootstrap)."""
    edges = np.unique(np.quantile(pooled_scores, np.linspace(0, 1, m.HISTOGRAM_BINS + 1)))
    positive = np.stack([np.histogram(h[t], bins=edges)[0] for h, t in zip(maps, truths, strict=True)])
    negative = np.stack([np.histogram(h[~t], bins=edges)[0] for h, t in zip(maps, truths, strict=True)])
    return positive, negative


def _confusion_counts(maps, images, threshold: float) -> np.ndarray:
    """(N, 3) true positives, false positives and false negatives of each image at the threshold."""
    rows = []
    for heatmap, item in zip(maps, images, strict=True):
        truth = item.mask if item.mask is not None else np.zeros_like(heatmap, bool)
        predicted = heatmap >= threshold
        rows.append((np.sum(predicted & truth), np.sum(predicted & ~truth), np.sum(~predicted & truth)))
    return np.asarray(rows, dtype=np.int64)


def _statistic(scores, labels, histograms, found, counts):
    def compute(indices: np.ndarray) -> dict:
        out = {
            "image_auroc": m.auroc(scores[indices], labels[indices]),
            "image_ap": m.average_precision(scores[indices], labels[indices]),
        }
        if histograms is not None:
            positive, negative = histograms
            out.update(m.histogram_curves(positive[indices].sum(0), negative[indices].sum(0)))
            out["froc_10fp"] = m.froc_sensitivity([found[i] for i in indices])
        if counts is not None:
            out["dice"], out["iou"] = m.dice_iou_from_counts(*counts[indices].sum(0))
        return out

    return compute


def _pixel_curves(scores: np.ndarray, truth: np.ndarray, points: int = 400) -> dict:
    if not m.has_both_classes(truth):
        return {}
    fpr, tpr, _ = roc_curve(truth, scores)
    precision, recall, _ = precision_recall_curve(truth, scores)
    r, p = _thin(len(fpr), points), _thin(len(precision), points)
    return {"pixel_roc": (fpr[r].tolist(), tpr[r].tolist()), "pixel_pr": (recall[p].tolist(), precision[p].tolist())}


def _thin(count: int, points: int) -> np.ndarray:
    """At most `points` evenly spaced indices into a curve of `count` points (keeps the report small)."""
    return np.unique(np.linspace(0, count - 1, min(points, count)).astype(int))


def _image_curves(scores: np.ndarray, labels: np.ndarray) -> dict:
    if not m.has_both_classes(labels):
        return {}
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    return {"image_roc": (fpr.tolist(), tpr.tolist()), "image_pr": (recall.tolist(), precision.tolist())}


SPREAD_FIGURES = ("pixel_auroc", "pixel_ap", "max_dice", "dice", "iou", "image_auroc", "image_ap", "froc_10fp")


def seed_spread(scored: list[tuple[str, dict, dict]]) -> list[dict]:
    """Mean ± sample sd of each figure over the bundles that differ only in their training seed: `scored` is
    (name, manifest, metrics) per bundle read-out; a group of one is left out. Bundles of one config are those
    whose config, less train.seed, read-out and training data are the same."""
    groups: dict[str, list[tuple[str, int | None, dict]]] = {}
    for name, manifest, metrics in scored:
        config = json.loads(json.dumps(manifest.get("config", {})))
        seed = config.get("train", {}).pop("seed", None)
        key = json.dumps([config, name.rpartition(":")[2], manifest.get("data", {}).get("sha256")], sort_keys=True)
        groups.setdefault(key, []).append((name, seed, metrics))
    spreads = []
    for members in groups.values():
        if len(members) < 2:
            continue
        figures = {}
        for key in SPREAD_FIGURES:
            values = [metrics.get(key) for _, _, metrics in members]
            present = [float(v) for v in values if v is not None]
            if len(present) == len(values):
                figures[key] = [float(np.mean(present)), float(np.std(present, ddof=1))]
        spreads.append(
            {
                "bundles": [name for name, _, _ in members],
                "seeds": [seed for _, seed, _ in members],
                "n": len(members),
                "figures": figures,
            }
        )
    return spreads
