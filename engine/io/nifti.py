"""NIfTI-1/2 volumes (.nii, .nii.gz), 2D to 4D, reoriented to RAS+ and shown as axial slices."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from .case import Case, ImageReadError, window_from_range
from .geometry import DISPLAY_CONVENTION, nifti_slices
from .limits import ReadLimits

HEADER_BYTES = 540  # a NIfTI-2 header; NIfTI-1's is 348
# Bytes past the voxel data a writer may leave (padding); more means the header does not describe the file.
TRAILING_SLACK = 2**20
RGB_FIELDS = ("R", "G", "B")


def read_nifti(source: str | Path, data: bytes, limits: ReadLimits) -> Case:
    gzipped = data[:2] == b"\x1f\x8b"
    header = _header(source, _inflate(source, data, HEADER_BYTES) if gzipped else data[:HEADER_BYTES])
    shape = tuple(int(n) for n in header.get_data_shape())
    if len(shape) > 4 and any(n > 1 for n in shape[4:]):
        raise ImageReadError(source, f"unsupported NIfTI dimensionality {len(shape)}D {shape}; 2D to 4D are read")
    if 0 in shape:
        raise ImageReadError(source, f"empty NIfTI volume (shape {shape})")
    dtype = header.get_data_dtype()
    rgb = dtype.names == RGB_FIELDS
    _check_dtype(source, dtype, rgb, shape)
    limits.check_voxels(source, int(np.prod(shape)) * (3 if rgb else 1))
    expected = int(header.get_data_offset()) + int(np.prod(shape)) * dtype.itemsize
    limits.check_bytes(source, expected, "its header describes")
    raw = _inflate(source, data, expected + TRAILING_SLACK) if gzipped else data
    if len(raw) < expected:
        raise ImageReadError(source, f"truncated NIfTI: {len(raw):,} bytes where its header describes {expected:,}")
    if len(raw) > expected + TRAILING_SLACK:
        raise ImageReadError(
            source,
            f"holds more data than its header describes (over {TRAILING_SLACK:,} bytes "
            f"past the {expected:,} of its voxels)",
        )
    image = _parse(source, raw)
    _check_affine(source, image.affine, len(shape))
    try:
        image = nib.as_closest_canonical(image) if len(shape) >= 3 else image
        volume = _rgb_channels(image, shape) if rgb else np.asarray(image.get_fdata(dtype=np.float32))
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        raise ImageReadError(source, f"voxel data cannot be read ({exc})") from exc
    pixels = nifti_slices(volume)
    zooms = [float(z) for z in image.header.get_zooms()[:3]]
    return Case(
        pixels=pixels,
        format="nifti",
        modality="OT",  # NIfTI carries no modality; the reader sees the window instead
        source=str(source),
        window=(127.5, 255.0) if rgb else window_from_range(pixels),
        spacing=(zooms[1], zooms[0]) if zooms[1] else None,
        slice_spacing=zooms[2] if len(zooms) >= 3 and pixels.shape[0] > 1 else None,
        metadata={
            "affine": np.asarray(image.affine, dtype=float).tolist(),
            "original_shape": list(shape),
            "volume_shape": list(volume.shape),
            "orientation": DISPLAY_CONVENTION,
            "fourth_axis": "channels" if len(shape) == 4 or rgb else None,
            "description": _description(image),
        },
    )


def _inflate(source, data: bytes, cap: int) -> bytes:
    """Up to `cap` + 1 decompressed bytes of a gzip stream (all its members), never more."""
    out = bytearray()
    rest = data
    try:
        while rest and len(out) <= cap:
            inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
            tail = rest
            while tail and len(out) <= cap:
                out += inflater.decompress(tail, cap + 1 - len(out))
                tail = inflater.unconsumed_tail
            if len(out) > cap:
                break
            if not inflater.eof:
                raise ImageReadError(source, "truncated gzip stream: it ends before its data does")
            rest = inflater.unused_data.lstrip(b"\x00")  # some writers pad after the last member
    except zlib.error as exc:
        raise ImageReadError(source, f"corrupt gzip stream ({exc})") from exc
    return bytes(out)


def _header(source, head: bytes):
    """The NIfTI-1 or NIfTI-2 header at the start of `head`."""
    if len(head) < 348:
        raise ImageReadError(source, f"not a readable NIfTI file: {len(head)} bytes, shorter than a NIfTI header")
    nifti2 = 540 in (int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big"))
    header_class = nib.Nifti2Header if nifti2 else nib.Nifti1Header
    try:
        return header_class.from_fileobj(io.BytesIO(head))
    except Exception as exc:  # nibabel raises HeaderDataError, ValueError...
        raise ImageReadError(source, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc


def _check_dtype(source, dtype: np.dtype, rgb: bool, shape: tuple[int, ...]) -> None:
    if dtype.kind == "c":
        raise ImageReadError(source, "complex voxels: save the magnitude (or the phase) as a real-valued volume")
    if rgb and len(shape) > 3:
        raise ImageReadError(source, f"an RGB volume with a fourth axis {shape} is not supported")
    if not rgb and dtype.kind not in "biuf":
        raise ImageReadError(source, f"unsupported voxel type {dtype}; real numbers or RGB24 are read")


def _check_affine(source, affine: np.ndarray, dims: int) -> None:
    if not np.isfinite(affine).all():
        raise ImageReadError(
            source, "its voxel-to-world affine holds NaN or infinite values, so its geometry is unknown"
        )
    if dims >= 3 and np.linalg.matrix_rank(affine[:3, :3]) < 3:
        raise ImageReadError(
            source,
            "its voxel-to-world affine is singular (an axis has no length, or two coincide), "
            "so its orientation is unknown",
        )


def _rgb_channels(image, shape: tuple[int, ...]) -> np.ndarray:
    """RGB24 voxels as (X, Y, Z, 3) float32, the channels on the axis a 4D volume's fourth is read from."""
    voxels = np.asarray(image.dataobj)
    voxels = voxels.reshape(voxels.shape + (1,) * (3 - voxels.ndim))
    return np.stack([voxels[name].astype(np.float32) for name in RGB_FIELDS], axis=-1)


def _parse(source, raw: bytes):
    header_size = int.from_bytes(raw[:4], "little")
    image_class = nib.Nifti2Image if 540 in (header_size, int.from_bytes(raw[:4], "big")) else nib.Nifti1Image
    try:
        file_map = image_class.make_file_map({"image": io.BytesIO(raw), "header": io.BytesIO(raw)})
        return image_class.from_file_map(file_map)
    except Exception as exc:  # nibabel raises HeaderDataError, ImageFileError, ValueError...
        raise ImageReadError(source, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc


def _description(image) -> str | None:
    descrip = image.header.get("descrip")
    if descrip is None:
        return None
    text = np.asarray(descrip).tobytes().decode("latin-1", "replace").strip("\x00 ")
    return text or None
