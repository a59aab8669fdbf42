"""Thresholds and normal-score statistics, computed from validation images and kept in the bundle."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import precision_recall_curve

PERCENTILES = (50, 90, 95, 99, 99.9)
# Which calibrated threshold decides by default: max-F1 where labelled validation data gave one, then the
# target false-positive rate on normal images, then SANO's k-sigma.
THRESHOLD_PREFERENCE = ("max_f1", "target_fpr", "k_sigma")


class CalibrationError(ValueError):
    """Validation data that cannot give a meaningful threshold."""


@dataclass(frozen=True)
class NormalStatistics:
    """Scores on normal validation images: for z-scores, percentiles and k-sigma."""

    n_images: int
    n_pixels: int
    pixel_mean: float
    pixel_std: float
    pixel_percentiles: dict[str, float]  # by percentile, as in PERCENTILES ("50", "99.9", ...)
    image_scores: list[float]  # sorted
    image_mean: float
    image_std: float

    @classmethod
    def from_dict(cls, data: dict) -> NormalStatistics:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @property
    def median_pixel(self) -> float:
        return self.pixel_percentiles["50"]


@dataclass(frozen=True)
class Threshold:
    """A calibrated threshold, where it came from, and its own figures (k, fpr or f1)."""

    value: float
    provenance: str
    details: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> Threshold:
        details = {key: float(v) for key, v in data.items() if key not in ("value", "provenance")}
        return cls(float(data["value"]), str(data.get("provenance", "")), details)

    def to_dict(self) -> dict:
        return {"value": self.value, **self.details, "provenance": self.provenance}


@dataclass(frozen=True)
class Calibration:
    """One read-out's calibration on validation data: the normal-score statistics (`normal_statistics`),
    each threshold with its provenance, whether it thresholds pixels or whole images, and the validation
    metrics. Stored in the bundle's manifest as plain JSON; `from_manifest` reads every manifest written
    so far."""

    normal: NormalStatistics | None = None
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    level: str = "pixel"  # "pixel": thresholds apply to map values; "image": to image scores
    validation_metrics: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: dict, readout: str) -> Calibration:
        """The read-out's calibration; an empty one for a bundle that was never calibrated."""
        stored = manifest.get("calibration", {}).get(readout, {})
        return cls(
            normal=NormalStatistics.from_dict(stored["normal"]) if "normal" in stored else None,
            thresholds={name: Threshold.from_dict(t) for name, t in stored.get("thresholds", {}).items()},
            level=stored.get("level", "pixel"),
            validation_metrics=manifest.get("validation_metrics", {}).get(readout, {}),
        )

    def to_manifest(self) -> dict:
        """The manifest's calibration entry for the read-out (its metrics go under validation_metrics)."""
        return {
            "normal": self.normal.to_dict() if self.normal else None,
            "thresholds": {name: t.to_dict() for name, t in self.thresholds.items()},
            "level": self.level,
        }

    @property
    def calibrated(self) -> bool:
        return bool(self.thresholds)

    def values(self) -> dict[str, float]:
        """Each threshold's value by name: the presets a reader picks from."""
        return {name: t.value for name, t in self.thresholds.items()}

    def preferred(self) -> tuple[str, Threshold] | None:
        """The threshold that decides by default (THRESHOLD_PREFERENCE), with its name."""
        for name in THRESHOLD_PREFERENCE:
            if name in self.thresholds:
                return name, self.thresholds[name]
        return None

    def percentile_of(self, image_score: float) -> float | None:
        """Where an image score falls among the normal validation images (0-100); None if uncalibrated."""
        return percentile_of(self.normal, image_score) if self.normal else None

    @property
    def normal_image_scores(self) -> list[float]:
        return self.normal.image_scores if self.normal else []


def normal_statistics(pixel_scores: np.ndarray, image_scores: np.ndarray) -> NormalStatistics:
    """Distribution of scores on normal validation images: for z-scores, percentiles, k-sigma."""
    pixels = np.asarray(pixel_scores, dtype=np.float64).ravel()
    images = np.sort(np.asarray(image_scores, dtype=np.float64).ravel())
    return NormalStatistics(
        n_images=int(images.size),
        n_pixels=int(pixels.size),
        pixel_mean=float(pixels.mean()),
        pixel_std=float(pixels.std()),
        pixel_percentiles={str(p): float(np.percentile(pixels, p)) for p in PERCENTILES},
        image_scores=images.tolist(),
        image_mean=float(images.mean()),
        image_std=float(images.std()),
    )


def threshold_k_sigma(stats: NormalStatistics, k: float) -> float:
    """SANO's heuristic: anomalous where the score exceeds the normal mean by k standard deviations."""
    return float(stats.pixel_mean + k * stats.pixel_std)


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


def percentile_of(stats: NormalStatistics, image_score: float) -> float:
    """Where an image score falls among normal validation images (0-100)."""
    scores = np.asarray(stats.image_scores)
    return float(100.0 * np.searchsorted(scores, image_score, side="right") / max(scores.size, 1))
