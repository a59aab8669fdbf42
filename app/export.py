"""`anomascope export`: annotations as CSV/JSON tables and masks as PNG slices or NIfTI volumes."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from anomascope.app.dicom_export import HeatmapOf, write_parametric_maps, write_segmentations
from anomascope.engine.io.geometry import mask_volume
from anomascope.storage import Database, ThresholdPreset, all_presets, annotations_for_export, decode_mask
from anomascope.storage.records import ExportRow

FORMATS = ("csv", "json", "png", "nifti", "dicom-seg", "dicom-pm")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = [
    "annotation_id",
    "lineage",
    "version",
    "case_id",
    "case_hash",
    "source_name",
    "format",
    "modality",
    "slice_index",
    "mask_shape",
    "mask_pixels",
    "mask_mm2",
    "author",
    "label",
    "note",
    "created",
    "run_id",
    "method",
    "bundle_id",
    "weights_hash",
    "threshold",
    "threshold_method",
    "run_parameters",
]


def export(
    db: Database,
    out: Path,
    fmt: str,
    since: dt.datetime | None = None,
    author: str | None = None,
    heatmap: HeatmapOf | None = None,
) -> list[Path]:
    """The saved annotations in format `fmt`; "dicom-pm" also needs `heatmap`, which makes a run's map again."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    rows = annotations_for_export(db, since=since, author=author)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        return [_write_csv(out / "annotations.csv", rows), *_write_presets(out, fmt, all_presets(db))]
    if fmt == "json":
        path = out / "annotations.json"
        path.write_text(json.dumps([annotation_record(r) for r in rows], indent=2))
        return [path, *_write_presets(out, fmt, all_presets(db))]
    if fmt == "dicom-seg":
        return write_segmentations(rows, out)
    if fmt == "dicom-pm":
        if heatmap is None:
            raise ValueError("a Parametric Map export needs the bundles that made the runs")
        return write_parametric_maps(rows, out, heatmap)
    return [p for r in rows for p in (_write_png(out, r) if fmt == "png" else [_write_nifti(out, r)])]


def preset_record(preset: ThresholdPreset) -> dict:
    return {
        "preset_id": preset.id,
        "bundle_id": preset.bundle_id,
        "name": preset.name,
        "version": preset.version,
        "value": preset.value,
        "readout": preset.readout,
        "criterion": preset.criterion,
        "figure": preset.figure,
        "n_cases": preset.n_cases,
        "session": preset.session,
        "actor": preset.actor,
        "created": preset.created.isoformat(),
        "provenance": preset.provenance,
    }


def _write_presets(out: Path, fmt: str, presets: list[ThresholdPreset]) -> list[Path]:
    """presets.csv / presets.json beside the annotations: every version of every site threshold."""
    if not presets:
        return []
    records = [preset_record(p) for p in presets]
    path = out / f"presets.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(records, indent=2))
        return [path]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows({key: inert_cell(value) for key, value in record.items()} for record in records)
    return [path]


def annotation_record(row: ExportRow) -> dict:
    a, c, r = row.annotation, row.case, row.run
    mask = decode_mask(a.mask_shape, a.mask_data)
    spacing = c.spacing
    return {
        "annotation_id": a.id,
        "lineage": a.lineage,
        "version": a.version,
        "case_id": c.id,
        "case_hash": c.content_hash,
        "source_name": c.source_name,
        "format": c.format,
        "modality": c.modality,
        "slice_index": a.slice_index,
        "mask_shape": a.mask_shape,
        "mask_pixels": int(mask.sum()),
        "mask_mm2": float(mask.sum() * spacing[0] * spacing[1]) if spacing else None,
        "author": a.author,
        "label": a.label,
        "note": a.note,
        "created": a.created.isoformat(),
        "run_id": a.run_id,
        "method": r.method if r else None,
        "bundle_id": r.bundle_id if r else None,
        "weights_hash": r.weights_hash if r else None,
        **_threshold(a, r),
        "run_parameters": r.parameters if r else None,
    }


def _threshold(a, r) -> dict:
    """The threshold the mask was made at: the annotation's own (since schema 0002), else its run's."""
    if a.threshold is not None:
        return {"threshold": a.threshold, "threshold_method": a.threshold_method}
    return {"threshold": r.threshold if r else None, "threshold_method": r.threshold_method if r else None}


def _write_csv(path: Path, rows: list[ExportRow]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            record = annotation_record(row)
            record["mask_shape"] = json.dumps(record["mask_shape"])
            record["run_parameters"] = json.dumps(record["run_parameters"])
            writer.writerow({key: inert_cell(value) for key, value in record.items()})
    return path


def inert_cell(value):
    """Text a spreadsheet would run as a formula (=, +, -, @, or a tab or return first) gets a leading
    apostrophe, as OWASP advises; numbers stay numbers. Spreadsheets drop leading whitespace (a space, a
    line feed, a no-break space) before they look for a formula, so " =1" is looked at past it."""
    if isinstance(value, str) and (value.startswith(FORMULA_STARTS) or value.lstrip().startswith(FORMULA_STARTS)):
        return "'" + value
    return value


def _stem(row: ExportRow) -> str:
    return f"case{row.case.id}_ann{row.annotation.id}_v{row.annotation.version}"


def _slices(row: ExportRow) -> tuple[np.ndarray, list[int]]:
    """The mask as (slices, H, W) with the case slice index of each."""
    a = row.annotation
    mask = decode_mask(a.mask_shape, a.mask_data)
    if a.slice_index is not None:
        return mask.reshape(1, *mask.shape[-2:]), [a.slice_index]
    mask = mask.reshape(-1, *mask.shape[-2:])
    return mask, list(range(mask.shape[0]))


def _write_png(out: Path, row: ExportRow) -> list[Path]:
    mask, indices = _slices(row)
    paths = []
    for plane, index in zip(mask, indices, strict=True):
        path = out / f"{_stem(row)}_slice{index:04d}.png"
        Image.fromarray(plane.astype(np.uint8) * 255).save(path)
        paths.append(path)
    return paths


def _write_nifti(out: Path, row: ExportRow) -> Path:
    """One volume per annotation on the full case grid (a one-slice annotation sits at its slice)."""
    c = row.case
    mask, indices = _slices(row)
    full = np.zeros((c.shape[0], *mask.shape[-2:]), dtype=np.uint8)
    full[indices] = mask
    volume, affine = mask_volume(c.format, c.metadata_json, c.spacing, c.metadata_json.get("slice_spacing"), full)
    path = out / f"{_stem(row)}_mask.nii.gz"
    nib.save(nib.Nifti1Image(volume.astype(np.uint8), affine), path)
    return path
