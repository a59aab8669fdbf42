"""Reading images: PNG/JPEG, DICOM files and series, NIfTI volumes, all into one `Case`."""

from .case import Case, ImageReadError
from .geometry import nifti_slices, volume_from_slices
from .limits import ReadLimits
from .load import SUPPORTED, load_bytes, load_case, load_dicom_sources, quiet_reader_libraries

__all__ = [
    "SUPPORTED",
    "Case",
    "ImageReadError",
    "ReadLimits",
    "load_bytes",
    "load_case",
    "load_dicom_sources",
    "nifti_slices",
    "quiet_reader_libraries",
    "volume_from_slices",
]
