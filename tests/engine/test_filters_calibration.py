"""Smoothing filters and thresholds on hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anomascope.engine import calibration as cal
from anomascope.engine.filters import box_filter, gaussian_blur, scaled_odd


def test_filters_keep_constants_and_mass():
    flat = torch.full((2, 20, 24), 3.0)
    torch.testing.assert_close(gaussian_blur(flat, 2.0), flat)
    torch.testing.assert_close(box_filter(flat, 5), flat)
    spike = torch.zeros(1, 41, 41)
    spike[0, 20, 20] = 1.0
    assert float(gaussian_blur(spike, 2.0).sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(box_filter(spike, 5)[0, 20, 20]) == pytest.approx(1 / 25)


def test_scaled_filter_sizes():
    assert scaled_odd(31, 256) == 31
    assert scaled_odd(31, 192) % 2 == 1 and scaled_odd(31, 64) == 9


def test_threshold_at_fpr_flags_at_most_that_rate():
    scores = np.arange(1000, dtype=float)
    threshold = cal.threshold_at_fpr(scores, 0.01)
    assert np.mean(scores > threshold) <= 0.01
    assert np.mean(scores >= threshold) >= 0.01


def test_threshold_at_fpr_refuses_degenerate_normals():
    with pytest.raises(cal.CalibrationError, match="no spread"):
        cal.threshold_at_fpr(np.zeros(100), 0.05)


def test_k_sigma_and_percentile():
    stats = cal.normal_statistics(np.array([1.0, 3.0, 1.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert cal.threshold_k_sigma(stats, 3) == pytest.approx(2.0 + 3 * 1.0)
    assert cal.percentile_of(stats, 2.5) == 50.0


def test_max_f1_on_separable_pixels():
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 1])
    threshold, f1 = cal.threshold_max_f1(scores, labels)
    assert f1 == pytest.approx(1.0) and 0.3 < threshold <= 0.8


def test_typed_calibration_reads_every_shipped_manifest_and_writes_it_back():
    manifests = sorted((Path(__file__).parents[2] / "assets" / "models").glob("*/manifest.json"))
    assert manifests
    for path in manifests:
        manifest = json.loads(path.read_text())
        for readout, stored in manifest["calibration"].items():
            calibration = cal.Calibration.from_manifest(manifest, readout)
            # Manifests written before `level` existed are pixel-level read-outs.
            assert calibration.to_manifest() == {"level": "pixel", **stored}, (path, readout)
            assert calibration.values() == {name: t["value"] for name, t in stored["thresholds"].items()}
            assert calibration.validation_metrics == manifest["validation_metrics"][readout]
            name, threshold = calibration.preferred()
            assert name == next(n for n in cal.THRESHOLD_PREFERENCE if n in stored["thresholds"])
            assert threshold.provenance == stored["thresholds"][name]["provenance"]
    assert cal.Calibration.from_manifest({}, "sano").preferred() is None  # a bundle never calibrated
