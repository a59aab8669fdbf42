"""Reading images: PNG/JPEG, DICOM files and series, NIfTI volumes, all into one `Case`."""
from .case import DEFAULT_MAX_VOXELS, Case, ImageReadError
from .load import SUPPORTED, load_bytes, load_case
from .nifti import nifti_slices, volume_from_slices

__all__ = ["Case", "ImageReadError", "DEFAULT_MAX_VOXELS", "SUPPORTED", "load_case", "load_bytes",
           "nifti_slices", "volume_from_slices"]
