"""Scoring whole cases: preprocessing, batched prediction, maps back on the original pixel grid."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .io import Case
from .methods.base import MapPredictor, Predictor
from .preprocess import InputMismatchError, foreground, to_model_input, to_original_grid, window_to_unit


class NonFiniteResultError(RuntimeError):
    """A method produced NaN or infinite values; they are never shown or saved as a map."""


@dataclass
class CaseResult:
    """One case scored: arrays are per slice on the original (H, W) grid."""

    heatmap: np.ndarray | None  # (S, H, W)
    slice_scores: np.ndarray  # (S,)
    restoration: np.ndarray | None  # (S, C, H, W) in [0, 1]
    uncertainty: np.ndarray | None  # (S, H, W)
    seconds: float

    @property
    def image_score(self) -> float:
        """A volume is as anomalous as its most anomalous slice."""
        return float(self.slice_scores.max())


def score_case(predictor: Predictor, case: Case, batch_size: int = 8) -> CaseResult:
    started = time.perf_counter()
    name = case.source.replace("\\", "/").rsplit("/", 1)[-1]
    if not np.isfinite(case.pixels).all():
        raise InputMismatchError(name, "the image holds NaN or infinite intensities; no method can score it")
    inputs, geometries = [], []
    for index in range(case.shape[0]):
        x, geometry = to_model_input(
            case.pixels[index],
            case.window,
            predictor.preprocess,
            predictor.stride,
            source=name if case.shape[0] == 1 else f"{name} slice {index}",
            spacing=case.spacing if case.format.startswith("dicom") else None,  # NIfTI's pixdim defaults to 1 mm
        )
        inputs.append(x)
        geometries.append(geometry)
    heatmaps, scores, restorations, uncertainties = [], [], [], []
    for start in range(0, len(inputs), batch_size):
        batch = torch.stack(inputs[start : start + batch_size])
        predicted = predictor.predict(batch)
        for offset, geometry in enumerate(geometries[start : start + batch_size]):
            if predicted.heatmap is not None:
                if not isinstance(predictor, MapPredictor):
                    raise TypeError(f"{predictor.name} returns maps, so it must be a MapPredictor (with reduce)")
                heatmap = to_original_grid(predicted.heatmap[offset], geometry)
                if predictor.preprocess.foreground_above is not None:
                    unit = window_to_unit(case.pixels[start + offset], case.window)
                    heatmap = np.where(foreground(unit, predictor.preprocess.foreground_above), heatmap, 0.0)
                heatmaps.append(heatmap)
                scores.append(predictor.reduce(heatmap))
            else:
                scores.append(float(predicted.image_score[offset]))
            if predicted.restoration is not None:
                restorations.append(to_original_grid(predicted.restoration[offset], geometry))
            if predicted.uncertainty is not None:
                uncertainties.append(to_original_grid(predicted.uncertainty[offset], geometry))
    result = CaseResult(
        heatmap=np.stack(heatmaps) if heatmaps else None,
        slice_scores=np.asarray(scores, dtype=np.float64),
        restoration=np.stack(restorations) if restorations else None,
        uncertainty=np.stack(uncertainties) if uncertainties else None,
        seconds=time.perf_counter() - started,
    )
    _check_finite(predictor, name, result)
    return result


def _check_finite(predictor: Predictor, name: str, result: CaseResult) -> None:
    for what in ("heatmap", "slice_scores", "restoration", "uncertainty"):
        values = getattr(result, what)
        if values is not None and not np.isfinite(values).all():
            bad = int(np.count_nonzero(~np.isfinite(values)))
            raise NonFiniteResultError(
                f"{name}: {predictor.name} produced {bad:,} NaN or infinite values in its "
                f"{what.replace('_', ' ')}; nothing is shown or saved from this run"
            )
