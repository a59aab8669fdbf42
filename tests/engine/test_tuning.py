"""The tuning maths on synthetic maps whose best thresholds are known analytically."""

from __future__ import annotations

import numpy as np
import pytest

from anomascope.engine.tuning import (
    Criterion,
    TuningError,
    bootstrap_bands,
    case_curves,
    mean_curves,
    propose,
    threshold_grid,
)

SHAPE = (40, 40)


def _session(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Six cases with a finding (scores U[0.6, 1] inside it, U[0, 0.4] outside) and four normal cases."""
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for k in range(6):
        truth = np.zeros(SHAPE, bool)
        truth[10:20, 5 + 3 * k : 15 + 3 * k] = True
        heatmap = rng.uniform(0.0, 0.4, SHAPE)
        heatmap[truth] = rng.uniform(0.6, 1.0, int(truth.sum()))
        maps.append(heatmap)
        masks.append(truth)
    for _ in range(4):
        maps.append(rng.uniform(0.0, 0.4, SHAPE))
        masks.append(np.zeros(SHAPE, bool))
    return maps, masks


def test_curves_equal_a_direct_computation():
    maps, masks = _session()
    thresholds = threshold_grid(maps)
    curves = case_curves(maps, masks, thresholds)
    for index in (0, 57, 140, len(thresholds) - 1):
        t = thresholds[index]
        for case, (heatmap, truth) in enumerate(zip(maps, masks, strict=True)):
            flagged = heatmap >= t
            false_positives = int((flagged & ~truth).sum())
            assert curves.false_positive_pixels[case, index] == false_positives
            if truth.any():
                hits = int((flagged & truth).sum())
                assert curves.dice[case, index] == pytest.approx(2 * hits / (flagged.sum() + truth.sum()))
                assert curves.sensitivity[case, index] == pytest.approx(hits / truth.sum())
            else:
                assert np.isnan(curves.dice[case, index])


def test_each_criterion_proposes_the_analytic_threshold():
    maps, masks = _session()
    curves = case_curves(maps, masks, threshold_grid(maps))
    # Every threshold above the findings' cases' background and at most their lowest finding score
    # separates them perfectly.
    threshold, dice = propose(curves, Criterion.parse("dice"))
    background = max(m[~t].max() for m, t in zip(maps[:6], masks[:6], strict=True))
    assert background < threshold <= min(m[t].min() for m, t in zip(maps[:6], masks[:6], strict=True))
    assert dice == 1.0
    # Finding scores are U[0.6, 1]: 90% of them lie above 0.64.
    threshold, sensitivity = propose(curves, Criterion.parse("sensitivity=0.9"))
    assert threshold == pytest.approx(0.64, abs=0.02) and sensitivity >= 0.9
    # Normal scores are U[0, 0.4]: 1% of them lie above 0.396.
    threshold, fpr = propose(curves, Criterion.parse("fpr=0.01"))
    assert threshold == pytest.approx(0.396, abs=0.01) and fpr <= 0.01
    normal_scores = np.concatenate([m.ravel() for m, t in zip(maps, masks, strict=True) if not t.any()])
    assert (normal_scores >= threshold).mean() == pytest.approx(fpr)


def test_bootstrap_bands_hold_the_mean_and_resample_whole_groups():
    maps, masks = _session()
    curves = case_curves(maps, masks, threshold_grid(maps, size=64))
    means = mean_curves(curves)
    bands = bootstrap_bands(curves, [f"case {i}" for i in range(len(maps))], resamples=200)
    for name in ("dice", "sensitivity", "fpr"):
        low, high = bands[name]
        inside = (low - 1e-9 <= means[name]) & (means[name] <= high + 1e-9)
        assert inside.mean() > 0.95, name
    # One patient holding every case: a resample is always the whole session, so the band has no width.
    one_patient = bootstrap_bands(curves, ["patient"] * len(maps), resamples=20)
    np.testing.assert_allclose(one_patient["dice"][0], one_patient["dice"][1])


@pytest.mark.parametrize("text", ["f1", "sensitivity", "fpr=2", "dice=0.5", "sensitivity=high"])
def test_unknown_criteria_are_one_sentence(text):
    with pytest.raises(TuningError, match="criterion"):
        Criterion.parse(text)


def test_criteria_that_the_cases_cannot_answer_say_why():
    maps, masks = _session()
    normals = case_curves(maps[6:], masks[6:], threshold_grid(maps[6:]))
    with pytest.raises(TuningError, match="needs cases with findings"):
        propose(normals, Criterion.parse("dice"))
    findings = case_curves(maps[:6], masks[:6], threshold_grid(maps[:6]))
    with pytest.raises(TuningError, match="needs normal cases"):
        propose(findings, Criterion.parse("fpr=0.01"))
    with pytest.raises(TuningError, match="differ"):
        case_curves([maps[0]], [masks[0][:10]], threshold_grid(maps))
