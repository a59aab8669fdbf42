"""`anomascope tune`: a site threshold from cases with masks, as tuning.json and tuning.html."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from anomascope.engine.data import MaskedImage, read_mask
from anomascope.engine.inference import score_case
from anomascope.engine.io import load_case
from anomascope.engine.methods.base import Predictor
from anomascope.engine.tuning import (
    Criterion,
    Curves,
    TuningError,
    bootstrap_bands,
    case_curves,
    mean_curves,
    propose,
    threshold_grid,
)

CURVES = {"dice": "mean Dice (cases with findings)", "sensitivity": "mean sensitivity", "fpr": "false-positive rate"}


@dataclass(frozen=True)
class Tuning:
    """A proposed site threshold and the figures behind it."""

    predictor: Predictor
    criterion: Criterion
    threshold: float
    figure: float
    curves: Curves
    bands: dict[str, tuple[np.ndarray, np.ndarray]]
    cases: list[TunedCase]
    resamples: int

    @property
    def n_cases(self) -> int:
        return len(self.cases)


@dataclass(frozen=True)
class TunedCase:
    name: str
    group: str  # cases of one group (a patient) are resampled together


def tune(predictor: Predictor, images: list[MaskedImage], criterion: Criterion, resamples: int, seed: int) -> Tuning:
    """Score every image, compare its map with its mask at every threshold, and propose one."""
    if not images:
        raise TuningError("no images with masks to tune on")
    maps, masks = [], []
    for image in images:
        result = score_case(predictor, load_case(image.path))
        if result.heatmap is None:
            raise TuningError(f"{predictor.name} scores whole images and makes no map: there is no pixel threshold")
        if result.heatmap.shape[0] != 1:
            raise TuningError(f"{image.path.name}: tune reads 2D images with a mask each, not volumes")
        truth = read_mask(image.mask_path) if image.mask_path else np.zeros(result.heatmap.shape[1:], bool)
        if truth.shape != result.heatmap.shape[1:]:
            raise TuningError(
                f"{image.mask_path.name if image.mask_path else 'mask'} is {truth.shape[1]}x{truth.shape[0]} px but "
                f"{image.path.name} is {result.heatmap.shape[2]}x{result.heatmap.shape[1]} px"
            )
        maps.append(result.heatmap[0])
        masks.append(truth)
    cases = [TunedCase(image.path.name, image.group) for image in images]
    return summarise(predictor, maps, masks, cases, criterion, resamples, seed)


def summarise(
    predictor: Predictor,
    maps: list[np.ndarray],
    masks: list[np.ndarray],
    cases: list[TunedCase],
    criterion: Criterion,
    resamples: int,
    seed: int,
) -> Tuning:
    """Compare each map with its mask at every threshold, propose one, and band the curves."""
    curves = case_curves(maps, masks, threshold_grid(maps))
    threshold, figure = propose(curves, criterion)
    bands = bootstrap_bands(curves, [case.group for case in cases], resamples, seed)
    return Tuning(predictor, criterion, threshold, figure, curves, bands, cases, resamples)


def provenance(tuning: Tuning) -> str:
    findings = int(tuning.curves.has_finding.sum())
    return (
        f"anomascope tune: {tuning.criterion} = {tuning.figure:.4g} on {tuning.n_cases} cases "
        f"({findings} with findings, {tuning.n_cases - findings} normal)"
    )


def write_tuning(out: Path, tuning: Tuning, preset: dict | None) -> list[Path]:
    """tuning.json (criterion, proposed threshold, curves and bands, cases) and tuning.html (the curves)."""
    out.mkdir(parents=True, exist_ok=True)
    means = mean_curves(tuning.curves)
    record = {
        "bundle_id": tuning.predictor.bundle.id,
        "method": tuning.predictor.name,
        "criterion": str(tuning.criterion),
        "threshold": tuning.threshold,
        "figure": tuning.figure,
        "n_cases": tuning.n_cases,
        "n_with_findings": int(tuning.curves.has_finding.sum()),
        "bootstrap": {"resamples": tuning.resamples, "groups": len({case.group for case in tuning.cases})},
        "thresholds": tuning.curves.thresholds.tolist(),
        "curves": {name: _finite_or_none(values) for name, values in means.items()},
        "bands": {
            name: {"low": _finite_or_none(low), "high": _finite_or_none(high)}
            for name, (low, high) in tuning.bands.items()
        },
        "cases": [
            {"file": case.name, "group": case.group, "has_finding": bool(found)}
            for case, found in zip(tuning.cases, tuning.curves.has_finding, strict=True)
        ],
        "preset": preset,
    }
    json_path = out / "tuning.json"
    json_path.write_text(json.dumps(record, indent=2))
    html_path = out / "tuning.html"
    html_path.write_text(curves_figure(tuning).to_html(include_plotlyjs=True, full_html=True))
    return [json_path, html_path]


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    """JSON has no NaN: a figure that does not exist (no finding to be sensitive to) is null."""
    return [None if math.isnan(v) else float(v) for v in values]


def curves_figure(tuning: Tuning, title: str | None = None) -> go.Figure:
    """Mean Dice, sensitivity and false-positive rate against the threshold, with their bootstrap bands
    and the proposed threshold."""
    means = mean_curves(tuning.curves)
    t = tuning.curves.thresholds
    figure = make_subplots(rows=1, cols=3, subplot_titles=list(CURVES.values()))
    for column, (name, curve) in enumerate(CURVES.items(), start=1):
        if name in tuning.bands:
            low, high = tuning.bands[name]
            band_x = np.concatenate([t, t[::-1]])
            band_y = np.concatenate([high, low[::-1]])
            figure.add_trace(
                go.Scatter(
                    x=band_x,
                    y=band_y,
                    fill="toself",
                    line={"width": 0},
                    opacity=0.25,
                    name=f"{name}: 95% bootstrap band",
                    hoverinfo="skip",
                ),
                row=1,
                col=column,
            )
        figure.add_trace(go.Scatter(x=t, y=means[name], name=curve, mode="lines"), row=1, col=column)
        figure.add_vline(x=tuning.threshold, line_dash="dash", row=1, col=column)
    figure.update_layout(
        title=title
        or f"{tuning.predictor.name} ({tuning.predictor.bundle.id}): proposed threshold {tuning.threshold:.4g} "
        f"by {tuning.criterion} = {tuning.figure:.4g}, {tuning.n_cases} cases",
        height=420,
    )
    figure.update_xaxes(title_text="threshold")
    return figure
