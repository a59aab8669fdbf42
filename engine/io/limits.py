"""What one input may cost before it is refused, and reading files within it.

Every size is checked from what the file system or a header says before anything of that size is
allocated; compressed streams are read with a cap on their decompressed bytes; only regular files
are opened, so a named pipe or a device never blocks a reader.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, fields
from pathlib import Path

from .case import ImageReadError

GiB = 2**30


class LimitsError(ValueError):
    """A limit set in the environment that is not a positive whole number."""


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on one input (a file, a folder or a zip): memory and time follow from them.

    Environment variables ANOMASCOPE_MAX_VOXELS, ANOMASCOPE_MAX_BYTES, ANOMASCOPE_MAX_FILES and
    ANOMASCOPE_MAX_HEADER_ELEMENTS override the defaults for the command line and the page.
    """

    # 2**28 voxels are 1 GiB as float32, the form every case takes: beyond that one review case no
    # longer fits beside a model on an ordinary workstation (a 512x512x1000 CT is 2**28).
    max_voxels: int = 2**28
    # Bytes read for one input, after decompression: a file, or a folder's or a zip's files together.
    max_bytes: int = 2 * GiB
    # Files in a folder or a zip (a DICOM series is one file per slice).
    max_files: int = 10_000
    # Elements in one DICOM header (sequences' items included): parsing costs time per element, so a
    # DICM marker followed by megabytes of filler would otherwise be parsed for minutes. An enhanced
    # multi-frame object with per-frame groups for 2,000 frames has about 100,000.
    max_header_elements: int = 250_000

    @classmethod
    def from_env(cls) -> ReadLimits:
        values = {}
        for field in fields(cls):
            name = f"ANOMASCOPE_{field.name.upper()}"
            text = os.environ.get(name)
            if text is None:
                continue
            try:
                values[field.name] = int(text)
            except ValueError as exc:
                raise LimitsError(f"{name}={text!r} is not a whole number") from exc
            if values[field.name] < 1:
                raise LimitsError(f"{name}={text!r} must be at least 1")
        return cls(**values)

    def check_voxels(self, source: str | Path, count: int) -> None:
        if count > self.max_voxels:
            raise ImageReadError(
                source, f"too large: {count:,} voxels exceeds the limit of {self.max_voxels:,} (ANOMASCOPE_MAX_VOXELS)"
            )

    def check_bytes(self, source: str | Path, count: int, what: str = "the file holds") -> None:
        if count > self.max_bytes:
            raise ImageReadError(
                source,
                f"too large: {what} {count:,} bytes, over the limit of {self.max_bytes:,} (ANOMASCOPE_MAX_BYTES)",
            )


def regular_file_size(path: Path) -> int:
    """The size of a regular file; a pipe, device or socket is refused without being opened."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "a named pipe"
            if stat.S_ISFIFO(info.st_mode)
            else "a device"
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            else "a socket"
            if stat.S_ISSOCK(info.st_mode)
            else "not a file"
        )
        raise ImageReadError(path, f"not a regular file ({kind}); give an image file")
    return info.st_size


def read_head(path: Path, size: int) -> bytes:
    """The first `size` bytes of a regular file."""
    regular_file_size(path)
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as exc:
        raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from exc


def read_file(path: Path, budget: int) -> bytes:
    """A regular file's bytes, refused before reading if it is larger than `budget`."""
    size = regular_file_size(path)
    if size > budget:
        raise ImageReadError(
            path, f"too large: the file holds {size:,} bytes, over the limit of {budget:,} (ANOMASCOPE_MAX_BYTES)"
        )
    try:
        with open(path, "rb") as f:
            data = f.read(size + 1)  # never a buffer of the whole budget
    except OSError as exc:
        raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if len(data) != size:
        raise ImageReadError(path, "changed while it was being read; try again")
    return data
