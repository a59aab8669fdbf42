"""NIfTI-1/2 volumes (.nii, .nii.gz), 2D to 4D, reoriented to RAS+ and shown as axial slices."""
from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from .case import Case, ImageReadError, check_voxel_count, window_from_range

# Axial slices are shown in radiological convention: anterior at the top, patient's right on the
# image's left. `nifti_slices` and `volume_from_slices` are each other's inverse.
DISPLAY_CONVENTION = "RAS+ canonical; axial slices, anterior up, patient right on image left"


def read_nifti(source: str | Path, data: bytes, max_voxels: int) -> Case:
    image = _parse(source, data)
    shape = tuple(int(n) for n in image.header.get_data_shape())
    if len(shape) > 4 and any(n > 1 for n in shape[4:]):
        raise ImageReadError(source, f"unsupported NIfTI dimensionality {len(shape)}D {shape}; 2D to 4D are read")
    if 0 in shape:
        raise ImageReadError(source, f"empty NIfTI volume (shape {shape})")
    check_voxel_count(source, int(np.prod(shape)), max_voxels)
    try:
        image = nib.as_closest_canonical(image) if len(shape) >= 3 else image
        volume = np.asarray(image.get_fdata(dtype=np.float32))
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        raise ImageReadError(source, f"truncated NIfTI: the voxel data is shorter than the header says ({exc})") from exc
    pixels = nifti_slices(volume)
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3]) + (None,) * 3
    return Case(
        pixels=pixels,
        format="nifti",
        modality="OT",  # NIfTI carries no modality; the reader sees the window instead
        source=str(source),
        window=window_from_range(pixels),
        spacing=(zooms[1], zooms[0]) if zooms[1] else None,
        slice_spacing=zooms[2] if len(shape) >= 3 and pixels.shape[0] > 1 else None,
        metadata={
            "affine": np.asarray(image.affine, dtype=float).tolist(),
            "original_shape": list(shape),
            "volume_shape": list(volume.shape),
            "orientation": DISPLAY_CONVENTION,
            "fourth_axis": "channels" if len(shape) == 4 else None,
            "description": _description(image),
        },
    )


def nifti_slices(volume: np.ndarray) -> np.ndarray:
    """(X, Y[, Z[, T]]) RAS+ voxels to (Z, T, H=Y, W=X) display slices."""
    while volume.ndim < 4:
        volume = volume[..., None]
    volume = volume[:, :, :, :, 0] if volume.ndim == 5 else volume
    # (X, Y, Z, T) -> (Z, T, Y, X), then flip Y (anterior up) and X (patient right on the left).
    return np.ascontiguousarray(volume.transpose(2, 3, 1, 0)[:, :, ::-1, ::-1])


def volume_from_slices(slices: np.ndarray) -> np.ndarray:
    """Inverse of nifti_slices for a (Z, H, W) stack: back to (X, Y, Z) in RAS+ voxel order."""
    return np.ascontiguousarray(slices[:, ::-1, ::-1].transpose(2, 1, 0))


def _parse(source, data: bytes):
    raw = data
    if data[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(data)
        except (EOFError, OSError) as exc:
            raise ImageReadError(source, f"truncated or corrupt gzip stream ({exc})") from exc
    try:
        header_size = int.from_bytes(raw[:4], "little")
        image_class = nib.Nifti2Image if header_size == 540 or int.from_bytes(raw[:4], "big") == 540 else nib.Nifti1Image
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
