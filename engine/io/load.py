"""One entry point: any supported file, folder or zip becomes one Case."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

from .case import DEFAULT_MAX_VOXELS, Case, ImageReadError
from .dicom import is_dicom_bytes, read_dicom_file, read_dicom_series
from .nifti import read_nifti
from .photo import read_photo

# Compressed archives are refused past this many uncompressed bytes (a zip bomb guard).
MAX_ARCHIVE_BYTES = 4 * 2**30
SUPPORTED = "PNG, JPEG, DICOM (file, folder or zip of one series) or NIfTI (.nii, .nii.gz)"


def load_case(path: str | Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> Case:
    """Read a PNG/JPEG, DICOM file, DICOM series folder or zip, or NIfTI file.

    Raises ImageReadError (one sentence naming the file and the problem) for anything unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "no such file or folder")
    if path.is_dir():
        files = [p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")]
        if not files:
            raise ImageReadError(path, "empty folder: no files to read")
        return read_dicom_series(path, [(str(p.relative_to(path)), p.read_bytes()) for p in files], max_voxels)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(path, f"cannot be opened ({exc.strerror or exc})") from exc
    return load_bytes(path, data, max_voxels)


def load_bytes(source: str | Path, data: bytes, max_voxels: int = DEFAULT_MAX_VOXELS) -> Case:
    """As load_case, for content already in memory; `source` names it in errors."""
    if not data:
        raise ImageReadError(source, "empty file (0 bytes)")
    kind = sniff_format(source, data)
    if kind in ("png", "jpeg"):
        return read_photo(source, data, kind, max_voxels)
    if kind == "dicom":
        return read_dicom_file(source, data, max_voxels)
    if kind == "nifti":
        return read_nifti(source, data, max_voxels)
    if kind == "zip":
        return _read_zip(source, data, max_voxels)
    claimed = _CLAIMED.get(Path(str(source)).suffix.lower())
    if claimed:
        raise ImageReadError(source, f"not a readable {claimed} image: the content is not {claimed} data")
    raise ImageReadError(source, f"not a recognised image format; expected {SUPPORTED}")


_CLAIMED = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".nii": "NIfTI", ".zip": "zip"}


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
    if data[:2] == b"\x1f\x8b" or _looks_like_nifti_header(data):
        return "nifti"
    name = str(source).lower()
    if name.endswith((".dcm", ".dicom", ".ima")) or "." not in Path(name).name:
        return "dicom"  # DICOM without the 128-byte preamble: the reader checks for real tags
    return None


def _looks_like_nifti_header(data: bytes) -> bool:
    if len(data) < 348:
        return False
    size_le, size_be = int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big")
    return size_le in (348, 540) or size_be in (348, 540)


def _read_zip(source: str | Path, data: bytes, max_voxels: int) -> Case:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir() and not Path(m.filename).name.startswith(".")]
        if sum(m.file_size for m in members) > MAX_ARCHIVE_BYTES:
            raise ImageReadError(source, f"too large: the zip expands past {MAX_ARCHIVE_BYTES // 2**30} GiB")
        files = [(m.filename, archive.read(m)) for m in members]
    except ImageReadError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ImageReadError(source, f"corrupt or truncated zip archive ({exc})") from exc
    if not files:
        raise ImageReadError(source, "empty zip archive: no files inside")
    return read_dicom_series(source, files, max_voxels)
