"""Diagnosing a map method on a test split (issue #35): each lesion case's own figure, and where the map's
highest scores fall instead of the lesion: the background (air around a head, a dermoscope's dark
vignetting), the foreground's edge (skull and scalp, the image frame), or the rest of the tissue."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import metrics as m

# A partition of an image's pixels, in order of precedence: a lesion pixel on the edge counts as lesion.
REGIONS = ("lesion", "background", "edge", "tissue")
CASE_METRICS = {"pixel_ap": m.average_precision, "pixel_auroc": m.auroc}
# Dark specks and hairs thinner than this (pixels) are not background: only a wide dark area is.
BACKGROUND_OPENING = 5


def case_figures(maps: list[np.ndarray], truths: list[np.ndarray | None], metric: str) -> list[float | None]:
    """Each lesion case's own `metric` (pixel AP or AUROC over its own pixels: how well its map ranks its
    lesion above the rest of it, whatever the map's scale); None for a case without a lesion."""
    score = CASE_METRICS[metric]
    return [
        score(heatmap, truth) if truth is not None and truth.any() else None
        for heatmap, truth in zip(maps, truths, strict=True)
    ]


def image_regions(unit: np.ndarray, truth: np.ndarray, dark_level: float, edge_px: int) -> dict[str, np.ndarray]:
    """The (H, W) masks of REGIONS for a (C, H, W) image in [0, 1] and its lesion mask. Background: wide areas
    no brighter than `dark_level` in any channel that reach the image's frame (the air around a head, the
    dark corners of a dermoscope), so that dark tissue inside (CSF on FLAIR, a dark lesion) stays tissue.
    Edge: within `edge_px` of the background or of the frame. Tissue: the rest."""
    shape = truth.shape
    dark = ndimage.binary_opening(
        unit.max(axis=0) <= dark_level, structure=np.ones((BACKGROUND_OPENING, BACKGROUND_OPENING), bool)
    )
    labels, _ = ndimage.label(dark)
    on_frame = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, on_frame[on_frame > 0]) & ~truth
    near_frame = ~ndimage.binary_erosion(np.ones(shape, bool), iterations=edge_px, border_value=0)
    near_background = ndimage.binary_dilation(background, iterations=edge_px) if background.any() else background
    edge = (near_frame | near_background) & ~background & ~truth
    tissue = ~(truth | background | edge)
    return {"lesion": truth.copy(), "background": background, "edge": edge, "tissue": tissue}


def top_pixel_shares(heatmap: np.ndarray, regions: dict[str, np.ndarray], fraction: float = 0.01) -> dict[str, float]:
    """The share of the map's top `fraction` of pixels in each region. Pixels tied at the cut-off share the
    places left among them equally, so the shares do not depend on pixel order and sum to 1."""
    values = heatmap.ravel()
    count = max(1, round(fraction * values.size))
    cut = np.partition(values, values.size - count)[values.size - count]
    above = values > cut
    tied = values == cut
    weights = above.astype(float) + tied * ((count - above.sum()) / tied.sum())
    return {name: float(weights[region.ravel()].sum() / count) for name, region in regions.items()}


def area_shares(regions: dict[str, np.ndarray]) -> dict[str, float]:
    """Each region's share of the image: the top pixels' shares if the map were noise."""
    return {name: float(region.mean()) for name, region in regions.items()}


def mean_sd(rows: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Per key, the mean and standard deviation over the cases."""
    return {key: (float(np.mean([r[key] for r in rows])), float(np.std([r[key] for r in rows]))) for key in rows[0]}


def size_thirds(truths: list[np.ndarray]) -> list[int]:
    """Each lesion case's third by lesion area, 0 for the smallest third to 2 for the largest: a map that
    finds small lesions and misses large ones (or the reverse) shows in the pooled figure of each third.
    Cases of equal area fall in the same third."""
    areas = np.array([float(t.sum()) for t in truths])
    cuts = np.quantile(areas, [1 / 3, 2 / 3])
    return [int(np.searchsorted(cuts, area, side="left")) for area in areas]


def pooled_by(
    maps: list[np.ndarray], truths: list[np.ndarray], keys: list, metric: str
) -> dict[object, tuple[int, float | None]]:
    """Per key, the number of cases and `metric` (pixel AP or AUROC) pooled over their pixels, as `eval
    --anomalous-only` pools a split's lesion cases; None where the key's pixels are all of one class."""
    score = CASE_METRICS[metric]
    out = {}
    for key in sorted(set(keys), key=str):
        chosen = [k for k, other in enumerate(keys) if other == key]
        pooled = score(
            np.concatenate([maps[k].ravel() for k in chosen]), np.concatenate([truths[k].ravel() for k in chosen])
        )
        out[key] = (len(chosen), pooled)
    return out
