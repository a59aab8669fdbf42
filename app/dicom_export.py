"""DICOM out: each saved annotation version of a DICOM case as a DICOM Segmentation, made by highdicom,
that refers to the source series (its study, series, instances and frame of reference) and carries the
label, the reader and the algorithm, so that a PACS viewer (OHIF, 3D Slicer) shows it over the images it
came from.

Only DICOM cases are exported this way. A photo (PNG/JPEG) or a NIfTI volume has no DICOM study to refer
to: wrapping it in a Secondary Capture would invent a patient and a study that no PACS holds, and the
Segmentation would hang from images nobody else has. Those annotations are listed, with that reason, in
`dicom-seg-not-exported.csv`; PNG and NIfTI export them as they are.
"""

from __future__ import annotations

import csv
from importlib import metadata
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes

from anomascope.engine.io import ImageReadError, load_dicom_sources
from anomascope.engine.methods import registry
from anomascope.storage import decode_mask
from anomascope.storage.records import ExportRow

SEG_SERIES_NUMBER = 9901  # a series number no scanner uses, so the Segmentation sorts after the images
NOT_EXPORTED = "dicom-seg-not-exported.csv"
DICOM_FORMATS = ("dicom", "dicom-series")


def write_segmentations(rows: list[ExportRow], out: Path) -> list[Path]:
    """One Segmentation file per annotation version of a DICOM case; the others, with the reason, in
    NOT_EXPORTED."""
    written, refused = [], []
    for row in rows:
        try:
            written.append(write_segmentation(row, out))
        except SegmentationRefused as exc:
            refused.append((row.annotation.id, row.annotation.version, row.case.source_name, str(exc)))
    if refused:
        path = out / NOT_EXPORTED
        with path.open("w", newline="") as f:
            table = csv.writer(f)
            table.writerow(["annotation_id", "version", "source_name", "reason"])
            table.writerows(refused)
        written.append(path)
    return written


class SegmentationRefused(ValueError):
    """An annotation that cannot become a DICOM Segmentation, and why."""


def write_segmentation(row: ExportRow, out: Path) -> Path:
    annotation, case = row.annotation, row.case
    sources = _sources(row)
    frames = sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in sources)
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
    if method is None or not method.maps:
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
    stored = (case.metadata_json or {}).get("stored_path")
    if not stored or not Path(stored).exists():
        raise SegmentationRefused("its DICOM files are no longer in the data folder")
    try:
        return load_dicom_sources(stored)
    except ImageReadError as exc:
        raise SegmentationRefused(str(exc)) from exc


def _text(value: str) -> str:
    """A DICOM short text (LO): at most 64 characters, no backslash."""
    return value.replace("\\", "/")[:64]


def _person(name: str) -> str:
    """A reader's name as a DICOM person name: the name as typed, as the family-name component."""
    return name.replace("\\", "/").replace("^", " ").replace("=", " ").strip()[:64] or "anonymous"
