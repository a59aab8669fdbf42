"""How a volume's voxels become the slices a reader sees, and back: NIfTI's display convention, and per-slice
masks put back into the source's physical space (for NIfTI export)."""

from __future__ import annotations

import numpy as np

# Axial slices are shown in radiological convention: anterior at the top, patient's right on the
# image's left. `nifti_slices` and `volume_from_slices` are each other's inverse.
DISPLAY_CONVENTION = "RAS+ canonical; axial slices, anterior up, patient right on image left"
# DICOM patient coordinates are LPS; NIfTI's are RAS.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def mask_volume(
    format: str, metadata: dict, spacing: list | None, slice_spacing: float | None, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(volume in NIfTI voxel order, 4x4 RAS affine) for a (slices, H, W) mask of a case."""
    if format == "nifti":
        return volume_from_slices(mask), np.asarray(metadata["affine"], dtype=float)
    volume = np.ascontiguousarray(np.asarray(mask).transpose(2, 1, 0))  # (columns, rows, slices)
    row_mm, col_mm = spacing or (1.0, 1.0)
    orientation = metadata.get("image_orientation")
    position = metadata.get("image_position") or (metadata.get("image_positions") or [None])[0]
    if format.startswith("dicom") and orientation and position:
        row_dir, col_dir = np.asarray(orientation[:3]), np.asarray(orientation[3:])
        affine = np.eye(4)
        affine[:3, 0] = row_dir * col_mm  # moving along a row (next column)
        affine[:3, 1] = col_dir * row_mm  # moving down a column (next row)
        affine[:3, 2] = np.cross(row_dir, col_dir) * (slice_spacing or 1.0)
        affine[:3, 3] = position
        return volume, _LPS_TO_RAS @ affine
    return volume, np.diag([col_mm, row_mm, slice_spacing or 1.0, 1.0])


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
