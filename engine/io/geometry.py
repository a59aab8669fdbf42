"""Putting per-slice masks back into the source's physical space (for NIfTI export)."""

from __future__ import annotations

import numpy as np

from .nifti import volume_from_slices

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
