"""A site's threshold from its own cases: per-case Dice, sensitivity and false-positive area against the
threshold, grouped bootstrap bands, and the threshold a criterion proposes.

Everything here takes maps and masks already on one grid; scoring and reading files are the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CRITERIA = ("dice", "sensitivity", "fpr")
GRID_SIZE = 256


class TuningError(ValueError):
    """Cases, masks or a criterion from which no threshold can be proposed; says which and why."""


@dataclass(frozen=True)
class Criterion:
    """How the site threshold is chosen: max mean Dice over the cases with findings, the highest
    threshold that keeps a mean sensitivity, or the lowest that keeps the pixel false-positive rate on
    the normal cases at most a target."""

    kind: str
    target: float | None = None

    @classmethod
    def parse(cls, text: str) -> Criterion:
        kind, _, value = text.partition("=")
        if kind not in CRITERIA or (kind == "dice") != (value == ""):
            raise TuningError(f"unknown criterion {text!r}: use dice, sensitivity=S or fpr=F (e.g. sensitivity=0.9)")
        if kind == "dice":
            return cls("dice")
        try:
            target = float(value)
        except ValueError:
            raise TuningError(f"criterion {text!r}: {value!r} is not a number") from None
        if not 0.0 < target < 1.0:
            raise TuningError(f"criterion {text!r}: the target must lie between 0 and 1")
        return cls(kind, target)

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}={self.target:g}"


@dataclass(frozen=True)
class Curves:
    """Per case (rows) and threshold (columns). Sensitivity and Dice are NaN on cases without findings;
    the false-positive rate is over each case's normal pixels."""

    thresholds: np.ndarray  # (T,) ascending
    dice: np.ndarray  # (N, T)
    sensitivity: np.ndarray  # (N, T)
    false_positive_pixels: np.ndarray  # (N, T)
    normal_pixels: np.ndarray  # (N,) pixels outside the mask
    has_finding: np.ndarray  # (N,) bool


def threshold_grid(maps: list[np.ndarray], size: int = GRID_SIZE) -> np.ndarray:
    """Candidate thresholds: quantiles of every map value pooled (dense where the scores are), and evenly
    spaced values over their range (so that a gap between normal and anomalous scores has points too)."""
    pooled = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    steps = np.linspace(0.0, 1.0, size)
    return np.unique(np.concatenate([np.quantile(pooled, steps), pooled.min() + steps * np.ptp(pooled)]))


def case_curves(maps: list[np.ndarray], masks: list[np.ndarray], thresholds: np.ndarray) -> Curves:
    """Each case's Dice, sensitivity and false positives at every threshold (a pixel is flagged where
    its score is at least the threshold)."""
    if len(maps) != len(masks) or not maps:
        raise TuningError(f"{len(maps)} maps and {len(masks)} masks: need one mask per case, and a case")
    rows = [
        _case_row(np.asarray(m, np.float64), np.asarray(t, bool), thresholds) for m, t in zip(maps, masks, strict=True)
    ]
    dice, sensitivity, false_positives, normal = (np.array(column) for column in zip(*rows, strict=True))
    return Curves(thresholds, dice, sensitivity, false_positives, normal, np.array([t.any() for t in masks]))


def _case_row(heatmap: np.ndarray, truth: np.ndarray, thresholds: np.ndarray):
    if heatmap.shape != truth.shape:
        raise TuningError(f"a map of shape {heatmap.shape} and its mask of shape {truth.shape} differ")
    inside, outside = np.sort(heatmap[truth]), np.sort(heatmap[~truth])
    # Pixels at or above each threshold, from the sorted scores (no mask per threshold is built).
    true_positives = inside.size - np.searchsorted(inside, thresholds, side="left")
    false_positives = outside.size - np.searchsorted(outside, thresholds, side="left")
    if inside.size == 0:
        nan = np.full(thresholds.shape, np.nan)
        return nan, nan, false_positives, outside.size
    dice = 2 * true_positives / (inside.size + true_positives + false_positives)
    return dice, true_positives / inside.size, false_positives, outside.size


def mean_curves(curves: Curves, cases: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Mean Dice and sensitivity over the cases with findings, and the pixel false-positive rate over the
    normal cases (every case when none is normal), for the chosen `cases` (all by default)."""
    chosen = np.arange(len(curves.has_finding)) if cases is None else cases
    findings = chosen[curves.has_finding[chosen]]
    normals = chosen[~curves.has_finding[chosen]]
    fpr_cases = normals if normals.size else chosen
    nan = np.full(curves.thresholds.shape, np.nan)
    return {
        "dice": curves.dice[findings].mean(axis=0) if findings.size else nan,
        "sensitivity": curves.sensitivity[findings].mean(axis=0) if findings.size else nan,
        "fpr": curves.false_positive_pixels[fpr_cases].sum(axis=0) / max(curves.normal_pixels[fpr_cases].sum(), 1),
    }


def bootstrap_bands(
    curves: Curves, groups: list[str], resamples: int = 1000, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """2.5 and 97.5 percentiles of each mean curve over resamples of whole groups (patients, or cases),
    so that slices or images of one patient never count as independent."""
    names = np.asarray(groups)
    unique = np.unique(names)
    members = [np.flatnonzero(names == g) for g in unique]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {"dice": [], "sensitivity": [], "fpr": []}
    for _ in range(resamples):
        picked = np.concatenate([members[i] for i in rng.integers(0, len(unique), len(unique))])
        for name, curve in mean_curves(curves, picked).items():
            draws[name].append(curve)
    return {
        name: (np.nanpercentile(np.array(d), 2.5, axis=0), np.nanpercentile(np.array(d), 97.5, axis=0))
        for name, d in draws.items()
        if not np.isnan(np.array(d)).all()
    }


def propose(curves: Curves, criterion: Criterion) -> tuple[float, float]:
    """(threshold, the criterion's figure there) for the session's cases."""
    means = mean_curves(curves)
    t = curves.thresholds
    if criterion.kind in ("dice", "sensitivity") and not curves.has_finding.any():
        raise TuningError(f"criterion {criterion} needs cases with findings (non-empty masks); all masks are empty")
    if criterion.kind == "fpr" and curves.has_finding.all():
        raise TuningError(f"criterion {criterion} needs normal cases (empty masks); every mask has a finding")
    if criterion.kind == "dice":
        # The middle of the best plateau: a site threshold should not sit on the edge of its range.
        plateau = np.flatnonzero(means["dice"] >= np.nanmax(means["dice"]) - 1e-12)
        best = int(plateau[len(plateau) // 2])
        return float(t[best]), float(means["dice"][best])
    if criterion.kind == "sensitivity":
        keeps = np.flatnonzero(means["sensitivity"] >= criterion.target)
        best = int(keeps.max())  # the highest threshold that still finds the target share
        return float(t[best]), float(means["sensitivity"][best])
    keeps = np.flatnonzero(means["fpr"] <= criterion.target)
    if not keeps.size:
        raise TuningError(f"no threshold keeps the false-positive rate at or below {criterion.target:g}")
    best = int(keeps.min())  # the lowest threshold within the false-positive budget
    return float(t[best]), float(means["fpr"][best])
