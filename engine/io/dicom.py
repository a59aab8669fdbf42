"""DICOM files (single- and multi-frame) and series of slices from a folder or a zip."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from .case import Case, ImageReadError, check_voxel_count, window_from_range


def is_dicom_bytes(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def parse_dicom(source: str | Path, data: bytes) -> pydicom.Dataset:
    """The dataset of one DICOM file; raises ImageReadError if it is not DICOM or is cut short."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not is_dicom_bytes(data))
    except (InvalidDicomError, EOFError) as exc:
        raise ImageReadError(source, f"not a DICOM file or its header is truncated ({exc})") from exc
    except Exception as exc:  # pydicom raises many types for a damaged header
        raise ImageReadError(source, f"damaged DICOM header ({type(exc).__name__}: {exc})") from exc
    # force=True accepts any bytes as a dataset; a real one without preamble still has tags.
    if not is_dicom_bytes(data) and not any(tag in ds for tag in ("SOPClassUID", "Modality", "PixelData", "Rows")):
        raise ImageReadError(source, "not a DICOM file (no DICM marker and no DICOM image tags)")
    return ds


def read_dicom_file(source: str | Path, data: bytes, max_voxels: int) -> Case:
    ds = parse_dicom(source, data)
    pixels = _decode_frames(source, ds, max_voxels)  # (frames, channels, H, W)
    window = _window(ds, pixels)
    spacing = _pixel_spacing(ds)
    slice_spacing = _float_or_none(ds.get("SpacingBetweenSlices")) if pixels.shape[0] > 1 else None
    return Case(
        pixels=pixels,
        format="dicom",
        modality=str(ds.get("Modality", "OT")) or "OT",
        source=str(source),
        window=window,
        spacing=spacing,
        slice_spacing=slice_spacing,
        metadata=_source_metadata(ds, pixels.shape[0]),
    )


@dataclass
class _Slice:
    name: str
    ds: pydicom.Dataset


def read_dicom_series(source: str | Path, files: list[tuple[str, bytes]], max_voxels: int) -> Case:
    """One series from (name, bytes) pairs: slices sorted by position along the slice normal."""
    slices, skipped = [], []
    for name, data in files:
        if not data:
            skipped.append(name)
            continue
        try:
            ds = parse_dicom(name, data)
        except ImageReadError:
            skipped.append(name)
            continue
        if "PixelData" not in ds:  # DICOMDIR and other non-image objects ride along in exports
            skipped.append(name)
            continue
        slices.append(_Slice(name, ds))
    if not slices:
        raise ImageReadError(source, f"no DICOM image slices found among {len(files)} file(s)")
    series = {str(s.ds.get("SeriesInstanceUID", "")) for s in slices}
    if len(series) > 1:
        raise ImageReadError(
            source, f"mixed series: {len(series)} different SeriesInstanceUIDs in one folder; give one series at a time"
        )
    slices, slice_spacing = _sort_slices(slices)
    total = sum(int(s.ds.get("Rows", 0)) * int(s.ds.get("Columns", 0)) * int(s.ds.get("SamplesPerPixel", 1)) for s in slices)
    check_voxel_count(source, total, max_voxels)
    stacks = [_decode_frames(s.name, s.ds, max_voxels) for s in slices]
    shapes = {stack.shape[1:] for stack in stacks}
    if len(shapes) > 1:
        raise ImageReadError(source, f"slices differ in size or channels: {sorted(shapes)}")
    pixels = np.concatenate(stacks, axis=0)
    first = slices[0].ds
    metadata = _source_metadata(first, pixels.shape[0])
    metadata.update(
        slice_files=[s.name for s in slices],
        skipped_files=skipped,
        image_positions=[_position(s.ds) for s in slices],
    )
    return Case(
        pixels=pixels,
        format="dicom-series",
        modality=str(first.get("Modality", "OT")) or "OT",
        source=str(source),
        window=_window(first, pixels),
        spacing=_pixel_spacing(first),
        slice_spacing=slice_spacing,
        metadata=metadata,
    )


def _sort_slices(slices: list[_Slice]) -> tuple[list[_Slice], float | None]:
    positions = [_position(s.ds) for s in slices]
    orientation = slices[0].ds.get("ImageOrientationPatient")
    if all(p is not None for p in positions) and orientation is not None and len(orientation) == 6:
        row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
        normal = np.cross(row, col)
        distance = [float(np.dot(normal, p)) for p in positions]
        order = np.argsort(distance, kind="stable")
        sorted_d = np.asarray(distance)[order]
        gaps = np.diff(sorted_d)
        spacing = float(np.median(gaps)) if gaps.size else None
        return [slices[i] for i in order], spacing
    numbers = [int(s.ds.get("InstanceNumber", 0) or 0) for s in slices]
    order = np.argsort(numbers, kind="stable")
    return [slices[i] for i in order], _float_or_none(slices[0].ds.get("SpacingBetweenSlices"))


def _position(ds: pydicom.Dataset) -> list[float] | None:
    value = ds.get("ImagePositionPatient")
    return [float(v) for v in value] if value is not None and len(value) == 3 else None


def _decode_frames(source: str | Path, ds: pydicom.Dataset, max_voxels: int) -> np.ndarray:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageReadError(source, "no pixel data (this DICOM object holds no image)")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if rows == 0 or cols == 0:
        raise ImageReadError(source, "empty image: Rows or Columns is zero")
    check_voxel_count(source, rows * cols * frames * samples, max_voxels)
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        array = ds.pixel_array
    except Exception as exc:  # decoders raise assorted types; all mean "cannot decode"
        raise ImageReadError(source, _decode_failure(syntax, exc)) from exc
    array = np.asarray(array)
    if samples > 1:
        array = array.reshape((frames, rows, cols, samples)).transpose(0, 3, 1, 2)
    else:
        array = array.reshape((frames, 1, rows, cols))
    values = _rescale(ds, array)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        values = _invert(values)
    return values.astype(np.float32)


def _decode_failure(syntax, exc: Exception) -> str:
    text = str(exc)
    if "length" in text.lower() and ("pixel data" in text.lower() or "expected" in text.lower()):
        return f"truncated: the pixel data is shorter than the image size requires ({text})"
    if syntax is not None and syntax.is_compressed:
        return (
            f"unsupported transfer syntax {syntax.name} ({syntax}): no installed decoder could read it "
            f"({type(exc).__name__}: {text})"
        )
    return f"pixel data cannot be decoded ({type(exc).__name__}: {text})"


def _rescale(ds: pydicom.Dataset, array: np.ndarray) -> np.ndarray:
    """Modality LUT: stored values to physical units (e.g. Hounsfield units)."""
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        return array.astype(np.float32)
    if "RescaleSlope" not in ds and "RescaleIntercept" not in ds:
        # Enhanced multi-frame objects keep the rescale in the shared functional groups.
        transform = _functional_group(ds, "PixelValueTransformationSequence")
        if transform is not None:
            slope = float(transform.get("RescaleSlope", 1.0))
            intercept = float(transform.get("RescaleIntercept", 0.0))
            return array.astype(np.float32) * slope + intercept
    return np.asarray(apply_modality_lut(array, ds), dtype=np.float32)


def _invert(values: np.ndarray) -> np.ndarray:
    """MONOCHROME1 shows low values bright; flip so every case reads bright = high."""
    lo, hi = float(values.min()), float(values.max())
    return (lo + hi) - values


def _window(ds: pydicom.Dataset, pixels: np.ndarray) -> tuple[float, float]:
    centre, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centre is None or width is None:
        voi = _functional_group(ds, "FrameVOILUTSequence")
        if voi is not None:
            centre, width = voi.get("WindowCenter"), voi.get("WindowWidth")
    if centre is not None and width is not None:
        centre, width = _first(centre), _first(width)
        if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
            centre = float(pixels.min() + pixels.max()) - centre
        if width > 0:
            return (centre, width)
    lut = ds.get("VOILUTSequence")
    if lut:
        # A VOI LUT maps [first_mapped, first_mapped + entries) to display values; its input span
        # is the window it encodes (shown linearly: a sigmoid-shaped LUT is approximated).
        entries, first_mapped = int(lut[0].LUTDescriptor[0]) or 65536, float(lut[0].LUTDescriptor[1])
        return (first_mapped + entries / 2.0, float(entries))
    if int(ds.get("SamplesPerPixel", 1) or 1) == 3 and int(ds.get("BitsStored", 8)) == 8:
        return (127.5, 255.0)
    return window_from_range(pixels)


def _pixel_spacing(ds: pydicom.Dataset) -> tuple[float, float] | None:
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if spacing is None:
        measures = _functional_group(ds, "PixelMeasuresSequence")
        spacing = measures.get("PixelSpacing") if measures is not None else None
    if spacing is None or len(spacing) != 2:
        return None
    return (float(spacing[0]), float(spacing[1]))


def _functional_group(ds: pydicom.Dataset, keyword: str):
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and keyword in shared[0] and shared[0][keyword].value:
        return shared[0][keyword].value[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and keyword in per_frame[0] and per_frame[0][keyword].value:
        return per_frame[0][keyword].value[0]
    return None


def _first(value) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _float_or_none(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _source_metadata(ds: pydicom.Dataset, frames: int) -> dict:
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    keep = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SeriesDescription",
            "PhotometricInterpretation", "BodyPartExamined", "StudyDate", "Manufacturer")
    meta = {key: str(ds.get(key)) for key in keep if ds.get(key) is not None}
    meta["frames"] = frames
    meta["transfer_syntax"] = str(syntax) if syntax else None
    orientation = ds.get("ImageOrientationPatient")
    if orientation is not None and len(orientation) == 6:
        meta["image_orientation"] = [float(v) for v in orientation]
    meta["image_position"] = _position(ds)
    return meta
