"""DICOM out: each saved annotation version of a DICOM case as a DICOM Segmentation, made by highdicom,
that refers to the source series (its study, series, instances and frame of reference) and carries the
label, the reader and the algorithm, so that a PACS viewer (OHIF, 3D Slicer) shows it over the images it
came from; and the anomaly heatmap of the run each annotation came from as a Parametric Map, float32 with
a real-world value mapping, on the same geometry.

Only DICOM cases are exported this way. A photo (PNG/JPEG) or a NIfTI volume has no DICOM study to refer
to: wrapping it in a Secondary Capture would invent a patient and a study that no PACS holds, and the
Segmentation would hang from images nobody else has. Those annotations are listed, with that reason, in
`dicom-seg-not-exported.csv`; PNG and NIfTI export them as they are.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import highdicom as hd
import numpy as np
import torch
from pydicom.sr.codedict import codes

from anomascope.app.bundles import Catalogue
from anomascope.engine.inference import score_case
from anomascope.engine.io import ImageReadError, load_case, load_dicom_sources
from anomascope.engine.methods import registry
from anomascope.storage import InferenceRun, decode_mask
from anomascope.storage.records import ExportRow

SEG_SERIES_NUMBER = 9901  # series numbers no scanner uses, so the derived objects sort after the images
PM_SERIES_NUMBER = 9902
NOT_EXPORTED = "dicom-seg-not-exported.csv"
PM_NOT_EXPORTED = "dicom-pm-not-exported.csv"
DICOM_FORMATS = ("dicom", "dicom-series")
HeatmapOf = Callable[[ExportRow], np.ndarray]  # the (S, H, W) map of the run an export row came from


def write_segmentations(rows: list[ExportRow], out: Path) -> list[Path]:
    """One Segmentation file per annotation version of a DICOM case; the others, with the reason, in
    NOT_EXPORTED."""
    written, refused = [], []
    for row in rows:
        try:
            written.append(write_segmentation(row, out))
        except SegmentationRefused as exc:
            refused.append((row.annotation.id, row.annotation.version, row.case.source_name, str(exc)))
    return written + _refusals(out / NOT_EXPORTED, ["annotation_id", "version", "source_name", "reason"], refused)


def write_parametric_maps(rows: list[ExportRow], out: Path, heatmap: HeatmapOf) -> list[Path]:
    """One Parametric Map per run that an exported annotation of a DICOM case came from, its map made again
    by `heatmap` (runs keep no maps); the others, with the reason, in PM_NOT_EXPORTED."""
    written, refused, done = [], [], set()
    for row in rows:
        if row.run is None or row.run.id in done:
            continue
        done.add(row.run.id)
        try:
            written.append(write_parametric_map(row, out, heatmap))
        except SegmentationRefused as exc:
            refused.append((row.run.id, row.run.method, row.case.source_name, str(exc)))
    return written + _refusals(out / PM_NOT_EXPORTED, ["run_id", "method", "source_name", "reason"], refused)


def _refusals(path: Path, header: list[str], refused: list[tuple]) -> list[Path]:
    if not refused:
        return []
    with path.open("w", newline="") as f:
        table = csv.writer(f)
        table.writerow(header)
        table.writerows(refused)
    return [path]


def write_parametric_map(row: ExportRow, out: Path, heatmap: HeatmapOf) -> Path:
    run = _run_of(row)
    sources = _sources(row)
    method = registry().methods.get(run.method)
    if method is None or not method.maps:
        raise SegmentationRefused(f"{run.method} scores whole images and makes no map")
    values = np.ascontiguousarray(heatmap(row), dtype=np.float32)
    frames = _frames(sources)
    if values.shape != (frames, *row.case.shape[-2:]):
        raise SegmentationRefused(f"the map's shape {values.shape} is not the source's {frames} frames")
    low, high = float(values.min()), float(values.max())
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="ANOMALY",
        lut_explanation=_text(f"{run.method} anomaly score"),
        unit=codes.UCUM.NoUnits,
        value_range=(low, high),
        slope=1.0,
        intercept=0.0,
    )
    try:
        parametric_map = hd.pm.ParametricMap(
            source_images=sources,
            pixel_array=values,
            series_instance_uid=hd.UID(),
            series_number=PM_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="Anomascope",
            manufacturer_model_name="Anomascope",
            software_versions=metadata.version("anomascope"),
            device_serial_number="none",
            contains_recognizable_visual_features=False,
            real_world_value_mappings=[mapping],
            voi_lut_transformations=[
                hd.VOILUTTransformation(
                    window_center=(low + high) / 2,
                    window_width=max(high - low, 1e-6),
                    voi_lut_function=hd.VOILUTFunctionValues.LINEAR_EXACT,  # a map's range may be under 1
                )
            ],
            content_label="ANOMALYMAP",
            content_description=_text(f"run {run.id}: {run.method}, bundle {run.bundle_id}"),
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise SegmentationRefused(f"highdicom cannot make a Parametric Map of its source DICOM: {exc}") from exc
    # The General Series module asks for Laterality when no frame states it (type 2C); a map lies on the
    # source's side, and an empty value says that it is not known.
    parametric_map.Laterality = sources[0].get("Laterality", "")
    path = out / f"run-{run.id}-pm.dcm"
    parametric_map.save_as(path)
    return path


class SegmentationRefused(ValueError):
    """An annotation that cannot become a DICOM Segmentation, and why."""


def write_segmentation(row: ExportRow, out: Path) -> Path:
    annotation, case = row.annotation, row.case
    sources = _sources(row)
    frames = _frames(sources)
    mask = decode_mask(annotation.mask_shape, annotation.mask_data)
    rows, cols = case.shape[-2:]
    if mask.size != frames * rows * cols:
        raise SegmentationRefused(
            f"the mask holds {mask.size} pixels, the source series {frames} frames of {rows}x{cols}"
        )
    try:
        segmentation = _segmentation(row, sources, mask.reshape(frames, rows, cols))
    except (AttributeError, TypeError, ValueError) as exc:  # the source lacks what a Segmentation must copy
        raise SegmentationRefused(f"highdicom cannot make a Segmentation of its source DICOM: {exc}") from exc
    path = out / f"annotation-{annotation.id}-v{annotation.version}-seg.dcm"
    segmentation.save_as(path)
    return path


def _segmentation(row: ExportRow, sources: list, mask: np.ndarray) -> hd.seg.Segmentation:
    annotation = row.annotation
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment_description(row)],
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=annotation.version,
        manufacturer="Anomascope",
        manufacturer_model_name="Anomascope",
        software_versions=metadata.version("anomascope"),
        device_serial_number="none",
        content_label="ANOMALY",
        content_description=_text(f"annotation {annotation.id} version {annotation.version} of {annotation.lineage}"),
        content_creator_name=_person(annotation.author),
    )


def segment_description(row: ExportRow) -> hd.seg.SegmentDescription:
    """The one segment: its label, and how the mask was made. A mask that started from a method's thresholded
    map is SEMIAUTOMATIC (a reader reviewed it, corrected or not) and names the method and bundle; a mask
    drawn by the reader (no run, or an image-level method that makes no map) is MANUAL."""
    run = row.run
    method = registry().methods.get(run.method) if run is not None else None
    label = _text(row.annotation.label or "anomaly")
    if run is None or method is None or not method.maps:
        algorithm_type, algorithm = hd.seg.SegmentAlgorithmTypeValues.MANUAL, None
    else:
        algorithm_type = hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
        parameters = {"weights_sha256": run.weights_hash[:16]}
        if row.annotation.threshold is not None:
            parameters["threshold"] = f"{row.annotation.threshold:.6g}"
            parameters["threshold_method"] = _text(row.annotation.threshold_method or "manual")
        algorithm = hd.AlgorithmIdentificationSequence(
            name=f"anomascope {run.method}",
            family=codes.DCM.ArtificialIntelligence,
            version=_text(run.bundle_id),
            parameters=parameters,
        )
    return hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=algorithm_type,
        algorithm_identification=algorithm,
    )


def _sources(row: ExportRow) -> list:
    case = row.case
    if case.format not in DICOM_FORMATS:
        raise SegmentationRefused(
            f"a {case.format} case has no DICOM study or series to refer to; export it as PNG or NIfTI instead"
        )
    try:
        sources = load_dicom_sources(_stored_path(row))
    except ImageReadError as exc:
        raise SegmentationRefused(str(exc)) from exc
    for source in sources:
        _fill_type2(source)
    return sources


# The patient and study attributes highdicom copies into a derived object. DICOM makes them type 2: present,
# but allowed empty, and anonymised research data leaves many out altogether (highdicom then stops on the
# first one missing).
COPIED_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def _fill_type2(source) -> None:
    """Give a source (read for this export only) each copied type 2 attribute it lacks, empty: unknown."""
    for keyword in COPIED_TYPE2:
        if keyword not in source:
            setattr(source, keyword, "")


def _run_of(row: ExportRow) -> InferenceRun:
    """The run whose map a Parametric Map holds: the one the row's annotation came from."""
    if row.run is None:
        raise SegmentationRefused(f"annotation {row.annotation.id} was drawn by hand, not from a run's map")
    return row.run


def _stored_path(row: ExportRow) -> str:
    """Where the page keeps the DICOM files of the row's case."""
    stored = (row.case.metadata_json or {}).get("stored_path")
    if not stored or not Path(stored).exists():
        raise SegmentationRefused("its DICOM files are no longer in the data folder")
    return stored


def _frames(sources: list) -> int:
    """How many frames the source objects hold together (a multi-frame object counts each of its frames)."""
    return sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in sources)


def _text(value: str) -> str:
    """A DICOM short text (LO): at most 64 characters, no backslash."""
    return value.replace("\\", "/")[:64]


def _person(name: str) -> str:
    """A reader's name as a DICOM person name: the name as typed, as the family-name component."""
    return name.replace("\\", "/").replace("^", " ").replace("=", " ").strip()[:64] or "anonymous"


def rescored(catalogue: Catalogue, device: torch.device) -> HeatmapOf:
    """The map of an export row's run, made again on `device` by the installed bundle that made it (the
    same bundle id, read-out and weights hash): the read-outs are seeded, so it is the map the reader saw,
    up to the precision the networks run in."""

    def heatmap(row: ExportRow) -> np.ndarray:
        run = _run_of(row)
        picked = next(
            (c for c in catalogue.choices.values() if c.bundle.id == run.bundle_id and c.method == run.method), None
        )
        if picked is None:
            raise SegmentationRefused(
                f"the bundle {run.bundle_id} ({run.method}) that made run {run.id} is not installed"
            )
        if picked.bundle.manifest.get("weights_sha256") != run.weights_hash:
            raise SegmentationRefused(
                f"the installed bundle {run.bundle_id} has other weights than the ones run {run.id} used"
            )
        result = score_case(catalogue.predictor(picked.label, device), load_case(_stored_path(row)))
        if result.heatmap is None:
            raise SegmentationRefused(f"{run.method} scores whole images and makes no map")
        return result.heatmap

    return heatmap
