"""Which format a file is, from its first bytes: nothing here needs a format's own library, so a command that
reads only photos never imports pydicom or nibabel (the lent GPU machine's image has neither)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Bytes a reader needs to tell a DICOM file from anything else (preamble, "DICM", first tag).
HEAD_BYTES = 512
# Groups a DICOM file without the 128-byte preamble starts with: file meta, or identification.
_FIRST_GROUPS = (0x0002, 0x0008)


@dataclass(frozen=True)
class SeriesFile:
    """A file of a folder or zip: its first bytes, and how to read it whole within a byte budget."""

    name: str
    head: bytes
    read: Callable[[int], bytes]


def is_dicom_bytes(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def looks_like_dicom(head: bytes) -> bool:
    """The DICM marker, or (a file without preamble) a first tag of the groups such files start with."""
    return is_dicom_bytes(head) or (len(head) >= 8 and int.from_bytes(head[:2], "little") in _FIRST_GROUPS)


def sniff_format(source: str | Path, data: bytes) -> str | None:
    """The format from the content's magic bytes; the extension only breaks ties."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return "zip"
    if is_dicom_bytes(data):
        return "dicom"
    if data[:2] == b"\x1f\x8b" or looks_like_nifti_header(data):
        return "nifti"
    name = str(source).lower()
    if name.endswith((".dcm", ".dicom", ".ima")) or "." not in Path(name).name:
        return "dicom"  # DICOM without the 128-byte preamble: the reader checks for real tags
    return None


def looks_like_nifti_header(data: bytes) -> bool:
    if len(data) < 348:
        return False
    size_le, size_be = int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big")
    return size_le in (348, 540) or size_be in (348, 540)
