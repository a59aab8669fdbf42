"""What the review page does, as plain functions over a per-browser `Review` state (no Gradio here),
so every callback is testable without a browser."""
from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from scipy import ndimage

from app.bundles import Catalogue
from app.casestore import content_hash, register_case
from app.export import export
from app.inference_outputs import display_range
from engine.calibration import percentile_of
from engine.display import apply_window, overlay_heatmap, unit_to_rgb
from engine.inference import CaseResult, score_case
from engine.io import Case, ImageReadError, load_case
from engine.preprocess import InputMismatchError
from storage import Database, StorageError, case_history, case_summaries, record_run, save_annotation

WINDOW_PRESETS = {
    "From file": None,
    "CT soft tissue (40/400)": (40.0, 400.0),
    "CT lung (-600/1500)": (-600.0, 1500.0),
    "CT bone (400/1800)": (400.0, 1800.0),
    "CT brain (40/80)": (40.0, 80.0),
    "MR / full range": "range",
}
OUTLINE_COLOUR = np.array([0, 255, 120], dtype=np.uint8)


class ReviewError(Exception):
    """Something the reader should see as a sentence on the page."""


@dataclass
class Review:
    case: Case | None = None
    case_id: int | None = None
    result: CaseResult | None = None
    method: str | None = None
    lineages: dict = field(default_factory=dict)  # (method, slice) -> lineage of the annotation saved in this review
    editor_base: np.ndarray | None = None  # the mask last loaded into the correction editor


class ReviewApp:
    def __init__(self, db: Database, catalogue: Catalogue, cases_dir: Path, device: torch.device | None = None):
        self.db, self.catalogue, self.cases_dir = db, catalogue, cases_dir
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")

    # --- opening cases ---------------------------------------------------------------------

    def open_file(self, path: str | Path, reader: str = "") -> Review:
        path = Path(path)
        case = load_case(path)  # ImageReadError carries the one-sentence reason
        stored = self.cases_dir / content_hash(case)[:16] / path.name
        stored.parent.mkdir(parents=True, exist_ok=True)
        if not stored.exists():
            if path.is_dir():
                shutil.copytree(path, stored)
            else:
                shutil.copy2(path, stored)
        case.metadata["stored_path"] = str(stored)
        record = register_case(self.db, case, actor=reader.strip() or "anonymous")
        return Review(case=case, case_id=record.id)

    def open_saved(self, case_id: int) -> Review:
        history = case_history(self.db, case_id)
        stored = history.case.metadata_json.get("stored_path")
        if not stored or not Path(stored).exists():
            raise ReviewError(f"case {case_id} ({history.case.source_name}): its image file is no longer in the data folder")
        case = load_case(stored)
        case.metadata["stored_path"] = stored
        return Review(case=case, case_id=case_id)

    def worklist(self) -> list[list]:
        return [[record.id, record.source_name, record.modality, "×".join(map(str, record.shape)), n_runs, n_notes,
                 record.created.strftime("%Y-%m-%d %H:%M")] for record, n_runs, n_notes in case_summaries(self.db)]

    # --- running a method ------------------------------------------------------------------

    def run(self, review: Review, label: str) -> Review:
        if review.case is None:
            raise ReviewError("open an image first")
        if label not in self.catalogue.choices:
            raise ReviewError("pick a trained method first")
        predictor = self.catalogue.predictor(label, self.device)
        try:
            result = score_case(predictor, review.case)
        except InputMismatchError as exc:
            raise ReviewError(str(exc)) from exc
        return Review(review.case, review.case_id, result, label, review.lineages)

    def thresholds(self, review: Review) -> dict[str, float]:
        if review.method is None:
            return {}
        predictor = self.catalogue.predictor(review.method, self.device)
        return {name: t["value"] for name, t in predictor.calibration.get("thresholds", {}).items()}

    def default_threshold(self, review: Review) -> tuple[float, str]:
        presets = self.thresholds(review)
        for name in ("max_f1", "target_fpr", "k_sigma"):
            if name in presets:
                return presets[name], name
        if review.result.heatmap is None:
            return review.result.image_score, "this image's score (no calibration)"
        return float(np.percentile(review.result.heatmap, 99)), "99th percentile of this map"

    def score_text(self, review: Review) -> str:
        predictor = self.catalogue.predictor(review.method, self.device)
        score = review.result.image_score
        text = f"Image score **{score:.4g}** ({review.result.seconds:.2f} s on {self.device.type})"
        normal = predictor.calibration.get("normal")
        if normal:
            text += f" — higher than {percentile_of(normal, score):.0f}% of {normal['n_images']} normal validation images"
        if review.result.heatmap is None:
            presets = self.thresholds(review)
            text += (". This method scores whole images and makes no heatmap: its thresholds flag images, and any"
                     " mask you save is the one you draw.")
            if "target_fpr" in presets:
                flagged = score >= presets["target_fpr"]
                text += f" At the calibrated target-FPR threshold ({presets['target_fpr']:.4g}) this image is " \
                        f"**{'flagged' if flagged else 'not flagged'}**."
        return text

    def threshold_range(self, review: Review) -> tuple[float, float]:
        """The threshold slider's range: the map's values, or for image-level methods the image scores of
        the normal validation images, this image and the calibrated thresholds."""
        if review.result.heatmap is not None:
            return float(review.result.heatmap.min()), float(review.result.heatmap.max())
        predictor = self.catalogue.predictor(review.method, self.device)
        values = [review.result.image_score, *self.thresholds(review).values(),
                  *predictor.calibration.get("normal", {}).get("image_scores", [])]
        return float(min(values)), float(max(values))

    # --- display (never re-runs the model) -------------------------------------------------

    def base_image(self, review: Review, index: int, window: tuple[float, float]) -> np.ndarray:
        return apply_window(review.case.pixels[index], *window)

    def mask(self, review: Review, index: int, threshold: float) -> np.ndarray:
        """The thresholded map; empty for image-level methods (the reader draws the mask)."""
        if review.result.heatmap is None:
            return np.zeros(review.case.shape[-2:], dtype=bool)
        return review.result.heatmap[index] >= threshold

    def overlay(self, review: Review, index: int, window, threshold: float, opacity: float, colormap: str) -> np.ndarray:
        base = self.base_image(review, index, window)
        if review.result is None or review.result.heatmap is None:
            return base
        heatmap = review.result.heatmap[index]
        low, high = display_range(self.catalogue.predictor(review.method, self.device), heatmap)
        shown = overlay_heatmap(base, heatmap, low, high, opacity, colormap)
        outline = self.mask(review, index, threshold)
        edge = outline & ~ndimage.binary_erosion(outline)
        shown[edge] = OUTLINE_COLOUR
        return shown

    def area_text(self, review: Review, mask: np.ndarray) -> str:
        pixels = int(mask.sum())
        text = f"Mask area: {pixels} px"
        if review.case.spacing:
            text += f" = {pixels * review.case.spacing[0] * review.case.spacing[1]:.1f} mm²"
        return text

    def restoration(self, review: Review, index: int) -> np.ndarray | None:
        if review.result is None or review.result.restoration is None:
            return None
        return unit_to_rgb(review.result.restoration[index])

    def uncertainty(self, review: Review, index: int) -> np.ndarray | None:
        if review.result is None or review.result.uncertainty is None:
            return None
        u = review.result.uncertainty[index]
        return apply_window(u[None], float(u.max() + u.min()) / 2, float(u.max() - u.min()) or 1.0)

    def heatmap_figure(self, review: Review, index: int, colormap: str) -> go.Figure | None:
        if review.result is None or review.result.heatmap is None:
            return None
        heatmap = review.result.heatmap[index]
        step = max(1, int(np.ceil(max(heatmap.shape) / 256)))  # keep the browser light on big images
        figure = go.Figure(go.Heatmap(z=heatmap[::step, ::step], x=np.arange(0, heatmap.shape[1], step),
                                      y=np.arange(0, heatmap.shape[0], step), colorscale=colormap,
                                      colorbar=dict(title="score"),
                                      hovertemplate="x %{x}, y %{y}<br>score %{z:.4g}<extra></extra>"))
        figure.update_yaxes(autorange="reversed", scaleanchor="x")
        figure.update_layout(margin=dict(l=10, r=10, t=10, b=10), height=360)
        return figure

    # --- saving and export -------------------------------------------------------------------

    def save(self, review: Review, index: int, mask: np.ndarray, threshold: float, threshold_method: str,
             reader: str, label: str = "", note: str = "") -> str:
        if review.result is None or review.case_id is None:
            raise ReviewError("run a method on an image before saving")
        if not reader or not reader.strip():
            raise ReviewError("enter the reader's name before saving")
        predictor = self.catalogue.predictor(review.method, self.device)
        bundle = predictor.bundle
        run = record_run(self.db, case_id=review.case_id, method=predictor.name, bundle_id=bundle.id,
                         weights_hash=bundle.manifest["weights_sha256"],
                         parameters=predictor.parameters,
                         threshold=float(threshold), threshold_method=threshold_method,
                         image_score=review.result.image_score, seconds=review.result.seconds,
                         device=self.device.type, actor=reader)
        slice_index = index if review.case.shape[0] > 1 else None
        key = (review.method, slice_index)
        annotation = save_annotation(self.db, case_id=review.case_id, run_id=run.id, mask=mask, author=reader,
                                     slice_index=slice_index, label=label or None, note=note or None,
                                     corrects=review.lineages.get(key))
        review.lineages[key] = annotation.lineage
        return f"Saved annotation {annotation.id} (version {annotation.version}) with run {run.id}, threshold {threshold:.4g}."

    def history(self, review: Review) -> list[list]:
        if review.case_id is None:
            return []
        history = case_history(self.db, review.case_id)
        rows = [["run", r.id, r.created.strftime("%Y-%m-%d %H:%M:%S"), f"{r.method} ({r.bundle_id})",
                 f"threshold {r.threshold:.4g} [{r.threshold_method}]", ""] for r in history.runs]
        rows += [["annotation", a.id, a.created.strftime("%Y-%m-%d %H:%M:%S"), a.author,
                  f"v{a.version} of {a.lineage[:8]}, slice {a.slice_index if a.slice_index is not None else 'all'}",
                  " · ".join(x for x in (a.label, a.note) if x)] for a in history.annotations]
        return sorted(rows, key=lambda row: row[2])

    def export_file(self, fmt: str) -> str:
        out = Path(tempfile.mkdtemp(prefix="anomascope-export-"))
        paths = export(self.db, out / "files", fmt)
        if not paths:
            raise ReviewError("nothing to export yet: no annotations are saved")
        if len(paths) == 1:
            return str(paths[0])
        archive = out / f"annotations-{fmt}.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for path in paths:
                zf.write(path, path.name)
        return str(archive)


def mask_from_editor(value, fallback: np.ndarray) -> np.ndarray:
    """The corrected mask from an ImageEditor value: painted layer pixels are the mask."""
    if not value or not value.get("layers"):
        return fallback
    layer = np.asarray(value["layers"][0])
    if layer.ndim != 3 or layer.shape[:2] != fallback.shape:
        return fallback
    return layer[..., 3] > 0


def corrected_mask(threshold_mask: np.ndarray, editor_base: np.ndarray | None, edited: np.ndarray) -> np.ndarray:
    """The reader's strokes applied to the mask at the current threshold.

    Strokes are what the editor holds beyond (brush) or short of (eraser) the mask it was loaded
    with; applying them to the current thresholded mask keeps the saved mask consistent with the
    saved threshold even if the editor had not caught up with the last threshold move.
    """
    if editor_base is None or editor_base.shape != edited.shape:
        return edited
    added, removed = edited & ~editor_base, editor_base & ~edited
    return (threshold_mask | added) & ~removed


def editor_value(base: np.ndarray, mask: np.ndarray) -> dict:
    layer = np.zeros((*mask.shape, 4), dtype=np.uint8)
    layer[mask] = (255, 0, 0, 160)
    composite = base.copy()
    composite[mask] = (0.37 * base[mask] + 0.63 * np.array([255, 0, 0])).astype(np.uint8)
    return {"background": base, "layers": [layer], "composite": composite}


def gather_series(paths: list[str]) -> Path:
    """Files of an uploaded folder (each in its own temporary upload folder) into one series folder."""
    folder = Path(tempfile.mkdtemp(prefix="anomascope-series-"))
    for index, path in enumerate(paths):
        shutil.copy2(path, folder / f"{index:05d}_{Path(path).name}")
    return folder


def friendly(exc: Exception) -> str:
    if isinstance(exc, (ImageReadError, ReviewError, StorageError, InputMismatchError)):
        return f"⚠️ {exc}"
    return f"⚠️ Unexpected error ({type(exc).__name__}): {exc}"
