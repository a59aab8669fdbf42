"""One entry point: any supported file, folder or zip becomes one Case."""

from __future__ import annotations

import errno
import importlib
import io
import logging
import os
import warnings
import zipfile
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from .case import Case, ImageReadError
from .formats import HEAD_BYTES, SeriesFile, looks_like_dicom, sniff_format
from .limits import ReadLimits, read_file, read_head
from .photo import read_photo

if TYPE_CHECKING:
    import pydicom

# The DICOM and NIfTI readers are loaded when a file of their format is read (`_reader`), not here: a command
# that reads only photos (training on a prepared PNG split) then runs without pydicom and nibabel, which the
# lent GPU machine's image lacks (formats.py tells the formats apart without them).

LOOPING_LINK = "a link that loops, leading back to itself and never to a file"
SUPPORTED = "PNG, JPEG, DICOM (file, folder or zip of one series) or NIfTI (.nii, .nii.gz)"


def quiet_reader_libraries() -> None:
    """The readers check what they use and say what is wrong in one sentence; the parsing libraries'
    own warnings and log lines about a file (nibabel's header fixes, PIL's size warning) would only split
    that sentence, so the command line and the page turn them off (pydicom's value checks are off wherever
    the DICOM reader is loaded: dicom.py)."""
    for library in ("pydicom", "nibabel", "PIL"):
        warnings.filterwarnings("ignore", module=library)
        logging.getLogger(library).addHandler(logging.NullHandler())
        logging.getLogger(library).propagate = False


def load_case(path: str | Path, limits: ReadLimits | None = None) -> Case:
    """Read a PNG/JPEG, DICOM file, DICOM series folder or zip, or NIfTI file, within `limits`
    (default: ReadLimits.from_env()).

    Raises ImageReadError (one sentence naming the file and the problem) for anything unreadable.
    """
    limits = limits or ReadLimits.from_env()
    path = Path(path)
    if not path.exists():
        raise _missing(path)
    if path.is_dir():
        return _finite(path, _reader(path, "dicom").read_dicom_series(path, _folder_files(path, limits), limits))
    kind = _kind(path, read_head(path, HEAD_BYTES))  # refused before a byte more is read
    return _read(path, read_file(path, limits.max_bytes), kind, limits)


def load_dicom_sources(path: str | Path, limits: ReadLimits | None = None) -> list[pydicom.Dataset]:
    """The DICOM datasets behind the case `load_case(path)` reads, in the order of its slices: one
    dataset for a single or multi-frame file, the series' files sorted as its slices are for a folder
    or zip. Anything that is not DICOM is refused with the reason."""
    limits = limits or ReadLimits.from_env()
    path = Path(path)
    if not path.exists():
        raise _missing(path)
    if path.is_dir():
        return _reader(path, "dicom").series_datasets(path, _folder_files(path, limits), limits)
    kind = _kind(path, read_head(path, HEAD_BYTES))
    data = read_file(path, limits.max_bytes)
    if kind == "dicom":
        return [_reader(path, "dicom").parse_dicom(path, data, limits)]
    if kind == "zip":
        return _reader(path, "dicom").series_datasets(path, _zip_files(path, data, limits), limits)
    raise ImageReadError(
        path, f"a {_FORMAT_NAMES.get(kind, kind)} image, not DICOM: it has no DICOM study or series to refer to"
    )


def load_bytes(source: str | Path, data: bytes, limits: ReadLimits | None = None) -> Case:
    """As load_case, for content already in memory; `source` names it in errors."""
    return _read(source, data, _kind(source, data[:HEAD_BYTES]), limits or ReadLimits.from_env())


def _kind(source: str | Path, head: bytes) -> str:
    """The format the first bytes show, or a refusal naming what the file is not."""
    if not head:
        raise ImageReadError(source, "empty file (0 bytes)")
    kind = sniff_format(source, head)
    if kind == "dicom" and not looks_like_dicom(head):
        raise ImageReadError(source, "not a DICOM file (no DICM marker and no DICOM tag at its start)")
    if kind is None:
        claimed = _CLAIMED.get(Path(str(source)).suffix.lower())
        if claimed:
            raise ImageReadError(source, f"not a readable {claimed} image: the content is not {claimed} data")
        raise ImageReadError(source, f"not a recognised image format; expected {SUPPORTED}")
    return kind


def _read(source: str | Path, data: bytes, kind: str, limits: ReadLimits) -> Case:
    if kind in ("png", "jpeg"):
        return _finite(source, read_photo(source, data, kind, limits))
    if kind == "nifti":
        return _finite(source, _reader(source, "nifti").read_nifti(source, data, limits))
    dicom = _reader(source, "dicom")
    if kind == "dicom":
        return _finite(source, dicom.read_dicom_file(source, data, limits))
    return _finite(source, dicom.read_dicom_series(source, _zip_files(source, data, limits), limits))


def _reader(source: str | Path, name: str) -> ModuleType:
    """The DICOM or NIfTI reader (the module `name` here), loaded when a file of that format is read; where its
    library is not installed, a refusal naming it."""
    try:
        return importlib.import_module(f".{name}", __package__)
    except ModuleNotFoundError as exc:
        raise ImageReadError(
            source, f"reading {_FORMAT_NAMES[name]} needs {exc.name}, which is not installed here"
        ) from exc


_FORMAT_NAMES = {"png": "PNG", "jpeg": "JPEG", "nifti": "NIfTI", "dicom": "DICOM"}


_CLAIMED = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".nii": "NIfTI", ".zip": "zip"}


def _finite(source: str | Path, case: Case) -> Case:
    """Refuse NaN or infinite intensities: a map computed over them would mean nothing, silently."""
    bad = int(np.count_nonzero(~np.isfinite(case.pixels)))
    if bad:
        raise ImageReadError(
            source,
            f"{bad:,} of {case.pixels.size:,} voxels are NaN or infinite; anomaly maps "
            "need finite intensities (replace them, e.g. with the background value)",
        )
    return case


def _folder_files(folder: Path, limits: ReadLimits) -> list[SeriesFile]:
    """The regular files under `folder` (hidden ones left out); a link out of the folder is refused."""
    root = folder.resolve()
    files = []
    for current, subfolders, names in os.walk(folder):  # links to folders are listed, never entered
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            path = Path(current) / name
            relative = str(path.relative_to(folder))
            if path.is_symlink() and _loops(path):
                raise ImageReadError(folder, f"{relative} is {LOOPING_LINK}")
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise ImageReadError(
                    folder,
                    f"{relative} is a link to {path.resolve()}, outside the folder; "
                    "links out of an input folder are refused",
                )
            try:
                head = read_head(path, HEAD_BYTES)
            except ImageReadError as exc:
                raise ImageReadError(folder, f"{relative}: {exc.reason}") from exc
            files.append(SeriesFile(relative, head, partial(_read_member, folder, relative, path)))
            if len(files) > limits.max_files:
                raise ImageReadError(folder, f"too many files: more than {limits.max_files:,} (ANOMASCOPE_MAX_FILES)")
    if not files:
        raise ImageReadError(folder, "empty folder: no files to read")
    return files


def _missing(path: Path) -> ImageReadError:
    """`exists()` is False for a link that loops as for no file at all; the reader is told which."""
    return ImageReadError(path, LOOPING_LINK if _loops(path) else "no such file or folder")


def _loops(path: Path) -> bool:
    """Whether following the link `path` never ends (a -> b -> a, or a link to itself). Asked of the system
    (ELOOP) before `Path.resolve`, which raises RuntimeError for a loop up to Python 3.12 and OSError from
    3.13: neither names the file to a reader."""
    try:
        path.stat()
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _read_member(folder: Path, relative: str, path: Path, budget: int) -> bytes:
    try:
        return read_file(path, budget)
    except ImageReadError as exc:
        raise ImageReadError(folder, f"{relative}: {exc.reason}") from exc


def _zip_files(source: str | Path, data: bytes, limits: ReadLimits) -> list[SeriesFile]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir() and not Path(m.filename).name.startswith(".")]
        if len(members) > limits.max_files:
            raise ImageReadError(
                source,
                f"too many files: {len(members):,} in the zip, over the limit of "
                f"{limits.max_files:,} (ANOMASCOPE_MAX_FILES)",
            )
        files = [
            SeriesFile(
                m.filename,
                _zip_read(source, archive, m, HEAD_BYTES),
                partial(_zip_read, source, archive, m, whole=True),
            )
            for m in members
        ]
    except ImageReadError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ImageReadError(source, f"corrupt or truncated zip archive ({exc})") from exc
    if not files:
        raise ImageReadError(source, "empty zip archive: no files inside")
    return files


def _zip_read(
    source: str | Path, archive: zipfile.ZipFile, member: zipfile.ZipInfo, size: int, *, whole: bool = False
) -> bytes:
    """At most `size` decompressed bytes of a member; with `whole`, a member larger than that is refused."""
    try:
        with archive.open(member) as stream:
            data = stream.read(min(size, member.file_size) + 1 if whole else size)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ImageReadError(source, f"corrupt or truncated zip archive ({member.filename}: {exc})") from exc
    if whole and len(data) > size:
        raise ImageReadError(
            source,
            f"too large: {member.filename} expands past {size:,} bytes, the bytes left "
            "within the limit (ANOMASCOPE_MAX_BYTES)",
        )
    return data
