"""The diagnosis's own logic (engine/diagnosis.py, bench/diagnose.py's picks): per-case figures and the
best/median/worst against a direct computation, the image regions and the top pixels' shares on images
whose regions are drawn by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from anomascope.engine.diagnosis import (
    REGIONS,
    area_shares,
    case_figures,
    image_regions,
    pooled_by,
    size_thirds,
    top_pixel_shares,
)
from anomascope.engine.evaluation import best_median_worst
from tests.synthetic import random_disk

SIZE = 40


def noisy_cases(count: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Lesion disks with maps that find them through more or less noise, and one normal case."""
    rng = np.random.default_rng(seed)
    truths: list[np.ndarray | None] = [random_disk(rng, SIZE, 0.1, 0.2) for _ in range(count)]
    maps = [t + rng.normal(0, 0.2 + 0.3 * k, t.shape) for k, t in enumerate(truths)]
    maps.append(rng.normal(0, 1, (SIZE, SIZE)))
    truths.append(None)
    return maps, truths


@pytest.mark.parametrize(
    ("metric", "reference"), [("pixel_ap", average_precision_score), ("pixel_auroc", roc_auc_score)]
)
def test_case_figures_are_each_case_own_metric(metric, reference):
    maps, truths = noisy_cases(5)
    figures = case_figures(maps, truths, metric)
    expected = [reference(t.ravel(), h.ravel()) for h, t in zip(maps[:-1], truths[:-1], strict=True)]
    assert figures[:-1] == pytest.approx(expected) and figures[-1] is None


def test_best_median_worst_ignore_cases_without_a_figure():
    maps, truths = noisy_cases(7, seed=3)
    figures = case_figures(maps, truths, "pixel_ap")
    order = np.argsort([f for f in figures if f is not None])  # the normal case is last: indices agree
    assert best_median_worst(figures) == {"best": order[-1], "median": order[3], "worst": order[0]}
    assert best_median_worst([None, None]) == {}


def squares(sides: list[int]) -> list[np.ndarray]:
    masks = []
    for side in sides:
        mask = np.zeros((SIZE, SIZE), bool)
        mask[2 : 2 + side, 3 : 3 + side] = True
        masks.append(mask)
    return masks


def test_size_thirds_rank_cases_by_lesion_area_and_keep_ties_together():
    # Areas 4, 9, 16, 25, 36, 49 in shuffled order: two cases in each third.
    assert size_thirds(squares([5, 2, 7, 3, 6, 4])) == [1, 0, 2, 0, 2, 1]
    # Equal areas fall in the same third, whatever their order.
    assert size_thirds(squares([3, 3, 3, 5, 8, 8])) == [0, 0, 0, 1, 2, 2]


def test_pooled_by_pools_each_key_cases_pixels():
    maps, truths = noisy_cases(6, seed=1)
    maps, truths = maps[:-1], truths[:-1]
    keys = ["a", "b", "a", "b", "a"]
    pooled = pooled_by(maps, truths, keys, "pixel_ap")
    for key, chosen in (("a", [0, 2, 4]), ("b", [1, 3])):
        expected = average_precision_score(
            np.concatenate([truths[k].ravel() for k in chosen]), np.concatenate([maps[k].ravel() for k in chosen])
        )
        assert pooled[key] == (len(chosen), pytest.approx(expected))
    # Pooling is not the mean of each case's own figure.
    own = case_figures(maps, truths, "pixel_ap")
    assert pooled["a"][1] != pytest.approx(np.mean([own[k] for k in (0, 2, 4)]))


def drawn_image() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Bright tissue with a dark corner (background), a dark spot inside (tissue, not background), a one-pixel
    dark hair from the frame (too thin for background) and a lesion; the regions as the rules define them."""
    grey = np.full((SIZE, SIZE), 0.7)
    corner = np.zeros((SIZE, SIZE), bool)
    corner[:12, :12] = True
    grey[corner] = 0.05
    grey[20:26, 20:26] = 0.05  # dark, but does not reach the frame
    grey[30, 15:SIZE] = 0.05  # a hair: one pixel wide
    lesion = np.zeros((SIZE, SIZE), bool)
    lesion[14:19, 28:34] = True
    yy, xx = np.mgrid[:SIZE, :SIZE]
    from_frame = np.minimum.reduce([yy, xx, SIZE - 1 - yy, SIZE - 1 - xx])
    # Within 2 px of the corner in steps to the 4 neighbours (scipy's dilation), of the frame in rows/columns.
    near_corner = (np.maximum(yy - 11, 0) + np.maximum(xx - 11, 0)) <= 2
    edge = ((from_frame < 2) | near_corner) & ~corner & ~lesion
    expected = {"lesion": lesion, "background": corner, "edge": edge, "tissue": ~(lesion | corner | edge)}
    return np.stack([grey] * 3), lesion, expected


def test_regions_are_the_drawn_ones_and_partition_the_image():
    unit, lesion, expected = drawn_image()
    regions = image_regions(unit, lesion, dark_level=0.2, edge_px=2)
    assert list(regions) == list(REGIONS)
    assert np.array_equal(sum(r.astype(int) for r in regions.values()), np.ones((SIZE, SIZE), int))
    for name in REGIONS:
        assert np.array_equal(regions[name], expected[name]), name


def test_top_pixel_shares_sum_to_one_and_follow_the_map():
    unit, lesion, _ = drawn_image()
    regions = image_regions(unit, lesion, dark_level=0.2, edge_px=2)
    on_lesion = lesion.astype(float)
    assert top_pixel_shares(on_lesion, regions, fraction=0.01)["lesion"] == 1.0
    on_corner = regions["background"] * np.arange(SIZE * SIZE).reshape(SIZE, SIZE)
    assert top_pixel_shares(on_corner, regions, fraction=0.05)["background"] == 1.0
    # A flat map ties everywhere: the top pixels are shared as the image is.
    flat = top_pixel_shares(np.zeros((SIZE, SIZE)), regions)
    assert flat == pytest.approx(area_shares(regions))
    rng = np.random.default_rng(0)
    for fraction in (0.01, 0.1, 0.5):
        noisy = top_pixel_shares(rng.normal(size=(SIZE, SIZE)).round(1), regions, fraction)
        assert sum(noisy.values()) == pytest.approx(1.0)
