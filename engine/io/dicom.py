"""DICOM files (single- and multi-frame) and series of slices from a folder or a zip."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut

from .case import Case, ImageReadError, printable, window_from_range
from .formats import HEAD_BYTES, SeriesFile, is_dicom_bytes, looks_like_dicom
from .limits import ReadLimits

# This reader checks the values it uses (NUMERIC_TAGS below) and names what is wrong in one sentence; pydicom's
# own value checks would only warn about the same file first.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) as stored little-endian
# Tags the reader turns into numbers; text there is refused by name, not met later as a traceback.
NUMERIC_TAGS = {
    "Rows": int,
    "Columns": int,
    "NumberOfFrames": int,
    "SamplesPerPixel": int,
    "BitsAllocated": int,
    "InstanceNumber": int,
    "WindowCenter": float,
    "WindowWidth": float,
    "PixelSpacing": float,
    "ImagerPixelSpacing": float,
    "EstimatedRadiographicMagnificationFactor": float,
    "RescaleSlope": float,
    "RescaleIntercept": float,
    "SpacingBetweenSlices": float,
    "ImagePositionPatient": float,
    "ImageOrientationPatient": float,
}


class _TooManyElements(Exception):
    pass


class _CountedReads(io.BytesIO):
    """Bytes whose read() calls are counted: pydicom reads every element's header with its own call, so the
    count bounds the parse's time whatever the file holds (nested sequences included)."""

    def __init__(self, data: bytes, max_reads: int):
        super().__init__(data)
        self.reads_left = max_reads

    def read(self, size: int | None = -1) -> bytes:
        self.reads_left -= 1
        if self.reads_left < 0:
            raise _TooManyElements
        return super().read(size)


def parse_dicom(source: str | Path, data: bytes, limits: ReadLimits) -> pydicom.Dataset:
    """The dataset of one DICOM file; raises ImageReadError if it is not DICOM or is cut short."""
    if not looks_like_dicom(data[:HEAD_BYTES]):
        raise ImageReadError(source, "not a DICOM file (no DICM marker and no DICOM tag at its start)")
    # About two reads per element (its header, then its value), and a few for the preamble.
    stream = _CountedReads(data, 2 * limits.max_header_elements + 16)
    try:
        ds = pydicom.dcmread(stream, force=not is_dicom_bytes(data))
        for _ in ds.iterall():  # pydicom decodes some values when first read: all of them now
            pass
    except _TooManyElements:
        raise ImageReadError(
            source,
            f"not a usable DICOM file: its header holds over {limits.max_header_elements:,} "
            "elements (ANOMASCOPE_MAX_HEADER_ELEMENTS); filler, not image data",
        ) from None
    except (InvalidDicomError, EOFError) as exc:
        raise ImageReadError(source, f"not a DICOM file or its header is truncated ({exc})") from exc
    except Exception as exc:  # pydicom raises many types for a damaged header
        raise ImageReadError(source, f"damaged DICOM header ({type(exc).__name__}: {exc})") from exc
    # force=True accepts any bytes as a dataset; a real one without preamble still has tags.
    if not is_dicom_bytes(data) and not any(tag in ds for tag in ("SOPClassUID", "Modality", "PixelData", "Rows")):
        raise ImageReadError(source, "not a DICOM file (no DICM marker and no DICOM image tags)")
    _check_numbers(source, ds)
    return ds


def _check_numbers(source: str | Path, ds: pydicom.Dataset) -> None:
    for keyword, kind in NUMERIC_TAGS.items():
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        for item in value if isinstance(value, (list, tuple, MultiValue)) else [value]:
            try:
                number = float(item)
            except (TypeError, ValueError):
                raise ImageReadError(source, f"its {keyword} tag holds {str(value)!r}, which is not a number") from None
            if not math.isfinite(number) or (kind is int and number != int(number)):
                raise ImageReadError(
                    source,
                    f"its {keyword} tag holds {str(value)!r}, which is not a finite "
                    f"{'whole ' if kind is int else ''}number",
                )


def read_dicom_file(source: str | Path, data: bytes, limits: ReadLimits) -> Case:
    ds = parse_dicom(source, data, limits)
    if "PixelData" not in ds and PIXEL_DATA_TAG in data:
        raise ImageReadError(source, "truncated: the file ends inside its pixel data")
    pixels = _decode_frames(source, ds, limits)  # (frames, channels, H, W)
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


def read_dicom_series(source: str | Path, files: list[SeriesFile], limits: ReadLimits) -> Case:
    """One series from the DICOM files among `files`, sorted by position along the slice normal.
    Files that do not start like DICOM are skipped unread; the others share the byte budget."""
    slices, skipped, slice_spacing = _series_slices(source, files, limits)
    limits.check_voxels(source, sum(_voxels(s.ds) for s in slices))
    try:
        stacks = [_decode_frames(s.name, s.ds, limits) for s in slices]
    except ImageReadError as exc:
        raise _in_series(source, exc) from exc
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


def series_datasets(source: str | Path, files: list[SeriesFile], limits: ReadLimits) -> list[pydicom.Dataset]:
    """The datasets of the series among `files`, in the order `read_dicom_series` gives its slices."""
    return [s.ds for s in _series_slices(source, files, limits)[0]]


def _series_slices(
    source: str | Path, files: list[SeriesFile], limits: ReadLimits
) -> tuple[list[_Slice], list[str], float | None]:
    """The image slices of one series among `files`, sorted, the files skipped, and the slice spacing."""
    slices, skipped = [], []
    budget = limits.max_bytes
    for file in files:
        name = file.name
        if not looks_like_dicom(file.head):
            skipped.append(name)
            continue
        data = file.read(budget)
        budget -= len(data)
        try:
            ds = parse_dicom(name, data, limits)
        except ImageReadError as exc:  # it starts like DICOM: a damaged slice refuses the series
            raise _in_series(source, exc) from exc
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
    sorted_slices, spacing = _sort_slices(slices)
    return sorted_slices, skipped, spacing


def _in_series(source: str | Path, exc: ImageReadError) -> ImageReadError:
    """A slice's refusal as the series' own: the folder or zip, then the file inside it."""
    return ImageReadError(source, f"{printable(exc.source)}: {exc.reason}")


def _sort_slices(slices: list[_Slice]) -> tuple[list[_Slice], float | None]:
    positions = [p for p in (_position(s.ds) for s in slices) if p is not None]
    orientation = slices[0].ds.get("ImageOrientationPatient")
    if len(positions) == len(slices) and orientation is not None and len(orientation) == 6:
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


def _voxels(ds: pydicom.Dataset) -> int:
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    return rows * cols * int(ds.get("NumberOfFrames", 1) or 1) * int(ds.get("SamplesPerPixel", 1) or 1)


_PIXEL_ELEMENTS = {"PixelData": None, "FloatPixelData": 32, "DoubleFloatPixelData": 64}


def _check_pixel_bytes(source: str | Path, ds: pydicom.Dataset, syntax) -> None:
    """Uncompressed pixel data must hold exactly what Rows x Columns x frames x samples x bits say:
    fewer bytes is a cut file, more means the header's size is wrong and every row would shift."""
    if syntax is not None and syntax.is_compressed:
        return  # the decoder checks compressed frames
    keyword = next(k for k in _PIXEL_ELEMENTS if k in ds)
    bits = _PIXEL_ELEMENTS[keyword] or int(ds.get("BitsAllocated", 16) or 16)
    expected = (_voxels(ds) * bits + 7) // 8
    if str(ds.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422":
        expected = expected * 2 // 3  # two chroma samples shared by each pair of pixels
    actual = len(ds[keyword].value or b"")
    if actual < expected:
        raise ImageReadError(
            source,
            f"truncated: the pixel data holds {actual:,} bytes but Rows x Columns x frames "
            f"x samples x bits need {expected:,}",
        )
    if actual > expected + 1:  # one pad byte keeps the element's length even
        raise ImageReadError(
            source,
            f"the pixel data holds {actual:,} bytes but Rows x Columns x frames x samples "
            f"x bits describe {expected:,}: the header's image size does not match the data",
        )


def _decode_frames(source: str | Path, ds: pydicom.Dataset, limits: ReadLimits) -> np.ndarray:
    if not any(keyword in ds for keyword in _PIXEL_ELEMENTS):
        raise ImageReadError(source, "no pixel data (this DICOM object holds no image)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if rows == 0 or cols == 0:
        raise ImageReadError(source, "empty image: Rows or Columns is zero")
    limits.check_voxels(source, rows * cols * frames * samples)
    syntax = _transfer_syntax(source, ds)
    _check_pixel_bytes(source, ds, syntax)
    try:
        array = ds.pixel_array
    except Exception as exc:  # decoders raise assorted types; all mean "cannot decode"
        raise ImageReadError(source, _decode_failure(syntax, exc)) from exc
    array = np.asarray(array)
    if array.size != rows * cols * frames * samples:
        raise ImageReadError(
            source,
            f"the decoded pixel data holds {array.size:,} values but Rows x Columns x "
            f"frames x samples describe {rows * cols * frames * samples:,}",
        )
    if samples > 1:
        array = array.reshape((frames, rows, cols, samples)).transpose(0, 3, 1, 2)
    else:
        array = array.reshape((frames, 1, rows, cols))
    values = _rescale(ds, array)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        values = _invert(values)
    return values.astype(np.float32)


def _transfer_syntax(source: str | Path, ds: pydicom.Dataset):
    """The file's transfer syntax UID, or None when it states none (pydicom then infers one)."""
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and not syntax.is_transfer_syntax:
        raise ImageReadError(source, f"its transfer syntax UID {str(syntax)!r} is not a transfer syntax")
    return syntax


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
    """(row, column) pixel size in mm in the patient: PixelSpacing, at the top level or in the functional
    groups; else a projection image's ImagerPixelSpacing, which is measured at the detector, farther from
    the source than the patient, so divided by the EstimatedRadiographicMagnificationFactor where given."""
    spacing = ds.get("PixelSpacing")
    if spacing is None:
        measures = _functional_group(ds, "PixelMeasuresSequence")
        spacing = measures.get("PixelSpacing") if measures is not None else None
    magnification = 1.0
    if spacing is None:
        spacing = ds.get("ImagerPixelSpacing")
        factor = float(ds.get("EstimatedRadiographicMagnificationFactor") or 1.0)
        magnification = factor if factor > 0 else 1.0  # finite: _check_numbers refused the rest
    if spacing is None or len(spacing) != 2:
        return None
    return (float(spacing[0]) / magnification, float(spacing[1]) / magnification)


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
    keep = (
        "PatientID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SeriesDescription",
        "PhotometricInterpretation",
        "BodyPartExamined",
        "StudyDate",
        "Manufacturer",
    )
    meta: dict[str, object] = {key: str(ds.get(key)) for key in keep if ds.get(key) is not None}
    meta["frames"] = frames
    meta["transfer_syntax"] = str(syntax) if syntax else None
    orientation = ds.get("ImageOrientationPatient")
    if orientation is not None and len(orientation) == 6:
        meta["image_orientation"] = [float(v) for v in orientation]
    meta["image_position"] = _position(ds)
    return meta
